r"""Ops and programs of the level-1 relational IR.

[Note: level-1 IR]
A :class:`Program` is a straight-line SSA list of :class:`Op` over :class:`~codegen.ir.values.Value`.
Nothing depends on Python control flow at run time: the tracer unrolls the model once per
graph schema. Programs are immutable; a pass builds a new one (``dataclasses.replace``) or
returns its input unchanged when nothing fires.

Op kinds (``attrs`` in brackets):

* ``typed_linear(x, w)`` [per_head, transpose_w]: :math:`y_i = x_i W_{\tau(i)}`; ``w`` is in the
  type domain of ``x``'s rows, or ``scalar`` for one shared matrix.
* ``typed_outer(x, dy)`` [weight_domain, per_head, transpose_w]: the weight gradient
  :math:`\sum_{i:\tau(i)=t} x_i^\top dy_i`.
* ``weight_matmul(a, b)`` [equation, domain]: an einsum between weights (basis
  combination, reordered weights :math:`W_r a_r`, their gradients).
* ``gather(x)`` [index]: ``out[i] = x[index[i]]`` along an index map (a domain change).
* ``aggregate(x)`` [index, reduce]: the reverse: reduce rows that map to the same target.
* ``dot(a, b)``: inner product over the last row axis, kept as size 1.
* ``ewise(a, b)`` [op]: ``add sub mul div eq maximum`` with PyTorch broadcasting.
* ``unary(x)`` [op, negative_slope, alpha]: activations and their derivatives.
* ``edge_softmax(s)`` [index]: max-subtracted softmax over edges sharing ``index``.
* ``reshape(x)`` [shape, domain]: a new row shape (or a type/scalar reinterpretation).
* ``sum_to(x)`` [domain, shape]: undo broadcasting (the gradient of a broadcast operand): sum
  row axes down to ``shape``, and all rows into one if ``domain`` is ``scalar``.
* ``const()`` [value]; ``graph_const()`` [name]; ``dropout_mask(x)`` [p].
* ``fused`` [region, kind]: a fusion region (level-1 ops it replaces), made by ``fuse``.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .values import Domain, Value

Attr = Any


class OpKind(str, enum.Enum):
    TYPED_LINEAR = "typed_linear"
    TYPED_OUTER = "typed_outer"
    WEIGHT_MATMUL = "weight_matmul"
    GATHER = "gather"
    AGGREGATE = "aggregate"
    DOT = "dot"
    EWISE = "ewise"
    UNARY = "unary"
    EDGE_SOFTMAX = "edge_softmax"
    RESHAPE = "reshape"
    SUM_TO = "sum_to"
    CONST = "const"
    GRAPH_CONST = "graph_const"
    DROPOUT_MASK = "dropout_mask"
    FUSED = "fused"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Op:
    """One IR operation. ``loc`` is the user's ``file:line`` that produced it (for errors)."""

    kind: OpKind
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    attrs: tuple[tuple[str, Attr], ...] = ()
    loc: str = ""

    def attr(self, key: str, default: Attr = None) -> Attr:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def out(self) -> Value:
        return self.outputs[0]


@dataclass(frozen=True, slots=True)
class Program:
    """A level-1 program: activations ``inputs``, weights ``params``, ops, ``outputs``."""

    inputs: tuple[Value, ...]
    params: tuple[Value, ...]
    ops: tuple[Op, ...]
    outputs: tuple[Value, ...]

    def producers(self) -> dict[int, Op]:
        """Value id -> the op that defines it."""
        return {v.id: op for op in self.ops for v in op.outputs}

    def users(self) -> dict[int, list[Op]]:
        """Value id -> ops that read it (in program order)."""
        uses: dict[int, list[Op]] = {}
        for op in self.ops:
            for v in op.inputs:
                uses.setdefault(v.id, []).append(op)
        return uses

    def values(self) -> Iterator[Value]:
        yield from self.inputs
        yield from self.params
        for op in self.ops:
            yield from op.outputs

    def max_id(self) -> int:
        return max((v.id for v in self.values()), default=-1)

    def count(self, kind: OpKind) -> int:
        return sum(op.kind == kind for op in self.ops)


def attrs_of(**kwargs: Attr) -> tuple[tuple[str, Attr], ...]:
    """Attributes as a sorted tuple (hashable, order-independent), dropping ``None``."""
    return tuple(sorted((k, v) for k, v in kwargs.items() if v is not None))


@dataclass
class Builder:
    """Appends ops with fresh value ids; output domain and shape come from inference.

    Passes use it to build the ops they add; ``loc`` tags new ops with a source line.
    """

    next_id: int = 0
    ops: list[Op] = field(default_factory=list)
    loc: str = ""

    @classmethod
    def after(cls, program: Program) -> Builder:
        return cls(next_id=program.max_id() + 1)

    def value(self, domain: Domain, shape: Iterable[int], dtype: str, name: str = "") -> Value:
        value = Value(self.next_id, domain, tuple(shape), dtype, name)
        self.next_id += 1
        return value

    def emit(self, kind: OpKind, inputs: Iterable[Value], **attrs: Attr) -> Value:
        """Append ``kind(inputs)`` and return its (inferred) output value."""
        from .verify import infer

        inputs = tuple(inputs)
        op_attrs = attrs_of(**attrs)
        domain, shape, dtype = infer(kind, inputs, dict(op_attrs))
        out = self.value(domain, shape, dtype)
        self.ops.append(Op(kind, inputs, (out,), op_attrs, self.loc))
        return out


def resolve(v: Value, mapping: dict[int, Value]) -> Value:
    """Follow ``mapping`` (value id -> replacement) to the final replacement of ``v``."""
    while v.id in mapping:
        v = mapping[v.id]
    return v


def substitute(ops: Iterable[Op], mapping: dict[int, Value]) -> list[Op]:
    """Rewrite op inputs through ``mapping``."""
    out = []
    for op in ops:
        inputs = tuple(resolve(v, mapping) for v in op.inputs)
        out.append(op if inputs == op.inputs else Op(op.kind, inputs, op.outputs, op.attrs, op.loc))
    return out


def rebuild(program: Program, ops: Iterable[Op], mapping: dict[int, Value] | None = None) -> Program:
    """A program with new ops (and values renamed through ``mapping``), same interface."""
    mapping = mapping or {}
    outputs = tuple(resolve(v, mapping) for v in program.outputs)
    return Program(program.inputs, program.params, tuple(substitute(ops, mapping)), outputs)


def splice(program: Program, index: int, new_ops: list[Op], replaced: Value, replacement: Value) -> Program:
    """Replace op ``index`` (which defines ``replaced``) by ``new_ops`` defining ``replacement``."""
    ops = [*program.ops[:index], *new_ops, *program.ops[index + 1:]]
    return rebuild(program, ops, {replaced.id: replacement})

r"""The op table's types: :class:`OpDef` (everything the compiler knows of one op kind) and
:class:`Traits` (the named properties passes ask about).

After tinygrad's ``GroupOp`` and Inductor's ``register_lowering``: a pass asks
``definition(op.kind).traits.recompute``, never keeps its own list of op names, so a new op
kind is declared once and every pass sees it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ...errors import CompileError
from ..program import Builder, Op, OpKind
from ..values import Domain, Value

Typing = tuple[Domain, tuple[int, ...]]
InferRule = Callable[[OpKind, tuple[Value, ...], dict[str, Any]], Typing]
EvaluateRule = Callable[[Op, Sequence[Tensor], Any, Any], Tensor]  # (op, args, layout, torch generator)
VjpRule = Callable[[Builder, Op, Value], list["Value | None"]]
FlopsRule = Callable[[Op, Mapping[Domain, int]], float]
EmitRule = Callable[[Any, Op], None]

# How an op reaches level 2 (see codegen.lower):
LOWERINGS = (
    "traversal",  # statements in a traversal kernel or a GEMM epilogue, through ``emit``
    "gemm",       # the GEMM template (typed rows or weight space)
    "inline",     # a literal printed where it is used (const)
    "graph_buffer",   # a buffer the runtime fills from the graph layout (graph constants)
    "random_buffer",  # a buffer the runtime fills with a fresh draw (dropout masks)
    "alias",      # a view of its input's buffer when it crosses a kernel boundary (reshape)
    "region",     # a fusion region: its members lower together (fused)
)


@dataclass(frozen=True)
class Traits:
    """Named properties of an op kind; each says what a pass may do with it.

    Attributes:
        gemm: a GEMM-class op; its kernel is a :class:`~codegen.ir.kernel.GemmSpec`.
        weight_space: operands are whole weights, not rows (``weight_matmul``).
        epilogue: row-wise and cheap: may follow a GEMM inside its kernel.
        standalone: never merged into a traversal kernel (weights, constants, draws, regions).
        recompute: cheap enough that the backward recomputes it instead of saving it.
        row_local: each output row depends only on the same row of each input; compaction may
            move it from edges to (node, relation) pairs.
        distinct: two such ops are never merged by CSE (a random draw, a fusion region).
        view: no data of its own (an index view or a constant); its consumer pays for reading.
    """

    gemm: bool = False
    weight_space: bool = False
    epilogue: bool = False
    standalone: bool = False
    recompute: bool = False
    row_local: bool = False
    distinct: bool = False
    view: bool = False


@dataclass(frozen=True)
class OpDef:
    """Everything the compiler knows of one op kind; see ``codegen/ir/ops/__init__.py``.

    Attributes:
        infer: ``(kind, inputs, attrs) -> (domain, row shape)``; raises :class:`CompileError`.
        evaluate: ``(op, args, layout, generator) -> Tensor``: the reference meaning.
        vjp: ``(builder, op, cotangent) -> one cotangent per input`` (None: not differentiable).
        flops: ``(op, rows per domain) -> FLOPs`` on one graph.
        lowering: one of :data:`LOWERINGS`.
        emit: for ``traversal`` lowering, ``(emitter, op)`` adds the op's statements.
        group_index: ``op -> index name | None``: the index map along which the op reduces rows
            (``"*"``: all rows into one), which groups the traversal kernel that runs it.
    """

    kind: OpKind
    infer: InferRule
    evaluate: EvaluateRule
    vjp: VjpRule
    flops: FlopsRule
    traits: Traits
    lowering: str
    emit: EmitRule | None = None
    group_index: Callable[[Op], str | None] = lambda op: None


OPS: dict[OpKind, OpDef] = {}


def register(definition: OpDef) -> OpDef:
    """Add one op kind to the table (each kind exactly once)."""
    if definition.kind in OPS:
        raise ValueError(f"op kind {definition.kind} is declared twice")
    if definition.lowering not in LOWERINGS:
        raise ValueError(f"{definition.kind}: unknown lowering {definition.lowering!r}")
    OPS[definition.kind] = definition
    return definition


def fail(kind: OpKind, message: str):
    """Raise the :class:`CompileError` of an ill-typed ``kind`` op."""
    raise CompileError(f"{kind}: {message}", op=str(kind))


def no_gradient(b: Builder, op: Op, g: Value) -> list[Value | None]:
    """The VJP of ops whose inputs get no gradient (constants, masks)."""
    return [None] * len(op.inputs)


def free(op: Op, stats: Mapping[Domain, int]) -> float:
    """No arithmetic (views, constants)."""
    return 0.0


def elements(v: Value, stats: Mapping[Domain, int]) -> int:
    """Number of scalars ``v`` holds on a graph with ``stats`` rows per domain."""
    return (1 if v.domain == Domain.SCALAR else stats[v.domain]) * v.row_size


def per_element(flops: float) -> FlopsRule:
    """``flops`` per element of the largest operand or result (elementwise work)."""
    def rule(op: Op, stats: Mapping[Domain, int]) -> float:
        return float(flops * max([elements(v, stats) for v in op.inputs] + [elements(op.out, stats)]))

    return rule


def const(b: Builder, value: float, dtype: str) -> Value:
    return b.emit(OpKind.CONST, (), value=value, dtype=dtype)

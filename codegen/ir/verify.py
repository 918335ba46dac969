"""Shape and domain inference for level-1 ops, and the program verifier.

:func:`infer` is the single home of every op's typing rule: the :class:`~codegen.ir.program.Builder`
calls it to type new values, and :func:`verify` re-runs it on every op after every pass, so a
pass that builds an ill-typed op fails at once, named after the pass.
"""
from __future__ import annotations

from typing import Any

import torch

from codegen.errors import CompileError, VerifyError
from codegen.numerics import elementwise
from codegen.ir.program import Op, OpKind, Program
from codegen.ir.values import (
    DTYPES,
    GRAPH_CONSTANTS,
    INDEX_MAPS,
    ROW_DOMAINS,
    ROW_TYPES,
    TYPE_DOMAINS,
    Domain,
    Value,
)

EWISE_OPS = elementwise.BINARY
UNARY_OPS = elementwise.ACTIVATIONS + elementwise.DERIVATIVES

Typing = tuple[Domain, tuple[int, ...], str]


def _fail(kind: OpKind, message: str) -> None:
    raise CompileError(f"{kind}: {message}", op=str(kind))


def _broadcast(kind: OpKind, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        _fail(kind, f"row shapes {a} and {b} do not broadcast")


def _einsum_shape(equation: str, a: Value, b: Value, out_domain: Domain) -> tuple[int, ...]:
    def full(v: Value) -> tuple[int, ...]:
        return ((1,) if v.domain in TYPE_DOMAINS else ()) + v.shape

    result = torch.einsum(equation, torch.empty(full(a), device="meta"), torch.empty(full(b), device="meta"))
    shape = tuple(result.shape)
    return shape[1:] if out_domain in TYPE_DOMAINS else shape


def infer(kind: OpKind, inputs: tuple[Value, ...], attrs: dict[str, Any]) -> Typing:
    """Domain, row shape and dtype of ``kind(inputs)``; raises :class:`CompileError` if ill-typed."""
    dtypes = {v.dtype for v in inputs}
    if len(dtypes) > 1:
        _fail(kind, f"mixed dtypes {sorted(dtypes)}")
    dtype = dtypes.pop() if dtypes else attrs.get("dtype", "float32")
    if dtype not in DTYPES:
        _fail(kind, f"unsupported dtype {dtype}")

    if kind == OpKind.TYPED_LINEAR:
        x, w = inputs
        if x.domain not in ROW_DOMAINS:
            _fail(kind, f"input rows must be in {[str(d) for d in ROW_DOMAINS]}, got {x.domain}")
        if w.domain not in (Domain.SCALAR, ROW_TYPES[x.domain][0]):
            _fail(kind, f"weight of {x.domain} rows must be {ROW_TYPES[x.domain][0]} or scalar, got {w.domain}")
        ws = w.shape  # the matrix of one type (or the shared matrix)
        if attrs.get("per_head"):
            if len(ws) != 3:
                _fail(kind, f"per-head weight must be [H, K, N] per type, got {ws}")
            h, k, n = (ws[0], ws[2], ws[1]) if attrs.get("transpose_w") else ws
            if x.shape != (h, k):
                _fail(kind, f"per-head weight {ws} needs rows {(h, k)}, got {x.shape}")
            return x.domain, (h, n), dtype
        if len(ws) != 2:
            _fail(kind, f"weight must be a matrix per type, got {ws}")
        k, n = (ws[1], ws[0]) if attrs.get("transpose_w") else ws
        if x.row_size != k:
            _fail(kind, f"rows have {x.row_size} features, weight expects {k}")
        return x.domain, (n,), dtype

    if kind == OpKind.TYPED_OUTER:
        x, dy = inputs
        if x.domain != dy.domain or x.domain not in ROW_DOMAINS:
            _fail(kind, f"operands must share a row domain, got {x.domain} and {dy.domain}")
        wd = Domain(attrs["weight_domain"])
        if wd not in (Domain.SCALAR, ROW_TYPES[x.domain][0]):
            _fail(kind, f"weight domain {wd} does not type {x.domain} rows")
        if attrs.get("per_head"):
            if x.shape[0] != dy.shape[0] or len(x.shape) != 2 or len(dy.shape) != 2:
                _fail(kind, f"per-head operands must be [H, K] and [H, N], got {x.shape} and {dy.shape}")
            if attrs.get("transpose_w"):
                return wd, (x.shape[0], dy.shape[1], x.shape[1]), dtype
            return wd, (x.shape[0], x.shape[1], dy.shape[1]), dtype
        shape = (dy.row_size, x.row_size) if attrs.get("transpose_w") else (x.row_size, dy.row_size)
        return wd, shape, dtype

    if kind == OpKind.WEIGHT_MATMUL:
        a, b = inputs
        domain = Domain(attrs["domain"])
        for v in (a, b):
            if v.domain in ROW_DOMAINS:
                _fail(kind, f"operands must be weights, got {v.domain} rows")
        try:
            return domain, _einsum_shape(attrs["equation"], a, b, domain), dtype
        except RuntimeError as err:
            _fail(kind, f"einsum '{attrs['equation']}' does not apply to {a.shape} and {b.shape}: {err}")

    if kind in (OpKind.GATHER, OpKind.AGGREGATE):
        (x,) = inputs
        index = INDEX_MAPS.get(attrs.get("index"))
        if index is None:
            _fail(kind, f"unknown index map {attrs.get('index')!r}")
        if kind == OpKind.GATHER:
            if x.domain != index.source:
                _fail(kind, f"index '{index.name}' reads {index.source} rows, got {x.domain}")
            return index.target, x.shape, dtype
        if x.domain != index.target:
            _fail(kind, f"index '{index.name}' reduces {index.target} rows, got {x.domain}")
        if attrs.get("reduce") not in ("sum", "max"):
            _fail(kind, f"reduce must be 'sum' or 'max', got {attrs.get('reduce')!r}")
        return index.source, x.shape, dtype

    if kind == OpKind.DOT:
        a, b = inputs
        if a.domain != b.domain or a.shape != b.shape:
            _fail(kind, f"operands must match, got {a.describe()} and {b.describe()}")
        return a.domain, a.shape[:-1] + (1,), dtype

    if kind == OpKind.EWISE:
        a, b = inputs
        if attrs.get("op") not in EWISE_OPS:
            _fail(kind, f"op must be one of {EWISE_OPS}, got {attrs.get('op')!r}")
        if a.domain == b.domain:
            return a.domain, _broadcast(kind, a.shape, b.shape), dtype
        row, other = (a, b) if b.domain == Domain.SCALAR else (b, a)
        if other.domain != Domain.SCALAR:
            _fail(kind, f"operands in different domains {a.domain} and {b.domain}")
        shape = _broadcast(kind, row.shape, other.shape)
        if row.domain != Domain.SCALAR and shape != row.shape:
            _fail(kind, f"a scalar-domain operand {other.shape} may not grow {row.domain} rows {row.shape}")
        return row.domain, shape, dtype

    if kind == OpKind.UNARY:
        (x,) = inputs
        if attrs.get("op") not in UNARY_OPS:
            _fail(kind, f"op must be one of {UNARY_OPS}, got {attrs.get('op')!r}")
        return x.domain, x.shape, dtype

    if kind == OpKind.EDGE_SOFTMAX:
        (s,) = inputs
        index = INDEX_MAPS.get(attrs.get("index"))
        if s.domain != Domain.EDGE or index is None or index.target != Domain.EDGE:
            _fail(kind, f"needs edge scores and an index into edges, got {s.domain} and {attrs.get('index')!r}")
        return s.domain, s.shape, dtype

    if kind == OpKind.RESHAPE:
        (x,) = inputs
        shape = tuple(attrs["shape"])
        domain = Domain(attrs.get("domain", x.domain))
        size = 1
        for s in shape:
            size *= s
        if domain == x.domain and size != x.row_size:
            _fail(kind, f"cannot reshape rows {x.shape} to {shape}")
        if domain != x.domain and not {domain, x.domain} <= {Domain.SCALAR, *TYPE_DOMAINS}:
            _fail(kind, f"only weights may be reinterpreted between domains, got {x.domain} -> {domain}")
        return domain, shape, dtype

    if kind == OpKind.SUM_TO:
        (x,) = inputs
        domain, shape = Domain(attrs["domain"]), tuple(attrs["shape"])
        if domain != x.domain and not (domain == Domain.SCALAR and x.domain in ROW_DOMAINS):
            _fail(kind, f"can sum {x.domain} rows only into themselves or a scalar, not {domain}")
        if _broadcast(kind, x.shape, shape) != x.shape:
            _fail(kind, f"{shape} does not broadcast to the row shape {x.shape}")
        return domain, shape, dtype

    if kind == OpKind.CONST:
        return Domain.SCALAR, (), dtype

    if kind == OpKind.GRAPH_CONST:
        if attrs.get("name") not in GRAPH_CONSTANTS:
            _fail(kind, f"unknown graph constant {attrs.get('name')!r}")
        return GRAPH_CONSTANTS[attrs["name"]][0], (1,), dtype

    if kind == OpKind.DROPOUT_MASK:
        (x,) = inputs
        if not 0.0 <= float(attrs.get("p", -1)) < 1.0:
            _fail(kind, f"p must be in [0, 1), got {attrs.get('p')}")
        return x.domain, x.shape, dtype

    _fail(kind, "has no typing rule")


def verify(program: Program, pass_name: str | None = None) -> Program:
    """Check SSA form and re-infer every op's typing; returns the program for chaining.

    Raises:
        VerifyError: naming ``pass_name``, the op and what is wrong.
    """
    defined: dict[int, Value] = {}
    for v in (*program.inputs, *program.params):
        if v.id in defined:
            raise VerifyError(f"value %{v.id} is declared twice", pass_name=pass_name)
        defined[v.id] = v
    for op in program.ops:
        for v in op.inputs:
            if defined.get(v.id) != v:
                raise VerifyError(f"{op.kind} reads {v.describe()} before it is defined (or with another type)",
                                  pass_name=pass_name)
        if op.kind == OpKind.FUSED:
            _verify_region(op, pass_name)
            expected = [(v.domain, v.shape, v.dtype) for v in op.outputs]
        else:
            try:
                expected = [infer(op.kind, op.inputs, dict(op.attrs))]
            except CompileError as err:
                raise VerifyError(f"ill-typed op: {err}", pass_name=pass_name) from err
        got = [(v.domain, v.shape, v.dtype) for v in op.outputs]
        if got != expected:
            raise VerifyError(f"{op.kind} outputs {got} but its inputs infer {expected}", pass_name=pass_name)
        for v in op.outputs:
            if v.id in defined:
                raise VerifyError(f"value %{v.id} is defined twice ({op.kind})", pass_name=pass_name)
            defined[v.id] = v
    for v in program.outputs:
        if defined.get(v.id) != v:
            raise VerifyError(f"output {v.describe()} is never defined", pass_name=pass_name)
    return program


def _verify_region(fused: Op, pass_name: str | None) -> None:
    """The members of a fusion region: each well typed, reading only the region's inputs or
    earlier members, and defining every value the region lets escape."""
    region = fused.attr("region")
    if not region:
        raise VerifyError("a fused op has no members", pass_name=pass_name)
    defined = {v.id: v for v in fused.inputs}
    for member in region:
        if member.kind == OpKind.FUSED:
            raise VerifyError("a fusion region holds another fusion region", pass_name=pass_name)
        for v in member.inputs:
            if defined.get(v.id) != v:
                raise VerifyError(f"fused {fused.attr('kind')} region: member {member.kind} reads {v.describe()}, "
                                  "which is neither a region input nor an earlier member's output",
                                  pass_name=pass_name)
        try:
            expected = infer(member.kind, member.inputs, dict(member.attrs))
        except CompileError as err:
            raise VerifyError(f"fused region: ill-typed member: {err}", pass_name=pass_name) from err
        if (member.out.domain, member.out.shape, member.out.dtype) != expected:
            raise VerifyError(f"fused region: member {member.kind} outputs {member.out.describe()} but its inputs "
                              f"infer {expected}", pass_name=pass_name)
        defined.update((v.id, v) for v in member.outputs)
    for v in fused.outputs:
        if defined.get(v.id) != v:
            raise VerifyError(f"fused region lets {v.describe()} escape, but no member defines it", pass_name=pass_name)

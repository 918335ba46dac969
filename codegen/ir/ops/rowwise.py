r"""Row-wise ops: ``ewise``, ``unary``, ``dot``, ``reshape``, ``sum_to``.

* ``ewise(a, b)`` [op]: a binary function of :data:`~codegen.ir.ops.functions.BINARY` with
  PyTorch broadcasting; a ``scalar``-domain operand broadcasts over rows.
* ``unary(x)`` [op, negative_slope, alpha]: a function of :data:`~codegen.ir.ops.functions.UNARY`.
* ``dot(a, b)``: inner product over the last row axis, kept as size 1.
* ``reshape(x)`` [shape, domain]: a new row shape (or a type/scalar reinterpretation).
* ``sum_to(x)`` [domain, shape]: undo broadcasting (the gradient of a broadcast operand): sum
  row axes down to ``shape``, and all rows into one if ``domain`` is ``scalar``.
"""
from __future__ import annotations

import math

import torch

from ...errors import CompileError
from .base import OpDef, Traits, const, fail, free, per_element, register
from .functions import BINARY, UNARY
from ..program import OpKind
from ..values import ALL_ROWS, ROW_DOMAINS, TYPE_DOMAINS, Domain
from ...numerics import elementwise

TRAVERSAL = "traversal"


def _broadcast(kind, a, b):
    try:
        return tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        fail(kind, f"row shapes {a} and {b} do not broadcast")


def _to_shape(b, g, target):
    """Undo broadcasting of ``target`` in ``g`` (sum rows/axes it was broadcast over)."""
    if g.domain == target.domain and g.shape == target.shape:
        return g
    return b.emit(OpKind.SUM_TO, (g,), domain=str(target.domain), shape=target.shape)


def _rowwise(stmt_op: str):
    """Lowering of an op that is one statement on its operands' rows."""
    def emit(em, op):
        em.compute(op, stmt_op, [em.ref(v) for v in op.inputs], fn=op.attr("op"),
                   negative_slope=op.attr("negative_slope"), alpha=op.attr("alpha"))

    return emit


# ---------------------------------------------------------------------- ewise
def _infer_ewise(kind, inputs, attrs):
    a, b = inputs
    if attrs.get("op") not in BINARY:
        fail(kind, f"op must be one of {tuple(BINARY)}, got {attrs.get('op')!r}")
    if a.domain == b.domain:
        return a.domain, _broadcast(kind, a.shape, b.shape)
    row, other = (a, b) if b.domain == Domain.SCALAR else (b, a)
    if other.domain != Domain.SCALAR:
        fail(kind, f"operands in different domains {a.domain} and {b.domain}")
    shape = _broadcast(kind, row.shape, other.shape)
    if row.domain != Domain.SCALAR and shape != row.shape:
        fail(kind, f"a scalar-domain operand {other.shape} may not grow {row.domain} rows {row.shape}")
    return row.domain, shape


def _evaluate_ewise(op, args, layout, generator):
    return elementwise.binary(op.attr("op"), args[0], args[1])


def _vjp_ewise(b, op, g):
    a, c = op.inputs
    grad = BINARY[op.attr("op")].grad
    if grad is None:
        return [None, None]  # eq / maximum appear only in gradients
    da, dc = grad(b, op, g, a, c)
    return [_to_shape(b, da, a), _to_shape(b, dc, c)]


# ---------------------------------------------------------------------- unary
def _infer_unary(kind, inputs, attrs):
    (x,) = inputs
    if attrs.get("op") not in UNARY:
        fail(kind, f"op must be one of {tuple(UNARY)}, got {attrs.get('op')!r}")
    return x.domain, x.shape


def _evaluate_unary(op, args, layout, generator):
    return elementwise.activation(op.attr("op"), args[0], op.attr("negative_slope", 0.01), op.attr("alpha", 1.0))


def _vjp_unary(b, op, g):
    grad = UNARY[op.attr("op")].grad
    if grad is None:
        raise CompileError(f"unary '{op.attr('op')}' has no VJP rule", op=f"unary[{op.attr('op')}]",
                           source_line=op.loc)
    return [grad(b, op, g, op.inputs[0], op.out)]


# ---------------------------------------------------------------------- dot
def _infer_dot(kind, inputs, attrs):
    a, b = inputs
    if a.domain != b.domain or a.shape != b.shape:
        fail(kind, f"operands must match, got {a.describe()} and {b.describe()}")
    return a.domain, a.shape[:-1] + (1,)


def _evaluate_dot(op, args, layout, generator):
    return (args[0] * args[1]).sum(-1, keepdim=True)


def _vjp_dot(b, op, g):
    a, c = op.inputs
    return [b.emit(OpKind.EWISE, (g, c), op="mul"), b.emit(OpKind.EWISE, (g, a), op="mul")]


# ---------------------------------------------------------------------- reshape
def _infer_reshape(kind, inputs, attrs):
    (x,) = inputs
    shape = tuple(attrs["shape"])
    domain = Domain(attrs.get("domain", x.domain))
    if domain == x.domain and math.prod(shape) != x.row_size:
        fail(kind, f"cannot reshape rows {x.shape} to {shape}")
    if domain != x.domain and not {domain, x.domain} <= {Domain.SCALAR, *TYPE_DOMAINS}:
        fail(kind, f"only weights may be reinterpreted between domains, got {x.domain} -> {domain}")
    return domain, shape


def _evaluate_reshape(op, args, layout, generator):
    out = op.out
    if out.domain in TYPE_DOMAINS:
        return args[0].reshape(layout.rows(out.domain), *out.shape)
    if out.domain == Domain.SCALAR:
        return args[0].reshape(out.shape)
    return args[0].reshape(args[0].size(0), *out.shape)


def _vjp_reshape(b, op, g):
    (x,) = op.inputs
    # Name the domain only where it changes (a weight reinterpreted): a row reshape must stay
    # free to follow its rows when compaction moves them onto (node, relation) pairs.
    extra = {} if x.domain == g.domain else {"domain": str(x.domain)}
    return [b.emit(OpKind.RESHAPE, (g,), shape=x.shape, **extra)]


def _emit_reshape(em, op):
    em.compute(op, "reshape", [em.ref(op.inputs[0])])


# ---------------------------------------------------------------------- sum_to
def _infer_sum_to(kind, inputs, attrs):
    (x,) = inputs
    domain, shape = Domain(attrs["domain"]), tuple(attrs["shape"])
    if domain != x.domain and not (domain == Domain.SCALAR and x.domain in ROW_DOMAINS):
        fail(kind, f"can sum {x.domain} rows only into themselves or a scalar, not {domain}")
    if _broadcast(kind, x.shape, shape) != x.shape:
        fail(kind, f"{shape} does not broadcast to the row shape {x.shape}")
    return domain, shape


def _evaluate_sum_to(op, args, layout, generator):
    return elementwise.sum_to(args[0], op.out.shape, has_rows=op.inputs[0].domain != Domain.SCALAR,
                              keep_rows=op.out.domain != Domain.SCALAR)


def _vjp_sum_to(b, op, g):
    (x,) = op.inputs
    # broadcasting back: multiply a zero of x's shape by g
    zeros = b.emit(OpKind.EWISE, (x, const(b, 0.0, x.dtype)), op="mul")
    return [b.emit(OpKind.EWISE, (zeros, g), op="add")]


def _emit_sum_to(em, op):
    if op.out.domain == op.inputs[0].domain:
        em.compute(op, "sum_to", [em.ref(op.inputs[0])])
    else:  # all rows into one: a whole-domain reduction
        em.env[op.out.id] = em.reduce(em.ref(op.inputs[0]), "sum", op.out.shape, 0.0)


ROWWISE = Traits(epilogue=True, recompute=True, row_local=True)
register(OpDef(OpKind.EWISE, _infer_ewise, _evaluate_ewise, _vjp_ewise, per_element(1), ROWWISE, TRAVERSAL,
               emit=_rowwise("ewise")))
register(OpDef(OpKind.UNARY, _infer_unary, _evaluate_unary, _vjp_unary, per_element(4), ROWWISE, TRAVERSAL,
               emit=_rowwise("unary")))
register(OpDef(OpKind.DOT, _infer_dot, _evaluate_dot, _vjp_dot, per_element(2),
               Traits(recompute=True, row_local=True), TRAVERSAL, emit=_rowwise("dot")))
register(OpDef(OpKind.RESHAPE, _infer_reshape, _evaluate_reshape, _vjp_reshape, free,
               Traits(epilogue=True, recompute=True, row_local=True, view=True), "alias", emit=_emit_reshape))
register(OpDef(OpKind.SUM_TO, _infer_sum_to, _evaluate_sum_to, _vjp_sum_to, per_element(1),
               Traits(recompute=True), TRAVERSAL, emit=_emit_sum_to,
               group_index=lambda op: ALL_ROWS if op.out.domain != op.inputs[0].domain else None))

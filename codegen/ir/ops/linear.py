r"""GEMM-class ops: ``typed_linear``, ``typed_outer`` (its weight gradient), ``weight_matmul``.

* ``typed_linear(x, w)`` [per_head, transpose_w]: :math:`y_i = x_i W_{\tau(i)}`; ``w`` is in the
  type domain of ``x``'s rows, or ``scalar`` for one shared matrix.
* ``typed_outer(x, dy)`` [weight_domain, per_head, transpose_w]: the weight gradient
  :math:`\sum_{i:\tau(i)=t} x_i^\top dy_i`.
* ``weight_matmul(a, b)`` [equation, domain]: an einsum between weights (basis combination,
  reordered weights :math:`W_r a_r`, their gradients).
"""
from __future__ import annotations

import math

import torch

from ...errors import CompileError
from .base import OpDef, Traits, fail, register
from ..program import OpKind
from ..values import ROW_DOMAINS, ROW_TYPES, TYPE_DOMAINS, Domain, Value
from ...numerics import segment

GEMM = "gemm"


# ---------------------------------------------------------------------- typed_linear
def _infer_linear(kind, inputs, attrs):
    x, w = inputs
    if x.domain not in ROW_DOMAINS:
        fail(kind, f"input rows must be in {[str(d) for d in ROW_DOMAINS]}, got {x.domain}")
    if w.domain not in (Domain.SCALAR, ROW_TYPES[x.domain][0]):
        fail(kind, f"weight of {x.domain} rows must be {ROW_TYPES[x.domain][0]} or scalar, got {w.domain}")
    ws = w.shape  # the matrix of one type (or the shared matrix)
    if attrs.get("per_head"):
        if len(ws) != 3:
            fail(kind, f"per-head weight must be [H, K, N] per type, got {ws}")
        h, k, n = (ws[0], ws[2], ws[1]) if attrs.get("transpose_w") else ws
        if x.shape != (h, k):
            fail(kind, f"per-head weight {ws} needs rows {(h, k)}, got {x.shape}")
        return x.domain, (h, n)
    if len(ws) != 2:
        fail(kind, f"weight must be a matrix per type, got {ws}")
    k, n = (ws[1], ws[0]) if attrs.get("transpose_w") else ws
    if x.row_size != k:
        fail(kind, f"rows have {x.row_size} features, weight expects {k}")
    return x.domain, (n,)


def _evaluate_linear(op, args, layout, generator):
    x, w = args
    per_head = op.attr("per_head", False)
    if op.attr("transpose_w", False):
        w = w.transpose(-1, -2)
    rows = x if per_head else x.reshape(x.size(0), -1)
    if op.inputs[1].domain == Domain.SCALAR:
        return torch.einsum("mhk,hkn->mhn", rows, w) if per_head else rows @ w
    ptr = layout.ptr(ROW_TYPES[op.inputs[0].domain][1]).tolist()
    return segment.segment_matmul(rows, w, ptr)


def _vjp_linear(b, op, g):
    x, w = op.inputs
    per_head, transposed = op.attr("per_head", False), op.attr("transpose_w", False)
    dx = b.emit(OpKind.TYPED_LINEAR, (g, w), per_head=per_head or None, transpose_w=(not transposed) or None)
    if dx.shape != x.shape:
        dx = b.emit(OpKind.RESHAPE, (dx,), shape=x.shape)
    dw = b.emit(OpKind.TYPED_OUTER, (x, g), weight_domain=str(w.domain), per_head=per_head or None,
                transpose_w=transposed or None)
    return [dx, dw]


def _flops_rows(op, stats):
    """:math:`2 M K N` for :math:`M` rows (a per-head weight is block diagonal)."""
    x, other = op.inputs
    width = op.out.row_size if op.kind == OpKind.TYPED_LINEAR else other.row_size
    flops = 2.0 * stats[x.domain] * x.row_size * width
    return flops / x.shape[0] if op.attr("per_head") else flops


# ---------------------------------------------------------------------- typed_outer
def _infer_outer(kind, inputs, attrs):
    x, dy = inputs
    if x.domain != dy.domain or x.domain not in ROW_DOMAINS:
        fail(kind, f"operands must share a row domain, got {x.domain} and {dy.domain}")
    wd = Domain(attrs["weight_domain"])
    if wd not in (Domain.SCALAR, ROW_TYPES[x.domain][0]):
        fail(kind, f"weight domain {wd} does not type {x.domain} rows")
    if attrs.get("per_head"):
        if x.shape[0] != dy.shape[0] or len(x.shape) != 2 or len(dy.shape) != 2:
            fail(kind, f"per-head operands must be [H, K] and [H, N], got {x.shape} and {dy.shape}")
        if attrs.get("transpose_w"):
            return wd, (x.shape[0], dy.shape[1], x.shape[1])
        return wd, (x.shape[0], x.shape[1], dy.shape[1])
    shape = (dy.row_size, x.row_size) if attrs.get("transpose_w") else (x.row_size, dy.row_size)
    return wd, shape


def _evaluate_outer(op, args, layout, generator):
    x, dy = args
    per_head = op.attr("per_head", False)
    if not per_head:
        x, dy = x.reshape(x.size(0), -1), dy.reshape(dy.size(0), -1)
    if Domain(op.attr("weight_domain")) == Domain.SCALAR:
        out = torch.einsum("mhk,mhn->hkn", x, dy) if per_head else x.transpose(0, 1) @ dy
    else:
        ptr = layout.ptr(ROW_TYPES[op.inputs[0].domain][1]).tolist()
        out = segment.segment_outer(x, dy, ptr, len(ptr) - 1)
    return out.transpose(-1, -2) if op.attr("transpose_w", False) else out


def _vjp_outer(b, op, g):
    raise CompileError("typed_outer has no VJP rule (is the program already differentiated?)",
                       op=str(op.kind), source_line=op.loc)


# ---------------------------------------------------------------------- weight_matmul
def _full(v: Value) -> tuple[int, ...]:
    return ((1,) if v.domain in TYPE_DOMAINS else ()) + v.shape


def _einsum_shape(kind, equation: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The result shape of an explicit einsum (``"tkm,tmn->tkn"``), size-1 axes broadcasting.

    Parsed here rather than by running ``torch.einsum`` on meta tensors: that first call imports
    ``torch._dynamo`` (2-5 s of a model's first call)."""
    inputs, arrow, output = equation.partition("->")
    operands = inputs.split(",")
    if not arrow or len(operands) != len(shapes) or not all(s.isalpha() for s in (*operands, output or "a")):
        fail(kind, f"einsum '{equation}' must name one axis letter per dimension of each of "
                   f"{len(shapes)} operands and the result ('ab,bc->ac')")
    sizes: dict[str, int] = {}
    for letters, shape in zip(operands, shapes):
        if len(letters) != len(shape):
            fail(kind, f"einsum '{equation}' does not apply to shapes {shapes}: '{letters}' has "
                       f"{len(letters)} axes, the operand {len(shape)}")
        for letter, size in zip(letters, shape):
            known = sizes.setdefault(letter, size)
            if known != size and 1 not in (known, size):
                fail(kind, f"einsum '{equation}' does not apply to shapes {shapes}: axis '{letter}' is "
                           f"{known} and {size}")
            sizes[letter] = max(known, size)
    missing = [letter for letter in output if letter not in sizes]
    if missing or len(set(output)) != len(output):
        fail(kind, f"einsum '{equation}': result axes must be distinct input axes")
    return tuple(sizes[letter] for letter in output)


def _infer_weight_matmul(kind, inputs, attrs):
    a, b = inputs
    domain = Domain(attrs["domain"])
    for v in (a, b):
        if v.domain in ROW_DOMAINS:
            fail(kind, f"operands must be weights, got {v.domain} rows")
    shape = _einsum_shape(kind, attrs["equation"], _full(a), _full(b))
    return domain, shape[1:] if domain in TYPE_DOMAINS else shape


def _evaluate_weight_matmul(op, args, layout, generator):
    return torch.einsum(op.attr("equation"), args[0], args[1])


def _vjp_weight_matmul(b, op, g):
    a, c = op.inputs
    lhs, out = op.attr("equation").split("->")
    sa, sc = lhs.split(",")
    for name, own, other in (("first", sa, sc), ("second", sc, sa)):
        if set(own) - set(out) - set(other):
            raise CompileError(f"weight_matmul '{op.attr('equation')}': the {name} operand has an axis summed "
                               "alone, which has no VJP rule", op="weight_matmul", source_line=op.loc)
    da = b.emit(OpKind.WEIGHT_MATMUL, (g, c), equation=f"{out},{sc}->{sa}", domain=str(a.domain))
    dc = b.emit(OpKind.WEIGHT_MATMUL, (a, g), equation=f"{sa},{out}->{sc}", domain=str(c.domain))
    return [da, dc]


def _flops_weight_matmul(op, stats):
    """Twice the product of every axis size of the einsum."""
    lhs, _ = op.attr("equation").split("->")
    sizes: dict[str, int] = {}
    for spec, v in zip(lhs.split(","), op.inputs):
        full = ((stats[v.domain],) if v.domain in TYPE_DOMAINS else ()) + v.shape
        sizes.update(zip(spec, full))
    return 2.0 * float(math.prod(sizes.values()))


register(OpDef(OpKind.TYPED_LINEAR, _infer_linear, _evaluate_linear, _vjp_linear, _flops_rows,
               Traits(gemm=True, row_local=True), GEMM))
register(OpDef(OpKind.TYPED_OUTER, _infer_outer, _evaluate_outer, _vjp_outer, _flops_rows,
               Traits(gemm=True), GEMM))
register(OpDef(OpKind.WEIGHT_MATMUL, _infer_weight_matmul, _evaluate_weight_matmul, _vjp_weight_matmul,
               _flops_weight_matmul, Traits(gemm=True, weight_space=True, standalone=True), GEMM))

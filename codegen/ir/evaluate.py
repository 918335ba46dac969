"""The level-1 interpreter: the meaning of a program, executed op by op with PyTorch.

Pass tests compare :func:`evaluate` before and after a pass in fp64; the reference backend
must agree with it. Values of a type domain are tensors ``[T, *row]``, scalar-domain values
are whole tensors, row-domain values ``[rows, *row]``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from codegen.ir.program import Op, OpKind, Program
from codegen.ir.values import INDEX_MAPS, ROW_TYPES, TYPE_DOMAINS, Domain
from codegen.numerics import elementwise, segment
from codegen.ir.layout import GraphLayout

def _typed_matmul(op: Op, x: Tensor, w: Tensor, layout: GraphLayout) -> Tensor:
    per_head = op.attr("per_head", False)
    if op.attr("transpose_w", False):
        w = w.transpose(-1, -2)
    rows = x if per_head else x.reshape(x.size(0), -1)
    weight_domain = op.inputs[1].domain
    if weight_domain == Domain.SCALAR:
        return torch.einsum("mhk,hkn->mhn", rows, w) if per_head else rows @ w
    ptr = layout.ptr(ROW_TYPES[op.inputs[0].domain][1]).tolist()
    return segment.segment_matmul(rows, w, ptr)


def _typed_outer(op: Op, x: Tensor, dy: Tensor, layout: GraphLayout) -> Tensor:
    per_head = op.attr("per_head", False)
    if not per_head:
        x, dy = x.reshape(x.size(0), -1), dy.reshape(dy.size(0), -1)
    if Domain(op.attr("weight_domain")) == Domain.SCALAR:
        out = torch.einsum("mhk,mhn->hkn", x, dy) if per_head else x.transpose(0, 1) @ dy
    else:
        ptr = layout.ptr(ROW_TYPES[op.inputs[0].domain][1]).tolist()
        out = segment.segment_outer(x, dy, ptr, len(ptr) - 1)
    return out.transpose(-1, -2) if op.attr("transpose_w", False) else out


def sum_to(x: Tensor, shape: tuple[int, ...], has_rows: bool, keep_rows: bool) -> Tensor:
    """Sum broadcast axes of ``x`` down to row shape ``shape``; with ``has_rows`` the first axis
    is the row axis, summed away unless ``keep_rows`` (the gradient of a broadcast operand)."""
    if has_rows and not keep_rows:
        x, has_rows = x.sum(0), False
    lead = 1 if has_rows else 0
    extra = x.dim() - lead - len(shape)
    if extra:
        x = x.sum(dim=tuple(range(lead, lead + extra)))
    dims = tuple(lead + i for i, s in enumerate(shape) if s == 1 and x.size(lead + i) != 1)
    return x.sum(dim=dims, keepdim=True) if dims else x


def run_op(op: Op, args: Sequence[Tensor], layout: GraphLayout, generator: torch.Generator | None = None) -> Tensor:
    """Execute one non-fused op on concrete tensors."""
    kind = op.kind
    if kind == OpKind.TYPED_LINEAR:
        return _typed_matmul(op, args[0], args[1], layout)
    if kind == OpKind.TYPED_OUTER:
        return _typed_outer(op, args[0], args[1], layout)
    if kind == OpKind.WEIGHT_MATMUL:
        return torch.einsum(op.attr("equation"), args[0], args[1])
    if kind == OpKind.GATHER:
        return args[0].index_select(0, layout.index(op.attr("index")))
    if kind == OpKind.AGGREGATE:
        index = INDEX_MAPS[op.attr("index")]
        reduce = segment.scatter_sum if op.attr("reduce") == "sum" else segment.scatter_max
        return reduce(args[0], layout.index(index.name), layout.rows(index.source))
    if kind == OpKind.DOT:
        return (args[0] * args[1]).sum(-1, keepdim=True)
    if kind == OpKind.EWISE:
        return elementwise.binary(op.attr("op"), args[0], args[1])
    if kind == OpKind.UNARY:
        return elementwise.activation(op.attr("op"), args[0], op.attr("negative_slope", 0.01), op.attr("alpha", 1.0))
    if kind == OpKind.EDGE_SOFTMAX:
        index = INDEX_MAPS[op.attr("index")]
        return segment.segment_softmax(args[0], layout.index(index.name), layout.rows(index.source))
    if kind == OpKind.RESHAPE:
        out = op.out
        if out.domain in TYPE_DOMAINS:
            return args[0].reshape(layout.rows(out.domain), *out.shape)
        if out.domain == Domain.SCALAR:
            return args[0].reshape(out.shape)
        return args[0].reshape(args[0].size(0), *out.shape)
    if kind == OpKind.SUM_TO:
        return sum_to(args[0], op.out.shape, has_rows=op.inputs[0].domain != Domain.SCALAR,
                      keep_rows=op.out.domain != Domain.SCALAR)
    if kind == OpKind.CONST:
        return torch.tensor(op.attr("value"), dtype=getattr(torch, op.out.dtype), device=layout.device)
    if kind == OpKind.GRAPH_CONST:
        return layout.constant(op.attr("name")).to(getattr(torch, op.out.dtype)).view(-1, 1)
    if kind == OpKind.DROPOUT_MASK:
        p = op.attr("p")
        keep = torch.rand(args[0].shape, generator=generator, dtype=args[0].dtype, device=args[0].device) >= p
        return keep.to(args[0].dtype) / (1.0 - p)
    raise ValueError(f"run_op cannot execute {kind}")


def evaluate(program: Program, layout: GraphLayout, inputs: Sequence[Tensor], params: Sequence[Tensor],
             generator: torch.Generator | None = None) -> list[Tensor]:
    """Run ``program`` on one graph's layout; returns the output tensors."""
    env: dict[int, Tensor] = {}
    for value, tensor in zip(program.inputs, inputs, strict=True):
        env[value.id] = tensor
    for value, tensor in zip(program.params, params, strict=True):
        env[value.id] = tensor
    for op in program.ops:
        region = op.attr("region") if op.kind == OpKind.FUSED else (op,)
        for member in region:
            env[member.out.id] = run_op(member, [env[v.id] for v in member.inputs], layout, generator)
    return [env[v.id] for v in program.outputs]

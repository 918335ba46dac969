r"""Ops with no computation of their own: ``const``, ``graph_const``, ``dropout_mask``, ``fused``.

* ``const()`` [value, dtype]: a number, inlined where it is used.
* ``graph_const()`` [name]: a per-row constant of the graph (``GRAPH_CONSTANTS``), filled by the runtime.
* ``dropout_mask(x)`` [p]: 0 or :math:`1/(1-p)` per element of ``x``'s shape, drawn by the runtime.
* ``fused`` [region, kind]: a fusion region (the level-1 ops it replaces), made by ``fuse``; its
  inputs are the values its members read from outside, its outputs the values that escape.
"""
from __future__ import annotations

import torch

from ...errors import CompileError
from .base import OpDef, Traits, fail, free, no_gradient, per_element, register
from ..program import OpKind
from ..values import GRAPH_CONSTANTS, Domain


def _infer_const(kind, inputs, attrs):
    return Domain.SCALAR, ()


def _evaluate_const(op, args, layout, generator):
    return torch.tensor(op.attr("value"), dtype=getattr(torch, op.out.dtype), device=layout.device)


def _infer_graph_const(kind, inputs, attrs):
    if attrs.get("name") not in GRAPH_CONSTANTS:
        fail(kind, f"unknown graph constant {attrs.get('name')!r}")
    return GRAPH_CONSTANTS[attrs["name"]][0], (1,)


def _evaluate_graph_const(op, args, layout, generator):
    return layout.constant(op.attr("name")).to(getattr(torch, op.out.dtype)).view(-1, 1)


def _infer_dropout(kind, inputs, attrs):
    (x,) = inputs
    if not 0.0 <= float(attrs.get("p", -1)) < 1.0:
        fail(kind, f"p must be in [0, 1), got {attrs.get('p')}")
    return x.domain, x.shape


def _evaluate_dropout(op, args, layout, generator):
    p, x = op.attr("p"), args[0]
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) >= p
    return keep.to(x.dtype) / (1.0 - p)


def _infer_fused(kind, inputs, attrs):
    fail(kind, "a fusion region is typed by its members (verify checks them), not inferred")


def _evaluate_fused(op, args, layout, generator):
    raise CompileError("a fusion region is evaluated member by member", op="fused")


def _vjp_fused(b, op, g):
    raise CompileError("fused has no VJP rule: autodiff runs before fusion", op="fused", source_line=op.loc)


def _flops_fused(op, stats):
    raise CompileError("the cost of a fusion region is the sum of its members'", op="fused")


register(OpDef(OpKind.CONST, _infer_const, _evaluate_const, no_gradient, free,
               Traits(standalone=True, recompute=True, view=True), "inline"))
register(OpDef(OpKind.GRAPH_CONST, _infer_graph_const, _evaluate_graph_const, no_gradient, free,
               Traits(standalone=True, recompute=True, view=True), "graph_buffer"))
register(OpDef(OpKind.DROPOUT_MASK, _infer_dropout, _evaluate_dropout, no_gradient, per_element(2),
               Traits(standalone=True, distinct=True), "random_buffer"))
register(OpDef(OpKind.FUSED, _infer_fused, _evaluate_fused, _vjp_fused, _flops_fused,
               Traits(standalone=True, distinct=True), "region"))

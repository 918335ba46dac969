r"""Aggregate first: sum messages per ``(node, relation)`` pair before the relation's linear map.

For a reduction of linearly transformed edge values whose weight is fixed within each
``(dst, etype)`` group (R-GCN's messages :math:`W_r h_u`, possibly scaled by a per-group factor
such as :math:`1 / |\mathcal{N}_r(v)|`):

.. math::
    \sum_{u \in \mathcal{N}(v)} c_{v,r(u)}\, h_u W_{r(u)}
    = \sum_{r} c_{v,r} \Big(\sum_{u \in \mathcal{N}_r(v)} h_u\Big) W_r

so the GEMM runs on ``|U_dst|`` pair rows instead of ``|E|`` edge rows. The same identity on the
source side (``aggregate`` along ``src``) turns a backward ``dx`` into a per-``(src, etype)``
sum followed by one GEMM. Kept only where the cost model says it pays.
"""
from __future__ import annotations

from collections.abc import Iterator

from ..ir.program import Builder, OpKind, Program, splice
from ..ir.values import Domain
from .compact import SIDES, pair_form
from .context import PassContext
from .search import improve

NAME = "aggregate_first"


def _rewrite(program: Program, index: int) -> Program | None:
    agg = program.ops[index]
    side = agg.attr("index")
    if agg.kind != OpKind.AGGREGATE or agg.attr("reduce") != "sum" or side not in SIDES:
        return None
    node_index, inverse, _, _ = SIDES[side]
    producers = program.producers()
    builder = Builder.after(program)
    builder.loc = agg.loc
    scales = []
    v = agg.inputs[0]
    op = producers.get(v.id)
    while op is not None and op.kind == OpKind.EWISE and op.attr("op") == "mul":
        factor = next((pair_form(f, side, producers, builder) for f in op.inputs[1:]), None)
        if factor is None:
            return None
        scales.append(factor)
        op = producers.get(op.inputs[0].id)
    if op is None or op.kind != OpKind.TYPED_LINEAR or op.inputs[1].domain not in (Domain.ETYPE, Domain.SCALAR):
        return None
    x, w = op.inputs
    summed = builder.emit(OpKind.AGGREGATE, (x,), index=inverse, reduce="sum")
    out = builder.emit(OpKind.TYPED_LINEAR, (summed, w), **dict(op.attrs))
    for factor in scales:
        out = builder.emit(OpKind.EWISE, (out, factor), op="mul")
    result = builder.emit(OpKind.AGGREGATE, (out,), index=node_index, reduce="sum")
    return splice(program, index, builder.ops, agg.out, result)


def candidates(program: Program) -> Iterator[tuple[str, Program]]:
    for index, op in enumerate(program.ops):
        rewritten = _rewrite(program, index)
        if rewritten is not None:
            yield f"aggregate along {op.attr('index')} at {op.loc or '?'} summed per pair before its GEMM", rewritten


def run(program: Program, ctx: PassContext) -> Program:
    return improve(program, ctx, NAME, candidates)

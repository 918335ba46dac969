r"""Compact materialization: compute values that depend only on ``(src, etype)`` once per pair.

An edge value such as :math:`h_u W_r` depends only on the edge's source and relation; with
``|U_src|`` distinct pairs it costs ``|E| / |U_src|`` times too much when computed per edge. The
rewrite moves such an op onto the ``usrc`` domain and reads it back through ``usrc_inv``:

.. math::
    \mathrm{op}(\mathrm{gather}(x, \mathrm{src}), \dots) \;\to\;
    \mathrm{gather}(\mathrm{op}(\mathrm{gather}(x, \mathrm{usrc\_node}), \dots), \mathrm{usrc\_inv})

and likewise for ``(dst, etype)`` on ``udst``. An op qualifies when every edge-domain input is
determined by the pair: a gather along ``src``/``dst``, ``etype``, or the compact domain's
inverse map. A weight gradient ``typed_outer(x_e, dy_e)`` with a pair-determined ``x_e`` sums
``dy_e`` per pair first. Each rewrite is kept only if the cost model says the program gets
cheaper on this graph (it does not when ``|U| = |E|``).
"""
from __future__ import annotations

from collections.abc import Iterator

from ..ir.ops import traits
from ..ir.program import Builder, OpKind, Program, splice
from ..ir.values import Domain, Value
from .context import PassContext
from .search import improve

NAME = "compact"
# side -> (node index of the pair, edge -> pair index, relation index of the pair, pair domain)
SIDES = {"src": ("usrc_node", "usrc_inv", "usrc_etype", Domain.USRC),
         "dst": ("udst_node", "udst_inv", "udst_etype", Domain.UDST)}


def pair_form(v: Value, side: str, producers, builder: Builder) -> Value | None:
    """The pair-domain value ``u`` with ``v == gather(u, inverse)``, emitting gathers if needed."""
    if v.domain != Domain.EDGE or v.id not in producers:
        return None
    op = producers[v.id]
    node_index, inverse, etype_index, _ = SIDES[side]
    if op.kind != OpKind.GATHER:
        return None
    index = op.attr("index")
    if index == side:
        return builder.emit(OpKind.GATHER, op.inputs, index=node_index)
    if index == "etype":
        return builder.emit(OpKind.GATHER, op.inputs, index=etype_index)
    if index == inverse:
        return op.inputs[0]
    return None


def _compact_op(program: Program, index: int, side: str) -> Program | None:
    op = program.ops[index]
    if op.kind == OpKind.TYPED_OUTER and op.inputs[0].domain != Domain.EDGE:
        return None
    if op.kind != OpKind.TYPED_OUTER and op.out.domain != Domain.EDGE:
        return None
    producers = program.producers()
    builder = Builder.after(program)
    builder.loc = op.loc
    _, inverse, _, domain = SIDES[side]
    if op.kind == OpKind.TYPED_OUTER:
        x, dy = op.inputs
        xs, dys = pair_form(x, side, producers, builder), pair_form(dy, side, producers, builder)
        if xs is None and dys is None:
            return None
        xs = xs if xs is not None else builder.emit(OpKind.AGGREGATE, (x,), index=inverse, reduce="sum")
        dys = dys if dys is not None else builder.emit(OpKind.AGGREGATE, (dy,), index=inverse, reduce="sum")
        attrs = dict(op.attrs)
        result = builder.emit(OpKind.TYPED_OUTER, (xs, dys), **attrs)
        return splice(program, index, builder.ops, op.out, result)
    if not traits(op).row_local:
        return None
    if op.kind == OpKind.TYPED_LINEAR and op.inputs[1].domain not in (Domain.ETYPE, Domain.SCALAR):
        return None
    inputs = []
    for v in op.inputs:
        if v.domain == Domain.SCALAR or (op.kind == OpKind.TYPED_LINEAR and v is op.inputs[1]):
            inputs.append(v)
            continue
        form = pair_form(v, side, producers, builder)
        if form is None:
            return None
        inputs.append(form)
    moved = builder.emit(op.kind, inputs, **dict(op.attrs))
    result = builder.emit(OpKind.GATHER, (moved,), index=inverse)
    return splice(program, index, builder.ops, op.out, result)


def candidates(program: Program) -> Iterator[tuple[str, Program]]:
    for index, op in enumerate(program.ops):
        for side in SIDES:
            rewritten = _compact_op(program, index, side)
            if rewritten is not None:
                yield f"{op.kind} at {op.loc or '?'} computed once per ({side}, etype) pair", rewritten


def run(program: Program, ctx: PassContext) -> Program:
    return improve(program, ctx, NAME, candidates)

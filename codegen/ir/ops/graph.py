r"""Ops that move rows along the graph's index maps: ``gather``, ``aggregate``, ``edge_softmax``.

* ``gather(x)`` [index]: ``out[i] = x[index[i]]`` along an index map (a domain change).
* ``aggregate(x)`` [index, reduce]: the reverse: reduce (``sum`` | ``max``) rows mapping to one target.
* ``edge_softmax(s)`` [index]: max-subtracted softmax over the edges sharing ``index``.
"""
from __future__ import annotations

from .base import OpDef, Traits, const, fail, free, per_element, register
from ..program import OpKind
from ..values import INDEX_MAPS, Domain
from ...numerics import segment


def _index(kind, attrs):
    index = INDEX_MAPS.get(attrs.get("index"))
    if index is None:
        fail(kind, f"unknown index map {attrs.get('index')!r}")
    return index


# ---------------------------------------------------------------------- gather
def _infer_gather(kind, inputs, attrs):
    (x,) = inputs
    index = _index(kind, attrs)
    if x.domain != index.source:
        fail(kind, f"index '{index.name}' reads {index.source} rows, got {x.domain}")
    return index.target, x.shape


def _evaluate_gather(op, args, layout, generator):
    return args[0].index_select(0, layout.index(op.attr("index")))


def _vjp_gather(b, op, g):
    return [b.emit(OpKind.AGGREGATE, (g,), index=op.attr("index"), reduce="sum")]


# ---------------------------------------------------------------------- aggregate
def _infer_aggregate(kind, inputs, attrs):
    (x,) = inputs
    index = _index(kind, attrs)
    if x.domain != index.target:
        fail(kind, f"index '{index.name}' reduces {index.target} rows, got {x.domain}")
    if attrs.get("reduce") not in ("sum", "max"):
        fail(kind, f"reduce must be 'sum' or 'max', got {attrs.get('reduce')!r}")
    return index.source, x.shape


def _evaluate_aggregate(op, args, layout, generator):
    index = INDEX_MAPS[op.attr("index")]
    reduce = segment.scatter_sum if op.attr("reduce") == "sum" else segment.scatter_max
    return reduce(args[0], layout.index(index.name), layout.rows(index.source))


def _vjp_aggregate(b, op, g):
    index = op.attr("index")
    (x,) = op.inputs
    if op.attr("reduce") == "sum":
        return [b.emit(OpKind.GATHER, (g,), index=index)]
    # max: the gradient goes to the maxima, split evenly between ties (as torch's amax)
    winner = b.emit(OpKind.EWISE, (x, b.emit(OpKind.GATHER, (op.out,), index=index)), op="eq")
    ties = b.emit(OpKind.AGGREGATE, (winner,), index=index, reduce="sum")
    ties = b.emit(OpKind.EWISE, (ties, const(b, 1.0, g.dtype)), op="maximum")
    share = b.emit(OpKind.GATHER, (b.emit(OpKind.EWISE, (g, ties), op="div"),), index=index)
    return [b.emit(OpKind.EWISE, (share, winner), op="mul")]


# ---------------------------------------------------------------------- edge_softmax
def _infer_softmax(kind, inputs, attrs):
    (s,) = inputs
    index = INDEX_MAPS.get(attrs.get("index"))
    if s.domain != Domain.EDGE or index is None or index.target != Domain.EDGE:
        fail(kind, f"needs edge scores and an index into edges, got {s.domain} and {attrs.get('index')!r}")
    return s.domain, s.shape


def _evaluate_softmax(op, args, layout, generator):
    index = INDEX_MAPS[op.attr("index")]
    return segment.segment_softmax(args[0], layout.index(index.name), layout.rows(index.source))


def _vjp_softmax(b, op, g):
    r"""For :math:`y = \mathrm{softmax}(s)` per group: :math:`\bar{s} = y (\bar{y} - \sum_{group} \bar{y} y)`."""
    y, index = op.out, op.attr("index")
    total = b.emit(OpKind.AGGREGATE, (b.emit(OpKind.EWISE, (g, y), op="mul"),), index=index, reduce="sum")
    centred = b.emit(OpKind.EWISE, (g, b.emit(OpKind.GATHER, (total,), index=index)), op="sub")
    return [b.emit(OpKind.EWISE, (y, centred), op="mul")]


register(OpDef(OpKind.GATHER, _infer_gather, _evaluate_gather, _vjp_gather, free,
               Traits(recompute=True, view=True), "traversal", emit=lambda em, op: em.gather(op)))
register(OpDef(OpKind.AGGREGATE, _infer_aggregate, _evaluate_aggregate, _vjp_aggregate, per_element(1),
               Traits(), "traversal", emit=lambda em, op: em.aggregate(op), group_index=lambda op: op.attr("index")))
register(OpDef(OpKind.EDGE_SOFTMAX, _infer_softmax, _evaluate_softmax, _vjp_softmax, per_element(6),
               Traits(), "traversal", emit=lambda em, op: em.softmax(op), group_index=lambda op: op.attr("index")))

r"""The relational ops of graphcore's front end.

A layer written only with these ops (plus elementwise torch functions between them) runs
eagerly as plain PyTorch, autograd included, and can be traced by :func:`graphcore.compile`
into the level-1 IR. Each op is wrapped by :func:`traceable`: when an argument carries a
``__graphcore_trace__`` hook (the compiler's symbolic graph or values), the call is recorded
instead of executed. No global state decides which mode runs.

Row conventions (all tensors are *rows first*):

* node values ``[N, ...]`` in global node order (see :class:`~graphcore.graph.HeteroGraph`),
* edge values ``[E, ...]`` in the canonical edge order (see :mod:`graphcore.layouts`),
* multi-head values ``[rows, H, F]``; attention scores ``[rows, H, 1]``, so that elementwise
  ops broadcast them over a head's features with plain PyTorch rules.
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from graphcore.codegen.errors import GraphError
from graphcore.codegen.numerics import elementwise, segment

if TYPE_CHECKING:
    from graphcore.graph import HeteroGraph

TypeKey = Literal["ntype", "etype"]
EWISE_OPS = ("add", "sub", "mul", "div")
UNARY_OPS = ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "exp", "neg", "identity")


def traceable(fn: Callable) -> Callable:
    """Mark a function as a traceable op of :mod:`graphcore.ops`.

    If any argument has a ``__graphcore_trace__(fn, args, kwargs)`` method, the call is handed to
    it (symbolic tracing, which finds the tracing rule by ``fn``'s name); otherwise ``fn`` runs
    eagerly.
    """

    @functools.wraps(fn)
    def dispatch(*args, **kwargs):
        for arg in itertools.chain(args, kwargs.values()):
            hook = getattr(arg, "__graphcore_trace__", None)
            if hook is not None:
                return hook(fn, args, kwargs)
        return fn(*args, **kwargs)

    return dispatch


def _expect_rows(name: str, x: Tensor, rows: int, what: str) -> None:
    if x.dim() == 0 or x.size(0) != rows:
        got = "a scalar" if x.dim() == 0 else f"{x.size(0)} rows"
        raise GraphError(f"{name}: expected {rows} rows ({what}), got {got} (shape {list(x.shape)})")


def _type_ptr(g: HeteroGraph, x: Tensor, by: str, op: str) -> tuple[list[int], int]:
    layout = g.layout
    if by == "ntype":
        _expect_rows(op, x, layout.num_nodes, "one per node")
        return layout.node_offsets.tolist(), layout.num_node_types
    if by == "etype":
        _expect_rows(op, x, layout.num_edges, "one per edge")
        return layout.rel_ptr.tolist(), layout.num_relations
    raise GraphError(f"{op}: by must be 'ntype' or 'etype', got {by!r}")


@traceable
def typed_linear(g: HeteroGraph, x: Tensor, weight: Tensor, *, by: TypeKey, bias: Tensor | None = None) -> Tensor:
    r"""Multiply each row by the weight of its type: :math:`y_i = x_i W_{\tau(i)} + b_{\tau(i)}`.

    Args:
        g: the graph (gives each row's type).
        x: node rows ``[N, ...]`` (``by="ntype"``) or edge rows ``[E, ...]`` (``by="etype"``).
            With a 3-d weight the trailing dims are flattened (``[M, H, F]`` acts as
            ``[M, H*F]``); with a 4-d weight ``x`` is ``[M, H, K]``.
        weight: ``[T, K, N]`` (one matrix per type) or ``[T, H, K, N]`` (one per type and head).
        by: ``"ntype"`` or ``"etype"``.
        bias: optional ``[T, N]`` or ``[T, H, N]``.

    Returns:
        ``[M, N]`` or ``[M, H, N]``.
    """
    ptr, num_types = _type_ptr(g, x, by, "typed_linear")
    if weight.size(0) != num_types:
        raise GraphError(f"typed_linear: weight has {weight.size(0)} types but the graph has {num_types} "
                         f"{'node types' if by == 'ntype' else 'relations'}")
    if weight.dim() == 3:
        x = x.flatten(1)  # not reshape(M, -1): that cannot infer -1 when M = 0 (a graph without edges)
        if x.size(1) != weight.size(1):
            raise GraphError(f"typed_linear: input rows have {x.size(1)} features, weight expects {weight.size(1)}")
    elif weight.dim() == 4:
        if x.dim() != 3 or x.shape[1:] != weight.shape[1:3]:
            raise GraphError(f"typed_linear: a per-head weight {list(weight.shape)} needs input [M, "
                             f"{weight.size(1)}, {weight.size(2)}], got {list(x.shape)}")
    else:
        raise GraphError(f"typed_linear: weight must be [T, K, N] or [T, H, K, N], got {list(weight.shape)}")
    out = segment.segment_matmul(x, weight, ptr)
    if bias is not None:
        out = out + gather(g, bias, by=by)
    return out


@traceable
def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""One shared matrix for every row: :math:`y_i = x_i W + b`, with ``weight`` ``[K, N]``.

    The untyped case of :func:`typed_linear` (R-GCN's self-loop, a classifier head).
    """
    if weight.dim() != 2 or x.dim() < 2:
        raise GraphError(f"linear: expected x [M, K] and weight [K, N], got {list(x.shape)} and {list(weight.shape)}")
    x = x.flatten(1)
    if x.size(1) != weight.size(0):
        raise GraphError(f"linear: input rows have {x.size(1)} features, weight expects {weight.size(0)}")
    out = x @ weight
    return out if bias is None else out + bias


@traceable
def gather(g: HeteroGraph, x: Tensor, *, by: Literal["src", "dst", "etype", "ntype"]) -> Tensor:
    """Read a row per edge or node: a node's row at each edge's source or destination
    (``"src"``/``"dst"``), a relation's row at each edge (``"etype"``), or a node type's row
    at each node (``"ntype"``)."""
    layout = g.layout
    if by in ("src", "dst"):
        _expect_rows("gather", x, layout.num_nodes, "one per node")
        return x.index_select(0, layout.src if by == "src" else layout.dst)
    if by == "etype":
        _expect_rows("gather", x, layout.num_relations, "one per relation")
        return x.index_select(0, layout.etype)
    if by == "ntype":
        _expect_rows("gather", x, layout.num_node_types, "one per node type")
        return x.index_select(0, layout.node_type)
    raise GraphError(f"gather: by must be 'src', 'dst', 'etype' or 'ntype', got {by!r}")


@traceable
def edge_data(g: HeteroGraph, name: str) -> Tensor:
    """The graph's edge-data field ``name`` with one row per edge, in the edge order of every
    other edge value: ``[E, 1]`` for an ``[E_r]`` ``edge_weight`` (so it scales message rows),
    ``[E, F]`` for an ``edge_attr``.

    Compiled, the field becomes an input on the edge domain, read from the graph on every call
    (graphs are run-time data) and differentiated when its tensors require grad.
    """
    values = g.layout.edge_values(name)
    return values.unsqueeze(-1) if values.dim() == 1 else values


@traceable
def dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise inner product over the last dim, kept: ``[M, H, F] · [M, H, F] -> [M, H, 1]``."""
    if a.shape != b.shape:
        raise GraphError(f"dot: operands must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    return (a * b).sum(-1, keepdim=True)


@traceable
def edge_softmax(g: HeteroGraph, scores: Tensor, *, group: Literal["dst", "dst_etype"] = "dst") -> Tensor:
    r"""Normalise edge scores over the incoming edges of each destination.

    .. math::
        \alpha_{uv} = \operatorname{softmax}_{u \in \mathcal{N}(v)} s_{uv}

    With ``group="dst"`` the softmax runs over all incoming edges (PyG's ``RGATConv`` and
    ``HGTConv``, DGL's ``HGTConv``); with ``"dst_etype"`` separately per relation. The max is
    subtracted first, so large logits are safe; nodes with no incoming edge have no rows.
    """
    layout = g.layout
    _expect_rows("edge_softmax", scores, layout.num_edges, "one per edge")
    if group == "dst":
        return segment.segment_softmax(scores, layout.dst, layout.num_nodes)
    if group == "dst_etype":
        pairs = layout.unique_dst
        return segment.segment_softmax(scores, pairs.inverse, pairs.num_pairs)
    raise GraphError(f"edge_softmax: group must be 'dst' or 'dst_etype', got {group!r}")


@traceable
def aggregate(g: HeteroGraph, msg: Tensor, *, reduce: Literal["sum", "mean", "max"] = "sum",
              group: Literal["dst", "dst_etype"] = "dst") -> Tensor:
    r"""Reduce edge messages into their destination nodes.

    ``group="dst"`` reduces over all incoming edges. ``group="dst_etype"`` reduces within each
    relation and then sums the relations: with ``reduce="mean"`` this is R-GCN's
    :math:`\sum_r \frac{1}{|\mathcal{N}_r(v)|} \sum_{u \in \mathcal{N}_r(v)} m_{uv}` (PyG's
    ``RGCNConv(aggr="mean")``). Nodes without incoming edges get zeros.
    """
    layout = g.layout
    _expect_rows("aggregate", msg, layout.num_edges, "one per edge")
    if reduce not in ("sum", "mean", "max"):
        raise GraphError(f"aggregate: reduce must be 'sum', 'mean' or 'max', got {reduce!r}")
    if group == "dst_etype":
        if reduce == "max":
            raise GraphError("aggregate: reduce='max' is only defined with group='dst'")
        if reduce == "mean":
            msg = msg / segment.per_row(layout.dst_etype_count.to(msg.dtype), msg)
        return segment.scatter_sum(msg, layout.dst, layout.num_nodes)
    if group != "dst":
        raise GraphError(f"aggregate: group must be 'dst' or 'dst_etype', got {group!r}")
    if reduce == "max":
        return segment.scatter_max(msg, layout.dst, layout.num_nodes)
    out = segment.scatter_sum(msg, layout.dst, layout.num_nodes)
    if reduce == "mean":
        out = out / segment.per_row(layout.in_degree.clamp(min=1).to(out.dtype), out)
    return out


@traceable
def ewise(op: str, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Elementwise ``add``/``sub``/``mul``/``div`` with PyTorch broadcasting.

    Attention scores are kept as ``[E, H, 1]`` (see :func:`dot`) so that they broadcast over the
    features of their head in ``[E, H, F]``.
    """
    if op not in EWISE_OPS:
        raise GraphError(f"ewise: op must be one of {EWISE_OPS}, got {op!r}")
    return getattr(torch, op)(a, b)


@traceable
def unary(op: str, x: Tensor, *, negative_slope: float = 0.01, alpha: float = 1.0, p: float = 0.5,
          training: bool = True) -> Tensor:
    """Elementwise activation (one of ``UNARY_OPS``) or ``dropout``."""
    if op == "dropout":
        return F.dropout(x, p, training)
    if op in UNARY_OPS:
        return elementwise.activation(op, x, negative_slope, alpha)
    raise GraphError(f"unary: op must be one of {UNARY_OPS} or 'dropout', got {op!r}")


@traceable
def split_heads(x: Tensor, heads: int) -> Tensor:
    """``[M, H*F] -> [M, H, F]``."""
    if x.dim() != 2 or x.size(1) % heads != 0:
        raise GraphError(f"split_heads: expected [M, H*F] with H={heads} dividing F, got {list(x.shape)}")
    return x.view(x.size(0), heads, x.size(1) // heads)


@traceable
def merge_heads(x: Tensor) -> Tensor:
    """``[M, H, F] -> [M, H*F]``."""
    if x.dim() != 3:
        raise GraphError(f"merge_heads: expected [M, H, F], got {list(x.shape)}")
    return x.flatten(1)


@traceable
def combine_bases(coeff: Tensor, basis: Tensor) -> Tensor:
    r"""Basis decomposition of per-type weights: :math:`W_t = \sum_b c_{tb} V_b`.

    Args:
        coeff: ``[T, B]``; basis: ``[B, K, N]``. Returns ``[T, K, N]``.
    """
    if coeff.dim() != 2 or basis.dim() != 3 or coeff.size(1) != basis.size(0):
        raise GraphError(f"combine_bases: expected coeff [T, B] and basis [B, K, N], got "
                         f"{list(coeff.shape)} and {list(basis.shape)}")
    return (coeff @ basis.reshape(basis.size(0), -1)).view(coeff.size(0), basis.size(1), basis.size(2))

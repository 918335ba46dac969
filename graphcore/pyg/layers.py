r"""PyG layers as graphcore layers: what :func:`graphcore.compile` runs in place of each.

While a PyG model is traced, the ``forward`` of every supported PyG layer is replaced (on the
instance, for the trace only) by one of the functions here. Each runs the graphcore layer of
:mod:`graphcore.nn` on the PyG module's own parameters: used as they are where the layouts
agree (``RGCNConv``'s ``weight``, ``comp``, ``root``, ``bias``), and otherwise as weights
prepared eagerly on every call from them (``Tracer.prepare``: slices, transposes and stacks,
differentiable), so gradients, optimizers and ``state_dict`` stay PyG's.

Numerics follow PyG: ``RGCNConv``/``FastRGCNConv`` with ``aggr="mean"`` average within each
relation and sum the relations; ``RGATConv``'s shared ``q``/``k`` attention is every relation's
attention; ``HGTConv``'s softmax runs over all incoming edges of a node (its relations
together) and its relation matrices are indexed ``head * R + relation`` in its metadata order.
A configuration graphcore has no op for raises :class:`~graphcore.CompileError` naming it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from graphcore.codegen.errors import CompileError
from graphcore.nn import HGT, RGAT, RGCN

if TYPE_CHECKING:
    from graphcore.pyg.to_hetero import ToHeteroLayer


def _layer(cls: type[nn.Module], **attrs) -> nn.Module:
    """An instance of a :mod:`graphcore.nn` layer holding the given attributes (the PyG module's
    parameters or weights prepared from them) instead of parameters of its own."""
    layer = cls.__new__(cls)
    nn.Module.__init__(layer)
    layer.__dict__.update(attrs)
    return layer


def _refuse(conv: nn.Module, what: str) -> CompileError:
    """The refusal of a configuration, naming the layer (its ``label`` where it has one: a to_hetero
    model's layer is named by its module path)."""
    name = getattr(conv, "label", type(conv).__name__)
    return CompileError(f"graphcore.compile cannot compile {name} with {what}; run this layer with "
                        "fallback='eager', or use a supported configuration (see graphcore.pyg)",
                        op=type(conv).__name__)


def check_rgcn(conv: nn.Module) -> None:
    if getattr(conv, "num_blocks", None) is not None:
        raise _refuse(conv, f"num_blocks={conv.num_blocks} (block-diagonal weights)")
    if conv.aggr not in ("add", "sum", "mean"):
        raise _refuse(conv, f"aggr={conv.aggr!r} (supported: 'add', 'mean')")
    if isinstance(conv.in_channels, tuple) or conv.in_channels <= 0:
        raise _refuse(conv, f"in_channels={conv.in_channels!r} (give one input size)")


def check_rgat(conv: nn.Module) -> None:
    unsupported = [(conv.attention_mode != "additive-self-attention", f"attention_mode={conv.attention_mode!r}"),
                   (conv.mod is not None, f"mod={conv.mod!r}"),
                   (conv.dim != 1, f"dim={conv.dim}"),
                   (not conv.concat, "concat=False"),
                   (conv.edge_dim is not None, f"edge_dim={conv.edge_dim}"),
                   (conv.num_blocks is not None, f"num_blocks={conv.num_blocks}"),
                   (conv.aggr not in ("add", "sum"), f"aggr={conv.aggr!r}")]
    for bad, what in unsupported:
        if bad:
            raise _refuse(conv, what + " (supported: additive-self-attention, across- or within-relation, "
                                       "mod=None, dim=1, concat=True, no edge_dim, no num_blocks)")


def check_hgt(conv: nn.Module) -> None:
    sizes = set(conv.in_channels.values())
    if len(sizes) != 1 or min(sizes) <= 0:
        raise _refuse(conv, f"in_channels={conv.in_channels} (graphcore's HGT takes one input size for all "
                            "node types: project them to a common size first)")


def rgcn_forward(conv: nn.Module, frontend, x: Tensor, edge_index: Tensor, edge_type: Tensor | None = None) -> Tensor:
    g = frontend.graph_for(conv, edge_index, edge_type)
    if conv.num_relations != g.num_relations:
        raise CompileError(f"{type(conv).__name__} has num_relations={conv.num_relations} but the graph of this call "
                           f"has {g.num_relations} relations", op=type(conv).__name__)
    aggr = "mean" if conv.aggr == "mean" else "sum"
    return _layer(RGCN, weight=conv.weight, comp=conv.comp, root=conv.root, bias=conv.bias, aggr=aggr)(g, x)


def rgat_forward(conv: nn.Module, frontend, x: Tensor, edge_index: Tensor, edge_type: Tensor | None = None,
                 edge_attr: Tensor | None = None, size=None, return_attention_weights=None) -> Tensor:
    if edge_attr is not None or size is not None or return_attention_weights is not None:
        raise _refuse(conv, "edge_attr, size or return_attention_weights arguments")
    g = frontend.graph_for(conv, edge_index, edge_type)
    tracer = frontend.tracer
    R = conv.num_relations
    if R != g.num_relations:
        raise CompileError(f"RGATConv has num_relations={R} but the graph of this call has {g.num_relations} "
                           "relations", op="RGATConv")
    if conv.num_bases is not None:
        weight = tracer.prepare(f"{frontend.name(conv, 'att')}@basis",
                                lambda att, basis: (att @ basis.reshape(basis.size(0), -1)).view(
                                    R, basis.size(1), basis.size(2)), conv.att, conv.basis)
    else:
        weight = conv.weight
    # PyG's q reads the destination, k the source; one pair for all relations
    att_src = tracer.prepare(f"{frontend.name(conv, 'k')}@relations", lambda k: k.expand(R, *k.shape), conv.k)
    att_dst = tracer.prepare(f"{frontend.name(conv, 'q')}@relations", lambda q: q.expand(R, *q.shape), conv.q)
    group = "dst_etype" if conv.attention_mechanism == "within-relation" else "dst"
    return _layer(RGAT, weight=weight, att_src=att_src, att_dst=att_dst, bias=conv.bias, heads=conv.heads,
                  negative_slope=conv.negative_slope, dropout=conv.dropout, training=conv.training,
                  attention_group=group)(g, x)


def hgt_forward(conv: nn.Module, frontend, x_dict: dict[str, Tensor], edge_index_dict: dict) -> dict[str, Tensor]:
    g = frontend.hetero_graph_for(conv, edge_index_dict)
    x = frontend.stacked(conv, x_dict)
    tracer = frontend.tracer
    missing_types = [t for t in g.node_types if t not in conv.node_types]
    missing_rels = [r for r in g.relations if r not in conv.edge_types]
    if missing_types or missing_rels:
        raise CompileError(f"HGTConv's metadata lacks node types {missing_types} / relations {missing_rels} of the "
                           "graph of this call", op="HGTConv")
    F, H = conv.out_channels, conv.heads
    D, R = F // H, len(conv.edge_types)
    types, rels = g.node_types, [conv.edge_types.index(r) for r in g.relations]
    kqv = [conv.kqv_lin.lins[t] for t in types]
    out = [conv.out_lin.lins[t] for t in types]

    def per_type(label: str, fn: Callable[..., Tensor], sources: list[Tensor]) -> Tensor:
        return tracer.prepare(f"{frontend.name(conv, label)}@graphcore", lambda *ts: torch.stack([fn(t) for t in ts]),
                              *sources)

    def rel_matrices(label: str, lin: nn.Module) -> Tensor:
        # PyG's HeteroLinear holds [H * R, D, D], indexed head * R + relation (metadata order)
        return tracer.prepare(f"{frontend.name(conv, label)}@graphcore",
                              lambda w: w.view(H, R, D, D).transpose(0, 1)[rels], lin.weight)

    layer = _layer(
        HGT, in_channels=x.size(-1), out_channels=F, heads=H,
        k_weight=per_type("k_weight", lambda w: w[:F].t(), [lin.weight for lin in kqv]),
        q_weight=per_type("q_weight", lambda w: w[F:2 * F].t(), [lin.weight for lin in kqv]),
        v_weight=per_type("v_weight", lambda w: w[2 * F:].t(), [lin.weight for lin in kqv]),
        k_bias=per_type("k_bias", lambda b: b[:F], [lin.bias for lin in kqv]),
        q_bias=per_type("q_bias", lambda b: b[F:2 * F], [lin.bias for lin in kqv]),
        v_bias=per_type("v_bias", lambda b: b[2 * F:], [lin.bias for lin in kqv]),
        att_rel=rel_matrices("k_rel", conv.k_rel),
        msg_rel=rel_matrices("v_rel", conv.v_rel),
        prior=per_type("p_rel", lambda p: p.view(H, 1), [conv.p_rel["__".join(r)] for r in g.relations]),
        out_weight=per_type("out_weight", lambda w: w.t(), [lin.weight for lin in out]),
        out_bias=per_type("out_bias", lambda b: b, [lin.bias for lin in out]),
        skip=per_type("skip", lambda s: s, [conv.skip[t] for t in types]))
    result = layer(g, x)
    return frontend.unstacked(result, [t for t in types if t in conv.dst_node_types])



def _relation_lins(conv: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """The neighbour and root ``Linear`` of a ``GraphConv`` or ``SAGEConv`` inside a ``HeteroConv``."""
    if hasattr(conv, "lin_rel"):
        return conv.lin_rel, conv.lin_root
    return conv.lin_l, getattr(conv, "lin_r", None)


def _reduce_of(conv: nn.Module) -> str:
    return "mean" if conv.aggr == "mean" else "sum"


def check_hetero_conv(hetero: nn.Module | ToHeteroLayer) -> None:
    """Refuse what :func:`hetero_conv_forward` cannot run: a ``HeteroConv``, or the per-relation
    copies of one layer of a ``to_hetero`` model (:class:`~graphcore.pyg.to_hetero.ToHeteroLayer`)."""
    from torch_geometric.nn import GraphConv, SAGEConv

    if hetero.aggr not in ("sum", "mean"):
        raise _refuse(hetero, f"aggr={hetero.aggr!r} (supported: 'sum', 'mean')")
    for edge_type, conv in hetero.convs.items():
        if not isinstance(conv, (GraphConv, SAGEConv)):
            raise _refuse(hetero, f"a {type(conv).__name__} for {edge_type} (supported per relation: "
                                  "GraphConv, SAGEConv)")
        if conv.aggr not in ("add", "sum", "mean"):
            raise _refuse(hetero, f"{type(conv).__name__}(aggr={conv.aggr!r}) for {edge_type}")
        if getattr(conv, "normalize", False) or getattr(conv, "project", False):
            raise _refuse(hetero, f"SAGEConv(normalize/project=True) for {edge_type}")
        if any(c <= 0 for c in (conv.in_channels if isinstance(conv.in_channels, tuple) else (conv.in_channels,))):
            raise _refuse(hetero, f"lazy in_channels for {edge_type} (give the input size)")
    reduces = {_reduce_of(c) for c in hetero.convs.values()}
    if len(reduces) > 1:
        raise _refuse(hetero, "inner layers that mix sum and mean aggregation")


def hetero_conv_forward(hetero: nn.Module | ToHeteroLayer, frontend, x_dict: dict[str, Tensor],
                        edge_index_dict: dict, *args, **kwargs) -> dict[str, Tensor]:
    r"""``HeteroConv`` over ``GraphConv``/``SAGEConv`` as one R-GCN-like layer: per relation
    :math:`W^{nbr}_r` on the aggregated neighbours, and per node type the sum over its incoming
    relations of their root weights and biases (divided by their number for ``aggr="mean"``).
    A ``to_hetero`` layer's copies run here too, as a ``HeteroConv`` with to_hetero's ``aggr``."""
    from graphcore import ops

    if args or kwargs:
        raise _refuse(hetero, "extra per-type arguments (edge_weight_dict, ...)")
    g = frontend.hetero_graph_for(hetero, edge_index_dict)
    x = frontend.stacked(hetero, x_dict)
    tracer, types = frontend.tracer, g.node_types
    present = [(r, hetero.convs[r]) for r in g.relations if r in hetero.convs]
    if not present:
        raise CompileError("HeteroConv has no layer for any relation of the graph of this call", op="HeteroConv")
    dst_types = list(dict.fromkeys(r[2] for r, _ in present))
    nbr = [_relation_lins(c)[0] for _, c in present]
    roots = [(r, _relation_lins(c)[1]) for r, c in present]
    at = {r: i for i, (r, _) in enumerate(present)}
    weights = [lin.weight for lin in nbr]
    biases = [lin.bias for lin in nbr if lin.bias is not None]
    root_weights = [lin.weight for _, lin in roots if lin is not None]

    def per_relation(*ws):  # [R, in, out]; zeros for relations without a layer
        zero = torch.zeros_like(ws[0].t())
        return torch.stack([ws[at[r]].t() if r in at else zero for r in g.relations])

    def per_type(fn, *ts):  # the sum over each type's incoming relations
        parts = fn(*ts)
        zero = torch.zeros_like(next(iter(parts.values())))
        return torch.stack([sum((p for r, p in parts.items() if r[2] == t), zero) for t in types])

    root_of = [r for r, lin in roots if lin is not None]
    bias_of = [r for r, lin in zip(at, nbr) if lin.bias is not None]
    w_nbr = tracer.prepare(frontend.name(hetero, "nbr_weight@graphcore"), per_relation, *weights)
    msg = ops.typed_linear(g, ops.gather(g, x, by="src"), w_nbr, by="etype")
    reduce = _reduce_of(present[0][1])
    out = ops.aggregate(g, msg, reduce=reduce, group="dst_etype" if reduce == "mean" else "dst")
    if root_weights:
        w_root = tracer.prepare(frontend.name(hetero, "root_weight@graphcore"),
                                lambda *ws: per_type(lambda *w: {r: v.t() for r, v in zip(root_of, w)}, *ws),
                                *root_weights)
        out = ops.ewise("add", out, ops.typed_linear(g, x, w_root, by="ntype"))
    if biases:
        b = tracer.prepare(frontend.name(hetero, "bias@graphcore"),
                           lambda *bs: per_type(lambda *v: dict(zip(bias_of, v)), *bs), *biases)
        out = ops.ewise("add", out, ops.gather(g, b, by="ntype"))
    if hetero.aggr == "mean":
        counts = [max(sum(r[2] == t for r, _ in present), 1) for t in types]
        inv = tracer.prepare(frontend.name(hetero, "inv_count@graphcore"),
                             lambda w: torch.tensor([[1.0 / c] for c in counts], dtype=w.dtype, device=w.device),
                             weights[0])
        out = ops.ewise("mul", out, ops.gather(g, inv, by="ntype"))
    return frontend.unstacked(out, dst_types)

r"""The entity-classification network: typed inputs, then a stack of relational layers.

A plain :class:`torch.nn.Module` (no Lightning), so it exports and compiles on its own.
:meth:`RGNN.layerwise` evaluates it on a graph too large for one multi-layer forward.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

import graphcore
from graphcore import nn as gnn
from graphcore import ops
from graphcore.compile import CompiledMixin
from graphcore.graph import HeteroGraph
from graphcore.sampling import HeteroNeighborSampler, SampledGraph, sampled_graph

ModelName = Literal["rgcn", "rgat", "hgt"]
MODELS = ("rgcn", "rgat", "hgt")


class TypedInput(nn.Module):
    r"""One input vector per node, in global node order.

    Node types with features are projected, :math:`h_v = x_v W_{\tau(v)} + b_{\tau(v)}` (dense
    or sparse CSR ``x``); featureless types get a learned embedding row per node, the
    factorised form of R-GCN's one-hot input (:math:`\mathrm{onehot}(v)\, W = E_v`), as in PyG's
    and DGL's ogbn-mag examples. On a sampled batch only the batch's rows are read (and get
    gradients; ``sparse=True`` makes those gradients sparse, for ``torch.optim.SparseAdam``).

    Args:
        num_nodes: nodes per type.
        in_features: feature width of the types that have features.
        dim: output width.
        sparse: sparse gradients for the embeddings.
    """

    def __init__(self, num_nodes: Mapping[str, int], in_features: Mapping[str, int], dim: int, *,
                 sparse: bool = False):
        super().__init__()
        unknown = sorted(set(in_features) - set(num_nodes))
        if unknown:
            raise ValueError(f"TypedInput: in_features names node types {unknown} that are not in num_nodes "
                             f"{list(num_nodes)}")
        self.num_nodes = dict(num_nodes)
        self.node_types = list(num_nodes)  # ModuleList slots; names may hold '.', which ModuleDict forbids
        self.inputs = nn.ModuleList(
            nn.Linear(in_features[t], dim) if t in in_features else nn.Embedding(count, dim, sparse=sparse)
            for t, count in self.num_nodes.items())
        for module in self.inputs:
            if isinstance(module, nn.Embedding):
                nn.init.xavier_uniform_(module.weight)

    def forward(self, g: HeteroGraph) -> Tensor:
        """``[N, dim]`` in ``g``'s global node order. ``g`` is the graph the model was built for
        (same types, counts and order) or a :class:`~graphcore.sampling.SampledGraph` of it, whose
        featureless nodes read their embedding rows through ``n_id``."""
        sampled = isinstance(g, SampledGraph)
        if (list(g.node_types) != self.node_types if sampled
                else list(g.num_nodes_dict.items()) != list(self.num_nodes.items())):
            raise ValueError(f"the graph's node types/counts {g.num_nodes_dict} differ from the ones the model "
                             f"was built for {self.num_nodes} (same types, counts and order needed)")
        rows = {}
        for ntype, module in zip(self.node_types, self.inputs):
            if isinstance(module, nn.Embedding):
                rows[ntype] = module(g.n_id[ntype]) if sampled else module.weight
            elif ntype not in g.x:
                raise ValueError(f"node type '{ntype}' was built with input features but the graph has none; "
                                 "pass the same dataset the model was trained on")
            else:
                rows[ntype] = module(g.x[ntype].to(module.weight.dtype))
        return g.stack(rows)


class RelationalStack(nn.Module):
    r"""Relational layers with ReLU and dropout between them: ``forward(g, h)``.

    .. math::
        h^{(l+1)} = \mathrm{dropout}\big(\mathrm{ReLU}(\mathrm{layer}_l(G, h^{(l)}))\big), \quad
        \mathrm{out} = \mathrm{layer}_{L-1}(G, h^{(L-1)})

    Written only with :mod:`graphcore.ops` and :mod:`graphcore.nn`, so
    :func:`graphcore.compile` can compile it as a whole.
    """

    def __init__(self, layers: list[nn.Module], dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = dropout

    def forward(self, g: HeteroGraph, h: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            h = layer(g, h)
            if i < len(self.layers) - 1:
                h = ops.unary("dropout", ops.unary("relu", h), p=self.dropout, training=self.training)
        return h


class RGNN(nn.Module):
    r"""Node classifier: :class:`TypedInput`, then a :class:`RelationalStack` of ``num_layers``.

    The last layer maps to the classes (as in the R-GCN paper, whose second layer is the
    classifier); hidden layers of ``rgat``/``hgt`` use ``heads`` heads of ``hidden // heads``
    features, the last layer one head.

    Args:
        num_nodes: nodes per type of the graphs it will run on.
        num_relations: relations (inverse relations included) of those graphs.
        num_classes: output classes.
        in_features: feature width of the node types that have features.
        model: ``rgcn`` (:class:`graphcore.nn.RGCN`), ``rgat`` or ``hgt``.
        hidden: width of the input and of the hidden layers.
        num_layers: relational layers (``>= 1``).
        num_bases: ``rgcn`` only: basis decomposition with this many bases.
        aggr: ``rgcn`` only: ``mean`` (per relation, R-GCN's :math:`1/c_{v,r}`) or ``sum``.
        self_loop: ``rgcn`` only: add the root weight :math:`W_0 h_v`.
        heads: attention heads of the hidden ``rgat``/``hgt`` layers.
        dropout: dropout after each hidden layer's activation.
        sparse_embeddings: sparse gradients for the featureless types' embeddings (large graphs).
        attention: ``rgat`` only: ``all`` normalises the attention over all incoming edges of a
            node (PyG's ``RGATConv`` default); ``relation`` within each relation, then sums over
            relations, as R-GCN's per-relation mean (PyG's ``attention_mechanism="within-relation"``).
            On MUTAG a compound's ~70 in-edges are mostly atoms and bonds: over all of them the few
            label-bearing relations are drowned out and training fits the compounds' own
            embeddings instead (the collapse; see the README).

    Shapes:
        ``forward(g)`` -> ``[N, num_classes]`` logits for every node of ``g`` (the full graph or a
        sampled batch of it), in global order.
    """

    def __init__(self, num_nodes: Mapping[str, int], num_relations: int, num_classes: int, *,
                 in_features: Mapping[str, int] | None = None, model: ModelName = "rgcn", hidden: int = 16,
                 num_layers: int = 2, num_bases: int | None = None, aggr: Literal["sum", "mean"] = "mean",
                 self_loop: bool = True, heads: int = 1, dropout: float = 0.0, sparse_embeddings: bool = False,
                 attention: Literal["all", "relation"] = "all"):
        super().__init__()
        if attention not in ("all", "relation"):
            raise ValueError(f"RGNN: attention must be 'all' or 'relation', got {attention!r}")
        if model not in MODELS:
            raise ValueError(f"RGNN: model must be one of {MODELS}, got {model!r}")
        if num_layers < 1:
            raise ValueError(f"RGNN: num_layers must be >= 1, got {num_layers}")
        if model != "rgcn" and num_bases is not None:
            raise ValueError(f"RGNN: num_bases applies to model='rgcn' only, got model={model!r}")
        if model != "rgcn" and num_layers > 1 and hidden % heads != 0:
            raise ValueError(f"RGNN: hidden ({hidden}) must be divisible by heads ({heads})")
        self.input = TypedInput(num_nodes, in_features or {}, hidden, sparse=sparse_embeddings)
        dims = [hidden] * num_layers + [num_classes]
        layers = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            h = heads if i < num_layers - 1 else 1
            if model == "rgcn":
                layers.append(gnn.RGCN(d_in, d_out, num_relations, num_bases=num_bases, self_loop=self_loop,
                                       aggr=aggr))
            elif model == "rgat":
                layers.append(gnn.RGAT(d_in, d_out // h, num_relations, heads=h))
                if attention == "relation":  # softmax within each relation, then a sum over relations
                    layers[-1].attention_group = "dst_etype"
            else:
                layers.append(gnn.HGT(d_in, d_out, len(num_nodes), num_relations, heads=h))
        self.stack = RelationalStack(layers, dropout)

    def forward(self, g: HeteroGraph) -> Tensor:
        return self.stack(g, self.input(g))

    def seed_logits(self, g: SampledGraph) -> Tensor:
        r"""``[batch_size, num_classes]`` logits of a sampled batch's seeds: ``forward(g)`` at the
        seeds, with layer :math:`l` of :math:`L` on ``g.trimmed(L - l)``, the nodes within
        :math:`L - l` hops and the edges of the first :math:`L - l` hops (PyG's ``trim_to_layer``;
        DGL's blocks do the same). The last layer runs for the seeds' first hop alone: on
        hector_mag_0.1 batches (fan-out [10, 10]) its graph has 2,787 of 8,309 nodes and 2,390 of
        11,725 edges. Needs a batch sampled with at least :math:`L` hops; a compiled stack runs
        layer by layer (:meth:`layer_runners`), one plan per layer for every batch.
        """
        layers = self.layer_runners()
        if (g.num_hops or 0) < len(layers):
            raise ValueError(f"RGNN.seed_logits: the batch was sampled with {g.num_hops} hops, the model has "
                             f"{len(layers)} layers")
        return g.seed_outputs(layers, self.input(g), lambda h: ops.unary(
            "dropout", ops.unary("relu", h), p=self.stack.dropout, training=self.stack.training))

    def layerwise(self, g: HeteroGraph, index: Tensor, chunk_size: int = 8192) -> Tensor:
        r"""``[len(index), num_classes]`` logits of the nodes ``index`` (global ids of the full graph
        ``g``), computed one layer at a time with full neighbourhoods: what ``forward(g)`` gives,
        without one multi-layer activation graph of all of ``g``.

        Layer :math:`l` runs for every node (only for ``index`` at the last layer), in chunks of
        ``chunk_size`` destination nodes of one type; each chunk is the subgraph of all in-edges
        of its nodes (:class:`~graphcore.sampling.HeteroNeighborSampler` with fan-out ``-1``), so a
        node's output is exact, and at most one chunk's messages exist at a time. This is PyG's
        ``inference()`` of its ogbn-products/mag examples: the evaluation of a model trained on
        sampled batches, exact rather than sampled. When the stack is compiled, each layer is
        compiled with its options too (:meth:`layer_runners`); ReLU and dropout between layers
        are the stack's.
        """
        if chunk_size < 1:
            raise ValueError(f"RGNN.layerwise: chunk_size must be >= 1, got {chunk_size}")
        structure = HeteroGraph(g.num_nodes_dict, {r: e.cpu() for r, e in g.edge_index_dict.items()},
                                edge_data={n: {r: v.cpu() for r, v in f.items()} for n, f in g.edge_data.items()} or None)
        sampler = HeteroNeighborSampler(structure, [-1], seed=0)
        nodes = torch.arange(g.num_nodes())
        h = self.input(g)
        layers = self.layer_runners()
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            h = full_neighbourhood(layer, sampler, structure, h, index.cpu() if last else nodes, chunk_size)
            if not last:
                h = ops.unary("dropout", ops.unary("relu", h), p=self.stack.dropout, training=self.stack.training)
        return h

    def layer_runners(self) -> list[nn.Module]:
        """The stack's layers one by one, for :meth:`layerwise`: compiled with the stack's
        options when the stack is compiled (made once; the compiled layers share the layers'
        parameters, and are kept out of the module tree, so ``state_dict`` does not change)."""
        if not isinstance(self.stack, CompiledMixin):
            return list(self.stack.layers)
        runners = self.__dict__.get("_layer_runners")
        if runners is None:
            runners = [graphcore.compile(layer, **self.stack._graphcore_options) for layer in self.stack.layers]
            self.__dict__["_layer_runners"] = runners
        return runners


def full_neighbourhood(layer: nn.Module, sampler: HeteroNeighborSampler, graph: HeteroGraph, h: Tensor,
                       nodes: Tensor, chunk_size: int) -> Tensor:
    """``layer``'s output ``[len(nodes), ...]`` for the global ids ``nodes`` of ``graph`` from the
    inputs ``h`` of all nodes, chunk by chunk of each node type (see :meth:`RGNN.layerwise`)."""
    offsets = torch.tensor([graph.node_offset(t) for t in graph.node_types])
    unique, inverse = torch.unique(nodes, return_inverse=True)  # sorted: grouped by type
    type_of = torch.bucketize(unique, offsets, right=True) - 1
    parts = []
    for k, ntype in enumerate(graph.node_types):
        local = unique[type_of == k] - offsets[k]
        for ids in local.split(chunk_size):
            node, row, col, edge, per_hop, _ = sampler.sample(ntype, ids)
            chunk = sampled_graph(graph, node, row, col, edge, input_type=ntype, batch_size=ids.numel(),
                                  num_sampled_nodes=per_hop)
            if chunk.device != h.device:
                chunk = chunk.to(h.device)
            rows = torch.cat([chunk.n_id[t] + offsets[j] for j, t in enumerate(graph.node_types)])
            parts.append(layer(chunk, h.index_select(0, rows.to(h.device))).index_select(0, chunk.seed_index))
    return torch.cat(parts).index_select(0, inverse.to(h.device))

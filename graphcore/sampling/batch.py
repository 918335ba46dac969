r"""Sampled mini-batches as :class:`~graphcore.graph.HeteroGraph`\ s of the full graph's schema.

A batch keeps every node type and every relation of the graph it was sampled from, in the same
order (an empty type or relation stays, with zero rows), so :func:`graphcore.compile` sees the
same schema on every batch and reuses one plan and one native build; only the batch's layout
is built per step.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from graphcore.codegen.errors import GraphError
from graphcore.graph import HeteroGraph, Relation


class SampledGraph(HeteroGraph):
    r"""A sampled subgraph: a :class:`HeteroGraph` plus the ids that map it back to the full graph.

    Local node ``i`` of type ``t`` is node ``n_id[t][i]`` of the full graph; the first
    ``batch_size`` nodes of ``input_type`` are the seeds, in the loader's order. Node features
    (``x``) and edge data were gathered from the full graph once, when the batch was built.

    Attributes:
        n_id: ``{ntype: [N_t]}`` original ids of the batch's nodes.
        e_id: ``{relation: [E_r]}`` original ids of the batch's edges.
        input_type: the seeds' node type.
        batch_size: number of seeds.
        input_id: ``[batch_size]`` positions of the seeds in the loader's ``input_nodes``.
        num_sampled_nodes: ``{ntype: [per hop]}`` nodes added per hop (hop 0: the seeds).
        num_sampled_edges: ``{relation: [per hop]}`` edges sampled per hop (hop 1 first).

    Nodes and edges are numbered in hop order, so the batch cut to ``h`` hops (:meth:`trimmed`)
    is a prefix of every type's nodes and of every relation's edges: PyG's ``trim_to_layer``.
    Layer ``l`` of an ``L``-layer model only needs the nodes within ``L - l`` hops of the seeds
    and the edges of the first ``L - l`` hops; the last layer's outputs are the seeds' alone.
    """

    def __init__(self, num_nodes: Mapping[str, int], edge_index: Mapping[Relation, Tensor], *,
                 n_id: dict[str, Tensor], e_id: dict[Relation, Tensor], input_type: str, batch_size: int,
                 input_id: Tensor | None = None, num_sampled_nodes: dict[str, list[int]] | None = None,
                 num_sampled_edges: dict[Relation, list[int]] | None = None,
                 x: Mapping[str, Tensor] | None = None, edge_data: Mapping[str, Mapping[Relation, Tensor]] | None = None):
        super().__init__(num_nodes, edge_index, x, edge_data)
        self.n_id, self.e_id = n_id, e_id
        self.input_type, self.batch_size = input_type, int(batch_size)
        self.input_id = input_id
        self.num_sampled_nodes = num_sampled_nodes or {}
        self.num_sampled_edges = num_sampled_edges or {}
        self._trimmed: dict[int, SampledGraph] = {}

    @property
    def num_hops(self) -> int | None:
        """Hops the batch was sampled with (None when the per-hop counts are unknown)."""
        if not self.num_sampled_edges or not self.num_sampled_nodes:
            return None
        return len(next(iter(self.num_sampled_edges.values())))

    def trimmed(self, hops: int) -> SampledGraph:
        """The batch cut to the nodes within ``hops`` hops of the seeds and the edges sampled in
        its first ``hops`` hops (``self`` for ``hops >= num_hops``; cached). Same schema, so
        one compiled plan serves every cut."""
        total = self.num_hops
        if total is None:
            raise GraphError("this batch has no per-hop counts (num_sampled_nodes and num_sampled_edges): "
                             "build it with sampled_graph(..., num_sampled_nodes=..., num_sampled_edges=...)")
        if hops < 0:
            raise GraphError(f"hops must be >= 0, got {hops}")
        if hops >= total:
            return self
        if hops not in self._trimmed:
            nodes = {t: sum(self.num_sampled_nodes.get(t, [0])[:hops + 1]) for t in self.node_types}
            edges = {r: sum(self.num_sampled_edges.get(r, [0])[:hops]) for r in self.relations}
            self._trimmed[hops] = SampledGraph(
                nodes, {r: self.edge_index(r)[:, :edges[r]] for r in self.relations},
                n_id={t: self.n_id[t][:n] for t, n in nodes.items()},
                e_id={r: self.e_id[r][:e] for r, e in edges.items()}, input_type=self.input_type,
                batch_size=self.batch_size, input_id=self.input_id,
                num_sampled_nodes={t: c[:hops + 1] for t, c in self.num_sampled_nodes.items()},
                num_sampled_edges={r: c[:hops] for r, c in self.num_sampled_edges.items()},
                x={t: v[:nodes[t]] for t, v in self.x.items()} or None,
                edge_data={n: {r: v[:edges[r]] for r, v in f.items()} for n, f in self.edge_data.items()} or None)
        return self._trimmed[hops]

    def seed_outputs(self, layers: Sequence[Callable[[HeteroGraph, Tensor], Tensor]], x: Tensor,
                     between: Callable[[Tensor], Tensor]) -> Tensor:
        """The seeds' rows of ``layers`` applied in turn to ``x`` (one row per node of this batch),
        ``between`` after every layer but the last; layer ``l`` of ``L`` runs on
        :meth:`trimmed(L - l) <trimmed>`, so the last one computes the seeds' first hop alone."""
        graph, h = self, x
        for i, layer in enumerate(layers):
            hops = len(layers) - i
            h, graph = graph.trim_rows(h, hops), graph.trimmed(hops)
            h = layer(graph, h)
            if i < len(layers) - 1:
                h = between(h)
        return h.index_select(0, graph.seed_index)

    def trim_rows(self, x: Tensor, hops: int) -> Tensor:
        """The rows of ``x`` (one per node of this batch, stacked) of the nodes of
        :meth:`trimmed(hops) <trimmed>`: each type's first rows, differentiably."""
        if x.shape[0] != self.num_nodes():
            raise GraphError(f"x must have one row per node of the batch ({self.num_nodes()} rows), "
                             f"got shape {list(x.shape)}")
        cut = self.trimmed(hops)
        if cut is self:
            return x
        index = torch.cat([torch.arange(self.node_offset(t), self.node_offset(t) + cut.num_nodes(t), device=x.device)
                           for t in self.node_types])
        return x.index_select(0, index)

    @property
    def seed_index(self) -> Tensor:
        """``[batch_size]`` global (stacked) ids of the seeds in this batch."""
        offset = self.node_offset(self.input_type)
        return torch.arange(offset, offset + self.batch_size, device=self.device)

    def to(self, device: torch.device | str) -> SampledGraph:
        """A copy on ``device``, ids included."""
        device = torch.device(device)
        return SampledGraph(self.num_nodes_dict, {r: e.to(device) for r, e in self.edge_index_dict.items()},
                            n_id={t: v.to(device) for t, v in self.n_id.items()},
                            e_id={r: v.to(device) for r, v in self.e_id.items()}, input_type=self.input_type,
                            batch_size=self.batch_size,
                            input_id=None if self.input_id is None else self.input_id.to(device),
                            num_sampled_nodes=self.num_sampled_nodes, num_sampled_edges=self.num_sampled_edges,
                            x={t: v.to(device) for t, v in self.x.items()} or None,
                            edge_data={n: {r: v.to(device) for r, v in f.items()}
                                       for n, f in self.edge_data.items()} or None)


def sampled_graph(graph: HeteroGraph, node: Mapping[str, Tensor], row: Mapping[Relation, Tensor],
                  col: Mapping[Relation, Tensor], edge: Mapping[Relation, Tensor | None], *, input_type: str,
                  batch_size: int, input_id: Tensor | None = None,
                  num_sampled_nodes: dict[str, list[int]] | None = None,
                  num_sampled_edges: dict[Relation, list[int]] | None = None) -> SampledGraph:
    """Build the batch graph of a sampler's output (PyG's ``HeteroSamplerOutput`` fields).

    Features and edge data are gathered here, once per batch; types and relations the sampler
    did not reach are kept empty, so the schema is ``graph``'s.
    """
    empty = torch.zeros(0, dtype=torch.int64)
    n_id = {t: node.get(t, empty) for t in graph.node_types}
    e_id = {r: edge.get(r) if edge.get(r) is not None else empty for r in graph.relations}
    edges = {r: torch.stack([row.get(r, empty), col.get(r, empty)]) for r in graph.relations}
    x = {t: value.index_select(0, n_id[t]) for t, value in graph.x.items()}
    edge_data = {name: {r: field[r].index_select(0, e_id[r]) for r in graph.relations}
                 for name, field in graph.edge_data.items()}
    return SampledGraph({t: int(v.numel()) for t, v in n_id.items()}, edges, n_id=n_id, e_id=e_id,
                        input_type=input_type, batch_size=batch_size, input_id=input_id,
                        num_sampled_nodes=num_sampled_nodes, num_sampled_edges=num_sampled_edges, x=x or None,
                        edge_data=edge_data or None)

r"""Sampled mini-batches as :class:`~graphcore.graph.HeteroGraph`\ s of the full graph's schema.

A batch keeps every node type and every relation of the graph it was sampled from, in the same
order (an empty type or relation stays, with zero rows), so :func:`graphcore.compile` sees the
same schema on every batch and reuses one plan and one native build; only the batch's layout
is built per step.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

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
    """

    def __init__(self, num_nodes: Mapping[str, int], edge_index: Mapping[Relation, Tensor], *,
                 n_id: dict[str, Tensor], e_id: dict[Relation, Tensor], input_type: str, batch_size: int,
                 input_id: Tensor | None = None, num_sampled_nodes: dict[str, list[int]] | None = None,
                 x: Mapping[str, Tensor] | None = None, edge_data: Mapping[str, Mapping[Relation, Tensor]] | None = None):
        super().__init__(num_nodes, edge_index, x, edge_data)
        self.n_id, self.e_id = n_id, e_id
        self.input_type, self.batch_size = input_type, int(batch_size)
        self.input_id = input_id
        self.num_sampled_nodes = num_sampled_nodes or {}

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
                            num_sampled_nodes=self.num_sampled_nodes,
                            x={t: v.to(device) for t, v in self.x.items()} or None,
                            edge_data={n: {r: v.to(device) for r, v in f.items()}
                                       for n, f in self.edge_data.items()} or None)


def sampled_graph(graph: HeteroGraph, node: Mapping[str, Tensor], row: Mapping[Relation, Tensor],
                  col: Mapping[Relation, Tensor], edge: Mapping[Relation, Tensor | None], *, input_type: str,
                  batch_size: int, input_id: Tensor | None = None,
                  num_sampled_nodes: dict[str, list[int]] | None = None) -> SampledGraph:
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
                        num_sampled_nodes=num_sampled_nodes, x=x or None, edge_data=edge_data or None)

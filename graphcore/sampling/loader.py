"""``NeighborLoader``: PyG's ``NodeLoader`` over a :class:`HeteroGraph`, yielding :class:`SampledGraph`\\ s.

It is PyG's own loader class (batching, ``shuffle``, ``num_workers``, ``drop_last``,
``persistent_workers``, Lightning's distributed sampler injection), with two changes: the
sampler defaults to :class:`~graphcore.sampling.HeteroNeighborSampler` (PyG's
``NeighborSampler`` with ``node_sampler="pyg"``, where pyg-lib is importable), and each batch becomes a
:class:`~graphcore.sampling.SampledGraph` of the full graph's schema, built in the worker.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import BaseSampler, HeteroSamplerOutput

from graphcore.codegen.errors import GraphError
from graphcore.graph import HeteroGraph
from graphcore.sampling.batch import SampledGraph, sampled_graph
from graphcore.sampling.neighbor import HeteroNeighborSampler, NumNeighbors


def skeleton(graph: HeteroGraph) -> HeteroData:
    """A ``HeteroData`` with the graph's node counts and no tensors: what ``NodeLoader`` reads."""
    data = HeteroData()
    for ntype in graph.node_types:
        data[ntype].num_nodes = graph.num_nodes(ntype)
    return data


def check_input_nodes(graph: HeteroGraph, input_nodes) -> tuple[str, Tensor]:
    """``(type, ids)`` of ``input_nodes`` (a type name, or ``(type, ids | bool mask | None)``), checked."""
    if isinstance(input_nodes, str):
        input_nodes = (input_nodes, None)
    if not (isinstance(input_nodes, (tuple, list)) and len(input_nodes) == 2 and isinstance(input_nodes[0], str)):
        raise GraphError(f"input_nodes must be a node type or (node type, ids), got {type(input_nodes).__name__}")
    ntype, ids = input_nodes
    if ntype not in graph.node_types:
        raise GraphError(f"input_nodes names node type {ntype!r}, which the graph does not have; its types are "
                         f"{list(graph.node_types)}")
    count = graph.num_nodes(ntype)
    if ids is None:
        return ntype, torch.arange(count)
    ids = torch.as_tensor(ids)
    if ids.dtype == torch.bool:
        if ids.numel() != count:
            raise GraphError(f"input_nodes mask of type '{ntype}' has {ids.numel()} entries, the type {count} nodes")
        return ntype, ids.nonzero().view(-1)
    ids = ids.reshape(-1).long()
    bad = (ids < 0) | (ids >= count)
    if bool(bad.any()):
        raise GraphError(f"input_nodes: id {int(ids[bad][0])} is out of range for node type '{ntype}' with {count} "
                         f"nodes (valid ids are 0..{count - 1})")
    return ntype, ids


def default_sampler(graph: HeteroGraph, num_neighbors: NumNeighbors, replace: bool, seed: int | None,
                    kind: Literal["graphcore", "pyg"] = "graphcore") -> BaseSampler:
    """graphcore's sampler, or PyG's ``NeighborSampler`` (``kind="pyg"``, needs pyg-lib or torch-sparse)."""
    if kind == "pyg":
        from torch_geometric.sampler import NeighborSampler

        from graphcore.convert import to_pyg

        return NeighborSampler(to_pyg(graph), num_neighbors, replace=replace)
    if kind != "graphcore":
        raise GraphError(f"sampler kind must be 'graphcore' or 'pyg', got {kind!r}")
    return HeteroNeighborSampler(graph, num_neighbors, replace=replace, seed=seed)


class NeighborLoader(NodeLoader):
    r"""Mini-batches of sampled neighbourhoods of seed nodes, as :class:`SampledGraph`\ s.

    Args:
        graph: the full graph (features in ``graph.x`` are gathered per batch).
        num_neighbors: fan-out per hop, a list or a dict per relation (see
            :class:`HeteroNeighborSampler`); ignored when ``sampler`` is an object.
        input_nodes: the seeds, ``(ntype, ids)``, ``(ntype, bool mask)`` or ``ntype`` (all nodes).
        replace: sample with replacement.
        seed: the sampler's seed (None: torch's global generator).
        node_sampler: ``"graphcore"`` (default), ``"pyg"`` (PyG's ``NeighborSampler``, needs
            pyg-lib), or any ``BaseSampler`` returning ``HeteroSamplerOutput`` (PyG's argument name).
        **kwargs: ``batch_size``, ``shuffle``, ``num_workers``, ``drop_last``, ``sampler`` (of the
            seed positions: Lightning passes a ``DistributedSampler`` here under DDP) ... of
            :class:`torch.utils.data.DataLoader`.

    Raises:
        GraphError: an unknown seed type, seed ids out of range, bad ``num_neighbors``.
    """

    def __init__(self, graph: HeteroGraph, num_neighbors: NumNeighbors | None = None, *, input_nodes: Any,
                 replace: bool = False, seed: int | None = None, node_sampler: str | BaseSampler = "graphcore",
                 **kwargs):
        input_type, ids = check_input_nodes(graph, input_nodes)
        if isinstance(node_sampler, str):
            if num_neighbors is None:
                raise GraphError("NeighborLoader needs num_neighbors (fan-out per hop) unless given a sampler object")
            node_sampler = default_sampler(graph, num_neighbors, replace, seed, node_sampler)
        self.graph = graph
        self.num_neighbors, self.replace, self.seed = num_neighbors, replace, seed
        kwargs.setdefault("filter_per_worker", True)
        super().__init__(skeleton(graph), node_sampler, input_nodes=(input_type, ids), **kwargs)

    def filter_fn(self, out: HeteroSamplerOutput) -> SampledGraph:
        """The sampler's output as a batch graph (features gathered, schema kept)."""
        if self.transform_sampler_output:
            out = self.transform_sampler_output(out)
        input_id = out.metadata[0]
        batch = sampled_graph(self.graph, out.node, out.row, out.col, out.edge or {},
                              input_type=self.input_data.input_type, batch_size=int(input_id.numel()),
                              input_id=input_id, num_sampled_nodes=out.num_sampled_nodes,
                              num_sampled_edges=out.num_sampled_edges)
        return batch if self.transform is None else self.transform(batch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_type={self.input_data.input_type!r}, seeds={len(self.dataset)})"

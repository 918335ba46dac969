"""Mini-batches for large graphs: neighbour sampling behind PyG's ``BaseSampler`` and a loader
whose batches are :class:`~graphcore.graph.HeteroGraph`\\ s of the full graph's schema."""
from graphcore.sampling.batch import SampledGraph, sampled_graph
from graphcore.sampling.loader import NeighborLoader
from graphcore.sampling.neighbor import HeteroNeighborSampler

__all__ = ["HeteroNeighborSampler", "NeighborLoader", "SampledGraph", "sampled_graph"]

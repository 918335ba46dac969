r"""The spatial layer on graphcore's graph core: sensors and virtual nodes as a HeteroGraph.

The ``[N+n_v]²`` matrix of :class:`~tasks.traffic.adjacency.VirtualNodeAdjacency` (the dense
reference, kept for the tests) becomes a graph with two node types, ``sensor`` (N) and
``virtual`` (n_v), and four relations, one per block of that matrix:

================================  ======================================================
relation                          edges and their weight (edge data ``weight``)
================================  ======================================================
``(sensor, road, sensor)``        the non-zero distance-kernel entries (``distance``,
                                  ``semi``); every pair in ``all_ones`` and ``adaptive``
``(sensor, to_virtual, virtual)`` every pair; 1 (``distance``, ``all_ones``) or learned
``(virtual, to_sensor, sensor)``  every pair; as above
``(virtual, among, virtual)``     every pair; as above
================================  ======================================================

Learned weights are :math:`\operatorname{ReLU}(E_{1,i} \cdot E_{2,j} - E_{2,i} \cdot E_{1,j})`,
pruned below :math:`\tau`, computed per edge in torch (O(E d), never an ``[N+n_v]²`` matrix) and
handed to the graph as differentiable edge data. The diffusion itself, with the random-walk
normalisation by weighted degree done by aggregates, is :class:`Diffusion`, written with
:mod:`graphcore.ops` and run through :func:`graphcore.compile`.

The two directions of DCRNN's diffusion are two graphs with the same schema, so one compiled
plan serves both: for :math:`P_{bwd} = D_{in}^{-1} A^\top` (a node averages its predecessors)
messages run along the edges; for :math:`P_{fwd} = D_{out}^{-1} A` (its successors) along the
reversed edges, each keeping its weight. In ``distance`` and ``semi`` modes the cost is
O(|road edges| + N n_v) per propagation; ``all_ones`` and ``adaptive`` have an edge per pair of
nodes, as their dense matrix has.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

import graphcore as gc
from graphcore import ops
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.traffic.adjacency import check_mode, check_sensor_graph

NODE_TYPES = ("sensor", "virtual")
RELATIONS = (("sensor", "road", "sensor"), ("sensor", "to_virtual", "virtual"),
             ("virtual", "to_sensor", "sensor"), ("virtual", "among", "virtual"))
DEGREE_EPS = 1e-12
"""Added to each weighted degree before dividing: a node without edges in a direction gets 0
(as the dense reference's ``clamp_min(1e-12)`` does)."""


class Diffusion(nn.Module):
    r"""Horner's rule over one direction's transition matrix: ``P (y_1 + P (y_2 + ... P y_K))``.

    .. math::
        (P h)_v = \frac{\sum_{u \to v} w_{uv} h_u}{\sum_{u \to v} w_{uv} + \epsilon}

    Written only with :mod:`graphcore.ops`, so :func:`graphcore.compile` traces it; the weights
    are the graph's ``weight`` edge data (a gradient reaches them when they require it).

    Shapes:
        each ``y_k: [N + n_v, F]`` in global node order (sensors first) ``-> [N + n_v, F]``.
    """

    def forward(self, g: gc.HeteroGraph, *ys: Tensor) -> Tensor:
        weight = ops.edge_data(g, "weight")
        inverse_degree = 1.0 / (ops.aggregate(g, weight) + DEGREE_EPS)
        h = ys[-1]
        for y in reversed(ys[:-1]):
            h = y + ops.aggregate(g, ops.gather(g, h, by="src") * weight) * inverse_degree
        return ops.aggregate(g, ops.gather(g, h, by="src") * weight) * inverse_degree


def _all_pairs(rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    return rows.repeat_interleave(len(cols)), cols.repeat(len(rows))


def _typed_graph(src: Tensor, dst: Tensor, num_real: int, n_virtual: int) -> tuple[gc.HeteroGraph, list[Tensor]]:
    """The HeteroGraph of global-id edges ``src -> dst``, split into :data:`RELATIONS` by the
    endpoints' types, and for each relation the positions of its edges in ``src``."""
    src_virtual, dst_virtual = src >= num_real, dst >= num_real
    edges, positions = {}, []
    for relation, (s_virt, d_virt) in zip(RELATIONS, ((False, False), (False, True), (True, False), (True, True))):
        pos = torch.nonzero((src_virtual == s_virt) & (dst_virtual == d_virt)).flatten()
        edges[relation] = torch.stack([src[pos] - num_real * s_virt, dst[pos] - num_real * d_virt])
        positions.append(pos)
    graph = gc.HeteroGraph(dict(zip(NODE_TYPES, (num_real, n_virtual))), edges, None,
                           {"weight": {r: torch.zeros(len(p)) for r, p in zip(RELATIONS, positions)}})
    graph.layout.src  # sort the edges once, at construction
    return graph, positions


class GraphSupports:
    """The two diffusion directions of one forward pass: graphs carrying this pass's edge weights.

    Args:
        graphs: ``(forward, backward)`` graphs; ``forward`` holds the reversed edges.
        diffusion: :class:`Diffusion` (compiled or eager).
    """

    def __init__(self, graphs: tuple[gc.HeteroGraph, gc.HeteroGraph], diffusion: nn.Module):
        self.graphs, self.diffusion = graphs, diffusion

    def diffuse(self, direction: int, ys: Sequence[Tensor]) -> Tensor:
        """``P (y_1 + P (y_2 + ...))`` for ``direction`` 0 (forward) or 1 (backward); ``ys[k]: [M, B, T, C]``."""
        flat = [y.reshape(y.shape[0], -1) for y in ys]
        return self.diffusion(self.graphs[direction], *flat).view(ys[0].shape)


class GraphSpatial(nn.Module):
    r"""Sensors and virtual nodes as a :class:`graphcore.HeteroGraph` (see module doc).

    Same arguments, parameters (``emb1``, ``emb2``, ``[N+n_v, d]``) and modes as
    :class:`~tasks.traffic.adjacency.VirtualNodeAdjacency`, so the state of one loads into the
    other; no ``[N+n_v]²`` buffer is kept in ``distance`` and ``semi`` modes. The two graphs live
    on the CPU (where ``graphcore.compile`` runs this layer); moving the module to another device
    moves its parameters only.

    Args:
        distance: ``[N, N]`` distance-kernel weights among sensors.
        n_virtual: number of virtual nodes.
        mode: ``distance``, ``all_ones``, ``adaptive`` or ``semi``.
        embedding_dim: width d of the embeddings (``adaptive`` and ``semi``).
        prune_threshold: learned weights below it become 0.
        execution: ``compiled`` (:func:`graphcore.compile`, CPU kernels) or ``eager`` (the same
            ops as plain PyTorch).

    Raises:
        UsageError: an unknown mode or execution, a non-square distance matrix, or a negative ``n_virtual``.
    """

    def __init__(self, distance: Tensor, n_virtual: int = 10, mode: str = "semi", embedding_dim: int = 10,
                 prune_threshold: float = 0.1, execution: Literal["compiled", "eager"] = "compiled"):
        super().__init__()
        self.mode = check_mode(mode)
        check_sensor_graph(distance, n_virtual)
        if execution not in ("compiled", "eager"):
            raise UsageError(f"execution must be 'compiled' or 'eager', got {execution!r}")
        self.num_real, self.n_virtual, self.prune_threshold = distance.shape[0], n_virtual, prune_threshold
        self.execution = execution
        sensors = torch.arange(self.num_real)
        nodes = torch.arange(self.num_nodes)
        virtual = nodes[self.num_real:]
        if mode in ("distance", "semi"):
            road_src, road_dst = torch.nonzero(distance, as_tuple=True)
            road_weight = distance[road_src, road_dst].float()
            touching = [_all_pairs(sensors, virtual), _all_pairs(virtual, sensors), _all_pairs(virtual, virtual)]
            src = torch.cat([road_src, *(s for s, _ in touching)])
            dst = torch.cat([road_dst, *(d for _, d in touching)])
            fixed = torch.cat([road_weight, torch.ones(len(src) - len(road_src))])
            learned = torch.arange(len(src)) >= len(road_src) if mode == "semi" else torch.zeros(len(src), dtype=torch.bool)
        else:  # all_ones, adaptive: dense by definition
            src, dst = _all_pairs(nodes, nodes)
            fixed = torch.ones(len(src))
            learned = torch.full((len(src),), mode == "adaptive")
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)
        self.register_buffer("fixed", fixed, persistent=False)
        self.register_buffer("learned_edges", torch.nonzero(learned).flatten(), persistent=False)
        if len(self.learned_edges):
            scale = embedding_dim ** -0.5
            self.emb1 = nn.Parameter(torch.randn(self.num_nodes, embedding_dim) * scale)
            self.emb2 = nn.Parameter(torch.randn(self.num_nodes, embedding_dim) * scale)
        else:
            self.register_parameter("emb1", None)
            self.register_parameter("emb2", None)
        forward, forward_positions = _typed_graph(dst, src, self.num_real, n_virtual)
        backward, backward_positions = _typed_graph(src, dst, self.num_real, n_virtual)
        self._graphs, self._positions = (forward, backward), (forward_positions, backward_positions)
        self.diffusion = gc.compile(Diffusion()) if execution == "compiled" else Diffusion()

    @property
    def num_nodes(self) -> int:
        """N + n_v."""
        return self.num_real + self.n_virtual

    @property
    def num_edges(self) -> int:
        """Edges of one direction's graph."""
        return len(self.src)

    def learned_weight(self, src: Tensor, dst: Tensor) -> Tensor:
        r"""Pruned :math:`\operatorname{ReLU}(E_{1,i} \cdot E_{2,j} - E_{2,i} \cdot E_{1,j})` of edges i → j."""
        if self.emb1 is None:
            raise ValueError(f"mode {self.mode!r} learns no adjacency")
        e1, e2 = self.emb1, self.emb2
        weight = torch.relu((e1[src] * e2[dst]).sum(-1) - (e2[src] * e1[dst]).sum(-1))
        return weight * (weight >= self.prune_threshold)

    def edge_weights(self) -> Tensor:
        """``[E]`` weight of every edge ``src[e] -> dst[e]``; differentiable in the learned edges."""
        if self.emb1 is None:
            return self.fixed
        learned = self.learned_edges
        weight = self.learned_weight(self.src[learned], self.dst[learned])
        return self.fixed.to(weight.dtype).index_put((learned,), weight)

    def supports(self) -> GraphSupports:
        """The two directions' graphs with this pass's weights (the graphs' layouts are reused:
        only their edge data changes)."""
        weight = self.edge_weights()
        for graph, positions in zip(self._graphs, self._positions):
            graph.edge_data["weight"] = {r: weight[p] for r, p in zip(RELATIONS, positions)}
        return GraphSupports(self._graphs, self.diffusion)

    def virtual_edge_weights(self) -> Tensor:
        """``[n_v, N]`` weight between each virtual node and each sensor, both directions summed."""
        sensors = torch.arange(self.num_real)
        virtual = torch.arange(self.num_real, self.num_nodes)
        v, s = _all_pairs(virtual, sensors)
        with torch.no_grad():
            if self.emb1 is None:
                both = torch.full((len(v),), 2.0)
            else:
                both = self.learned_weight(v, s) + self.learned_weight(s, v)
        return both.view(self.n_virtual, self.num_real)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Accept the dense reference's state too (checkpoints written before the graph layer):
        its ``fixed`` and ``learned`` buffers follow from the distance matrix and the mode."""
        for name in ("fixed", "learned"):
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, num_real={self.num_real}, n_virtual={self.n_virtual}, "
                f"edges={self.num_edges}, execution={self.execution!r}")

r"""A heterogeneous neighbour sampler behind PyG's :class:`~torch_geometric.sampler.BaseSampler`.

PyG's ``NeighborLoader`` needs pyg-lib or torch-sparse for its sampler; neither installs from
PyPI here. :class:`HeteroNeighborSampler` is the same seam filled with plain torch, so PyG's
``NodeLoader``, ``LightningNodeData`` and :class:`graphcore.sampling.NeighborLoader` run on it.

**What it samples.** For hop :math:`l` and every relation :math:`r = (s, \text{rel}, d)`, each
destination node :math:`v` of type :math:`d` added at hop :math:`l - 1` (the seeds at hop 0)
gets :math:`\min(k_{r,l}, \deg^{in}_r(v))` *distinct* in-edges of :math:`r`, uniformly without
replacement (with replacement when ``replace=True``; all of them when :math:`k = -1`). Their
source nodes join the batch, each once, in order of first appearance after the nodes already
there; the seeds come first, in the order given.

**How.** The CSR of every relation by destination is built once, at construction. A hop is a
handful of tensor operations over all frontier nodes of a relation at once: degrees from the
row pointer, all in-edges of the nodes with :math:`\deg \le k`, and for the others Floyd's
algorithm vectorised over nodes (:math:`k` rounds; round :math:`i` draws
:math:`t \in [0, \deg - k + i]` and keeps :math:`\deg - k + i` instead when :math:`t` was
already drawn), which draws a uniform :math:`k`-subset in :math:`O(k^2)` per node, whatever
the degree. New nodes are numbered through a per-type map reset after each batch, so a batch
costs time in its own size, not the graph's.

**Determinism.** With ``seed=None`` the draws come from torch's global generator (seeded by
``lightning.seed_everything``, and per DataLoader worker by torch). With an integer seed each
batch draws from a generator seeded from ``(seed, the batch's seed positions)``: the same seed
gives the same batches whatever the number of workers or ranks, and a fixed (unshuffled)
evaluation loader gives the same neighbourhoods every epoch.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch_geometric.sampler import BaseSampler, HeteroSamplerOutput, NodeSamplerInput

from graphcore.codegen.errors import GraphError
from graphcore.graph import HeteroGraph, Relation
from graphcore.layouts import segment_ptr

NumNeighbors = Sequence[int] | Mapping[Relation | str, Sequence[int]]


def relation_key(relation: Relation | str) -> Relation:
    """A relation given as a triple or as PyG's ``"src__rel__dst"`` string."""
    if isinstance(relation, str):
        parts = tuple(relation.split("__"))
        if len(parts) != 3:
            raise GraphError(f"num_neighbors key {relation!r} is not a relation: give (src, rel, dst) or 'src__rel__dst'")
        return parts  # type: ignore[return-value]
    return tuple(relation)  # type: ignore[return-value]


def resolve_fanouts(graph: HeteroGraph, num_neighbors: NumNeighbors) -> dict[Relation, list[int]]:
    """``num_neighbors`` as one fan-out list per relation of ``graph``, checked.

    A list applies to every relation; a dict must name every relation exactly (triples or
    ``"src__rel__dst"``). Every relation needs the same number of hops; ``-1`` takes all in-edges.
    """
    if isinstance(num_neighbors, Mapping):
        given = {relation_key(k): list(v) for k, v in num_neighbors.items()}
        unknown = [r for r in given if r not in graph.relations]
        if unknown:
            raise GraphError(f"num_neighbors names relations {unknown} that the graph does not have; its relations "
                             f"are {list(graph.relations)}")
        missing = [r for r in graph.relations if r not in given]
        if missing:
            raise GraphError(f"num_neighbors has no fan-out for relations {missing}; give one list per relation, or one "
                             "list for all")
        fanouts = {r: given[r] for r in graph.relations}
    elif isinstance(num_neighbors, Sequence) and not isinstance(num_neighbors, str):
        fanouts = {r: list(num_neighbors) for r in graph.relations}
    else:
        raise GraphError(f"num_neighbors must be a list of fan-outs per hop or a dict of them per relation, got "
                         f"{type(num_neighbors).__name__}")
    hops = {len(v) for v in fanouts.values()}
    if len(hops) > 1:
        raise GraphError(f"num_neighbors gives different numbers of hops per relation ({sorted(hops)}); give every "
                         "relation the same number")
    for relation, values in fanouts.items():
        for k in values:
            if not isinstance(k, int) or isinstance(k, bool) or k < -1:
                raise GraphError(f"num_neighbors of relation {relation}: fan-out {k!r} is not allowed; use a count >= 0, "
                                 "or -1 for all in-edges")
    return fanouts


class _RelationCSR:
    """In-edges of one relation grouped by destination: ``ptr [N_dst + 1]``, ``src``, ``eid``."""

    __slots__ = ("ptr", "src", "eid")

    def __init__(self, edge_index: Tensor, num_dst: int):
        order = torch.sort(edge_index[1], stable=True).indices
        self.ptr = segment_ptr(edge_index[1, order], num_dst)
        self.src = edge_index[0, order]
        self.eid = order


def floyd_offsets(deg: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """``[n, k]`` distinct offsets in ``[0, deg_i)`` per row, a uniform ``k``-subset (needs ``deg >= k``)."""
    n = deg.numel()
    out = torch.empty(n, k, dtype=torch.int64)
    for i in range(k):
        j = deg - k + i
        t = (torch.rand(n, generator=generator, dtype=torch.float64) * (j + 1)).long().clamp_(max=j)
        if i:
            t = torch.where((out[:, :i] == t[:, None]).any(1), j, t)
        out[:, i] = t
    return out


class HeteroNeighborSampler(BaseSampler):
    r"""Uniform heterogeneous neighbour sampling (see the module doc), usable by PyG's loaders.

    Args:
        graph: a :class:`~graphcore.graph.HeteroGraph` or a PyG ``HeteroData`` (converted once).
        num_neighbors: fan-out per hop, one list for all relations or a dict per relation
            (``{("paper", "cites", "paper"): [10, 5], ...}`` or PyG's ``"paper__cites__paper"``
            keys); ``-1`` takes all in-edges.
        replace: sample with replacement (duplicate edges possible).
        seed: ``None`` draws from torch's global generator; an integer gives the sampler its own.

    Raises:
        GraphError: a relation missing from or unknown to the ``num_neighbors`` dict, a fan-out
            below ``-1``, different hop counts; later, in :meth:`sample_from_nodes`, an unknown
            seed type or seed ids out of range.

    Example:
        >>> sampler = HeteroNeighborSampler(graph, [10, 10], seed=0)
        >>> loader = torch_geometric.loader.NodeLoader(to_pyg(graph), sampler, input_nodes=("paper", idx),
        ...                                            batch_size=1024, shuffle=True)
    """

    def __init__(self, graph, num_neighbors: NumNeighbors, *, replace: bool = False, seed: int | None = None):
        if not isinstance(graph, HeteroGraph):
            from graphcore.convert import from_pyg

            graph = from_pyg(graph)
        self.num_nodes = graph.num_nodes_dict
        self.node_types = graph.node_types
        self.relations = graph.relations
        self.fanouts = resolve_fanouts(graph, num_neighbors)
        self.num_hops = len(next(iter(self.fanouts.values()), []))
        self.replace = bool(replace)
        self.seed = seed
        self.csr = {r: _RelationCSR(graph.edge_index(r), self.num_nodes[r[2]]) for r in self.relations}
        self._local = threading.local()  # per-thread scratch maps

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_local")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # ------------------------------------------------------------------ per-thread state
    def _generator(self, key: Tensor) -> torch.Generator | None:
        """A generator seeded from ``(seed, key)``: a batch's draws depend on its seeds, not on which
        worker, rank or how many batches before it sampled them."""
        if self.seed is None:
            return None
        key = key.reshape(-1).to(torch.int64)
        weights = torch.arange(1, key.numel() + 1, dtype=torch.int64) * 0x9E3779B1
        mixed = (self.seed, key.numel(), int(key[:1].sum()), int((key * weights).sum()))
        return torch.Generator().manual_seed(hash(mixed) & (2**63 - 1))

    def _maps(self) -> dict[str, Tensor]:
        maps = getattr(self._local, "maps", None)
        if maps is None:
            maps = self._local.maps = {t: torch.full((n,), -1, dtype=torch.int64) for t, n in self.num_nodes.items()}
        return maps

    # ------------------------------------------------------------------ sampling
    def _check_seeds(self, input_type: str | None, seeds: Tensor) -> None:
        if input_type not in self.num_nodes:
            raise GraphError(f"seed node type {input_type!r} is not a node type of the graph; its types are "
                             f"{list(self.node_types)}")
        count = self.num_nodes[input_type]
        bad = (seeds < 0) | (seeds >= count)
        if bool(bad.any()):
            first = int(seeds[bad.nonzero()[0, 0]])
            raise GraphError(f"seed id {first} is out of range for node type '{input_type}' with {count} nodes "
                             f"(valid ids are 0..{count - 1})")

    def _pick(self, csr: _RelationCSR, dst: Tensor, k: int, generator) -> tuple[Tensor, Tensor]:
        """``(edge positions in the CSR, index into dst)`` of the sampled in-edges of ``dst``."""
        begin = csr.ptr[dst]
        deg = csr.ptr[dst + 1] - begin
        if self.replace and k >= 0:
            which = torch.nonzero(deg > 0).view(-1)
            draws = torch.rand(which.numel(), k, generator=generator, dtype=torch.float64)
            offsets = (draws * deg[which, None]).long().clamp_(max=(deg[which, None] - 1).clamp(min=0))
            return (begin[which, None] + offsets).view(-1), which.repeat_interleave(k)
        take_all = deg <= k if k >= 0 else torch.ones_like(deg, dtype=torch.bool)
        full = torch.nonzero(take_all).view(-1)
        counts = deg[full]
        owner = torch.repeat_interleave(full, counts)
        starts = torch.repeat_interleave(begin[full] - torch.cumsum(counts, 0) + counts, counts)
        positions = starts + torch.arange(owner.numel())
        part = torch.nonzero(~take_all).view(-1)
        if part.numel():
            offsets = floyd_offsets(deg[part], k, generator)
            positions = torch.cat([positions, (begin[part, None] + offsets).view(-1)])
            owner = torch.cat([owner, part.repeat_interleave(k)])
        return positions, owner

    def sample(self, input_type: str, seeds: Tensor, key: Tensor | None = None
               ) -> tuple[dict, dict, dict, dict, dict, dict]:
        """Sample around ``seeds`` (local ids of ``input_type``); see the module doc. With an integer
        ``seed``, the draws are a function of ``(seed, key)`` (``key`` defaults to the seeds; the
        loaders pass the seeds' positions in ``input_nodes``).

        Returns:
            ``(node, row, col, edge, num_sampled_nodes, num_sampled_edges)`` as PyG's
            :class:`~torch_geometric.sampler.HeteroSamplerOutput` holds them: ``node[t]`` the
            batch's nodes of type ``t`` (original ids, seeds first), ``row``/``col`` per relation
            the local source/destination ids into ``node``, ``edge`` the original edge ids.
        """
        seeds = seeds.reshape(-1).to(torch.int64)
        self._check_seeds(input_type, seeds)
        generator, maps = self._generator(seeds if key is None else key), self._maps()
        nodes = {t: [] for t in self.node_types}
        counts = dict.fromkeys(self.node_types, 0)
        nodes[input_type].append(seeds)
        counts[input_type] = seeds.numel()
        seed_map = maps[input_type]
        seed_map[seeds] = seeds.numel()  # a repeated seed maps to its first copy
        seed_map.scatter_reduce_(0, seeds, torch.arange(seeds.numel()), reduce="amin")
        frontier = {t: (0, counts[t]) for t in self.node_types}
        sampled_nodes = {t: [counts[t]] for t in self.node_types}
        rows, cols, edges = ({r: [] for r in self.relations} for _ in range(3))
        sampled_edges = {r: [] for r in self.relations}
        try:
            for hop in range(self.num_hops):
                candidates: dict[str, list[tuple[Relation, Tensor]]] = {t: [] for t in self.node_types}
                for relation in self.relations:
                    src_type, _, dst_type = relation
                    start, end = frontier[dst_type]
                    k = self.fanouts[relation][hop]
                    if end == start or k == 0:
                        sampled_edges[relation].append(0)
                        continue
                    dst_ids = self._slice(nodes[dst_type], start, end)
                    csr = self.csr[relation]
                    positions, owner = self._pick(csr, dst_ids, k, generator)
                    cols[relation].append(owner + start)
                    edges[relation].append(csr.eid[positions])
                    candidates[src_type].append((relation, csr.src[positions]))
                    sampled_edges[relation].append(int(positions.numel()))
                for ntype in self.node_types:
                    found = candidates[ntype]
                    before = counts[ntype]
                    if found:
                        ids = torch.cat([c for _, c in found])
                        new = self._add_nodes(maps[ntype], ids, before)
                        nodes[ntype].append(new)
                        counts[ntype] += new.numel()
                        local = maps[ntype][ids]
                        for (relation, _), part in zip(found, torch.split(local, [c.numel() for _, c in found])):
                            rows[relation].append(part)
                    frontier[ntype] = (before, counts[ntype])
                    sampled_nodes[ntype].append(counts[ntype] - before)
        finally:
            node = {t: self._slice(nodes[t], 0, counts[t]) for t in self.node_types}
            for ntype, ids in node.items():
                maps[ntype][ids] = -1
        empty = torch.zeros(0, dtype=torch.int64)
        cat = lambda parts: torch.cat(parts) if parts else empty  # noqa: E731
        return (node, {r: cat(v) for r, v in rows.items()}, {r: cat(v) for r, v in cols.items()},
                {r: cat(v) for r, v in edges.items()}, sampled_nodes, sampled_edges)

    @staticmethod
    def _slice(parts: list[Tensor], start: int, end: int) -> Tensor:
        if len(parts) > 1:
            parts[:] = [torch.cat(parts)]
        return parts[0][start:end] if parts else torch.zeros(0, dtype=torch.int64)

    @staticmethod
    def _add_nodes(mapping: Tensor, ids: Tensor, offset: int) -> Tensor:
        """Number the ids not in ``mapping`` yet from ``offset`` on, in order of first appearance."""
        fresh = ids[mapping[ids] < 0]
        if not fresh.numel():
            return fresh
        position = torch.arange(fresh.numel())
        mapping[fresh] = fresh.numel()
        mapping.scatter_reduce_(0, fresh, position, reduce="amin")
        new = fresh[mapping[fresh] == position]
        mapping[new] = torch.arange(offset, offset + new.numel())
        return new

    # ------------------------------------------------------------------ PyG's interface
    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        """PyG's entry point: ``inputs.node`` are the seeds of ``inputs.input_type``."""
        if inputs.time is not None:
            raise GraphError("HeteroNeighborSampler does not sample by time; pass no input_time / time_attr")
        node, row, col, edge, num_nodes, num_edges = self.sample(inputs.input_type, inputs.node, inputs.input_id)
        return HeteroSamplerOutput(node=node, row=row, col=col, edge=edge, batch=None,
                                   num_sampled_nodes=num_nodes, num_sampled_edges=num_edges,
                                   metadata=(inputs.input_id, None))

    def sample_from_edges(self, inputs, neg_sampling=None):
        raise NotImplementedError("HeteroNeighborSampler samples around seed nodes only (node classification)")

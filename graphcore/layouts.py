r"""Derived graph layouts, computed on first use and cached on the graph.

Every edge-domain value in graphcore lives in one **canonical edge order**: all relations'
edges concatenated in relation-id order, then stably sorted by ``(etype, dst)``. Relations are
therefore contiguous segments (``rel_ptr``), which the GEMM template walks segment by segment,
and edges into one destination are contiguous inside each relation.

Other orders are *maps into* the canonical one:

* ``csr_perm`` lists canonical edge positions sorted by destination (all relations), with
  ``dst_ptr`` the CSR row pointer; a traversal over destinations reads it.
* :class:`CompactMap` ``unique_src`` holds the distinct ``(etype, src)`` pairs, sorted like
  ``torch.unique(stack([etype, src]), dim=1)``, and the per-edge ``inverse`` index into them.
  A value that depends only on ``(src, etype)``, such as :math:`h_u W_r`, is computed once
  per pair (``|U|`` rows) instead of once per edge (``|E|`` rows): compact materialization.
* ``unique_dst`` is the same over ``(etype, dst)`` pairs (aggregate-first for RGCN).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from graphcore.codegen.errors import GraphError
from graphcore.codegen.ir.values import INDEX_MAPS, Domain
from graphcore.grouping import RelationRangeError, group_by, relation_pair_counts, relation_pairs, relation_sort, runs

if TYPE_CHECKING:
    from graphcore.graph import HeteroGraph


def segment_ptr(sorted_ids: Tensor, num_segments: int) -> Tensor:
    """Row pointer ``[num_segments + 1]`` of a sorted id vector (CSR ``indptr``)."""
    counts = torch.bincount(sorted_ids, minlength=num_segments)
    ptr = torch.zeros(num_segments + 1, dtype=torch.int64, device=sorted_ids.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


@dataclass(frozen=True)
class CompactMap:
    """Distinct ``(etype, node)`` pairs of the edges and the per-edge index into them.

    Attributes:
        node: ``[U]`` global node id of each pair.
        etype: ``[U]`` relation id of each pair (non-decreasing).
        inverse: ``[E]`` pair index of each canonical edge.
        rel_ptr: ``[R + 1]`` segment pointer of the pairs by relation.
        count: ``[U]`` edges of each pair.
    """

    node: Tensor
    etype: Tensor
    inverse: Tensor
    rel_ptr: Tensor
    count: Tensor

    @property
    def num_pairs(self) -> int:
        return int(self.node.numel())


class Layout:
    """Lazily computed layouts of one :class:`~graphcore.graph.HeteroGraph` (see module doc).

    Implements the compiler's :class:`~codegen.ir.layout.GraphLayout` protocol (``rows``,
    ``index``, ``ptr``, ``group_csr``, ``constant``) under the names ``codegen.ir.values`` declares.
    """

    def __init__(self, graph: HeteroGraph):
        self.graph = graph
        self.num_nodes = graph.num_nodes()
        self.num_edges = graph.num_edges()
        self.num_relations = graph.num_relations
        self.num_node_types = graph.num_node_types
        self.device = graph.device
        # (ptr, rows) per (index, groups); rows None while the rows are in order (built on request)
        self._group_csr: dict[tuple[str, int], tuple[Tensor, Tensor | None]] = {}
        self._pair_counts: dict[str, int] = {}

    # ------------------------------------------------------------------ nodes
    @cached_property
    def node_offsets(self) -> Tensor:
        """``[T + 1]`` global id of the first node of each type (and the total)."""
        counts = torch.tensor([self.graph.num_nodes(t) for t in self.graph.node_types], dtype=torch.int64)
        offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=offsets[1:])
        return offsets.to(self.device)

    @cached_property
    def node_type(self) -> Tensor:
        """``[N]`` type id of every global node."""
        counts = self.node_offsets.diff()
        return torch.repeat_interleave(torch.arange(len(counts), device=self.device), counts)

    @cached_property
    def rel_src_type(self) -> Tensor:
        """``[R]`` source node-type id of each relation."""
        index = {t: i for i, t in enumerate(self.graph.node_types)}
        return torch.tensor([index[s] for s, _, _ in self.graph.relations], dtype=torch.int64, device=self.device)

    @cached_property
    def rel_dst_type(self) -> Tensor:
        """``[R]`` destination node-type id of each relation."""
        index = {t: i for i, t in enumerate(self.graph.node_types)}
        return torch.tensor([index[d] for _, _, d in self.graph.relations], dtype=torch.int64, device=self.device)

    # ------------------------------------------------------------------ canonical edges
    @cached_property
    def _canonical(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(src, dst, perm)`` of the canonical order; the relation ids follow from :attr:`rel_ptr`."""
        offsets = self.node_offsets.tolist()
        types = {t: i for i, t in enumerate(self.graph.node_types)}
        ends = [(types[s], types[d]) for s, _, d in self.graph.relations]
        counts = self.node_offsets.diff().tolist()
        try:
            native = relation_sort([tuple(self.graph.edge_index(r)) for r in self.graph.relations],
                                   [offsets[s] for s, _ in ends], [counts[s] for s, _ in ends],
                                   [offsets[d] for _, d in ends], [counts[d] for _, d in ends])
        except RelationRangeError as err:
            raise GraphError(f"relation {self.graph.relations[err.relation]} has a node id outside its node "
                             "types' range") from err
        if native is not None:
            return native
        empty = torch.zeros(0, dtype=torch.int64, device=self.device)
        src = torch.cat([self.graph.edge_index(r)[0] + offsets[s] for r, (s, _) in zip(self.graph.relations, ends)]
                        ) if ends else empty
        dst = torch.cat([self.graph.edge_index(r)[1] + offsets[d] for r, (_, d) in zip(self.graph.relations, ends)]
                        ) if ends else empty
        n = max(self.num_nodes, 1)
        perm = group_by(self._relation_ids() * n + dst, self.num_relations * n)
        return src[perm], dst[perm], perm

    @property
    def src(self) -> Tensor:
        """``[E]`` global source id of each canonical edge."""
        return self._canonical[0]

    @property
    def dst(self) -> Tensor:
        """``[E]`` global destination id of each canonical edge."""
        return self._canonical[1]

    @cached_property
    def etype(self) -> Tensor:
        """``[E]`` relation id of each canonical edge (non-decreasing); built on first use only
        (the kernels mostly walk :attr:`rel_ptr` segments; 336 MB at ogbn-mag's size)."""
        return self._relation_ids()

    def _relation_ids(self) -> Tensor:
        return torch.repeat_interleave(torch.arange(self.num_relations, device=self.device), self.rel_ptr.diff())

    @property
    def edge_perm(self) -> Tensor:
        """``[E]`` position of each canonical edge in the relation-by-relation input order."""
        return self._canonical[2]

    def edge_values(self, name: str) -> Tensor:
        """Edge-data field ``name`` in canonical edge order, ``[E, ...]``.

        Built from the graph's per-relation tensors on every call (a concatenation and a
        permutation: O(E)), so gradients reach those tensors when they require grad.
        """
        field = self.graph.edge_data.get(name)
        if field is None:
            raise GraphError(f"the graph has no edge data '{name}'; it has {sorted(self.graph.edge_data) or 'none'}")
        values = torch.cat([field[r] for r in self.graph.relations]) if self.graph.relations else None
        return values[self.edge_perm] if values is not None else torch.zeros(0)

    @cached_property
    def rel_ptr(self) -> Tensor:
        """``[R + 1]`` segment pointer of the canonical edges by relation: relation ``r``'s edges,
        in relation order (the canonical sort is by relation first)."""
        counts = torch.tensor([self.graph.edge_index(r).size(1) for r in self.graph.relations], dtype=torch.int64)
        ptr = torch.zeros(self.num_relations + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=ptr[1:])
        return ptr.to(self.device)

    # ------------------------------------------------------------------ CSR by destination
    @cached_property
    def csr_perm(self) -> Tensor:
        """``[E]`` canonical edge positions sorted by destination (stable)."""
        return group_by(self.dst, self.num_nodes)

    @cached_property
    def dst_ptr(self) -> Tensor:
        """``[N + 1]`` CSR row pointer over ``csr_perm``."""
        return segment_ptr(self.dst, self.num_nodes)

    @cached_property
    def in_degree(self) -> Tensor:
        """``[N]`` number of incoming edges per node (all relations)."""
        return self.dst_ptr.diff()

    # ------------------------------------------------------------------ compact maps
    def _compact(self, node: Tensor, index_name: str, presorted: bool) -> CompactMap:
        """The distinct ``(etype, node)`` pairs (``torch.unique``'s result), by one stable
        grouping of the edges, which is also the group CSR of the pair index ``index_name``
        (``presorted``: canonical order already sorts the keys). Natively relation by relation,
        counting over each relation's own node type (:func:`~graphcore.grouping.relation_pairs`),
        or with torch where that does not apply."""
        native = relation_pairs(self.rel_ptr, *self._pair_keys(index_name), with_order=not presorted)
        if native is not None:
            pair_node, etype, starts, inverse, order = native
        else:
            n = max(self.num_nodes, 1)
            keys = self.etype * n + node
            order = None if presorted else group_by(keys, self.num_relations * n)
            values, starts, inverse = runs(keys, order)
            pair_node, etype = values % n, values // n
        self._group_csr[(index_name, pair_node.numel())] = (starts, order)  # None: in order already
        return CompactMap(node=pair_node, etype=etype, inverse=inverse,
                          rel_ptr=segment_ptr(etype, self.num_relations), count=starts.diff())

    def _pair_keys(self, index_name: str) -> tuple[Tensor, list[int], list[int]]:
        """The node ids of a pair map's edges and each relation's node-type offset and count."""
        side = self.rel_src_type if index_name == "usrc_inv" else self.rel_dst_type
        node = self.src if index_name == "usrc_inv" else self.dst
        return node, self.node_offsets[side].tolist(), self.node_offsets.diff()[side].tolist()

    def _num_pairs(self, index_name: str) -> int:
        """The size of a pair map without building it: the planner asks every graph for its row
        counts, and a plan that never uses ``unique_src`` (R-GCN aggregates first) should not pay
        its 42 M-row inverse and grouping at ogbn-mag's size (2.8 s of a 21 s first call)."""
        built = {"usrc_inv": "unique_src", "udst_inv": "unique_dst"}[index_name]
        if built in self.__dict__:
            return getattr(self, built).num_pairs
        if index_name not in self._pair_counts:
            counts = relation_pair_counts(self.rel_ptr, *self._pair_keys(index_name))
            self._pair_counts[index_name] = getattr(self, built).num_pairs if counts is None else int(counts.sum())
        return self._pair_counts[index_name]

    @cached_property
    def unique_src(self) -> CompactMap:
        """Distinct ``(etype, src)`` pairs (see :class:`CompactMap`)."""
        return self._compact(self.src, "usrc_inv", presorted=False)

    @cached_property
    def unique_dst(self) -> CompactMap:
        """Distinct ``(etype, dst)`` pairs (see :class:`CompactMap`)."""
        return self._compact(self.dst, "udst_inv", presorted=True)

    @cached_property
    def dst_etype_count(self) -> Tensor:
        """``[E]`` size of each edge's ``(dst, etype)`` group: the per-relation in-degree."""
        pairs = self.unique_dst
        return pairs.count[pairs.inverse]

    # ------------------------------------------------------------------ named access for the compiler
    def rows(self, domain: str) -> int:
        """Number of rows of a level-1 domain (a :class:`~codegen.ir.values.Domain` or its name)."""
        domain = Domain(domain)
        if domain in (Domain.USRC, Domain.UDST):
            return self._num_pairs("usrc_inv" if domain == Domain.USRC else "udst_inv")
        return {Domain.NODE: self.num_nodes, Domain.EDGE: self.num_edges, Domain.NTYPE: self.num_node_types,
                Domain.ETYPE: self.num_relations}[domain]

    def index(self, name: str) -> Tensor:
        """The index vector of a level-1 index map (see ``codegen.ir.values.INDEX_MAPS``)."""
        return {
            "src": lambda: self.src, "dst": lambda: self.dst, "etype": lambda: self.etype,
            "ntype": lambda: self.node_type,
            "usrc_node": lambda: self.unique_src.node, "usrc_inv": lambda: self.unique_src.inverse,
            "usrc_etype": lambda: self.unique_src.etype,
            "udst_node": lambda: self.unique_dst.node, "udst_inv": lambda: self.unique_dst.inverse,
            "udst_etype": lambda: self.unique_dst.etype,
            "rel_src_type": lambda: self.rel_src_type, "rel_dst_type": lambda: self.rel_dst_type,
        }[name]()

    def ptr(self, name: str) -> Tensor:
        """A type-segment pointer: ``node_ptr``, ``rel_ptr``, ``usrc_ptr`` or ``udst_ptr``."""
        return {"node_ptr": lambda: self.node_offsets, "rel_ptr": lambda: self.rel_ptr,
                "usrc_ptr": lambda: self.unique_src.rel_ptr, "udst_ptr": lambda: self.unique_dst.rel_ptr}[name]()

    def group_csr(self, index_name: str, num_groups: int) -> tuple[Tensor, Tensor]:
        """Rows grouped by the value of an index vector: ``(ptr [G + 1], rows [len])``.

        ``rows[ptr[g]:ptr[g + 1]]`` are the positions ``i`` with ``index[i] == g``, ascending, so
        a reduction over each group can run in a fixed order without atomics.
        """
        ptr, rows = self._grouping(index_name, num_groups)
        if rows is None:
            rows = torch.arange(self.rows(str(INDEX_MAPS[index_name].target)), device=self.device)
            self._group_csr[(index_name, num_groups)] = (ptr, rows)
        return ptr, rows

    def group_ptr(self, index_name: str, num_groups: int) -> Tensor:
        """The group pointer of :meth:`group_csr` alone: for an ordered index map
        (:class:`~codegen.ir.values.IndexMap`), whose rows are already grouped, the member list is
        never built (the kernels walk the rows directly)."""
        return self._grouping(index_name, num_groups)[0]

    def _grouping(self, index_name: str, num_groups: int) -> tuple[Tensor, Tensor | None]:
        """The cached ``(ptr, rows)`` of a grouping; rows None while they are in order (an ordered
        map, or a pair map over presorted keys)."""
        key = (index_name, num_groups)
        if key not in self._group_csr:
            if index_name == "dst":
                self._group_csr[key] = (self.dst_ptr, self.csr_perm)
            else:
                index = self.index(index_name)  # building a pair map also groups its inverse (usrc_inv, udst_inv)
                if key not in self._group_csr:
                    rows = None if INDEX_MAPS[index_name].ordered else group_by(index, num_groups)
                    self._group_csr[key] = (segment_ptr(index, num_groups), rows)
        return self._group_csr[key]

    def constant(self, name: str) -> Tensor:
        """Graph constants of the IR (``inv_in_degree``, ``inv_udst_count``) as float64 ``[rows]``."""
        if name == "inv_in_degree":
            return 1.0 / self.in_degree.clamp(min=1).double()
        if name == "inv_udst_count":
            pairs = self.unique_dst
            return 1.0 / pairs.count.clamp(min=1).double()
        raise KeyError(f"unknown graph constant {name!r}")

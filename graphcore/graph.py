r"""The heterogeneous graph every part of graphcore reads.

A :class:`HeteroGraph` holds node types with counts and canonical relations
``(src_type, rel, dst_type)`` with ``int64`` ``[2, E]`` edge indices in local (per-type) ids.
It is validated once at construction, so kernels downstream never re-check ids; the derived
layouts the compiler needs (global ids, edges sorted by relation and destination, CSR,
compact maps) are computed lazily and cached in :attr:`HeteroGraph.layout`.

Node features travel beside the graph as a dict ``{ntype: [N_t, F]}`` (optional
:attr:`HeteroGraph.x`), or stacked in *global* node order as one ``[N, F]`` tensor, where the
global id of local node ``i`` of type ``t`` is ``offset[t] + i`` and types are in
:attr:`HeteroGraph.node_types` order.

Edge data is part of the graph: named fields ``{name: {relation: [E_r, ...]}}`` (PyG's
``edge_weight`` ``[E]`` and ``edge_attr`` ``[E, F]`` conventions), one row per edge of every
relation, in the relation's edge order. The layout permutes them with the edges
(:meth:`~graphcore.layouts.Layout.edge_values`), so models read them with
:func:`graphcore.ops.edge_data` and compiled models take them as edge-domain inputs.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from graphcore.codegen.errors import GraphError

if TYPE_CHECKING:
    import networkx

    from graphcore.layouts import Layout

Relation = tuple[str, str, str]
_REPR_RELATIONS = 12  # relations listed by repr before it abbreviates


def _as_edge_tensor(relation: Relation, value) -> Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        raise GraphError(f"edge index of relation {relation} must be a torch.Tensor or numpy array, "
                         f"got {type(value).__name__}")
    if value.dtype != torch.int64:
        raise GraphError(f"edge index of relation {relation} must have dtype torch.int64, got {value.dtype}; "
                         "convert it with .long()")
    if value.dim() != 2 or value.size(0) != 2:
        raise GraphError(f"edge index of relation {relation} must have shape [2, E], got {list(value.shape)}")
    return value


def _check_edge_field(name: str, field: Mapping[Relation, Tensor], edges: Mapping[Relation, Tensor],
                      device: torch.device) -> dict[Relation, Tensor]:
    """One named edge-data field: every relation, one row per edge, one float dtype and row shape."""
    if not isinstance(name, str) or not name:
        raise GraphError(f"edge data names must be non-empty strings, got {name!r}")
    unknown = [r for r in field if r not in edges]
    if unknown:
        raise GraphError(f"edge data '{name}' is given for unknown relations {unknown}")
    missing = [r for r in edges if r not in field]
    if missing:
        raise GraphError(f"edge data '{name}' has no tensor for relations {missing}; give every relation one "
                         "(zeros where the field does not apply)")
    checked, kinds = {}, set()
    for relation in edges:
        value = field[relation]
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(value, Tensor) or value.dim() < 1:
            raise GraphError(f"edge data '{name}' of relation {relation} must be a tensor with one row per edge")
        if not value.is_floating_point():
            raise GraphError(f"edge data '{name}' of relation {relation} must be floating point, got {value.dtype}; "
                             "convert it with .float()")
        if value.size(0) != edges[relation].size(1):
            raise GraphError(f"edge data '{name}' of relation {relation} has {value.size(0)} rows but the relation "
                             f"has {edges[relation].size(1)} edges")
        if value.device != device:
            raise GraphError(f"edge data '{name}' of relation {relation} is on {value.device}, the edges on {device}")
        kinds.add((value.dtype, tuple(value.shape[1:])))
        checked[relation] = value
    if len(kinds) > 1:
        raise GraphError(f"edge data '{name}' needs one dtype and row shape for all relations, got {sorted(map(str, kinds))}")
    return checked


def _check_ids(relation: Relation, row: Tensor, end: str, ntype: str, count: int) -> None:
    bad = (row < 0) | (row >= count)
    if bool(bad.any()):
        pos = int(bad.nonzero()[0, 0])
        raise GraphError(f"relation {relation}: {end} id {int(row[pos])} at edge {pos} is out of range for "
                         f"node type '{ntype}' with {count} nodes (valid ids are 0..{count - 1})")


class HeteroGraph:
    r"""A validated heterogeneous graph with typed nodes and canonical relations.

    Args:
        num_nodes: node count per node type, in the order that defines global ids.
        edge_index: ``{(src_type, rel, dst_type): LongTensor[2, E]}`` in local ids; an empty
            relation (``E = 0``) is valid. Relation order defines the relation ids.
        x: optional node features ``{ntype: Tensor[N_t, F]}``; row counts are checked.
        edge_data: optional named edge fields ``{name: {relation: Tensor[E_r, ...]}}`` (for
            example ``{"edge_weight": {...}}``), floating point, one row per edge of every relation.

    Raises:
        GraphError: (a :class:`ValueError`) on a wrong dtype or shape, an id that is negative
            or out of range, an unknown node type, or features whose row count disagrees; the
            message names the relation or type and the first offending index.

    Example:
        >>> g = HeteroGraph({"paper": 3, "author": 2},
        ...                 {("author", "writes", "paper"): torch.tensor([[0, 1], [2, 0]])})
        >>> g.num_edges()
        2
    """

    def __init__(self, num_nodes: Mapping[str, int], edge_index: Mapping[Relation, Tensor],
                 x: Mapping[str, Tensor] | None = None,
                 edge_data: Mapping[str, Mapping[Relation, Tensor]] | None = None):
        self._num_nodes: dict[str, int] = {}
        for ntype, count in num_nodes.items():
            if not isinstance(ntype, str) or not ntype:
                raise GraphError(f"node type names must be non-empty strings, got {ntype!r}")
            count = int(count)
            if count < 0:
                raise GraphError(f"node type '{ntype}' has a negative node count {count}")
            self._num_nodes[ntype] = count
        self._edge_index: dict[Relation, Tensor] = {}
        device = None
        for relation, value in edge_index.items():
            if not (isinstance(relation, tuple) and len(relation) == 3 and all(isinstance(p, str) for p in relation)):
                raise GraphError(f"relations must be (src_type, rel, dst_type) string triples, got {relation!r}")
            if relation in self._edge_index:
                raise GraphError(f"relation {relation} is given twice")
            src_type, _, dst_type = relation
            for end, ntype in (("source", src_type), ("destination", dst_type)):
                if ntype not in self._num_nodes:
                    raise GraphError(f"relation {relation}: unknown {end} node type '{ntype}'; "
                                     f"known types are {list(self._num_nodes)}")
            edges = _as_edge_tensor(relation, value)
            if device is None:
                device = edges.device
            elif edges.device != device:
                raise GraphError(f"relation {relation} is on {edges.device}, other relations on {device}")
            _check_ids(relation, edges[0], "source", src_type, self._num_nodes[src_type])
            _check_ids(relation, edges[1], "destination", dst_type, self._num_nodes[dst_type])
            self._edge_index[relation] = edges
        self._device = device if device is not None else torch.device("cpu")
        self.x: dict[str, Tensor] = self.check_features(x) if x is not None else {}
        self.edge_data: dict[str, dict[Relation, Tensor]] = {
            name: _check_edge_field(name, field, self._edge_index, self._device)
            for name, field in (edge_data or {}).items()}

    # ------------------------------------------------------------------ basic queries
    @property
    def node_types(self) -> tuple[str, ...]:
        """Node types, in the order that defines global node ids and type ids."""
        return tuple(self._num_nodes)

    @property
    def relations(self) -> tuple[Relation, ...]:
        """Canonical relations ``(src_type, rel, dst_type)``, in relation-id order."""
        return tuple(self._edge_index)

    @property
    def num_node_types(self) -> int:
        return len(self._num_nodes)

    @property
    def num_relations(self) -> int:
        return len(self._edge_index)

    @property
    def device(self) -> torch.device:
        return self._device

    def num_nodes(self, ntype: str | None = None) -> int:
        """Number of nodes of ``ntype``, or of all types when ``ntype`` is None."""
        if ntype is None:
            return sum(self._num_nodes.values())
        if ntype not in self._num_nodes:
            raise GraphError(f"unknown node type '{ntype}'; known types are {list(self._num_nodes)}")
        return self._num_nodes[ntype]

    def num_edges(self, relation: Relation | None = None) -> int:
        """Number of edges of ``relation``, or of all relations when it is None."""
        if relation is None:
            return sum(int(e.size(1)) for e in self._edge_index.values())
        return int(self.edge_index(relation).size(1))

    def edge_index(self, relation: Relation) -> Tensor:
        """The ``[2, E]`` local-id edge index of one relation."""
        if relation not in self._edge_index:
            raise GraphError(f"unknown relation {relation}; known relations are {list(self._edge_index)}")
        return self._edge_index[relation]

    @property
    def edge_index_dict(self) -> dict[Relation, Tensor]:
        return dict(self._edge_index)

    @property
    def num_nodes_dict(self) -> dict[str, int]:
        return dict(self._num_nodes)

    def node_offset(self, ntype: str) -> int:
        """Global id of the first node of ``ntype``."""
        offset = 0
        for name, count in self._num_nodes.items():
            if name == ntype:
                return offset
            offset += count
        raise GraphError(f"unknown node type '{ntype}'; known types are {list(self._num_nodes)}")

    def metagraph(self) -> networkx.MultiDiGraph:
        """The schema as a networkx multigraph: one node per type, one keyed edge per relation."""
        import networkx as nx

        meta = nx.MultiDiGraph()
        meta.add_nodes_from(self._num_nodes)
        for src, rel, dst in self._edge_index:
            meta.add_edge(src, dst, key=rel)
        return meta

    # ------------------------------------------------------------------ features
    def check_features(self, x: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Validate a feature dict: known types, one row per node of the type."""
        checked = {}
        for ntype, value in x.items():
            if ntype not in self._num_nodes:
                raise GraphError(f"features given for unknown node type '{ntype}'; "
                                 f"known types are {list(self._num_nodes)}")
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value)
            if not isinstance(value, Tensor) or value.dim() < 1:
                raise GraphError(f"features of node type '{ntype}' must be a tensor with one row per node")
            if value.size(0) != self._num_nodes[ntype]:
                raise GraphError(f"features of node type '{ntype}' have {value.size(0)} rows but the type has "
                                 f"{self._num_nodes[ntype]} nodes")
            checked[ntype] = value
        return checked

    def stack(self, x: Mapping[str, Tensor]) -> Tensor:
        """Concatenate per-type features ``{ntype: [N_t, F]}`` into global order ``[N, F]``.

        Every node type must be present and all must share the trailing shape.
        """
        x = self.check_features(x)
        missing = [t for t in self._num_nodes if t not in x]
        if missing:
            raise GraphError(f"stack needs features for every node type; missing {missing}")
        shapes = {tuple(v.shape[1:]) for v in x.values()}
        if len(shapes) > 1:
            raise GraphError(f"stack needs one feature shape for all types, got {sorted(shapes)}; "
                             "project each type to a common size first")
        return torch.cat([x[t] for t in self._num_nodes], dim=0)

    def unstack(self, x: Tensor) -> dict[str, Tensor]:
        """Split a global-order ``[N, ...]`` tensor back into ``{ntype: [N_t, ...]}``."""
        if x.size(0) != self.num_nodes():
            raise GraphError(f"unstack expects {self.num_nodes()} rows (all nodes), got {x.size(0)}")
        return dict(zip(self._num_nodes, torch.split(x, list(self._num_nodes.values()), dim=0)))

    # ------------------------------------------------------------------ derived graphs
    def add_reverse_edges(self, prefix: str = "rev_") -> HeteroGraph:
        """A new graph with one inverse relation ``(dst, prefix + rel, src)`` per relation.

        This is how RGCN/RGAT/HGT are usually run (DGL, PyG ``ToUndirected``, Hector): messages
        then flow both ways along each relation, each direction with its own weights.
        """
        edges = dict(self._edge_index)
        for (src, rel, dst), index in self._edge_index.items():
            reverse = (dst, prefix + rel, src)
            if reverse in edges:
                raise GraphError(f"cannot add reverse of {(src, rel, dst)}: relation {reverse} already exists")
            edges[reverse] = index.flip(0)
        data = {name: {**field, **{(d, prefix + r, s): field[(s, r, d)] for s, r, d in self._edge_index}}
                for name, field in self.edge_data.items()}  # a reverse edge keeps its edge's data
        return HeteroGraph(self._num_nodes, edges, self.x or None, data or None)

    def to(self, device: torch.device | str) -> HeteroGraph:
        """A copy on ``device`` (edge indices, features and edge data)."""
        device = torch.device(device)
        return HeteroGraph(self._num_nodes, {r: e.to(device) for r, e in self._edge_index.items()},
                           {t: v.to(device) for t, v in self.x.items()} or None,
                           {n: {r: v.to(device) for r, v in f.items()} for n, f in self.edge_data.items()} or None)

    @cached_property
    def layout(self) -> Layout:
        """Derived layouts (global ids, sorted edges, CSR, compact maps), built on first use."""
        from graphcore.layouts import Layout

        return Layout(self)

    # ------------------------------------------------------------------ dunder
    def __repr__(self) -> str:
        lines = [f"HeteroGraph(num_nodes={self.num_nodes()}, num_edges={self.num_edges()}, "
                 f"node_types={self.num_node_types}, relations={self.num_relations}, device={self.device})"]
        for ntype, count in self._num_nodes.items():
            feat = f", x={list(self.x[ntype].shape)}" if ntype in self.x else ""
            lines.append(f"  {ntype}: {count} nodes{feat}")
        shown = list(self._edge_index.items())
        for relation, index in shown[:_REPR_RELATIONS]:
            lines.append(f"  {relation}: {index.size(1)} edges")
        for name, field in self.edge_data.items():
            lines.append(f"  edge data '{name}': rows of shape {list(next(iter(field.values())).shape[1:])}")
        if len(shown) > _REPR_RELATIONS:
            lines.append(f"  ... {len(shown) - _REPR_RELATIONS} more relations")
        return "\n".join(lines)

    def equals(self, other: HeteroGraph) -> bool:
        """Same node types and counts, same relations in the same order, same edges, same edge data."""
        return (self._num_nodes == other._num_nodes and self.relations == other.relations
                and all(torch.equal(self._edge_index[r].cpu(), other._edge_index[r].cpu()) for r in self.relations)
                and self.edge_data.keys() == other.edge_data.keys()
                and all(torch.equal(f[r].cpu(), other.edge_data[n][r].cpu()) for n, f in self.edge_data.items()
                        for r in self.relations))

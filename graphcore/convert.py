"""Converters between :class:`~graphcore.graph.HeteroGraph` and the graph types users have.

PyG and networkx are dependencies; DGL is optional and never imported here: :func:`from_dgl`
reads a DGL graph through the handful of methods it has (duck typing), so graphcore works in
environments where ``import dgl`` fails (DGL 2.1 needs torch <= 2.2.1).
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from graphcore.codegen.errors import GraphError
from graphcore.graph import HeteroGraph, Relation

if TYPE_CHECKING:
    import networkx
    from torch_geometric.data import HeteroData


PYG_EDGE_FIELDS = ("edge_weight", "edge_attr")  # PyG's edge-level attributes that graphcore carries


def from_pyg(data: HeteroData) -> HeteroGraph:
    """Build a graph from a PyG ``HeteroData`` (node counts, ``edge_index``, ``x`` where set, and
    ``edge_weight``/``edge_attr`` where every relation has them)."""
    num_nodes = {}
    for ntype in data.node_types:
        count = data[ntype].num_nodes
        if count is None:
            raise GraphError(f"PyG node type '{ntype}' has no num_nodes and no x; set data['{ntype}'].num_nodes")
        num_nodes[ntype] = int(count)
    edges = {tuple(rel): data[rel].edge_index for rel in data.edge_types}
    x = {nt: data[nt].x for nt in data.node_types if getattr(data[nt], "x", None) is not None}
    edge_data = {}
    for name in PYG_EDGE_FIELDS:
        field = {tuple(rel): getattr(data[rel], name) for rel in data.edge_types
                 if getattr(data[rel], name, None) is not None}
        if field and len(field) != len(data.edge_types):
            missing = [tuple(rel) for rel in data.edge_types if tuple(rel) not in field]
            raise GraphError(f"PyG '{name}' is set on some relations but not on {missing}; set it on all of them")
        if field:
            edge_data[name] = field
    return HeteroGraph(num_nodes, edges, x or None, edge_data or None)


def to_pyg(graph: HeteroGraph) -> HeteroData:
    """The same graph as a PyG ``HeteroData`` (``num_nodes``, ``edge_index``, ``x`` and each edge
    field as the edge attribute of its name)."""
    from torch_geometric.data import HeteroData

    data = HeteroData()
    for ntype in graph.node_types:
        data[ntype].num_nodes = graph.num_nodes(ntype)
        if ntype in graph.x:
            data[ntype].x = graph.x[ntype]
    for relation in graph.relations:
        data[relation].edge_index = graph.edge_index(relation)
        for name, field in graph.edge_data.items():
            setattr(data[relation], name, field[relation])
    return data


def from_dgl(g: Any, feature: str = "feat") -> HeteroGraph:
    """Build a graph from a DGL graph without importing DGL.

    Reads ``g.ntypes``, ``g.canonical_etypes``, ``g.num_nodes(ntype)``, ``g.edges(etype=...)``
    and, if present, node data ``feature`` of each type.
    """
    for attr in ("ntypes", "canonical_etypes", "num_nodes", "edges"):
        if not hasattr(g, attr):
            raise GraphError(f"from_dgl expects a DGL graph; the given {type(g).__name__} has no '{attr}'")
    num_nodes = {nt: int(g.num_nodes(nt)) for nt in g.ntypes}
    edges = {}
    for relation in g.canonical_etypes:
        src, dst = g.edges(etype=relation)
        edges[tuple(relation)] = torch.stack([torch.as_tensor(src), torch.as_tensor(dst)]).long()
    x = {}
    for nt in g.ntypes:
        data = g.nodes[nt].data
        if feature in data:
            x[nt] = torch.as_tensor(data[feature])
    return HeteroGraph(num_nodes, edges, x or None)


def from_networkx(graph: networkx.Graph, *, ntype_attr: str = "ntype", etype_attr: str = "etype",
                  feature_attr: str | None = "x", edge_attrs: Sequence[str] = (), return_mapping: bool = False
                  ) -> HeteroGraph | tuple[HeteroGraph, dict[Hashable, tuple[str, int]]]:
    """Build a graph from networkx; node attribute ``ntype`` and edge attribute ``etype`` give types.

    Local ids follow the order of ``graph.nodes``. An undirected graph contributes each edge
    once, in the direction networkx lists it; use a ``DiGraph`` (or add reverse edges) for
    both. If every node of a type has ``feature_attr``, those rows become ``x``.

    Args:
        edge_attrs: edge attributes (numbers or vectors on every edge, ``weight`` say) that become
            edge-data fields of the same names.
        return_mapping: also return ``{node: (ntype, local_id)}``.
    """
    mapping: dict[Hashable, tuple[str, int]] = {}
    counts: dict[str, int] = {}
    for node, attrs in graph.nodes(data=True):
        if ntype_attr not in attrs:
            raise GraphError(f"networkx node {node!r} has no '{ntype_attr}' attribute")
        ntype = str(attrs[ntype_attr])
        mapping[node] = (ntype, counts.get(ntype, 0))
        counts[ntype] = counts.get(ntype, 0) + 1
    pairs: dict[Relation, tuple[list[int], list[int]]] = {}
    values: dict[str, dict[Relation, list]] = {}
    for u, v, attrs in graph.edges(data=True):
        if etype_attr not in attrs:
            raise GraphError(f"networkx edge ({u!r}, {v!r}) has no '{etype_attr}' attribute")
        relation = (mapping[u][0], str(attrs[etype_attr]), mapping[v][0])
        src, dst = pairs.setdefault(relation, ([], []))
        src.append(mapping[u][1])
        dst.append(mapping[v][1])
        for name in edge_attrs:
            if name not in attrs:
                raise GraphError(f"networkx edge ({u!r}, {v!r}) has no '{name}' attribute (edge_attrs needs it on "
                                 "every edge)")
            values.setdefault(name, {}).setdefault(relation, []).append(attrs[name])
    edges = {r: torch.tensor([s, d], dtype=torch.int64).view(2, -1) for r, (s, d) in pairs.items()}
    edge_data = {name: {r: torch.as_tensor(v, dtype=torch.get_default_dtype()) for r, v in field.items()}
                 for name, field in values.items()}
    x = {}
    if feature_attr is not None:
        rows: dict[str, list] = {}
        for node, attrs in graph.nodes(data=True):
            rows.setdefault(mapping[node][0], []).append(attrs.get(feature_attr))
        x = {nt: torch.stack([torch.as_tensor(v) for v in r]) for nt, r in rows.items()
             if all(v is not None for v in r)}
    result = HeteroGraph(counts, edges, x or None, edge_data or None)
    return (result, mapping) if return_mapping else result

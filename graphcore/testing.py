"""Graphs for tests and benchmarks: random heterographs with the edge cases that break kernels.

The compiler's proof obligations run on these: an empty relation, a node with no incoming
edge, duplicate edges, self loops, and a single-relation graph.
"""
from __future__ import annotations

import torch

from graphcore.graph import HeteroGraph


def random_heterograph(num_nodes: dict[str, int], relations: list[tuple[str, str, str]], num_edges: int | list[int],
                       *, seed: int = 0, duplicates: bool = True, self_loops: bool = True,
                       isolated: bool = True) -> HeteroGraph:
    """A random graph with the given schema and edge counts per relation.

    Args:
        num_edges: edges per relation (one int for all, or one per relation; 0 = empty).
        duplicates: repeat the first edge of every non-empty relation.
        self_loops: add ``(i, i)`` edges to relations whose ends share a type.
        isolated: keep the last node of every type free of incoming edges.
    """
    gen = torch.Generator().manual_seed(seed)
    counts = [num_edges] * len(relations) if isinstance(num_edges, int) else list(num_edges)
    edges = {}
    for (src, rel, dst), count in zip(relations, counts):
        high_dst = num_nodes[dst] - 1 if isolated and num_nodes[dst] > 1 else num_nodes[dst]
        s = torch.randint(num_nodes[src], (count,), generator=gen)
        d = torch.randint(high_dst, (count,), generator=gen)
        if count and duplicates:
            s, d = torch.cat([s, s[:1]]), torch.cat([d, d[:1]])
        if count and self_loops and src == dst:
            loops = torch.arange(min(3, high_dst))
            s, d = torch.cat([s, loops]), torch.cat([d, loops])
        edges[(src, rel, dst)] = torch.stack([s, d])
    return HeteroGraph(num_nodes, edges)


def edge_subset(g: HeteroGraph, fraction: float, seed: int) -> HeteroGraph:
    """A random ``fraction`` of every relation's edges: the same node types and relations (the
    same schema, so the same compiled plan), as a sampled batch or an edge split would be."""
    gen = torch.Generator().manual_seed(seed)
    edges = {}
    for relation in g.relations:
        index = g.edge_index(relation)
        edges[relation] = index[:, torch.rand(index.size(1), generator=gen) < fraction]
    return HeteroGraph(g.num_nodes_dict, edges)


def edge_case_graphs(seed: int = 0) -> dict[str, HeteroGraph]:
    """Named small graphs covering every case the compiler must get right."""
    schema = [("a", "r0", "b"), ("b", "r1", "a"), ("a", "r2", "a"), ("b", "r3", "c"), ("c", "r4", "b")]
    return {
        "mixed": random_heterograph({"a": 7, "b": 5, "c": 4}, schema, [20, 15, 0, 9, 11], seed=seed),
        "one_relation": random_heterograph({"n": 9}, [("n", "r", "n")], 30, seed=seed + 1),
        "dense": random_heterograph({"a": 4, "b": 3}, [("a", "x", "b"), ("b", "y", "a"), ("a", "z", "a")], 25,
                                    seed=seed + 2),
    }


@torch.no_grad()
def copy_pyg_rgcn(ours, pyg) -> None:
    """Copy a PyG ``RGCNConv`` 's weights into :class:`graphcore.nn.RGCN` (same layout)."""
    ours.weight.copy_(pyg.weight)
    if pyg.comp is not None:
        ours.comp.copy_(pyg.comp)
    if pyg.root is not None:
        ours.root.copy_(pyg.root)
    if pyg.bias is not None:
        ours.bias.copy_(pyg.bias)


@torch.no_grad()
def copy_pyg_rgat(ours, pyg) -> None:
    """Copy a PyG ``RGATConv`` into :class:`graphcore.nn.RGAT`: its shared ``k``/``q`` become
    every relation's source/destination attention."""
    ours.weight.copy_(pyg.weight)
    ours.att_src.copy_(pyg.k.expand_as(ours.att_src))
    ours.att_dst.copy_(pyg.q.expand_as(ours.att_dst))
    if pyg.bias is not None:
        ours.bias.copy_(pyg.bias)


@torch.no_grad()
def copy_pyg_hgt(ours, pyg, graph: HeteroGraph) -> None:
    """Copy a PyG ``HGTConv`` into :class:`graphcore.nn.HGT` (types in ``graph``'s order)."""
    F, H = ours.out_channels, ours.heads
    R, D = graph.num_relations, F // H
    for t, ntype in enumerate(graph.node_types):
        kqv = pyg.kqv_lin.lins[ntype]
        weight = kqv.weight.t()
        for i, (w, b) in enumerate(((ours.k_weight, ours.k_bias), (ours.q_weight, ours.q_bias),
                                    (ours.v_weight, ours.v_bias))):
            w[t].copy_(weight[:, i * F:(i + 1) * F])
            b[t].copy_(kqv.bias[i * F:(i + 1) * F])
        out = pyg.out_lin.lins[ntype]
        ours.out_weight[t].copy_(out.weight.t())
        ours.out_bias[t].copy_(out.bias)
        ours.skip[t].copy_(pyg.skip[ntype])
    # PyG indexes its per-head relation matrices by head * R + relation
    ours.att_rel.copy_(pyg.k_rel.weight.view(H, R, D, D).transpose(0, 1))
    ours.msg_rel.copy_(pyg.v_rel.weight.view(H, R, D, D).transpose(0, 1))
    for r, relation in enumerate(graph.relations):
        ours.prior[r].copy_(pyg.p_rel["__".join(relation)].view(H, 1))


def layer_zoo(graph: HeteroGraph, dtype: torch.dtype = torch.float64) -> dict[str, torch.nn.Module]:
    """One instance of each built-in layer in the configurations the compiler must handle:
    heads > 1, d_in != d_out, basis decomposition, mean aggregation."""
    from graphcore import nn as gnn

    R, T = graph.num_relations, graph.num_node_types
    zoo = {
        "rgcn_sum": gnn.RGCN(6, 5, R),
        "rgcn_mean_bases": gnn.RGCN(6, 4, R, num_bases=2, aggr="mean"),
        "rgat_heads": gnn.RGAT(6, 3, R, heads=2),
        "rgat_one_head": gnn.RGAT(5, 4, R),
        "hgt_skip": gnn.HGT(6, 6, T, R, heads=2),
        "hgt_proj": gnn.HGT(5, 6, T, R, heads=3),
    }
    with torch.no_grad():
        for module in zoo.values():
            for p in module.parameters():  # break symmetric initialisations (zero biases, unit skips)
                p.add_(0.1 * torch.randn_like(p))
    return {k: m.to(dtype) for k, m in zoo.items()}

"""HeteroNeighborSampler and NeighborLoader: sampled edges exist, exact fan-outs without
replacement, seeds first, determinism, edge cases, clear errors, and PyG's loaders on top."""
import pytest
import torch
from torch_geometric.loader import NodeLoader

import graphcore as gc
from graphcore.sampling import HeteroNeighborSampler, NeighborLoader, SampledGraph
from graphcore.testing import random_heterograph

SCHEMA = [("a", "r0", "b"), ("b", "r1", "a"), ("a", "r2", "a"), ("b", "r3", "c"), ("c", "r4", "b")]
COUNTS = {"a": 40, "b": 30, "c": 12}
# r2 empty; duplicates, self loops and a node of every type with no in-edges (random_heterograph)
GRAPH = random_heterograph(COUNTS, SCHEMA, [150, 120, 0, 60, 40], seed=5)
FANOUTS = {("a", "r0", "b"): [3, 2], ("b", "r1", "a"): [4, 1], ("a", "r2", "a"): [2, 2],
           ("b", "r3", "c"): [-1, 3], ("c", "r4", "b"): [1, 5]}


def in_edges(relation, dst: int) -> set[int]:
    return set(torch.nonzero(GRAPH.edge_index(relation)[1] == dst).view(-1).tolist())


def sample_batch(seeds, seed=0, **kwargs) -> SampledGraph:
    loader = NeighborLoader(GRAPH, FANOUTS, input_nodes=("a", torch.as_tensor(seeds)), batch_size=len(seeds),
                            seed=seed, **kwargs)
    return next(iter(loader))


def test_every_sampled_edge_exists_in_the_full_graph():
    batch = sample_batch([0, 3, 8, 17, 39])
    for relation in GRAPH.relations:
        s, _, d = relation
        local = batch.edge_index(relation)
        full = GRAPH.edge_index(relation)[:, batch.e_id[relation]]
        assert torch.equal(torch.stack([batch.n_id[s][local[0]], batch.n_id[d][local[1]]]), full)
    assert batch.num_edges(("a", "r2", "a")) == 0  # the empty relation stays in the schema
    assert batch.relations == GRAPH.relations and batch.node_types == GRAPH.node_types


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_node_and_relation_gets_min_k_degree_distinct_in_edges(seed):
    batch = sample_batch(list(range(0, 40, 3)), seed=seed)
    hop_of = {}  # (ntype, local id) -> hop it was added at; nodes of the last hop are not expanded
    for ntype, per_hop in batch.num_sampled_nodes.items():
        start = 0
        for hop, count in enumerate(per_hop):
            for local in range(start, start + count):
                hop_of[ntype, local] = hop
            start += count
        assert start == batch.num_nodes(ntype) and len(set(batch.n_id[ntype].tolist())) == start
    checked = 0
    for relation in GRAPH.relations:
        _, _, d = relation
        cols, eids = batch.edge_index(relation)[1], batch.e_id[relation]
        for local in range(batch.num_nodes(d)):
            hop = hop_of[d, local]
            mine = eids[cols == local].tolist()
            if hop == len(FANOUTS[relation]):
                assert mine == []
                continue
            k = FANOUTS[relation][hop]
            available = in_edges(relation, int(batch.n_id[d][local]))
            assert len(mine) == len(set(mine)) == (len(available) if k == -1 else min(k, len(available)))
            assert set(mine) <= available
            checked += len(mine)
    assert checked == batch.num_edges() > 50


def test_seeds_come_first_in_order_and_one_seed_gives_the_same_batches():
    seeds = torch.tensor([9, 2, 33, 2, 14])  # a repeated seed keeps its place and gets its own edges
    batch = sample_batch(seeds)
    assert torch.equal(batch.n_id["a"][:5], seeds) and batch.batch_size == 5 and batch.input_type == "a"
    assert torch.equal(batch.seed_index, torch.arange(5))
    again = sample_batch(seeds)
    other = sample_batch(seeds, seed=1)
    assert again.equals(batch) and all(torch.equal(again.n_id[t], batch.n_id[t]) for t in COUNTS)
    assert not other.equals(batch)

    def epoch(**kwargs):
        loader = NeighborLoader(GRAPH, [2, 2], input_nodes=("b", None), batch_size=7, shuffle=True, seed=3, **kwargs)
        torch.manual_seed(11)  # the shuffle
        return [(b.n_id["a"], b.n_id["b"][:b.batch_size], b.n_id["c"]) for b in loader]

    first, in_worker = epoch(), epoch(num_workers=1)
    assert len(first) == 5 and all(torch.equal(x, y) for p, q in zip(first, in_worker) for x, y in zip(p, q))
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == list(range(30))  # every seed once


def test_isolated_seeds_and_empty_relations():
    isolated = {t: int(torch.nonzero(torch.bincount(torch.cat([GRAPH.edge_index(r)[1] for r in GRAPH.relations
                                                                if r[2] == t]), minlength=n) == 0)[0])
                for t, n in COUNTS.items()}
    sampler = HeteroNeighborSampler(GRAPH, FANOUTS, seed=0)
    node, row, col, edge, _, _ = sampler.sample("c", torch.tensor([isolated["c"]]))
    assert node["c"].tolist() == [isolated["c"]] and all(v.numel() == 0 for v in row.values())
    empty = gc.HeteroGraph(COUNTS, {r: torch.zeros(2, 0, dtype=torch.int64) for r in SCHEMA})
    batch = next(iter(NeighborLoader(empty, [5, 5], input_nodes=("b", torch.tensor([1, 0])), batch_size=2)))
    assert batch.num_nodes_dict == {"a": 0, "b": 2, "c": 0} and batch.num_edges() == 0


def test_with_replacement_draws_k_edges_per_node_with_in_edges():
    sampler = HeteroNeighborSampler(GRAPH, [6], replace=True, seed=0)
    node, row, col, edge, _, _ = sampler.sample("b", torch.arange(30))
    relation = ("a", "r0", "b")
    for local in range(30):
        available = in_edges(relation, local)
        mine = edge[relation][col[relation] == local].tolist()
        assert len(mine) == (6 if available else 0) and set(mine) <= available


def test_features_and_edge_data_are_gathered_once_per_batch():
    weights = {r: torch.rand(GRAPH.num_edges(r)) for r in GRAPH.relations}
    x = {"a": torch.randn(40, 3), "c": torch.randn(12, 2)}
    g = gc.HeteroGraph(COUNTS, GRAPH.edge_index_dict, x, {"edge_weight": weights})
    batch = next(iter(NeighborLoader(g, [3, 3], input_nodes=("a", torch.arange(6)), batch_size=6, seed=0)))
    assert set(batch.x) == {"a", "c"}
    for t in batch.x:
        torch.testing.assert_close(batch.x[t], x[t][batch.n_id[t]])
    for r in GRAPH.relations:
        torch.testing.assert_close(batch.edge_data["edge_weight"][r], weights[r][batch.e_id[r]])
    moved = batch.to("cpu")
    assert isinstance(moved, SampledGraph) and torch.equal(moved.n_id["a"], batch.n_id["a"])


def test_pyg_node_loader_runs_on_the_sampler_and_matches_our_batches():
    from graphcore.convert import to_pyg

    seeds = torch.tensor([4, 1, 20, 7])
    sampler = HeteroNeighborSampler(GRAPH, {f"{s}__{r}__{d}": v for (s, r, d), v in FANOUTS.items()}, seed=0)
    data = next(iter(NodeLoader(to_pyg(GRAPH), sampler, input_nodes=("a", seeds), batch_size=4)))
    ours = sample_batch(seeds)
    assert data["a"].batch_size == 4
    for t in COUNTS:
        assert torch.equal(data[t].n_id, ours.n_id[t])
    for r in GRAPH.relations:
        assert torch.equal(data[r].edge_index, ours.edge_index(r)) and torch.equal(data[r].e_id, ours.e_id[r])


def test_lightning_node_data_takes_the_sampler():
    from torch_geometric.data.lightning import LightningNodeData

    from graphcore.convert import to_pyg

    data = to_pyg(GRAPH)
    module = LightningNodeData(data, input_train_nodes=("a", torch.arange(20)), input_val_nodes=("a", torch.arange(20, 40)),
                               loader="custom", node_sampler=HeteroNeighborSampler(GRAPH, [2, 2], seed=0), batch_size=8,
                               pin_memory=False)
    batches = list(module.train_dataloader())
    assert [b["a"].batch_size for b in batches] == [8, 8, 4]


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(gc.GraphError, match=r"input_nodes names node type 'paper', which the graph does not have"):
        NeighborLoader(GRAPH, [2], input_nodes=("paper", None), batch_size=4)
    with pytest.raises(gc.GraphError, match=r"seed node type 'paper' is not a node type of the graph"):
        HeteroNeighborSampler(GRAPH, [2]).sample("paper", torch.tensor([0]))
    with pytest.raises(gc.GraphError, match=r"fan-out -3 is not allowed; use a count >= 0, or -1"):
        HeteroNeighborSampler(GRAPH, [5, -3])
    partial = {r: v for r, v in FANOUTS.items() if r[1] != "r3"}
    with pytest.raises(gc.GraphError, match=r"no fan-out for relations \[\('b', 'r3', 'c'\)\]"):
        HeteroNeighborSampler(GRAPH, partial)
    with pytest.raises(gc.GraphError, match=r"names relations \[\('a', 'zz', 'b'\)\] that the graph does not have"):
        HeteroNeighborSampler(GRAPH, {**FANOUTS, ("a", "zz", "b"): [1, 1]})
    with pytest.raises(gc.GraphError, match=r"different numbers of hops per relation \(\[1, 2\]\)"):
        HeteroNeighborSampler(GRAPH, {**FANOUTS, ("a", "r0", "b"): [3]})
    with pytest.raises(gc.GraphError, match=r"input_nodes: id 40 is out of range for node type 'a' with 40 nodes"):
        NeighborLoader(GRAPH, [2], input_nodes=("a", torch.tensor([3, 40])), batch_size=2)
    with pytest.raises(gc.GraphError, match=r"seed id -1 is out of range for node type 'a' with 40 nodes"):
        HeteroNeighborSampler(GRAPH, [2]).sample("a", torch.tensor([0, -1]))


def test_a_trimmed_batch_is_each_hops_prefix():
    batch = sample_batch([0, 3, 8, 17, 39])
    assert batch.num_hops == 2 and batch.trimmed(2) is batch and batch.trimmed(1) is batch.trimmed(1)
    one, zero = batch.trimmed(1), batch.trimmed(0)
    for t in GRAPH.node_types:
        hop0, hop1 = batch.num_sampled_nodes[t][:2]
        assert one.num_nodes(t) == hop0 + hop1 and zero.num_nodes(t) == hop0
        assert torch.equal(one.n_id[t], batch.n_id[t][:hop0 + hop1])
    assert zero.num_nodes() == 5 and zero.num_edges() == 0
    for r in GRAPH.relations:
        hop1 = batch.num_sampled_edges[r][0]
        assert torch.equal(one.edge_index(r), batch.edge_index(r)[:, :hop1])
        assert torch.all(one.edge_index(r)[1] < batch.num_sampled_nodes[r[2]][0])  # into the seeds only
        # the seeds' in-edges in the batch are exactly the first hop's
        assert int((batch.edge_index(r)[1] < batch.num_sampled_nodes[r[2]][0]).sum()) == hop1
    x = torch.randn(batch.num_nodes(), 3, requires_grad=True)
    rows = batch.trim_rows(x, 1)
    assert torch.equal(one.unstack(rows)["b"], batch.unstack(x)["b"][:one.num_nodes("b")])
    rows.sum().backward()
    assert int(x.grad.sum()) == one.num_nodes() * 3


@pytest.mark.parametrize("model", ["rgcn", "rgat", "hgt"])
def test_trimmed_layers_give_the_seeds_their_full_batch_outputs(model):
    """Layer l of a 2-layer model on batch.trimmed(2 - l): the seeds' outputs equal the whole
    batch's (PyG's trim_to_layer), with the last layer on the seeds' hop alone."""
    torch.manual_seed(0)
    batch = sample_batch(list(range(0, 40, 4)))
    R, T = GRAPH.num_relations, GRAPH.num_node_types
    make = {"rgcn": lambda: gc.nn.RGCN(4, 4, R, aggr="mean"), "rgat": lambda: gc.nn.RGAT(4, 2, R, heads=2),
            "hgt": lambda: gc.nn.HGT(4, 4, T, R, heads=2)}[model]
    layers = [make().double(), make().double()]
    x = torch.randn(batch.num_nodes(), 4, dtype=torch.float64)
    full = layers[1](batch, layers[0](batch, x).relu())[batch.seed_index]
    one = batch.trimmed(1)
    trimmed = layers[1](one, batch.trim_rows(layers[0](batch, x).relu(), 1))[one.seed_index]
    torch.testing.assert_close(trimmed, full)


def test_trimming_needs_per_hop_counts():
    plain = SampledGraph(COUNTS, {r: GRAPH.edge_index(r) for r in GRAPH.relations}, n_id={}, e_id={},
                         input_type="a", batch_size=1)
    with pytest.raises(gc.GraphError, match="no per-hop counts"):
        plain.trimmed(1)
    with pytest.raises(gc.GraphError, match="hops must be >= 0"):
        sample_batch([0]).trimmed(-1)

"""Synthetic graphs: the schema's counts at any scale, Zipf-like degrees, reproducible from the seed."""
import pytest
import torch

from graphcore.codegen.errors import GraphError
from graphcore.datasets import hetero
from graphcore.datasets.synthetic import SCHEMAS, synthetic_graph, zipf_endpoints


def test_mag_like_has_ogbn_mag_counts_scaled():
    g, spec = synthetic_graph("mag_like", scale=0.001, seed=0)
    assert g.num_nodes_dict == {"paper": 736, "author": 1135, "institution": 9, "field_of_study": 60}
    assert {r: g.num_edges(r) for r in g.relations} == {
        ("author", "writes", "paper"): 7146, ("paper", "cites", "paper"): 5416,
        ("paper", "has_topic", "field_of_study"): 7505, ("author", "affiliated_with", "institution"): 1044}
    assert sum(SCHEMAS["mag_like"].num_nodes.values()) == 1_939_743
    assert sum(SCHEMAS["mag_like"].num_edges.values()) == 21_111_007


def test_reproducible_from_the_seed():
    a, _ = synthetic_graph("mag_like", 0.0005, seed=3)
    b, _ = synthetic_graph("mag_like", 0.0005, seed=3)
    c, _ = synthetic_graph("mag_like", 0.0005, seed=4)
    assert a.equals(b) and not a.equals(c)


def test_degrees_are_zipf_like_not_uniform():
    gen = torch.Generator().manual_seed(0)
    ids = zipf_endpoints(200_000, 10_000, gen)
    degree = torch.bincount(ids, minlength=10_000).sort(descending=True).values.double()
    # P(rank r) ~ r^-0.8: the top 1 % of nodes take the share the law gives (~30 %; uniform: 1 %)
    weights = torch.arange(1, 10_001, dtype=torch.float64).pow(-0.8)
    expected = float(weights[:100].sum() / weights.sum())
    share = float(degree[:100].sum() / degree.sum())
    assert abs(share - expected) < 0.01 and share > 20 * 0.01, (share, expected)
    # and the log-log slope of degree against rank is close to -0.8 over the first decades
    ranks = torch.tensor([10, 100, 1000], dtype=torch.float64)
    slope = torch.diff(torch.log(degree[ranks.long() - 1])) / torch.diff(torch.log(ranks))
    assert torch.all((slope > -1.0) & (slope < -0.6)), slope
    hubs = zipf_endpoints(1000, 10_000, torch.Generator().manual_seed(1))
    assert float(hubs.float().mean()) > 1000  # the hubs are random nodes, not the low ids


def test_load_by_name_gives_labels_and_a_split():
    data = hetero.load("mag_like:0.0005")
    n = data.graph.num_nodes("paper")
    assert data.target == "paper" and data.labels.shape == (n,) and int(data.labels.max()) < 349
    parts = torch.cat([data.train_idx, data.valid_idx, data.test_idx])
    assert torch.equal(parts.sort().values, torch.arange(n))


def test_bad_names_and_scales():
    with pytest.raises(GraphError, match="unknown synthetic schema 'imdb_like'"):
        synthetic_graph("imdb_like")
    with pytest.raises(GraphError, match="scale must be > 0, got 0"):
        synthetic_graph("mag_like", 0)
    with pytest.raises(GraphError, match="the scale after ':' must be a number, e.g. mag_like:0.1"):
        hetero.load("mag_like:tenth")

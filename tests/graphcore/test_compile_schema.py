"""One plan per schema: graphs are run-time data. Random subgraphs of one schema run on one build
(and one trace), equal to eager forward and backward; a graph of another schema gets its own
plan and never a wrong kernel."""
import pytest
import torch

import graphcore as gc
from graphcore.testing import edge_subset, layer_zoo, random_heterograph

SCHEMA = [("a", "r0", "b"), ("b", "r1", "a"), ("a", "r2", "a"), ("b", "r3", "b")]
FULL = random_heterograph({"a": 30, "b": 20}, SCHEMA, [60, 50, 40, 30], seed=3)


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


@pytest.fixture
def builds(fresh_cache):
    """Native compiler runs, counted from an empty build cache."""
    return fresh_cache[1]


def _grads(model, out, x, probe):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad((out * probe).sum(), [x, *params], allow_unused=True)


@pytest.mark.parametrize("layer", ["rgcn_mean_bases", "rgat_heads", "hgt_proj"])
def test_twenty_subgraphs_one_schema_one_build(builds, layer):
    model = layer_zoo(FULL)[layer]
    compiled = gc.compile(model, backend="cpu")
    for seed in range(20):
        g = edge_subset(FULL, fraction=0.2 + 0.03 * seed, seed=seed)
        x = torch.randn(g.num_nodes(), model.in_channels)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_eager, out_compiled = model(g, x1), compiled(g, x2)
        torch.testing.assert_close(out_compiled, out_eager, rtol=1e-10, atol=1e-12)
        probe = torch.randn_like(out_eager)
        for a, b in zip(_grads(model, out_compiled, x2, probe), _grads(model, out_eager, x1, probe)):
            if b is None:  # a parameter the layer does not use (HGT's skip when d_in != d_out)
                assert a is None or torch.count_nonzero(a) == 0
            else:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert len(builds) == 1, f"{len(builds)} native builds for 20 graphs of one schema"
    assert len(compiled._graphcore_plans) == 1  # one training plan, traced once
    assert "decided once per schema, on its first graph" in compiled.explain(file=open("/dev/null", "w"))


def test_another_schema_gets_its_own_plan(builds):
    model = gc.nn.RGCN(4, 3, len(SCHEMA)).double()
    compiled = gc.compile(model, backend="cpu")
    x = torch.randn(FULL.num_nodes(), 4)
    with torch.no_grad():
        torch.testing.assert_close(compiled(FULL, x), model(FULL, x))
        # node types reordered: the same relations, other global ids
        reordered = gc.HeteroGraph({"b": 20, "a": 30}, FULL.edge_index_dict)
        xr = torch.randn(reordered.num_nodes(), 4)
        torch.testing.assert_close(compiled(reordered, xr), model(reordered, xr))
        # a relation removed and one added (same count, so the model's weights still fit)
        edges = dict(FULL.edge_index_dict)
        del edges[("b", "r3", "b")]
        edges[("a", "r9", "b")] = torch.tensor([[0, 5, 9], [1, 2, 3]])
        changed = gc.HeteroGraph(FULL.num_nodes_dict, edges)
        torch.testing.assert_close(compiled(changed, x), model(changed, x))
    assert len(compiled._graphcore_plans) == 3
    smaller = gc.HeteroGraph(FULL.num_nodes_dict, {r: e for r, e in FULL.edge_index_dict.items() if r[1] != "r3"})
    with torch.no_grad(), pytest.raises(gc.GraphcoreError, match="used per etype but has 4 rows, not 3"):
        compiled(smaller, x)  # three relations against weights for four: refused, never run

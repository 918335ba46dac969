"""Multi-layer RGNNs on sampled batches: compiled equals eager over 20 training steps on one
native build, and featureless types read their embedding rows through the batch's ``n_id``."""
import copy

import pytest
import torch
import torch.nn.functional as F

import graphcore as gc
from graphcore.sampling import NeighborLoader
from graphcore.tasks.rgnn.model import RGNN
from graphcore.testing import random_heterograph

SCHEMA = [("a", "r0", "b"), ("b", "r1", "a"), ("a", "r2", "a"), ("b", "r3", "c"), ("c", "r4", "b")]
COUNTS = {"a": 60, "b": 45, "c": 20}


def featured_graph() -> gc.HeteroGraph:
    g = random_heterograph(COUNTS, SCHEMA, [200, 160, 0, 80, 60], seed=2)
    return gc.HeteroGraph(COUNTS, g.edge_index_dict, {"a": torch.randn(60, 5)})  # b, c: embeddings


def batches(g: gc.HeteroGraph, steps: int) -> list:
    loader = NeighborLoader(g, [4, 3], input_nodes=("a", torch.arange(60)), batch_size=12, shuffle=True, seed=0)
    out = []
    while len(out) < steps:
        out += list(loader)
    return out[:steps]


def trajectory(net: RGNN, data: list, labels: torch.Tensor) -> list[float]:
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for batch in data:
        logits = net(batch).index_select(0, batch.seed_index)
        loss = F.cross_entropy(logits, labels[batch.n_id["a"][:batch.batch_size]])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("model, layers", [("rgcn", 2), ("rgat", 3)])  # HGT: tests/graphcore/test_compile_schema.py
def test_compiled_equals_eager_on_twenty_sampled_batches_with_one_build(fresh_cache, model, layers):
    g = featured_graph()
    labels = torch.randint(3, (60,))
    eager = RGNN(COUNTS, g.num_relations, 3, in_features={"a": 5}, model=model, hidden=8, heads=2, num_layers=layers)
    compiled = copy.deepcopy(eager)
    compiled.stack = gc.compile(compiled.stack, backend="cpu")
    data = batches(g, 20)
    assert len({tuple(b.num_nodes_dict.values()) for b in data}) > 5  # really different graphs
    expected, got = trajectory(eager, data, labels), trajectory(compiled, data, labels)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert expected[-1] < expected[0]
    assert len(fresh_cache[1]) == 1  # one native build for all batches
    assert len(compiled.stack._graphcore_plans) == 1


def test_embeddings_of_a_batch_are_the_rows_of_its_nodes():
    g = featured_graph()
    net = RGNN(COUNTS, g.num_relations, 3, in_features={"a": 5}, hidden=4, sparse_embeddings=True)
    batch = batches(g, 1)[0]
    h = net.input(batch)
    _, emb_b, emb_c = net.input.inputs
    parts = batch.unstack(h)
    torch.testing.assert_close(parts["b"], emb_b.weight[batch.n_id["b"]])
    torch.testing.assert_close(parts["c"], emb_c.weight[batch.n_id["c"]])
    net(batch).sum().backward()
    assert emb_b.weight.grad.is_sparse
    touched = emb_b.weight.grad.coalesce().indices()[0].unique()
    assert set(touched.tolist()) <= set(batch.n_id["b"].tolist())

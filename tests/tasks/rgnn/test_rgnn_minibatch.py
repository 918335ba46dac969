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


@pytest.mark.parametrize("model", ["rgcn", "rgat", "hgt"])
def test_layerwise_evaluation_equals_the_full_graph_forward(model):
    g = featured_graph().add_reverse_edges()
    torch.manual_seed(0)
    net = RGNN(COUNTS, g.num_relations, 3, in_features={"a": 5}, model=model, hidden=8, heads=2, num_layers=3).eval()
    index = torch.tensor([5, 0, 59, 33, 5, 17]) + g.node_offset("a")  # unsorted, a duplicate
    with torch.no_grad():
        expected = net(g).index_select(0, index)
        for chunk in (7, 1000):  # many chunks per type (with a short last one), and one
            torch.testing.assert_close(net.layerwise(g, index, chunk), expected, rtol=1e-5, atol=1e-8)
    other = torch.tensor([0, 44]) + g.node_offset("b")  # any node type, not only the target one
    with torch.no_grad():
        torch.testing.assert_close(net.layerwise(g, other, 4), net(g).index_select(0, other), rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        net.layerwise(g, index, 0)


def test_layerwise_evaluation_gives_the_full_graph_metrics():
    import lightning as L

    from graphcore.tasks.rgnn.data import RGNNDataModule
    from graphcore.tasks.rgnn.module import RGNNClassifier

    full, sampled = RGNNDataModule("aifb"), RGNNDataModule("aifb", batch_size=16, eval_chunk_size=500)
    for data in (full, sampled):
        data.setup("validate")
    torch.manual_seed(0)
    classifier = RGNNClassifier(full.num_nodes, full.num_relations, full.num_classes, full.in_features, model="rgat",
                                hidden=8, heads=2)
    batch = next(iter(sampled.val_dataloader()))
    assert batch.graph is sampled.graph and batch.chunk_size == 500 and len(batch) == len(sampled.splits["val"])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    layerwise, = trainer.validate(classifier, datamodule=sampled, verbose=False)
    whole, = trainer.validate(classifier, datamodule=full, verbose=False)
    assert layerwise.keys() == whole.keys() == {"val/loss", "val/acc"}
    for key, value in whole.items():
        assert layerwise[key] == pytest.approx(value, rel=1e-5), key
    sampled.hparams.eval_num_neighbors = [2, 2]  # sampled evaluation: batches of 16, different neighbourhoods
    assert len(next(iter(sampled.val_dataloader()))) == 16


def test_layerwise_evaluation_of_a_compiled_model_runs_compiled_layers(fresh_cache):
    g = featured_graph().add_reverse_edges()
    torch.manual_seed(0)
    eager = RGNN(COUNTS, g.num_relations, 3, in_features={"a": 5}, model="rgat", hidden=8, heads=2).eval()
    compiled = copy.deepcopy(eager)
    compiled.stack = gc.compile(compiled.stack, backend="cpu")
    index = torch.arange(0, 60, 4) + g.node_offset("a")
    with torch.no_grad():
        expected = eager(g).index_select(0, index)
        torch.testing.assert_close(compiled.layerwise(g, index, 9), expected, rtol=1e-4, atol=1e-8)
        builds = len(fresh_cache[1])
        compiled.layerwise(g, index, 9)
    runners = compiled.layer_runners()
    assert [type(r).__name__ for r in runners] == ["CompiledRGAT", "CompiledRGAT"]
    assert all(len(r._graphcore_plans) == 1 for r in runners)  # one plan for all chunks of all node types
    assert len(fresh_cache[1]) == builds > 0  # built once, reused by the second evaluation
    assert list(compiled.state_dict()) == list(eager.state_dict())  # the compiled layers are not submodules
    with torch.no_grad():  # they share the parameters: a changed weight changes their output too
        for net in (compiled, eager):
            for p in net.stack.layers[1].parameters():
                p.add_(0.1)
        changed = eager(g).index_select(0, index)
        assert not torch.allclose(changed, expected)
        torch.testing.assert_close(compiled.layerwise(g, index, 9), changed, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("model", ["rgcn", "rgat", "hgt"])
@pytest.mark.parametrize("layers", [2, 3])
def test_seed_logits_on_trimmed_graphs_equal_the_whole_batchs(model, layers):
    """Layer l of L on the batch cut to L - l hops gives the seeds the logits of one forward
    over the whole batch (fp64), dropout off."""
    torch.manual_seed(0)
    g = featured_graph()
    net = RGNN(COUNTS, g.num_relations, 3, in_features={"a": 5}, model=model, hidden=8, heads=2,
               num_layers=layers).double()
    loader = NeighborLoader(g, [3] * layers, input_nodes=("a", torch.arange(60)), batch_size=12, seed=0)
    for batch in list(loader)[:3]:
        batch.x["a"] = batch.x["a"].double()
        torch.testing.assert_close(net.seed_logits(batch), net(batch).index_select(0, batch.seed_index))
    with pytest.raises(ValueError, match="sampled with 1 hops, the model has"):
        net.seed_logits(next(iter(NeighborLoader(g, [3], input_nodes=("a", torch.arange(60)), batch_size=12))))


def test_compiled_seed_logits_train_as_eager_with_one_build_per_layer(fresh_cache):
    g = featured_graph()
    labels = torch.randint(3, (60,))
    eager = RGNN(COUNTS, g.num_relations, 3, in_features={"a": 5}, model="rgcn", hidden=8, num_layers=2)
    compiled = copy.deepcopy(eager)
    compiled.stack = gc.compile(compiled.stack, backend="cpu")
    data = batches(g, 20)

    def steps(net):
        optimiser, losses = torch.optim.Adam(net.parameters(), lr=0.01), []
        for batch in data:
            loss = F.cross_entropy(net.seed_logits(batch), labels[batch.n_id["a"][:batch.batch_size]])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        return losses

    expected, got = steps(eager), steps(compiled)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert len(fresh_cache[1]) == 2  # one native build per layer (8 -> 8, 8 -> 3) for all batches and cuts


def test_the_classifier_scores_a_sampled_batch_on_trimmed_graphs(monkeypatch):
    from graphcore.tasks.rgnn.data import AttachLabels
    from graphcore.tasks.rgnn.module import RGNNClassifier

    g = featured_graph()
    labels = torch.randint(3, (60,))
    module = RGNNClassifier(COUNTS, g.num_relations, 3, in_features={"a": 5}, hidden=8)
    batch = AttachLabels(labels)(batches(g, 1)[0])
    calls = []
    seed_logits = module.net.seed_logits
    monkeypatch.setattr(module.net, "seed_logits", lambda graph: calls.append(graph) or seed_logits(graph))
    torch.testing.assert_close(module.logits(batch), module(batch.graph).index_select(0, batch.index))
    assert calls == [batch.graph]

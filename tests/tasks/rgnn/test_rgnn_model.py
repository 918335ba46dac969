"""RGNN: typed inputs in global order, the layer stack, and its checks."""
import pytest
import torch

from graphcore.graph import HeteroGraph
from graphcore.testing import random_heterograph
from graphcore.tasks.rgnn.model import RGNN, TypedInput

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

SCHEMA = [("a", "r0", "b"), ("b", "r1", "a"), ("a", "r2", "a"), ("b", "r3", "c"), ("c", "r4", "b")]
COUNTS = {"a": 7, "b": 5, "c": 4}


def graph_with_features() -> HeteroGraph:
    g = random_heterograph(COUNTS, SCHEMA, [20, 15, 0, 9, 11], seed=3)
    dense = torch.randn(5, 6)
    dense[dense < 0.3] = 0  # bag-of-words-like, so the sparse copy is really sparse
    return HeteroGraph(g.num_nodes_dict, g.edge_index_dict, {"b": dense.to_sparse_csr(), "c": torch.randn(4, 3)})


def test_typed_input_projects_features_and_embeds_the_rest_in_global_order():
    g = graph_with_features()
    inp = TypedInput(COUNTS, {"b": 6, "c": 3}, dim=8)
    h = inp(g)
    assert h.shape == (16, 8)
    emb, proj_b, proj_c = inp.inputs
    torch.testing.assert_close(h[:7], emb.weight)
    dense_b = g.x["b"].to_dense()
    torch.testing.assert_close(h[7:12], dense_b @ proj_b.weight.T + proj_b.bias)
    torch.testing.assert_close(h[12:], g.x["c"] @ proj_c.weight.T + proj_c.bias)
    h.sum().backward()  # gradients reach the embedding and through the sparse product
    assert emb.weight.grad.abs().sum() > 0 and proj_b.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("model", ["rgcn", "rgat", "hgt"])
def test_rgnn_logits_and_dropout(model):
    g = graph_with_features()
    net = RGNN(COUNTS, g.num_relations, 3, in_features={"b": 6, "c": 3}, model=model, hidden=8, heads=2,
               dropout=0.5)
    net.eval()
    out = net(g)
    assert out.shape == (16, 3) and torch.isfinite(out).all()
    torch.testing.assert_close(net(g), out)  # no dropout in eval mode
    net.train()
    assert not torch.allclose(net(g), out)
    assert len(net.stack.layers) == 2 and all(layer.num_relations == 5 for layer in net.stack.layers)


def test_rgnn_one_layer_is_the_layer_on_the_embeddings():
    g = random_heterograph(COUNTS, SCHEMA, 10, seed=1)
    net = RGNN(COUNTS, g.num_relations, 4, model="rgcn", hidden=6, num_layers=1, num_bases=2).double()
    expected = net.stack.layers[0](g, torch.cat([m.weight for m in net.input.inputs]))
    torch.testing.assert_close(net(g), expected)
    assert net.stack.layers[0].comp.shape == (5, 2)


def test_rgnn_rejects_bad_configurations_and_other_graphs():
    with pytest.raises(ValueError, match="model must be one of"):
        RGNN(COUNTS, 5, 2, model="gcn")
    with pytest.raises(ValueError, match="num_bases applies to model='rgcn' only"):
        RGNN(COUNTS, 5, 2, model="rgat", num_bases=3)
    with pytest.raises(ValueError, match=r"hidden \(10\) must be divisible by heads \(4\)"):
        RGNN(COUNTS, 5, 2, model="hgt", hidden=10, heads=4)
    with pytest.raises(ValueError, match="in_features names node types \\['z'\\]"):
        TypedInput(COUNTS, {"z": 3}, 4)
    net = RGNN(COUNTS, 5, 2)
    other = random_heterograph({"a": 7, "b": 6, "c": 4}, SCHEMA, 5)
    with pytest.raises(ValueError, match="differ from the ones the model was built for"):
        net(other)
    featured = RGNN(COUNTS, 5, 2, in_features={"c": 3})
    with pytest.raises(ValueError, match="node type 'c' was built with input features but the graph has none"):
        featured(random_heterograph(COUNTS, SCHEMA, 5))


def test_rgat_attention_within_each_relation():
    g = graph_with_features()
    within = RGNN(COUNTS, g.num_relations, 3, in_features={"b": 6, "c": 3}, model="rgat", hidden=8, heads=2,
                  attention="relation").double().eval()
    over_all = RGNN(COUNTS, g.num_relations, 3, in_features={"b": 6, "c": 3}, model="rgat", hidden=8, heads=2).double().eval()
    over_all.load_state_dict(within.state_dict())
    assert [layer.attention_group for layer in within.stack.layers] == ["dst_etype", "dst_etype"]
    g64 = HeteroGraph(g.num_nodes_dict, g.edge_index_dict, {t: v.to_dense().double() for t, v in g.x.items()})
    out_within, out_all = within(g64), over_all(g64)
    assert not torch.allclose(out_within, out_all)
    with pytest.raises(ValueError, match="attention must be 'all' or 'relation'"):
        RGNN(COUNTS, 5, 2, model="rgat", attention="edge")

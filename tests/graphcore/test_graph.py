import pytest
import torch

import graphcore as gc
from graphcore import HeteroGraph


def small_graph() -> HeteroGraph:
    return HeteroGraph({"paper": 4, "author": 3},
                       {("author", "writes", "paper"): torch.tensor([[0, 1, 2, 2], [0, 0, 1, 3]]),
                        ("paper", "cites", "paper"): torch.tensor([[1, 2], [0, 0]]),
                        ("paper", "empty", "author"): torch.zeros(2, 0, dtype=torch.long)})


def test_counts_and_schema():
    g = small_graph()
    assert g.node_types == ("paper", "author")
    assert g.num_nodes() == 7 and g.num_nodes("author") == 3
    assert g.num_edges() == 6 and g.num_edges(("paper", "empty", "author")) == 0
    assert g.node_offset("author") == 4
    meta = g.metagraph()
    assert set(meta.edges(keys=True)) == {("author", "paper", "writes"), ("paper", "paper", "cites"),
                                          ("paper", "author", "empty")}


def test_repr_is_readable():
    text = repr(small_graph())
    assert text.startswith("HeteroGraph(num_nodes=7, num_edges=6, node_types=2, relations=3")
    assert "('author', 'writes', 'paper'): 4 edges" in text


def test_repr_abbreviates_many_relations():
    g = HeteroGraph({"n": 2}, {("n", f"r{i}", "n"): torch.tensor([[0], [1]]) for i in range(20)})
    assert "... 8 more relations" in repr(g)


def test_add_reverse_edges():
    g = small_graph().add_reverse_edges()
    assert g.num_relations == 6 and g.num_edges() == 12
    assert torch.equal(g.edge_index(("paper", "rev_writes", "author")), torch.tensor([[0, 0, 1, 3], [0, 1, 2, 2]]))
    with pytest.raises(ValueError, match="already exists"):
        HeteroGraph({"n": 2}, {("n", "r", "n"): torch.tensor([[0], [1]]),
                               ("n", "rev_r", "n"): torch.tensor([[1], [0]])}).add_reverse_edges()


def test_to_device_and_equals():
    g = small_graph()
    h = g.to("cpu")
    assert h is not g and h.equals(g) and h.device.type == "cpu"


def test_stack_unstack_round_trip():
    g = small_graph()
    x = {"paper": torch.randn(4, 3), "author": torch.randn(3, 3)}
    stacked = g.stack(x)
    assert stacked.shape == (7, 3)
    back = g.unstack(stacked)
    assert torch.equal(back["paper"], x["paper"]) and torch.equal(back["author"], x["author"])
    with pytest.raises(ValueError, match="missing"):
        g.stack({"paper": x["paper"]})
    with pytest.raises(ValueError, match="one feature shape"):
        g.stack({"paper": torch.randn(4, 3), "author": torch.randn(3, 5)})


@pytest.mark.parametrize("edges, message", [
    ({("a", "r", "b"): torch.tensor([[0], [1]], dtype=torch.int32)}, r"relation \('a', 'r', 'b'\) must have dtype torch.int64"),
    ({("a", "r", "b"): torch.tensor([0, 1])}, r"relation \('a', 'r', 'b'\) must have shape \[2, E\], got \[2\]"),
    ({("a", "r", "b"): torch.tensor([[0, 1, 2], [0, 0, 0]])}, r"source id 2 at edge 2 is out of range for node type 'a'"),
    ({("a", "r", "b"): torch.tensor([[0, 0], [0, -1]])}, r"destination id -1 at edge 1 is out of range for node type 'b'"),
    ({("a", "r", "zz"): torch.tensor([[0], [0]])}, r"relation \('a', 'r', 'zz'\): unknown destination node type 'zz'"),
    ({("a", "r", "b"): [[0], [1]]}, r"must be a torch.Tensor or numpy array"),
])
def test_bad_edges_raise_with_location(edges, message):
    with pytest.raises(gc.GraphError, match=message):
        HeteroGraph({"a": 2, "b": 3}, edges)


def test_bad_features_raise():
    edges = {("a", "r", "b"): torch.tensor([[0], [1]])}
    with pytest.raises(ValueError, match="features of node type 'b' have 2 rows but the type has 3 nodes"):
        HeteroGraph({"a": 2, "b": 3}, edges, x={"b": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="unknown node type 'c'"):
        HeteroGraph({"a": 2, "b": 3}, edges, x={"c": torch.randn(2, 4)})


def test_bad_node_counts_and_relations():
    with pytest.raises(ValueError, match="negative node count"):
        HeteroGraph({"a": -1}, {})
    with pytest.raises(ValueError, match="string triples"):
        HeteroGraph({"a": 1}, {("a", "r"): torch.zeros(2, 0, dtype=torch.long)})


def test_graph_errors_are_value_errors():
    assert issubclass(gc.GraphError, ValueError) and issubclass(gc.GraphError, gc.GraphcoreError)


def test_num_nodes_unknown_type():
    with pytest.raises(ValueError, match="unknown node type 'x'"):
        small_graph().num_nodes("x")

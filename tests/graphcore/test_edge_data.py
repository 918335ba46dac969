"""Edge data: validated with the graph, permuted with the edges, carried by every converter, and
compiled as an edge-domain input that is read per call and differentiated (a weighted R-GCN)."""
import re

import networkx as nx
import pytest
import torch

import graphcore as gc
from graphcore import ops
from graphcore.testing import edge_case_graphs

BASE = edge_case_graphs()["mixed"]


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


def with_edge_data(g: gc.HeteroGraph, seed: int = 0, requires_grad: bool = False) -> gc.HeteroGraph:
    """``g`` with an ``edge_weight`` [E_r] and an ``edge_attr`` [E_r, 2] on every relation."""
    gen = torch.Generator().manual_seed(seed)
    weight = {r: torch.rand(g.num_edges(r), generator=gen, dtype=torch.float64).requires_grad_(requires_grad)
              for r in g.relations}
    attr = {r: torch.randn(g.num_edges(r), 2, generator=gen, dtype=torch.float64) for r in g.relations}
    return gc.HeteroGraph(g.num_nodes_dict, g.edge_index_dict, None, {"edge_weight": weight, "edge_attr": attr})


class WeightedRGCN(torch.nn.Module):
    r""":math:`h_v' = \sum_{(u, r, v)} w_{uv} \, h_u W_r + \sum (a_{uv} \cdot q)` : an edge weight scales
    each message; an edge attribute adds a learned projection of it."""

    def __init__(self, num_relations: int, d_in: int = 4, d_out: int = 3):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(num_relations, d_in, d_out))
        self.q = torch.nn.Parameter(torch.randn(2, d_out))

    def forward(self, g, x):
        msg = ops.typed_linear(g, ops.gather(g, x, by="src"), self.weight, by="etype")
        msg = msg * ops.edge_data(g, "edge_weight") + ops.linear(ops.edge_data(g, "edge_attr"), self.q)
        return ops.aggregate(g, msg, reduce="sum")


def test_bad_edge_data_is_refused_with_the_relation_named():
    r = BASE.relations[0]
    good = {rel: torch.ones(BASE.num_edges(rel)) for rel in BASE.relations}
    with pytest.raises(gc.GraphError, match=re.escape(f"edge data 'w' of relation {r} has 3 rows but the relation "
                                                      f"has {BASE.num_edges(r)} edges")):
        gc.HeteroGraph(BASE.num_nodes_dict, BASE.edge_index_dict, None, {"w": {**good, r: torch.ones(3)}})
    with pytest.raises(gc.GraphError, match="must be floating point, got torch.int64"):
        gc.HeteroGraph(BASE.num_nodes_dict, BASE.edge_index_dict, None,
                       {"w": {**good, r: torch.ones(BASE.num_edges(r), dtype=torch.int64)}})
    with pytest.raises(gc.GraphError, match="has no tensor for relations"):
        gc.HeteroGraph(BASE.num_nodes_dict, BASE.edge_index_dict, None, {"w": {r: good[r]}})
    with pytest.raises(gc.GraphError, match="one dtype and row shape for all relations"):
        gc.HeteroGraph(BASE.num_nodes_dict, BASE.edge_index_dict, None,
                       {"w": {**good, r: torch.ones(BASE.num_edges(r), 2)}})
    with pytest.raises(gc.GraphError, match="must have dtype torch.int64, got torch.float64"):
        gc.HeteroGraph({"a": 2}, {("a", "r", "a"): torch.tensor([[0.0, 1.0], [1.0, 0.0]])})
    with pytest.raises(gc.GraphError, match="has no edge data 'nope'"):
        ops.edge_data(with_edge_data(BASE), "nope")


def test_layout_permutes_edge_data_with_the_edges():
    g = with_edge_data(BASE)
    values = g.layout.edge_values("edge_attr")
    flat = torch.cat([g.edge_data["edge_attr"][r] for r in g.relations])
    src = torch.cat([g.edge_index(r)[0] + g.node_offset(r[0]) for r in g.relations])
    dst = torch.cat([g.edge_index(r)[1] + g.node_offset(r[2]) for r in g.relations])
    perm = g.layout.edge_perm
    torch.testing.assert_close(values, flat[perm])
    assert torch.equal(g.layout.src, src[perm]) and torch.equal(g.layout.dst, dst[perm])
    assert ops.edge_data(g, "edge_weight").shape == (g.num_edges(), 1)  # [E_r] fields scale message rows


def test_edge_data_survives_reverse_edges_copies_and_every_converter(tmp_path):
    g = with_edge_data(BASE)
    rev = g.add_reverse_edges()
    for (s, r, d) in g.relations:
        assert torch.equal(rev.edge_data["edge_weight"][(d, "rev_" + r, s)], g.edge_data["edge_weight"][(s, r, d)])
    assert g.to("cpu").equals(g)
    back = gc.from_pyg(gc.to_pyg(g))
    assert back.equals(g) and set(back.edge_data) == {"edge_weight", "edge_attr"}
    assert gc.load_npz(gc.save_npz(g, tmp_path / "g.npz")).equals(g)
    other = with_edge_data(BASE, seed=1)
    assert not other.equals(g)  # equals compares edge data


def test_networkx_edge_attributes_become_edge_data():
    graph = nx.MultiDiGraph()
    graph.add_nodes_from([(0, {"ntype": "a"}), (1, {"ntype": "a"}), (2, {"ntype": "b"})])
    graph.add_edge(0, 2, etype="to", weight=0.5)
    graph.add_edge(1, 2, etype="to", weight=2.0)
    graph.add_edge(0, 1, etype="peer", weight=1.5)
    g = gc.from_networkx(graph, edge_attrs=("weight",))
    assert g.edge_data["weight"][("a", "to", "b")].tolist() == [0.5, 2.0]
    assert g.edge_data["weight"][("a", "peer", "a")].tolist() == [1.5]
    graph.add_edge(1, 0, etype="peer")
    with pytest.raises(gc.GraphError, match=r"edge \(1, 0\) has no 'weight' attribute"):
        gc.from_networkx(graph, edge_attrs=("weight",))


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_compiled_weighted_model_equals_eager_with_edge_gradients(backend):
    eager_graph, compiled_graph = with_edge_data(BASE, requires_grad=True), with_edge_data(BASE, requires_grad=True)
    model = WeightedRGCN(BASE.num_relations)
    compiled = gc.compile(model, backend=backend)
    x = torch.randn(BASE.num_nodes(), 4)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_eager, out_compiled = model(eager_graph, x1), compiled(compiled_graph, x2)
    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-10, atol=1e-12)
    probe = torch.randn_like(out_eager)
    w1 = list(eager_graph.edge_data["edge_weight"].values())
    w2 = list(compiled_graph.edge_data["edge_weight"].values())
    grads_eager = torch.autograd.grad((out_eager * probe).sum(), [x1, model.weight, model.q, *w1])
    grads_compiled = torch.autograd.grad((out_compiled * probe).sum(), [x2, model.weight, model.q, *w2])
    for a, b in zip(grads_compiled, grads_eager):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_compiled_model_reads_edge_data_on_every_call():
    g = with_edge_data(BASE)
    model = WeightedRGCN(BASE.num_relations)
    compiled = gc.compile(model, backend="cpu")
    x = torch.randn(BASE.num_nodes(), 4)
    with torch.no_grad():
        first = compiled(g, x)
        for field in g.edge_data["edge_weight"].values():
            field.mul_(3.0)  # same graph, new weights
        torch.testing.assert_close(compiled(g, x), model(g, x))
        assert not torch.allclose(compiled(g, x), first)
        other = with_edge_data(BASE, seed=5)  # same schema, another graph
        torch.testing.assert_close(compiled(other, x), model(other, x))


def test_edge_data_of_another_dtype_is_refused():
    g32 = gc.HeteroGraph(BASE.num_nodes_dict, BASE.edge_index_dict, None,
                         {"edge_weight": {r: torch.ones(BASE.num_edges(r), dtype=torch.float32) for r in BASE.relations},
                          "edge_attr": {r: torch.ones(BASE.num_edges(r), 2) for r in BASE.relations}})
    compiled = gc.compile(WeightedRGCN(BASE.num_relations), backend="cpu")
    with pytest.raises(gc.CompileError, match="edge data 'edge_weight' is torch.float32 but the model runs in "
                                              "torch.float64"):
        compiled(g32, torch.randn(BASE.num_nodes(), 4))

"""graphcore.compile on PyG's own layers: substituted by graphcore's, on views of PyG's parameters,
called the PyG way; equal to PyG's forward and gradients in fp64."""
import pytest
import torch
from torch_geometric.nn import FastRGCNConv, GATConv, GCNConv, GraphConv, HeteroConv, HGTConv, RGATConv, RGCNConv, SAGEConv

import graphcore as gc
from graphcore.testing import edge_case_graphs

GRAPHS = edge_case_graphs()
close = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


def homogeneous(g):
    """The graph as PyG's (edge_index, edge_type), in an order of its own (not graphcore's)."""
    L = g.layout
    order = torch.randperm(L.num_edges)
    return torch.stack([L.src, L.dst])[:, order], L.etype[order]


def randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def assert_grads_equal(out, ref, leaves):
    flat_out = torch.cat([o.reshape(-1) for o in out]) if isinstance(out, list) else out.reshape(-1)
    flat_ref = torch.cat([o.reshape(-1) for o in ref]) if isinstance(ref, list) else ref.reshape(-1)
    torch.testing.assert_close(flat_out, flat_ref, **close)
    probe = torch.randn_like(flat_ref)
    ours = torch.autograd.grad((flat_out * probe).sum(), leaves, allow_unused=True)
    theirs = torch.autograd.grad((flat_ref * probe).sum(), leaves, allow_unused=True)
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **close)


CONVS = {
    "rgcn_mean": lambda R: RGCNConv(6, 4, R),
    "rgcn_add_bases": lambda R: RGCNConv(6, 4, R, num_bases=2, aggr="add"),
    "rgcn_no_root": lambda R: RGCNConv(6, 4, R, root_weight=False, bias=False),
    "fast_rgcn_mean": lambda R: FastRGCNConv(6, 4, R),
    "rgat_heads": lambda R: RGATConv(6, 2, R, heads=3),
    "rgat_within_bases": lambda R: RGATConv(6, 3, R, num_bases=2, attention_mechanism="within-relation"),
}


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("conv", list(CONVS))
def test_homogeneous_layers_equal_pyg(graph, conv):
    g = GRAPHS[graph]
    pyg = randomise(CONVS[conv](g.num_relations))
    compiled = gc.compile(pyg, backend="torch")
    assert compiled.state_dict().keys() == pyg.state_dict().keys()
    assert all(a is b for a, b in zip(compiled.parameters(), pyg.parameters()))  # PyG's own tensors
    edge_index, edge_type = homogeneous(g)
    x = torch.randn(g.num_nodes(), 6, requires_grad=True)
    assert_grads_equal(compiled(x, edge_index, edge_type), pyg(x, edge_index, edge_type), [x, *pyg.parameters()])


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("heads, d_in, d_out", [(2, 6, 6), (3, 5, 6)])
def test_hgt_equals_pyg_on_dicts_and_heterodata(graph, heads, d_in, d_out):
    g = GRAPHS[graph]
    metadata = (list(g.node_types), list(reversed(g.relations)))  # PyG's relation order differs from the graph's
    pyg = randomise(HGTConv(d_in, d_out, metadata, heads=heads))
    compiled = gc.compile(pyg, backend="torch")
    x_dict = {t: torch.randn(g.num_nodes(t), d_in, requires_grad=True) for t in g.node_types}
    data = gc.to_pyg(g)
    # PyG's HGTConv is right only for an edge_index_dict in its metadata order (its HeteroLinear
    # assumes sorted types); graphcore maps relations by name, so any order gives that result
    ref = pyg(x_dict, {r: data[r].edge_index for r in metadata[1]})
    out = compiled(x_dict, data.edge_index_dict)
    assert list(out) == list(ref)  # PyG leaves out node types that receive no relation
    leaves = [*x_dict.values(), *pyg.parameters()]
    assert_grads_equal([out[t] for t in ref], [ref[t] for t in ref], leaves)
    for t, x in x_dict.items():
        data[t].x = x
    from_data = compiled(data)
    for t in ref:
        torch.testing.assert_close(from_data[t], ref[t], **close)


@pytest.mark.parametrize("inner, aggr", [(lambda: GraphConv(6, 4), "sum"), (lambda: SAGEConv(6, 4), "mean"),
                                         (lambda: GraphConv(6, 4, aggr="mean", bias=False), "sum")])
def test_hetero_conv_over_graph_and_sage_convs_equals_pyg(inner, aggr):
    g = GRAPHS["mixed"]
    pyg = randomise(HeteroConv({r: inner() for r in g.relations[1:]}, aggr=aggr))  # no layer for the first
    compiled = gc.compile(pyg, backend="torch")
    x_dict = {t: torch.randn(g.num_nodes(t), 6, requires_grad=True) for t in g.node_types}
    edges = gc.to_pyg(g).edge_index_dict
    out, ref = compiled(x_dict, edges), pyg(x_dict, edges)
    assert list(out) == list(ref)
    assert_grads_equal([out[t] for t in ref], [ref[t] for t in ref], [*x_dict.values(), *pyg.parameters()])


def test_native_backend_trains_rgat_like_pyg():
    g = GRAPHS["mixed"]
    pyg = randomise(RGATConv(6, 2, g.num_relations, heads=2))
    edge_index, edge_type = homogeneous(g)
    x = torch.randn(g.num_nodes(), 6, requires_grad=True)
    assert_grads_equal(gc.compile(pyg, backend="cpu")(x, edge_index, edge_type), pyg(x, edge_index, edge_type),
                       [x, *pyg.parameters()])


def test_the_graph_is_built_once_per_edge_tensors():
    g = GRAPHS["mixed"]
    compiled = gc.compile(RGCNConv(6, 4, g.num_relations), backend="torch")
    edge_index, edge_type = homogeneous(g)
    x = torch.randn(g.num_nodes(), 6)
    with torch.no_grad():
        compiled(x, edge_index, edge_type)
        compiled(x + 1, edge_index, edge_type)
        assert len(compiled._graphcore_graphs._graphs) == 1
        compiled(x, edge_index.clone(), edge_type)  # new tensors: a new graph (same schema, same plan)
        assert len(compiled._graphcore_graphs._graphs) == 2
        edge_index[0, 0] = (edge_index[0, 0] + 1) % g.num_nodes()  # an in-place edit is seen
        out = compiled(x, edge_index, edge_type)
    assert len(compiled._graphcore_graphs._graphs) == 3 and len(compiled._graphcore_plans) == 1
    torch.testing.assert_close(out, compiled._graphcore_original(x, edge_index, edge_type), **close)


def test_unsupported_configurations_are_refused_by_name():
    with pytest.raises(gc.CompileError, match="attention_mode='multiplicative-self-attention'"):
        gc.compile(RGATConv(4, 4, 2, attention_mode="multiplicative-self-attention", dim=2))
    with pytest.raises(gc.CompileError, match="RGATConv with concat=False"):
        gc.compile(RGATConv(4, 4, 2, heads=2, concat=False))
    with pytest.raises(gc.CompileError, match="RGCNConv with num_blocks=2"):
        gc.compile(RGCNConv(4, 4, 2, num_blocks=2))
    with pytest.raises(gc.CompileError, match=r"cannot substitute PyG's GCNConv \('conv'\)"):
        gc.compile(torch.nn.ModuleDict({"conv": GCNConv(4, 4)}))
    with pytest.raises(gc.CompileError, match=r"HeteroConv with a GATConv for \('a', 'r', 'b'\)"):
        with pytest.warns(UserWarning, match="do not get updated"):  # PyG's own: 'a' is no destination
            hetero = HeteroConv({("a", "r", "b"): GATConv(4, 4, add_self_loops=False)})
        gc.compile(hetero)
    with pytest.raises(gc.CompileError, match="one input size for all node types"):
        gc.compile(HGTConv({"a": 4, "b": 5}, 4, (["a", "b"], [("a", "r", "b")])))


def test_an_unsupported_configuration_falls_back_to_pyg():
    g = GRAPHS["mixed"]
    pyg = RGATConv(6, 2, g.num_relations, heads=2, attention_mode="multiplicative-self-attention")
    compiled = gc.compile(pyg, fallback="eager")
    edge_index, edge_type = homogeneous(g)
    x = torch.randn(g.num_nodes(), 6)
    with pytest.warns(UserWarning, match="fell back to eager.*attention_mode"):
        out = compiled(x, edge_index, edge_type)
    torch.testing.assert_close(out, pyg(x, edge_index, edge_type))


def test_bad_input_names_the_relation_or_type():
    g = GRAPHS["mixed"]
    compiled = gc.compile(RGCNConv(6, 4, g.num_relations), backend="torch")
    edge_index, edge_type = homogeneous(g)
    x = torch.randn(g.num_nodes(), 6)
    bad = edge_type.clone()
    bad[3] = g.num_relations
    with pytest.raises(gc.GraphError, match=rf"edge_type {g.num_relations} at edge 3 is out of range.*"
                                            rf"num_relations={g.num_relations}"):
        compiled(x, edge_index, bad)
    hgt = gc.compile(HGTConv(6, 6, (list(g.node_types), list(g.relations))), backend="torch")
    x_dict = {t: torch.randn(g.num_nodes(t), 6) for t in g.node_types if t != "c"}
    with pytest.raises(gc.GraphError, match=r"x_dict has no features for node type 'c'.*\('b', 'r3', 'c'\)"):
        hgt(x_dict, gc.to_pyg(g).edge_index_dict)
    with pytest.raises(gc.GraphError, match=r"HGTConv layers takes \(x_dict, edge_index_dict\)"):
        hgt(torch.randn(g.num_nodes(), 6), edge_index, edge_type)
    with pytest.raises(gc.GraphError, match="a compiled PyG HGTConv is called the PyG way"):
        hgt(g, torch.randn(g.num_nodes(), 6))
    with pytest.raises(gc.GraphError, match=r"got dict; stack a PyG x_dict .* g.stack\(x_dict\)"):
        gc.compile(gc.nn.HGT(6, 6, g.num_node_types, g.num_relations))(g, {t: torch.randn(1, 6) for t in "abc"})

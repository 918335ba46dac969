"""graphcore.compile on PyG ``to_hetero`` models: their per-relation GraphConv/SAGEConv copies run as
graphcore's HeteroConv-like layer, their per-type Linear copies as one typed linear, on views of PyG's
own parameters; equal to PyG's forward and gradients in fp64, and trained by Adam like an eager twin."""
import copy
import warnings

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, GraphConv, SAGEConv, to_hetero

import graphcore as gc

close = dict(rtol=1e-9, atol=1e-10)
NODES = {"a": 5, "b": 7, "c": 4}
RELATIONS = [("a", "r1", "b"), ("b", "r2", "b"), ("b", "r3", "a"), ("c", "r4", "b"), ("a", "empty", "a")]


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


class TwoLayers(torch.nn.Module):
    """conv -> ReLU -> [Linear] -> conv, the homogeneous model a PyG user converts with to_hetero."""

    def __init__(self, conv, with_lin: bool, d_in: int = 6, hidden: int = 8, d_out: int = 4):
        super().__init__()
        self.conv1, self.conv2 = conv(d_in, hidden), conv(hidden, d_out)
        self.lin = torch.nn.Linear(hidden, hidden) if with_lin else None

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        if self.lin is not None:
            x = self.lin(x)
        return self.conv2(x, edge_index)


class LinearFirst(torch.nn.Module):
    """Linear -> ReLU -> conv: every node type has rows for the conv, so a type that is only a
    source (to_hetero refuses it before a second conv) takes part."""

    def __init__(self, conv, d_in: int = 6, hidden: int = 8, d_out: int = 4):
        super().__init__()
        self.lin, self.conv = torch.nn.Linear(d_in, hidden), conv(hidden, d_out)

    def forward(self, x, edge_index):
        return self.conv(torch.relu(self.lin(x)), edge_index)


def graph_data(relations, nodes=NODES, seed: int = 0) -> HeteroData:
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    for t, n in nodes.items():
        data[t].x = torch.randn(n, 6, generator=gen)
    for s, r, d in relations:
        e = 0 if r == "empty" else 9
        data[s, r, d].edge_index = torch.stack([torch.randint(0, nodes[s], (e,), generator=gen),
                                                torch.randint(0, nodes[d], (e,), generator=gen)])
    return data


def converted(model: torch.nn.Module, relations, aggr: str, nodes=NODES) -> torch.fx.GraphModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyG warns about types that are no destination
        net = to_hetero(model, (list(nodes), relations), aggr=aggr)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


def assert_equal_with_grads(out: dict, ref: dict, leaves: list[torch.Tensor],
                            ref_leaves: list[torch.Tensor] | None = None) -> None:
    """Equal outputs, and equal gradients of a random probe of them with respect to ``leaves``
    (``ref_leaves`` for ``ref``, where it is a twin with parameters of its own)."""
    assert list(out) == list(ref)
    assert [t for t, v in out.items() if v is None] == [t for t, v in ref.items() if v is None]
    ref = {t: v for t, v in ref.items() if v is not None}
    for t in ref:
        torch.testing.assert_close(out[t], ref[t], **close)
    probe = {t: torch.randn_like(v) for t, v in ref.items()}
    ours = torch.autograd.grad(sum((out[t] * probe[t]).sum() for t in ref), leaves, allow_unused=True)
    theirs = torch.autograd.grad(sum((ref[t] * probe[t]).sum() for t in ref), ref_leaves or leaves,
                                 allow_unused=True)
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **close)


CONVS = {"sage": SAGEConv, "graph": GraphConv, "graph_mean": lambda i, o: GraphConv(i, o, aggr="mean"),
         "sage_no_root": lambda i, o: SAGEConv(i, o, root_weight=False)}
TWO_LAYER_RELATIONS = RELATIONS[:3] + RELATIONS[4:]  # a and b are destinations; one relation has no edges


@pytest.mark.parametrize("aggr", ["sum", "mean"])
@pytest.mark.parametrize("with_lin", [False, True])
@pytest.mark.parametrize("conv", list(CONVS))
def test_two_layer_to_hetero_equals_pyg(conv, with_lin, aggr):
    nodes = {"a": 5, "b": 7}
    net = converted(TwoLayers(CONVS[conv], with_lin), TWO_LAYER_RELATIONS, aggr, nodes)
    compiled = gc.compile(net, backend="torch")
    data = graph_data(TWO_LAYER_RELATIONS, nodes)
    x_dict = {t: x.requires_grad_() for t, x in data.x_dict.items()}
    assert all(a is b for a, b in zip(compiled.parameters(), net.parameters()))  # PyG's own tensors
    assert compiled.state_dict().keys() == net.state_dict().keys()
    assert_equal_with_grads(compiled(x_dict, data.edge_index_dict), net(x_dict, data.edge_index_dict),
                            [*x_dict.values(), *net.parameters()])


@pytest.mark.parametrize("aggr", ["sum", "mean"])
@pytest.mark.parametrize("conv", ["sage", "graph"])
def test_a_source_only_type_and_a_heterodata_call(conv, aggr):
    net = converted(LinearFirst(CONVS[conv]), RELATIONS, aggr)  # 'c' is only a source
    compiled = gc.compile(net, backend="cpu")
    data = graph_data(RELATIONS)
    for store in data.node_stores:
        store.x.requires_grad_()
    ref = net(data.x_dict, data.edge_index_dict)
    assert ref["c"] is None  # PyG's output for a type that is no destination
    assert_equal_with_grads(compiled(data), ref, [*data.x_dict.values(), *net.parameters()])
    text = compiled.explain()  # the substitution, by the PyG module paths
    assert "1 compiled regions, 0 graph breaks" in text
    assert "conv.nbr_weight@graphcore" in text and "lin.weight@graphcore" in text


def test_adam_steps_on_the_compiled_model_train_pyg_parameters_like_eager():
    nodes = {"a": 5, "b": 7}
    net = converted(TwoLayers(SAGEConv, with_lin=True), TWO_LAYER_RELATIONS, "mean", nodes)
    twin, initial = copy.deepcopy(net), copy.deepcopy(net.state_dict())
    compiled = gc.compile(net, backend="cpu")
    opt, opt_twin = torch.optim.Adam(compiled.parameters(), lr=0.05), torch.optim.Adam(twin.parameters(), lr=0.05)
    data = graph_data(TWO_LAYER_RELATIONS, nodes)
    for _ in range(3):
        for model, optimizer in ((compiled, opt), (twin, opt_twin)):
            optimizer.zero_grad()
            sum((v ** 2).sum() for v in model(data.x_dict, data.edge_index_dict).values()).backward()
            optimizer.step()
    for (name, p), q in zip(net.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(p, q, **close, msg=name)
    assert not torch.equal(net.conv2.a__r1__b.lin_l.weight, initial["conv2.a__r1__b.lin_l.weight"])  # it trained
    assert len(compiled._graphcore_graphs._graphs) == 1 and len(compiled._graphcore_plans) <= 2  # graph reused


def test_the_graph_is_built_once_for_the_same_edge_tensors():
    net = converted(LinearFirst(SAGEConv), RELATIONS, "sum")
    compiled = gc.compile(net, backend="torch")
    data = graph_data(RELATIONS)
    edges = data.edge_index_dict
    with torch.no_grad():
        compiled(data.x_dict, edges)
        compiled({t: x + 1 for t, x in data.x_dict.items()}, edges)
        assert len(compiled._graphcore_graphs._graphs) == 1
        compiled(data.x_dict, {r: e.clone() for r, e in edges.items()})
    assert len(compiled._graphcore_graphs._graphs) == 2 and len(compiled._graphcore_plans) == 1


def test_bad_input_and_unsupported_layers_are_named():
    net = converted(LinearFirst(SAGEConv), RELATIONS, "sum")
    compiled = gc.compile(net, backend="torch")
    data = graph_data(RELATIONS)
    x_dict = {t: x for t, x in data.x_dict.items() if t != "c"}
    with pytest.raises(gc.GraphError, match=r"x_dict has no features for node type 'c'.*\('c', 'r4', 'b'\)"):
        compiled(x_dict, data.edge_index_dict)
    edges = {r: e for r, e in data.edge_index_dict.items() if r != ("a", "empty", "a")}
    with pytest.raises(gc.GraphError, match=r"relation \('a', 'empty', 'a'\) is not in edge_index_dict"):
        compiled(data.x_dict, edges)
    gat = converted(LinearFirst(lambda i, o: GATConv(i, o, add_self_loops=False)), RELATIONS, "sum")
    with pytest.raises(gc.CompileError, match=r"to_hetero layer 'conv' with a GATConv for \('a', 'r1', 'b'\)"):
        gc.compile(gat)
    with pytest.raises(gc.CompileError, match=r"to_hetero layer 'conv' with to_hetero\(aggr='max'\)"):
        gc.compile(converted(LinearFirst(SAGEConv), RELATIONS, "max"))


@pytest.mark.parametrize("norm", [lambda: torch.nn.LayerNorm(6), lambda: torch.nn.BatchNorm1d(6)])
def test_per_type_norm_copies_run_eagerly_between_regions(norm):
    class NormFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.conv = norm(), SAGEConv(6, 4)

        def forward(self, x, edge_index):
            return self.conv(self.norm(x), edge_index)

    net = converted(NormFirst(), RELATIONS, "sum")
    twin = copy.deepcopy(net)
    compiled = gc.compile(net, backend="torch")
    data = graph_data(RELATIONS)
    for store in data.node_stores:
        store.x.requires_grad_()
    out, ref = compiled(data), twin(data.x_dict, data.edge_index_dict)
    xs = [*data.x_dict.values()]
    assert_equal_with_grads(out, ref, [*xs, *net.parameters()], [*xs, *twin.parameters()])  # the norms' too
    for (name, p), q in zip(net.state_dict().items(), twin.state_dict().values()):  # BatchNorm's statistics too
        torch.testing.assert_close(p, q, **close, msg=name)
    assert "1 graph breaks" in compiled.explain() and "to_hetero 'norm'" in compiled.explain()


def test_types_and_relations_outside_the_metadata_are_ignored_like_pyg():
    net = converted(LinearFirst(GraphConv), RELATIONS[:3], "mean", {"a": 5, "b": 7})
    data = graph_data(RELATIONS)  # with a type 'c' and relations ('c', 'r4', 'b'), ('a', 'empty', 'a') more
    compiled = gc.compile(net, backend="torch")
    for store in data.node_stores:
        store.x.requires_grad_()
    assert_equal_with_grads(compiled(data), net(data.x_dict, data.edge_index_dict),
                            [data["a"].x, data["b"].x, *net.parameters()])
    grad_c, = torch.autograd.grad(sum(v.sum() for v in compiled(data).values()), data["c"].x)
    assert not grad_c.any()  # PyG never reads 'c' (its gradient is None there): graphcore's is zero


def test_an_unsupported_to_hetero_model_falls_back_to_pyg():
    net = converted(LinearFirst(SAGEConv), RELATIONS, "max")
    compiled = gc.compile(net, fallback="eager")
    data = graph_data(RELATIONS)
    with pytest.warns(UserWarning, match="fell back to eager"):
        out = compiled(data)
    ref = net(data.x_dict, data.edge_index_dict)
    for t in ("a", "b"):
        torch.testing.assert_close(out[t], ref[t], **close)


def test_a_to_hetero_submodule_keeps_its_module_path():
    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = converted(LinearFirst(SAGEConv), RELATIONS, "sum")

        def forward(self, x_dict, edge_index_dict):
            return self.enc(x_dict, edge_index_dict)

    net = Outer()
    compiled = gc.compile(net, backend="torch")
    data = graph_data(RELATIONS)
    for store in data.node_stores:
        store.x.requires_grad_()
    assert_equal_with_grads(compiled(data), net(data.x_dict, data.edge_index_dict),
                            [*data.x_dict.values(), *net.parameters()])
    text = compiled.explain()
    assert "enc.conv.nbr_weight@graphcore" in text and "enc.lin.weight@graphcore" in text


def test_an_edge_argument_to_hetero_took_for_node_level_is_named():
    class Misnamed(torch.nn.Module):  # to_hetero reads 'e' as per-node-type: no relation gets an edge_index
        def __init__(self):
            super().__init__()
            self.conv = SAGEConv(6, 4)

        def forward(self, x, e):
            return self.conv(x, e)

    with pytest.raises(gc.CompileError, match=r"'conv' has copies \['a__r1__b', .* for no relation .* edge_index"):
        gc.compile(converted(Misnamed(), RELATIONS, "sum"))

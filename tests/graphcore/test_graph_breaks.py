"""Graph breaks: what the compiler cannot express runs eagerly between compiled regions."""
import inspect
import warnings

import pytest
import torch
from torch import nn

import graphcore as gc
from graphcore.testing import edge_case_graphs

GRAPHS = edge_case_graphs()
close = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


class NormedRGAT(nn.Module):
    def __init__(self, num_relations: int):
        super().__init__()
        self.a = gc.nn.RGAT(5, 3, num_relations, heads=2)
        self.norm = nn.LayerNorm(6)
        self.b = gc.nn.RGAT(6, 4, num_relations)

    def forward(self, g, x):
        h = self.norm(self.a(g, x).relu())
        return self.b(g, h)


NORM_LINE = f"{__file__}:{inspect.getsourcelines(NormedRGAT.forward)[1] + 1}"


def same_forward_and_grads(model, compiled, g, x):
    """``compiled`` (of ``model`` or of a twin with equal weights) equals ``model`` on ``(g, x)``."""
    x2 = x.detach().clone().requires_grad_()
    out, ref = compiled(g, x), model(g, x2)
    torch.testing.assert_close(out, ref, **close)
    probe = torch.randn_like(ref)
    ours = torch.autograd.grad((out * probe).sum(), [x, *compiled.parameters()])
    theirs = torch.autograd.grad((ref * probe).sum(), [x2, *model.parameters()])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **close)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_layer_norm_between_two_rgat_layers_is_one_break(backend):
    g = GRAPHS["mixed"]
    model = NormedRGAT(g.num_relations)
    compiled = gc.compile(model, backend=backend)
    same_forward_and_grads(model, compiled, g, torch.randn(g.num_nodes(), 5, requires_grad=True))
    text = compiled.explain()
    assert "2 compiled regions, 1 graph breaks" in text
    assert f"break 1: layer_norm at {NORM_LINE} runs eagerly" in text
    assert text.count("graphcore plan:") == 2  # each region's plan decisions follow


def test_fullgraph_turns_the_break_into_an_error_naming_op_and_line():
    g = GRAPHS["mixed"]
    with pytest.raises(gc.CompileError, match=rf"cannot compile 'layer_norm'(.|\n)*op: layer_norm\n  at: {NORM_LINE}"):
        gc.compile(NormedRGAT(g.num_relations), fullgraph=True)(g, torch.randn(g.num_nodes(), 5))


class Mixed(nn.Module):
    """Linear (lowered), BatchNorm and an embedding lookup (eager), a residual across the break."""

    def __init__(self, g):
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.emb = nn.Embedding(g.num_node_types, 6)
        self.register_buffer("node_type", g.layout.node_type.clone())
        self.conv = gc.nn.RGCN(6, 6, g.num_relations, aggr="mean")
        self.bn = nn.BatchNorm1d(6)
        self.out = gc.nn.RGCN(6, 3, g.num_relations)

    def forward(self, g, x):
        h = self.lin(x) + self.emb(self.node_type)
        h = self.conv(g, h).relu()
        return self.out(g, self.bn(h) + h)


@pytest.mark.parametrize("training", [True, False])
def test_linear_batchnorm_and_embedding(training):
    g = GRAPHS["dense"]
    model = Mixed(g).train(training)
    twin = Mixed(g).train(training)
    twin.load_state_dict(model.state_dict())
    compiled = gc.compile(model, backend="torch")
    for _ in range(2):  # BatchNorm's running statistics update on every call, as in eager mode
        x = torch.randn(g.num_nodes(), 4, requires_grad=True)
        same_forward_and_grads(twin, compiled, g, x)
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, dict(twin.named_buffers())[name], msg=name)
    text = compiled.explain()
    assert "1 graph breaks" in text and "break 1: BatchNorm1d 'bn' at " in text and "lin.weight.T" in text


class Picky(nn.Module):
    """Python logic on tensor values: fine eagerly, not compilable."""

    def __init__(self):
        super().__init__()
        self.conv = gc.nn.RGCN(3, 3, 1)

    def forward(self, g, x):
        h = self.conv.root.sum() * x if g.num_relations != 1 else self.conv(g, x)
        if g.num_relations == 1 and h.sum() > 0:
            h = -h
        return h


def test_data_dependent_python_logic_is_a_clear_compile_error():
    g = GRAPHS["one_relation"]
    with pytest.raises(gc.CompileError, match=r"'TensorBase.__bool__' cannot run between compiled regions: it needs tensor values(.|\n)*"
                       r"test_graph_breaks.py:\d+"):
        gc.compile(Picky())(g, torch.randn(g.num_nodes(), 3))


def test_fallback_runs_one_schema_eagerly_and_still_compiles_the_others():
    model = Picky()
    compiled = gc.compile(model, fallback="eager", backend="torch")
    g1, g3 = GRAPHS["one_relation"], edge_case_graphs(seed=1)["one_relation"]
    x = torch.randn(g1.num_nodes(), 3)
    with pytest.warns(UserWarning, match="fell back to eager"):
        torch.testing.assert_close(compiled(g1, x), model(g1, x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(compiled(g3, torch.randn(g3.num_nodes(), 3)).shape, torch.Size([g3.num_nodes(), 3]))
    assert "fell back to eager" in compiled.explain()
    model.conv = gc.nn.RGCN(3, 3, 5)
    g = GRAPHS["mixed"]
    x = torch.randn(g.num_nodes(), 3)
    out = compiled(g, x)  # another schema compiles: the model was not switched to eager for good
    torch.testing.assert_close(out, model(g, x), **close)
    assert "graphcore plan:" in compiled.explain()


class LenOfGraph(nn.Module):
    def forward(self, g, x):
        return x * len(g.node_types) + len(g)  # the real HeteroGraph has no len() either


def test_fallback_catches_failures_that_are_not_compile_errors():
    g = GRAPHS["mixed"]
    with pytest.raises(gc.CompileError, match="TypeError"):
        gc.compile(LenOfGraph())(g, torch.randn(g.num_nodes(), 3))
    with pytest.warns(UserWarning, match="fell back to eager.*TypeError"), pytest.raises(TypeError):
        gc.compile(LenOfGraph(), fallback="eager")(g, torch.randn(g.num_nodes(), 3))


class SizedConstant(nn.Module):
    """A tensor made in forward from the graph's size: the break is specialised to that size."""

    def __init__(self, num_relations: int):
        super().__init__()
        self.conv = gc.nn.RGCN(3, 3, num_relations)

    def forward(self, g, x):
        h = self.conv(g, x)
        return h + torch.arange(h.size(0), dtype=h.dtype).unsqueeze(1)


def test_a_break_holding_a_row_count_is_retraced_for_another_graph_size():
    g1, g2 = GRAPHS["one_relation"], edge_case_graphs(seed=5)["one_relation"]
    g2 = gc.HeteroGraph({"n": 12}, {g2.relations[0]: g2.edge_index(g2.relations[0])})
    model = SizedConstant(1)
    compiled = gc.compile(model, backend="torch")
    for g in (g1, g2, g1):
        x = torch.randn(g.num_nodes(), 3)
        torch.testing.assert_close(compiled(g, x), model(g, x), **close)
    assert len(compiled._graphcore_plans) == 2  # the first size under the schema, the other beside it


def test_compiled_pyg_models_pickle_and_copy():
    import copy

    from torch_geometric.nn import RGCNConv

    g = GRAPHS["mixed"]
    conv = RGCNConv(4, 3, g.num_relations)
    compiled = gc.compile(conv, backend="torch", fullgraph=True)
    twin = copy.deepcopy(compiled)
    L = g.layout
    x, edge_index = torch.randn(g.num_nodes(), 4), torch.stack([L.src, L.dst])
    torch.testing.assert_close(twin(x, edge_index, L.etype), conv(x, edge_index, L.etype), **close)
    assert twin._graphcore_options["fullgraph"] and twin.state_dict().keys() == conv.state_dict().keys()

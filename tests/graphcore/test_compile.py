"""graphcore.compile: same results and gradients as eager, same parameters, clear errors."""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

import graphcore as gc
from graphcore import ops
from graphcore.compile import CompiledMixin
from graphcore.testing import edge_case_graphs, layer_zoo

GRAPHS = edge_case_graphs()


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


def assert_same_forward_and_grads(model, compiled, g, x):
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out_eager, out_compiled = model(g, x1), compiled(g, x2)
    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-10, atol=1e-12)
    probe = torch.randn_like(out_eager)
    params = [p for p in model.parameters() if p.requires_grad]
    grads_eager = torch.autograd.grad((out_eager * probe).sum(), [x1, *params], allow_unused=True)
    grads_compiled = torch.autograd.grad((out_compiled * probe).sum(), [x2, *params], allow_unused=True)
    for a, b in zip(grads_compiled, grads_eager):
        if b is None:
            assert a is None or torch.count_nonzero(a) == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("layer", list(layer_zoo(GRAPHS["mixed"])))
def test_compiled_layers_equal_eager(graph, layer):
    g = GRAPHS[graph]
    model = layer_zoo(g)[layer]
    compiled = gc.compile(model, backend="torch")
    assert_same_forward_and_grads(model, compiled, g, torch.randn(g.num_nodes(), model.in_channels))
    with torch.no_grad():  # the inference plan (no autodiff) too
        torch.testing.assert_close(compiled(g, torch.ones(g.num_nodes(), model.in_channels)),
                                   model(g, torch.ones(g.num_nodes(), model.in_channels)), rtol=1e-10, atol=1e-12)


class TwoLayer(torch.nn.Module):
    def __init__(self, g, dropout=0.0):
        super().__init__()
        self.conv1 = gc.nn.RGAT(6, 4, g.num_relations, heads=2)
        self.conv2 = gc.nn.RGCN(8, 3, g.num_relations, aggr="mean")
        self.dropout = dropout

    def forward(self, g, x):
        h = F.elu(self.conv1(g, x))
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(g, h)


def test_two_layer_stack_equals_eager():
    g = GRAPHS["mixed"]
    model = TwoLayer(g)
    assert_same_forward_and_grads(model, gc.compile(model), g, torch.randn(g.num_nodes(), 6))


def test_compiled_module_shares_parameters_and_state_dict():
    g = GRAPHS["mixed"]
    model = TwoLayer(g)
    compiled = gc.compile(model)
    assert isinstance(compiled, TwoLayer)
    assert list(compiled.state_dict()) == list(model.state_dict())
    assert all(a is b for a, b in zip(compiled.parameters(), model.parameters()))
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.1)
    x = torch.randn(g.num_nodes(), 6)
    before = model.conv1.weight.detach().clone()
    loss = compiled(g, x).pow(2).sum()
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.conv1.weight, before), "an optimizer step on the compiled module trains the model"
    compiled.load_state_dict(model.state_dict())


def test_training_reduces_the_loss():
    g = GRAPHS["dense"]
    torch.manual_seed(0)
    model = gc.nn.RGAT(4, 3, g.num_relations)
    compiled = gc.compile(model)
    x, target = torch.randn(g.num_nodes(), 4), torch.randn(g.num_nodes(), 3)
    optimizer = torch.optim.Adam(compiled.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = F.mse_loss(compiled(g, x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_dropout_in_train_mode_and_identity_in_eval():
    g = GRAPHS["mixed"]
    model = TwoLayer(g, dropout=0.5)
    compiled = gc.compile(model)
    x = torch.randn(g.num_nodes(), 6)
    compiled.train()
    torch.manual_seed(3)
    a = compiled(g, x.clone().requires_grad_())
    torch.manual_seed(3)
    b = compiled(g, x.clone().requires_grad_())
    torch.testing.assert_close(a, b)  # masks come from torch's RNG: seeding reproduces them
    torch.manual_seed(4)
    assert not torch.allclose(a, compiled(g, x.clone().requires_grad_()))
    compiled.eval()
    model.eval()
    torch.testing.assert_close(compiled(g, x), model(g, x), rtol=1e-10, atol=1e-12)


class EdgeTypeBiasGAT(torch.nn.Module):
    """The README tutorial's user layer: a relational GAT whose score gets a learned bias per relation."""

    def __init__(self, d_in, d_out, num_relations):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(num_relations, d_in, d_out) * 0.3)
        self.att = torch.nn.Parameter(torch.randn(num_relations, d_out, 1) * 0.3)
        self.rel_bias = torch.nn.Parameter(torch.randn(num_relations, 1) * 0.3)

    def forward(self, g, x):
        h = ops.typed_linear(g, ops.gather(g, x, by="src"), self.weight, by="etype")
        score = ops.typed_linear(g, h, self.att, by="etype") + ops.gather(g, self.rel_bias, by="etype")
        alpha = ops.edge_softmax(g, F.leaky_relu(score, 0.2))
        return F.relu(ops.aggregate(g, h * alpha))


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_user_defined_layer_compiles_and_matches(graph):
    g = GRAPHS[graph]
    model = EdgeTypeBiasGAT(5, 4, g.num_relations)
    compiled = gc.compile(model)
    assert_same_forward_and_grads(model, compiled, g, torch.randn(g.num_nodes(), 5))
    assert "reorder" in compiled.explain()


class Unsupported(torch.nn.Module):
    def forward(self, g, x):
        return torch.cumsum(x, dim=0)


def test_unsupported_op_names_the_op_and_the_line():
    g = GRAPHS["mixed"]
    with pytest.raises(gc.CompileError, match=r"cumsum(.|\n)*test_compile.py:\d+"):
        gc.compile(Unsupported())(g, torch.randn(g.num_nodes(), 3))


def test_fallback_eager_warns_and_runs():
    g = GRAPHS["mixed"]
    compiled = gc.compile(Unsupported(), fallback="eager")
    x = torch.randn(g.num_nodes(), 3)
    with pytest.warns(UserWarning, match="fell back to eager"):
        out = compiled(g, x)
    torch.testing.assert_close(out, torch.cumsum(x, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled(g, x)  # warns once, then stays eager


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown passes"):
        gc.compile(gc.nn.RGCN(2, 2, 1), passes=["speed"])
    with pytest.raises(ValueError, match="fallback must be"):
        gc.compile(gc.nn.RGCN(2, 2, 1), fallback="maybe")
    with pytest.raises(gc.CompileError, match="unknown backend"):
        gc.compile(gc.nn.RGCN(2, 2, 1), backend="tpu")
    g = GRAPHS["mixed"]
    compiled = gc.compile(gc.nn.RGCN(3, 2, g.num_relations))
    with pytest.raises(gc.GraphError, match="one row per node"):
        compiled(g, torch.randn(5, 3))


def test_dump_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHCORE_DUMP_DIR", str(tmp_path))
    g = GRAPHS["mixed"]
    with torch.no_grad():
        gc.compile(gc.nn.RGCN(3, 2, g.num_relations), backend="torch")(g, torch.randn(g.num_nodes(), 3))
    assert (tmp_path / "RGCN_plan0_infer" / "00_traced.txt").is_file()


def test_dumps_of_two_graphs_and_two_models_do_not_overwrite_each_other(tmp_path):
    for name in ("mixed", "one_relation"):
        g = GRAPHS[name]
        for model in (gc.nn.RGCN(3, 2, g.num_relations), gc.nn.RGCN(3, 2, g.num_relations)):
            with torch.no_grad():
                gc.compile(model, backend="torch", dump_dir=tmp_path)(g, torch.randn(g.num_nodes(), 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"RGCN_plan{i}_infer" for i in range(4)]


def test_dump_dir_and_explain(tmp_path):
    g = GRAPHS["mixed"]
    model = gc.nn.RGAT(6, 3, g.num_relations, heads=2)
    compiled = gc.compile(model, dump_dir=tmp_path, backend="cpu")
    assert "not compiled yet" in compiled.explain()
    compiled(g, torch.randn(g.num_nodes(), 6, requires_grad=True)).sum().backward()
    files = sorted(p.name for p in (tmp_path / "RGAT_plan0_train").iterdir())
    assert files[0] == "00_traced.txt" and any("after_reorder" in f for f in files)
    assert any(f.endswith("backward_kernels.txt") for f in files)
    kernels = (tmp_path / "RGAT_plan0_train" / next(f for f in files if f.endswith("forward_kernels.txt"))).read_text()
    assert "GemmSpec" in kernels and "TraversalSpec" in kernels and "group_by=dst" in kernels
    source = (tmp_path / "RGAT_plan0_train" / "module.cpp").read_text()
    assert "graphcore_forward" in source and "graphcore_backward" in source
    text = compiled.explain()
    assert "|E|/|U_src|" in text and "[reorder] folded" in text and "[compact]" in text and "[fuse]" in text


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_compiled_model_saves_loads_and_deep_copies(tmp_path, backend):
    g = GRAPHS["mixed"]
    model = TwoLayer(g)
    compiled = gc.compile(model, backend=backend, passes=["reorder"])
    x = torch.randn(g.num_nodes(), 6)
    with torch.no_grad():
        expected = compiled(g, x)  # native state exists before saving
    path = tmp_path / "compiled.pt"
    torch.save(compiled, path)
    loaded = torch.load(path, weights_only=False)
    assert isinstance(loaded, TwoLayer) and type(loaded).__name__ == "CompiledTwoLayer"
    assert loaded._graphcore_options == compiled._graphcore_options
    copied = copy.deepcopy(compiled)
    assert all(a is not b for a, b in zip(copied.parameters(), compiled.parameters()))
    for other in (loaded, copied):
        with torch.no_grad():
            torch.testing.assert_close(other(g, x), expected, rtol=1e-10, atol=1e-12)
        assert_same_forward_and_grads(other._graphcore_original, other, g, x)  # and trains


def test_compiling_a_compiled_model_compiles_the_model_with_the_new_options():
    g = GRAPHS["mixed"]
    model = TwoLayer(g)
    once = gc.compile(model, backend="cpu")
    twice = gc.compile(once, backend="torch")
    assert twice._graphcore_original is model and twice._graphcore_options["backend"] == "torch"
    assert type(twice).__mro__[1:3] == (CompiledMixin, TwoLayer)
    assert_same_forward_and_grads(model, twice, g, torch.randn(g.num_nodes(), 6))


class SoftplusRGCN(torch.nn.Module):
    """An activation added to the compiler through the op table (numerics, functions, trace)."""

    def __init__(self, g):
        super().__init__()
        self.conv = gc.nn.RGCN(6, 4, g.num_relations)

    def forward(self, g, x):
        return F.softplus(self.conv(g, x) * 8.0)  # * 8: both branches of the threshold are taken


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_an_activation_added_through_the_op_table_compiles_with_gradients(backend):
    g = GRAPHS["mixed"]
    model = SoftplusRGCN(g)
    compiled = gc.compile(model, backend=backend)
    assert_same_forward_and_grads(model, compiled, g, torch.randn(g.num_nodes(), 6))


def test_softplus_with_other_parameters_is_refused():
    class Scaled(SoftplusRGCN):
        def forward(self, g, x):
            return F.softplus(self.conv(g, x), beta=2.0)

    g = GRAPHS["mixed"]
    with pytest.raises(gc.CompileError, match="only beta=1, threshold=20"):
        gc.compile(Scaled(g))(g, torch.randn(g.num_nodes(), 6))

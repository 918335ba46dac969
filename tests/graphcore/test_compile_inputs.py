"""The boundary between a compiled model and its native kernels: every call checks what the
kernels trust (rows per node, dtype, device), and the native entry refuses a wrong buffer size
on its own. A wrong input raises :class:`GraphError`; it never reads past a tensor's end."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphcore as gc
from graphcore.testing import edge_case_graphs, layer_zoo, random_heterograph

GRAPHS = edge_case_graphs()


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


def _warm(layer: str = "rgcn_sum", graph: str = "mixed", backend: str = "cpu"):
    """A compiled zoo layer that has run once on ``graph`` (its plan and kernels cached)."""
    g = GRAPHS[graph]
    model = layer_zoo(g)[layer]
    compiled = gc.compile(model, backend=backend)
    with torch.no_grad():
        compiled(g, torch.randn(g.num_nodes(), model.in_channels))
    return g, model, compiled


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("rows", ["none", "one", "one_fewer", "one_more", "sixty_more"])
def test_wrong_row_count_after_the_first_call_is_refused(backend, rows):
    g, model, compiled = _warm(backend=backend)
    n = g.num_nodes()
    count = {"none": 0, "one": 1, "one_fewer": n - 1, "one_more": n + 1, "sixty_more": n + 60}[rows]
    x = torch.randn(count, model.in_channels)
    with torch.no_grad(), pytest.raises(gc.GraphError, match=rf"input 0 must have one row per node .*\({n} rows\)"):
        compiled(g, x)
    with pytest.raises(gc.GraphError, match="one row per node"):  # the training plan too
        compiled(g, x.requires_grad_())
    good = torch.randn(n, model.in_channels)
    with torch.no_grad():  # the cached plan is intact
        torch.testing.assert_close(compiled(g, good), model(g, good))


def test_bad_dtype_device_and_type_are_refused():
    g, model, compiled = _warm()
    n, d = g.num_nodes(), model.in_channels
    with pytest.raises(gc.GraphError, match="floating-point"):
        compiled(g, torch.ones(n, d, dtype=torch.int64))
    with pytest.raises(gc.GraphError, match="must be a torch.Tensor, got list"):
        compiled(g, [[0.0] * d] * n)
    with pytest.raises(gc.GraphError, match="on meta but the graph is on cpu"):
        compiled(g, torch.empty(n, d, device="meta"))
    with pytest.raises(gc.GraphError, match="at least one node-feature input"):
        compiled(g)
    with pytest.raises(gc.GraphcoreError, match="float32"):  # parameters are float64
        compiled(g, torch.randn(n, d, dtype=torch.float32))


def test_non_contiguous_input_gives_the_eager_result():
    g, model, compiled = _warm()
    wide = torch.randn(g.num_nodes(), 2 * model.in_channels)
    x = wide[:, ::2]
    assert not x.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(compiled(g, x), model(g, x))


def test_native_entry_refuses_a_wrong_buffer_size_on_its_own():
    """Defence in depth: the size check in the generated entry, with the Python checks bypassed."""
    g, model, compiled = _warm()
    runner = next(iter(compiled._graphcore_plans.values()))
    executable = runner.forward
    source = executable.source
    assert "if (numel[0] != rows[0] * 6) return -1;" in source
    params = [compiled._graphcore_params[name] for name in runner.param_names]
    from graphcore.codegen.backends.abi import numel_array
    from graphcore.codegen.runtime.workspace import allocate

    x = torch.randn(g.num_nodes(), model.in_channels)
    bound = executable.binding(g.layout)
    env = allocate(bound.workspace, [x], params, {}, torch.device("cpu"))
    pointers, indices, rows, numel = executable.arguments(env, bound)
    assert executable.entry(pointers, indices, rows, numel, 1, None) == 0
    name = executable.program.inputs[0]
    short = numel_array([env[b][:-1] if b == name else env[b] for b in executable.abi.buffers])
    status = executable.entry(pointers, indices, rows, short, 1, None)
    assert status == -(executable.abi.buffers.index(name) + 1)
    with pytest.raises(gc.GraphError, match=f"refused buffer '{name}'"):
        raise executable.refused(status)


def test_allocate_refuses_a_wrong_shape_below_the_front_end():
    g, model, compiled = _warm()
    runner = next(iter(compiled._graphcore_plans.values()))
    from graphcore.codegen.runtime.workspace import allocate

    params = [compiled._graphcore_params[name] for name in runner.param_names]
    bad = torch.randn(g.num_nodes() - 1, model.in_channels)
    with pytest.raises(gc.GraphError, match=r"input 0 \(buffer 'v0'\) .* needs shape \[16, 6\] for this graph, got \[15, 6\]"):
        allocate(runner.forward.binding(g.layout).workspace, [bad], params, {}, torch.device("cpu"))


@pytest.mark.parametrize("layer", ["rgcn_sum", "rgat_heads", "hgt_proj"])
def test_zero_row_types_and_empty_relations_equal_eager(layer):
    """A node type with no nodes and relations with no edges: the kernels see zero-length segments."""
    g = gc.HeteroGraph({"a": 0, "b": 5, "c": 3},
                       {("a", "r0", "b"): torch.zeros(2, 0, dtype=torch.int64),
                        ("b", "r1", "c"): torch.tensor([[0, 1, 4, 4], [0, 2, 1, 1]]),
                        ("c", "r2", "b"): torch.zeros(2, 0, dtype=torch.int64)})
    model = layer_zoo(g)[layer]
    compiled = gc.compile(model, backend="cpu")
    x = torch.randn(g.num_nodes(), model.in_channels)
    with torch.no_grad():
        torch.testing.assert_close(compiled(g, x), model(g, x))


def test_a_graph_without_nodes():
    g = gc.HeteroGraph({"a": 0}, {("a", "r", "a"): torch.zeros(2, 0, dtype=torch.int64)})
    model = gc.nn.RGCN(4, 3, 1)
    compiled = gc.compile(model, backend="cpu")
    with torch.no_grad():
        out = compiled(g, torch.randn(0, 4))
    assert out.shape == (0, 3)
    with pytest.raises(gc.GraphError, match=r"\(0 rows\), got shape \[1, 4\]"):
        compiled(g, torch.randn(1, 4))


_FUZZ_GRAPH = random_heterograph({"a": 6, "b": 4}, [("a", "r", "b"), ("b", "s", "a"), ("b", "t", "b")], [9, 7, 0])
_FUZZ_MODEL = gc.nn.RGCN(3, 2, _FUZZ_GRAPH.num_relations).double()
_FUZZ_COMPILED = gc.compile(_FUZZ_MODEL, backend="cpu")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(0, 24), width=st.integers(1, 5),
       dtype=st.sampled_from([torch.float64, torch.float32, torch.int64, torch.bool]),
       extra_dims=st.lists(st.integers(1, 3), max_size=1), grad=st.booleans())
def test_fuzz_the_boundary(rows, width, dtype, extra_dims, grad):
    """Random shapes and dtypes: either the eager result, or a GraphcoreError; nothing else."""
    g, model, compiled = _FUZZ_GRAPH, _FUZZ_MODEL, _FUZZ_COMPILED
    x = torch.randn(rows, width, *extra_dims, dtype=torch.float64).to(dtype)
    valid = rows == g.num_nodes() and width == 3 and not extra_dims and dtype == torch.float64
    if grad and dtype.is_floating_point:
        x.requires_grad_()
    if valid:
        with torch.no_grad():
            torch.testing.assert_close(compiled(g, x), model(g, x))
        return
    with pytest.raises(gc.GraphcoreError):
        compiled(g, x)

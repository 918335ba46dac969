"""The CPU backend equals the reference backend, is thread-count independent, and caches builds."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import graphcore as gc
from graphcore.codegen.errors import BuildError
from graphcore.codegen.runtime import build, cache, load
from graphcore.datasets import hetero
from graphcore.testing import edge_case_graphs, layer_zoo

GRAPHS = edge_case_graphs()
SHARED = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "hetero"


def grads_of(model, backend, g, x, probe):
    compiled = gc.compile(model, backend=backend)
    x = x.clone().requires_grad_()
    out = compiled(g, x)
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad((out * probe).sum(), [x, *params], allow_unused=True)
    return out.detach(), grads


def assert_backends_agree(model, g, x, rtol=1e-10, atol=1e-12):
    probe = torch.randn(g.num_nodes(), model.out_channels * getattr(model, "heads", 1)
                        if isinstance(model, gc.nn.RGAT) else model.out_channels, dtype=x.dtype)
    ref_out, ref_grads = grads_of(model, "torch", g, x, probe)
    cpu_out, cpu_grads = grads_of(model, "cpu", g, x, probe)
    torch.testing.assert_close(cpu_out, ref_out, rtol=rtol, atol=atol)
    for a, b in zip(cpu_grads, ref_grads):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("graph", ["mixed", "one_relation"])
@pytest.mark.parametrize("layer", list(layer_zoo(GRAPHS["mixed"])))
def test_cpu_equals_reference_on_edge_case_graphs(graph, layer):
    g = GRAPHS[graph]
    model = layer_zoo(g)[layer]
    assert_backends_agree(model, g, torch.randn(g.num_nodes(), model.in_channels, dtype=torch.float64))


def real_graph_models(g, d):
    R, T = g.num_relations, g.num_node_types
    return {"rgcn": gc.nn.RGCN(d, d, R, aggr="mean"), "rgat": gc.nn.RGAT(d, d // 2, R, heads=2),
            "hgt": gc.nn.HGT(d, d, T, R, heads=2)}


@pytest.mark.parametrize("name", ["aifb", "mutag", "fb15k237"])
@pytest.mark.parametrize("model", ["rgcn", "rgat", "hgt"])
def test_cpu_equals_reference_on_real_graphs(name, model):
    if name == "fb15k237" and not (SHARED / "fb15k237.npz").is_file():
        pytest.skip("fb15k237 is read from ../shared/datasets/hetero")
    torch.manual_seed(0)
    g = hetero.load(name).graph.add_reverse_edges()
    layer = real_graph_models(g, 8)[model].double()
    assert_backends_agree(layer, g, torch.randn(g.num_nodes(), 8, dtype=torch.float64), rtol=1e-9, atol=1e-10)


def test_float32_agrees_with_reference():
    g = hetero.load("aifb").graph.add_reverse_edges()
    model = real_graph_models(g, 16)["rgat"]
    assert_backends_agree(model, g, torch.randn(g.num_nodes(), 16), rtol=1e-4, atol=1e-5)


def test_one_and_two_threads_give_identical_results():
    g = hetero.load("aifb").graph.add_reverse_edges()
    torch.manual_seed(0)
    model = real_graph_models(g, 16)["hgt"]
    compiled = gc.compile(model, backend="cpu")
    x = torch.randn(g.num_nodes(), 16)
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xi = x.clone().requires_grad_()
            out = compiled(g, xi)
            out.pow(2).sum().backward()
            results.append([out.detach(), xi.grad, *(p.grad.clone() for p in model.parameters())])
            model.zero_grad()
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_second_compile_hits_the_cache(fresh_cache):
    root, calls = fresh_cache
    g = GRAPHS["dense"]
    model = gc.nn.RGCN(4, 3, g.num_relations).double()
    x = torch.randn(g.num_nodes(), 4, dtype=torch.float64)
    first = gc.compile(model, backend="cpu")(g, x)
    assert len(calls) == 1
    load._LOADED.clear()  # a new process: nothing loaded, the disk cache is all there is
    second = gc.compile(model, backend="cpu")(g, x)
    assert len(calls) == 1, "no compiler run on a cache hit"
    torch.testing.assert_close(first, second)
    libs = list(root.glob("*/*/lib.so"))
    assert len(libs) == 1 and (libs[0].parent / "manifest.json").is_file()


def test_corrupt_library_is_rebuilt(fresh_cache):
    root, calls = fresh_cache
    source = 'extern "C" int answer() { return 42; }'
    toolchain = cache.Toolchain("g++", ("-O2", "-shared", "-fPIC"))
    lib = cache.build_cached(source, toolchain, 1, build.compile_shared)  # built, as by another process
    lib.write_bytes(lib.read_bytes()[:100])  # truncated, as by a full disk
    assert not cache.is_valid(lib.parent, toolchain)
    assert load.load_library(source, toolchain, 1).answer() == 42
    assert len(calls) == 2 and cache.is_valid(lib.parent, toolchain)


def test_new_flags_give_a_new_key(fresh_cache):
    source = 'extern "C" int f() { return 1; }'
    base = cache.Toolchain("g++", ("-O2", "-shared", "-fPIC"))
    other = cache.Toolchain("g++", ("-O3", "-shared", "-fPIC"))
    assert cache.cache_key(source, base, 1) != cache.cache_key(source, other, 1)
    assert cache.cache_key(source, base, 1) != cache.cache_key(source, base, 2)


def test_missing_compiler_is_a_build_error(fresh_cache):
    with pytest.raises(BuildError, match="compiler 'g\\+\\+-graphcore-missing' not found"):
        load.load_library("int x;", cache.Toolchain("g++-graphcore-missing", ("-shared",)), 1)


def test_failing_compile_keeps_message_and_source(fresh_cache):
    with pytest.raises(BuildError) as info:
        load.load_library("this is not C++", cache.Toolchain("g++", ("-shared", "-fPIC")), 1)
    err = info.value
    assert err.returncode != 0 and "error" in err.stderr and Path(err.source_path).read_text() == "this is not C++"
    assert "source:" in str(err)


def test_concurrent_processes_build_the_same_model(tmp_path):
    script = textwrap.dedent("""
        import torch, graphcore as gc
        from graphcore.testing import edge_case_graphs
        g = edge_case_graphs()["mixed"]
        torch.manual_seed(0)
        model = gc.nn.HGT(5, 4, g.num_node_types, g.num_relations).double()
        out = gc.compile(model, backend="cpu")(g, torch.ones(g.num_nodes(), 5, dtype=torch.float64))
        print(float(out.sum()))
    """)
    env = dict(os.environ, GRAPHCORE_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert outputs[0][0] == outputs[1][0]
    assert len(list((tmp_path / "cache").glob("*/*/lib.so"))) == 1


@pytest.mark.parametrize("src, target, blocks", [
    ((3, 2), (3, 1), (3, 2)),      # per-head totals: contiguous blocks, vectorised
    ((4, 6), (1,), (1, 24)),       # a full total
    ((2, 3, 4), (2, 1, 1), (2, 12)),
    ((2, 3, 4), (2, 3, 1), (6, 4)),
    ((2, 3), (1, 3), None),        # a column sum: strided, the general loop
    ((2, 3), (3,), None),
])
def test_sum_to_prints_block_sums_where_blocks_are_contiguous(src, target, blocks):
    from graphcore.codegen.backends.cfamily import _trailing_blocks

    assert _trailing_blocks(src, target) == blocks


class _Unary(torch.nn.Module):
    def __init__(self, fn: str):
        super().__init__()
        self.fn, self.out_channels = fn, 1

    def forward(self, g, x):
        return gc.ops.unary(self.fn, x, alpha=0.7)


@pytest.mark.parametrize("fn", ["exp", "gelu", "sigmoid", "elu"])
def test_float32_math_is_accurate_across_the_range(fn):
    """The prelude's vectorisable float exp and erf (gc_math): each value and derivative within a
    few float ulps of float64 (GELU: the erf approximation's 5e-7, scaled by |x|), with inf, NaN,
    underflow and overflow as in libm. Fails for a polynomial off by more than ~2 ulps."""
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 88.7, 89.5, -87.5, -103.0, -110.0])
    x = torch.cat([torch.linspace(-110, 95, 40_000), torch.linspace(-8, 8, 20_000), special]).float().unsqueeze(1)
    g = gc.HeteroGraph({"n": x.shape[0]}, {("n", "r", "n"): torch.zeros(2, 0, dtype=torch.long)})
    model = _Unary(fn)
    x32 = x.clone().requires_grad_()
    out = gc.compile(model, backend="cpu")(g, x32)
    (grad,) = torch.autograd.grad(out.sum(), [x32])
    x64 = x.double().requires_grad_()
    ref = model(g, x64)
    (ref_grad,) = torch.autograd.grad(ref.sum(), [x64])
    assert torch.isnan(out[torch.isnan(x)]).all() and torch.isnan(grad[torch.isnan(x)]).all()
    for got, want in ((out.detach(), ref.detach()), (grad, ref_grad)):
        # exp alone: relative; the others round order-1 intermediates (y (1 - y), y + alpha) in float
        bound = 5e-7 * (1 + x.abs()) if fn == "gelu" else 2.5e-7 * want.abs() + (0 if fn == "exp" else 1.2e-7)
        want32 = want.float()  # where float64 over- or underflows in float, so must float
        finite = torch.isfinite(want32) & torch.isfinite(x)
        limits = ~finite & ~torch.isnan(x)  # (torch's ELU derivative at NaN is 1; ours stays NaN)
        torch.testing.assert_close(got[limits], want32[limits], rtol=3e-7, atol=0, equal_nan=True,
                                   msg=lambda m: f"{fn} at infinities, NaN and float's limits: {m}")
        err = (got.double() - want).abs()[finite]
        assert (err <= 2 * bound[finite] + 1e-37).all(), f"{fn}: error {err.max():.3g} at x = {x[finite][err.argmax()].item()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_widths_off_the_register_tile_agree_with_the_reference(dtype):
    """Widths that leave a partial register tile (45 = 32 + 13 floats, 2 x 16 + 13 doubles; 37
    inputs), forward and weight gradients: the masked tail tiles of the GEMM and outer-product
    templates against the torch backend."""
    torch.manual_seed(0)
    g = hetero.load("aifb").graph.add_reverse_edges()
    model = gc.nn.RGCN(37, 45, g.num_relations, aggr="mean").to(dtype)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}  # float: sums of ~10^3 terms
    assert_backends_agree(model, g, torch.randn(g.num_nodes(), 37, dtype=dtype), **tol)

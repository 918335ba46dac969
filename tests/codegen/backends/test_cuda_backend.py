"""Every generated CUDA kernel compiles for sm_80 and sm_90 (nvcc is here, a GPU may not be);
with a GPU, the CUDA backend equals the reference backend and the CPU emulation of the same
text. Without one, ``test_cuda_emu.py`` executes these kernels on the CPU (backend ``cuda-emu``)."""
import json
import shutil

import pytest
import torch

import graphcore as gc
from graphcore.codegen.backends.cuda.executable import module_source, ptxas_report
from graphcore.codegen.passes.context import GraphStats
from graphcore.codegen.driver.plan import build_plan
from graphcore.testing import edge_case_graphs, layer_zoo
from graphcore.trace import trace

GRAPH = edge_case_graphs()["mixed"]
MODELS = ["rgcn_mean_bases", "rgat_heads", "hgt_proj", "hgt_skip"]
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def training_module(name: str, dtype=torch.float32):
    model = layer_zoo(GRAPH, dtype)[name]
    program, _ = trace(model, GRAPH, (torch.randn(GRAPH.num_nodes(), model.in_channels, dtype=dtype),))
    plan = build_plan(program, GraphStats.from_layout(GRAPH.layout), train=True, grad_inputs=(True,))
    return module_source({"forward": plan.forward, "backward": plan.backward})


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name, dtype", [(m, torch.float32) for m in MODELS] + [("rgat_heads", torch.float64)])
def test_every_kernel_compiles(name, dtype, arch, tmp_path):
    source, abis, programs = training_module(name, dtype)
    stats = ptxas_report(source, arch, tmp_path)
    expected = {f"{half}_{k.name}" for half, p in programs.items() for k in p.kernels}
    compiled = {kernel for kernel in stats for e in expected if e in kernel}
    assert len(compiled) == len(expected), f"kernels without ptxas output: {expected - set(stats)}"
    assert all(s["registers"] > 0 for s in stats.values())
    assert max(s["shared_bytes"] for s in stats.values()) <= 48 * 1024
    (tmp_path / "ptxas.json").write_text(json.dumps(stats, indent=1))
    print(f"\n{name} {dtype} {arch}: {len(stats)} kernels, max registers "
          f"{max(s['registers'] for s in stats.values())}, spill bytes {sum(s['spill_stores'] for s in stats.values())}")


@needs_gpu
@pytest.mark.parametrize("name", list(layer_zoo(GRAPH)))
def test_cuda_equals_reference(name):
    g = GRAPH.to("cuda")
    model = layer_zoo(GRAPH)[name].cuda()
    x = torch.randn(g.num_nodes(), model.in_channels, dtype=torch.float64, device="cuda")
    outs, grads = [], []
    for backend in ("torch", "cuda"):
        xi = x.clone().requires_grad_()
        out = gc.compile(model, backend=backend)(g, xi)
        outs.append(out.detach())
        grads.append(torch.autograd.grad(out.pow(2).sum(), [xi, *model.parameters()], allow_unused=True))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-12)
    for a, b in zip(*grads):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@needs_gpu
@pytest.mark.parametrize("name", list(layer_zoo(GRAPH)))
def test_cuda_equals_its_emulation(name):
    """The GPU and the emulator run the same translation unit: their results agree to fp64 rounding
    (atomics may add in another order)."""
    model = layer_zoo(GRAPH)[name]
    x = torch.randn(GRAPH.num_nodes(), model.in_channels, dtype=torch.float64)
    results = []
    for backend, device in (("cuda-emu", "cpu"), ("cuda", "cuda")):
        m = model.to(device)
        xi = x.to(device).requires_grad_()
        out = gc.compile(m, backend=backend)(GRAPH.to(device), xi)
        grads = torch.autograd.grad(out.pow(2).sum(), [xi, *m.parameters()], allow_unused=True)
        results.append([t.cpu() for t in (out.detach(), *grads) if t is not None])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)

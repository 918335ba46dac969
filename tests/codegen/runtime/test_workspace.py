"""Temporaries of a kernel program share memory only where their live ranges are disjoint."""
import math

import pytest
import torch

import graphcore as gc
from graphcore.codegen.runtime.liveness import share_temporaries
from graphcore.codegen.runtime.workspace import Workspace, WorkspacePool, allocate
from graphcore.testing import layer_zoo

from ..conftest import GRAPHS


def backward_program(graph_name, layer_name):
    g = GRAPHS[graph_name]
    model = layer_zoo(g)[layer_name]
    compiled = gc.compile(model, backend="torch")
    x = torch.randn(g.num_nodes(), model.in_channels, dtype=torch.float64, requires_grad=True)
    compiled(g, x).sum().backward()
    plan = next(iter(compiled._graphcore_plans.values())).plan
    return g, plan.backward


@pytest.mark.parametrize("layer_name", ["rgat_heads", "hgt_proj", "rgcn_mean_bases"])
def test_shared_temporaries_never_live_at_the_same_time(layer_name):
    g, program = backward_program("mixed", layer_name)
    numel = {b.name: math.prod(b.shape) * (1 if str(b.domain) == "scalar" else g.layout.rows(str(b.domain)))
             for b in program.buffers}
    slots = share_temporaries(program, numel)
    touched = program.touched()
    live = {name: [i for i, names in enumerate(touched) if name in names] for name in slots}
    roles = {b.name: b.role for b in program.buffers}
    assert all(roles[name] == "temp" for name in slots) and not set(slots) & program.accumulated()
    by_slot = {}
    for name, slot in slots.items():
        by_slot.setdefault(slot, []).append((live[name][0], live[name][-1]))
    for ranges in by_slot.values():
        ranges.sort()
        assert all(prev[1] < nxt[0] for prev, nxt in zip(ranges, ranges[1:]))
    if layer_name == "hgt_proj":  # a long backward program: some memory is reused
        assert len(by_slot) < len(slots)


def test_shared_buffers_are_views_of_one_allocation():
    g, program = backward_program("mixed", "hgt_proj")
    inputs = [torch.zeros(g.layout.rows(str(program.buffer(n).domain)), *program.buffer(n).shape, dtype=torch.float64)
              for n in program.inputs]
    params = [torch.zeros(program.buffer(n).shape if str(program.buffer(n).domain) == "scalar" else
                          (g.layout.rows(str(program.buffer(n).domain)), *program.buffer(n).shape), dtype=torch.float64)
              for n in program.params]
    workspace = Workspace(program, g.layout, torch.float64, WorkspacePool(torch.device("cpu")))
    env = allocate(workspace, inputs, params, None, torch.device("cpu"))
    numel = {name: t.numel() for name, t in env.items()}
    slots = share_temporaries(program, numel)
    bases = {}
    for name, slot in slots.items():
        bases.setdefault(slot, set()).add(env[name].untyped_storage().data_ptr())
    assert all(len(b) == 1 for b in bases.values())
    assert all(env[name].untyped_storage().data_ptr() != env[other].untyped_storage().data_ptr()
               for name in program.accumulated() for other in slots)


def test_cpu_executable_reuses_its_workspace_and_never_its_outputs():
    g = GRAPHS["mixed"]
    model = layer_zoo(g)["hgt_proj"]
    compiled = gc.compile(model, backend="cpu")
    x1, x2 = (torch.randn(g.num_nodes(), model.in_channels, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        out1 = compiled(g, x1)
        kept = out1.clone()
        executable = next(iter(compiled._graphcore_plans.values())).forward
        storage = {k: t.data_ptr() for k, t in executable.binding(g.layout).workspace.views().items()}
        out2 = compiled(g, x2)
        assert {k: t.data_ptr() for k, t in executable.binding(g.layout).workspace.views().items()} == storage
        torch.testing.assert_close(out1, kept, rtol=0, atol=0)      # the second call did not write into it
        torch.testing.assert_close(out2, model(g, x2), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out1, model(g, x1), rtol=1e-10, atol=1e-12)


def test_forward_and_backward_take_temporaries_from_one_pool():
    """The forward's temporaries are dead when the backward runs: one pool, the larger size."""
    g = GRAPHS["mixed"]
    model = layer_zoo(g)["hgt_proj"]
    compiled = gc.compile(model, backend="cpu")
    x = torch.randn(g.num_nodes(), model.in_channels, dtype=torch.float64, requires_grad=True)
    compiled(g, x).sum().backward()
    runner = next(iter(compiled._graphcore_plans.values()))
    forward, backward = runner.forward.binding(g.layout).workspace, runner.backward.binding(g.layout).workspace
    assert forward.pool is backward.pool and runner.forward.lock is runner.backward.lock
    pooled = [b.numel() for b in forward.pool.buffers]
    assert len(pooled) == max(len(forward.nbytes), len(backward.nbytes))
    assert all(size >= max(f, b) for size, f, b in zip(pooled, forward.nbytes + [0] * len(pooled),
                                                         backward.nbytes + [0] * len(pooled)))
    assert sum(pooled) < sum(forward.nbytes) + sum(backward.nbytes)

"""Every pass preserves results: fp64 equality of the program before and after, on forward and
joint (forward + backward) programs, for every layer on every edge-case graph."""
import dataclasses

import pytest
import torch

from graphcore.codegen.ir.evaluate import evaluate
from graphcore.codegen.ir.verify import verify
from graphcore.codegen.passes import autodiff
from graphcore.codegen.passes.registry import PASSES

from ..conftest import context, make_case, traced_cases

PASS_NAMES = ["cse", "dce", "reorder", "aggregate_first", "compact", "fuse"]


def run_both(program, g, inputs, params):
    return evaluate(program, g.layout, inputs, params)


@pytest.mark.parametrize("name", PASS_NAMES)
@pytest.mark.parametrize("graph, layer", traced_cases())
def test_pass_preserves_forward_and_joint(name, graph, layer):
    g, model, x, program, params = make_case(graph, layer)
    ctx = context(g)
    before = program
    snapshot = dataclasses.replace(before)
    after = verify(PASSES[name](before, ctx), pass_name=name)
    assert before == snapshot, "a pass must not mutate its input"
    expected = run_both(before, g, [x], params)
    for a, b in zip(run_both(after, g, [x], params), expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert PASSES[name](after, ctx) is after, "idempotent: a second run changes nothing"

    joint = autodiff.run(program, context(g))
    dy = torch.randn_like(expected[0])
    expected = run_both(joint, g, [x, dy], params)
    joint_after = verify(PASSES[name](joint, ctx), pass_name=name)
    for a, b in zip(run_both(joint_after, g, [x, dy], params), expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

"""The reference backend executes lowered specs exactly like the level-1 interpreter."""
import pytest
import torch

from graphcore.codegen.backends.torch.executor import TorchExecutable
from graphcore.codegen.ir.evaluate import evaluate
from graphcore.codegen.passes.context import GraphStats
from graphcore.codegen.driver.plan import build_plan

from ..conftest import make_case, traced_cases


@pytest.mark.parametrize("graph, layer", traced_cases())
@pytest.mark.parametrize("train", [False, True])
def test_executor_matches_interpreter(graph, layer, train):
    g, model, x, program, params = make_case(graph, layer)
    plan = build_plan(program, GraphStats.from_layout(g.layout), train=train, grad_inputs=(train,))
    forward = plan.programs["forward"]
    expected = evaluate(forward, g.layout, [x], params)
    got = TorchExecutable(plan.forward).run(g.layout, [x], params)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    if train:
        backward = plan.programs["backward"]
        saved = got[1:]
        dy = torch.randn_like(got[0])
        inputs = [x, *saved, dy]
        expected = evaluate(backward, g.layout, inputs, params)
        got = TorchExecutable(plan.backward).run(g.layout, inputs, params)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

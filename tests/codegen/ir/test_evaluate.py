"""The level-1 interpreter gives the eager layers' results for the traced programs."""
import pytest
import torch

from graphcore.codegen.ir.evaluate import evaluate
from graphcore.codegen.ir.verify import verify

from ..conftest import make_case, traced_cases


@pytest.mark.parametrize("graph, layer", traced_cases())
def test_traced_program_equals_eager(graph, layer):
    g, model, x, program, params = make_case(graph, layer)
    verify(program)
    (out,) = evaluate(program, g.layout, [x], params)
    torch.testing.assert_close(out, model(g, x), rtol=1e-10, atol=1e-12)

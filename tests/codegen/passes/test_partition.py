"""Save-vs-recompute: what the forward keeps for the backward."""
import pytest
import torch

import graphcore as gc
from graphcore.codegen.ir.values import Domain
from graphcore.testing import layer_zoo

from ..conftest import GRAPHS


@pytest.mark.parametrize("layer_name", ["rgat_heads", "hgt_proj"])
def test_compact_gemm_results_are_recomputed_not_saved(layer_name):
    g = GRAPHS["mixed"]
    model = layer_zoo(g)[layer_name]
    compiled = gc.compile(model, backend="torch")
    x = torch.randn(g.num_nodes(), model.in_channels, dtype=torch.float64, requires_grad=True)
    out = compiled(g, x)
    out.sum().backward()
    plan = next(iter(compiled._graphcore_plans.values())).plan
    assert "[compact]" in compiled.explain()  # there are compact GEMM results to keep or recompute
    saved = plan.forward.outputs[1:]
    domains = {plan.forward.buffer(name).domain for name in saved}
    assert plan.num_saved == len(saved) > 0
    assert not domains & {Domain.USRC, Domain.UDST}
    grad = x.grad.clone()
    x.grad = None
    model(g, x).sum().backward()
    torch.testing.assert_close(grad, x.grad, rtol=1e-10, atol=1e-12)

"""torch.autograd.gradcheck of every VJP rule (one op per model, compiled with no optimising
passes, so the gradient comes from autodiff's rule alone) and of every whole layer."""
import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

import graphcore as gc
from graphcore import ops
from graphcore.testing import edge_case_graphs, layer_zoo

G = edge_case_graphs()["mixed"]
N, R, T = G.num_nodes(), G.num_relations, G.num_node_types


class OneOp(torch.nn.Module):
    def __init__(self, fn, **params):
        super().__init__()
        self.fn = fn
        for name, shape in params.items():
            self.register_parameter(name, torch.nn.Parameter(torch.randn(*shape, dtype=torch.float64)))

    def forward(self, g, x):
        return self.fn(self, g, x)


RULES = {
    "typed_linear_etype": (lambda m, g, x: ops.typed_linear(g, ops.gather(g, x, by="src"), m.w, by="etype"), {"w": (R, 3, 2)}),
    "typed_linear_per_head": (lambda m, g, x: ops.typed_linear(g, ops.split_heads(x, 3), m.w, by="ntype"), {"w": (T, 3, 1, 2)}),
    "linear_with_bias": (lambda m, g, x: ops.linear(x, m.w, m.b), {"w": (3, 4), "b": (4,)}),
    "typed_bias": (lambda m, g, x: ops.typed_linear(g, x, m.w, by="ntype", bias=m.b), {"w": (T, 3, 2), "b": (T, 2)}),
    "gather_dst_aggregate_sum": (lambda m, g, x: ops.aggregate(g, ops.gather(g, x, by="dst")), {}),
    "aggregate_mean": (lambda m, g, x: ops.aggregate(g, ops.gather(g, x, by="src"), reduce="mean"), {}),
    "aggregate_mean_per_relation": (lambda m, g, x: ops.aggregate(g, ops.gather(g, x, by="src"), reduce="mean", group="dst_etype"), {}),
    "aggregate_max": (lambda m, g, x: ops.aggregate(g, ops.gather(g, x, by="src"), reduce="max"), {}),
    "dot": (lambda m, g, x: ops.dot(ops.gather(g, x, by="src"), ops.gather(g, x, by="dst")), {}),
    "ewise_div_sub": (lambda m, g, x: ops.ewise("sub", ops.ewise("div", x, ops.unary("exp", x)), 0.5), {}),
    "ewise_broadcast_param": (lambda m, g, x: ops.ewise("mul", x, m.s), {"s": (3,)}),
    "gather_etype_param": (lambda m, g, x: ops.aggregate(g, ops.ewise("mul", ops.gather(g, x, by="src"), ops.gather(g, m.p, by="etype"))), {"p": (R, 3)}),
    "edge_softmax_dst": (lambda m, g, x: ops.edge_softmax(g, ops.dot(ops.gather(g, ops.split_heads(x, 3), by="src"), ops.gather(g, ops.split_heads(x, 3), by="dst"))), {}),
    "edge_softmax_per_relation": (lambda m, g, x: ops.edge_softmax(g, ops.gather(g, x, by="src"), group="dst_etype"), {}),
    "merge_heads": (lambda m, g, x: ops.merge_heads(ops.split_heads(x, 3)), {}),
    "combine_bases": (lambda m, g, x: ops.typed_linear(g, ops.gather(g, x, by="src"), ops.combine_bases(m.c, m.v), by="etype"), {"c": (R, 2), "v": (2, 3, 2)}),
    **{f"unary_{name}": ((lambda name: lambda m, g, x: ops.unary(name, x))(name), {})
       for name in ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "exp", "neg")},
    "torch_functions": (lambda m, g, x: torch.nn.functional.elu(x * 2.0 - 1.0) / (1.0 + torch.sigmoid(x)), {}),
}


def check(module, passes):
    compiled = gc.compile(module, backend="torch", passes=passes)
    names = [n for n, _ in module.named_parameters()]
    x = torch.randn(N, 3, dtype=torch.float64, requires_grad=True) + 0.1
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def f(x, *ps):
        return functional_call(compiled, dict(zip(names, ps)), (G, x))

    assert gradcheck(f, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("rule", list(RULES))
def test_vjp_rule_gradcheck(rule):
    torch.manual_seed(0)
    fn, params = RULES[rule]
    check(OneOp(fn, **params), passes=[])


@pytest.mark.parametrize("layer", list(layer_zoo(G)))
def test_whole_layer_gradcheck_with_all_passes(layer):
    torch.manual_seed(1)
    module = layer_zoo(G)[layer]
    if module.in_channels != 3:
        proj = torch.nn.Parameter(torch.randn(3, module.in_channels, dtype=torch.float64))
        inner = module

        class WithInput(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner, self.proj = inner, proj

            def forward(self, g, x):
                return self.inner(g, ops.linear(x, self.proj))

        module = WithInput()
    check(module, passes=None)

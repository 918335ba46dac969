import pytest
import torch
from torch.autograd import gradcheck

from graphcore import ops
from graphcore.testing import edge_case_graphs

G = edge_case_graphs()["mixed"]
N, E, R, T = G.num_nodes(), G.num_edges(), G.num_relations, G.num_node_types


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_typed_linear_matches_row_loop():
    x, w, b = rand(E, 3), rand(R, 3, 4), rand(R, 4)
    out = ops.typed_linear(G, x, w, by="etype", bias=b)
    etype = G.layout.etype
    expected = torch.stack([x[i] @ w[etype[i]] + b[etype[i]] for i in range(E)])
    torch.testing.assert_close(out, expected)


def test_typed_linear_per_head_and_node_types():
    x, w = rand(N, 2, 3), rand(T, 2, 3, 5)
    out = ops.typed_linear(G, x, w, by="ntype")
    nt = G.layout.node_type
    expected = torch.stack([torch.einsum("hk,hkn->hn", x[i], w[nt[i]]) for i in range(N)])
    torch.testing.assert_close(out, expected)


def test_gather_by_every_key():
    x = torch.arange(N, dtype=torch.float64)
    L = G.layout
    assert torch.equal(ops.gather(G, x, by="src"), L.src.double())
    assert torch.equal(ops.gather(G, x, by="dst"), L.dst.double())
    assert torch.equal(ops.gather(G, torch.arange(R).double(), by="etype"), L.etype.double())
    assert torch.equal(ops.gather(G, torch.arange(T).double(), by="ntype"), L.node_type.double())


def test_edge_softmax_sums_to_one_and_survives_large_logits():
    scores = torch.randn(E, 2, 1, dtype=torch.float64) * 1e4
    alpha = ops.edge_softmax(G, scores)
    assert torch.isfinite(alpha).all()
    sums = torch.zeros(N, 2, 1, dtype=torch.float64).index_add(0, G.layout.dst, alpha)
    has_in = G.layout.in_degree > 0
    torch.testing.assert_close(sums[has_in], torch.ones_like(sums[has_in]))
    assert torch.all(sums[~has_in] == 0)


def test_edge_softmax_per_relation():
    scores = torch.randn(E, 1, dtype=torch.float64)
    alpha = ops.edge_softmax(G, scores, group="dst_etype")
    L = G.layout
    for v in range(N):
        for r in range(R):
            mask = (L.dst == v) & (L.etype == r)
            if mask.any():
                torch.testing.assert_close(alpha[mask], torch.softmax(scores[mask], 0))


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_aggregate_matches_loop(reduce):
    msg = torch.randn(E, 3, dtype=torch.float64)
    out = ops.aggregate(G, msg, reduce=reduce)
    L = G.layout
    for v in range(N):
        rows = msg[L.dst == v]
        if len(rows) == 0:
            assert torch.all(out[v] == 0)
            continue
        expected = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.max(0).values}[reduce]
        torch.testing.assert_close(out[v], expected)


def test_aggregate_mean_per_relation_then_sum():
    msg = torch.randn(E, 2, dtype=torch.float64)
    out = ops.aggregate(G, msg, reduce="mean", group="dst_etype")
    L = G.layout
    expected = torch.zeros(N, 2, dtype=torch.float64)
    for v in range(N):
        for r in range(R):
            mask = (L.dst == v) & (L.etype == r)
            if mask.any():
                expected[v] += msg[mask].mean(0)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name, fn, inputs", [
    ("typed_linear", lambda x, w, b: ops.typed_linear(G, x, w, by="etype", bias=b), lambda: (rand(E, 3), rand(R, 3, 2), rand(R, 2))),
    ("typed_linear_heads", lambda x, w: ops.typed_linear(G, x, w, by="ntype"), lambda: (rand(N, 2, 3), rand(T, 2, 3, 2))),
    ("linear", lambda x, w, b: ops.linear(x, w, b), lambda: (rand(N, 3), rand(3, 2), rand(2))),
    ("gather", lambda x: ops.gather(G, x, by="src"), lambda: (rand(N, 3),)),
    ("dot", lambda a, b: ops.dot(a, b), lambda: (rand(E, 2, 3), rand(E, 2, 3))),
    ("edge_softmax", lambda s: ops.edge_softmax(G, s), lambda: (rand(E, 2, 1),)),
    ("aggregate_sum", lambda m: ops.aggregate(G, m), lambda: (rand(E, 3),)),
    ("aggregate_mean", lambda m: ops.aggregate(G, m, reduce="mean", group="dst_etype"), lambda: (rand(E, 3),)),
    ("aggregate_max", lambda m: ops.aggregate(G, m, reduce="max"), lambda: (rand(E, 3),)),
    ("ewise", lambda a, b: ops.ewise("div", a, b), lambda: (rand(E, 2, 3), rand(E, 2, 1).detach().abs().add(0.5).requires_grad_())),
    ("unary", lambda x: ops.unary("leaky_relu", x, negative_slope=0.2), lambda: (rand(E, 3),)),
    ("combine_bases", lambda c, b: ops.combine_bases(c, b), lambda: (rand(R, 2), rand(2, 3, 4))),
])
def test_gradcheck(name, fn, inputs):
    assert gradcheck(fn, inputs(), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.typed_linear(G, torch.randn(E + 1, 3), torch.randn(R, 3, 2), by="etype"), r"expected \d+ rows \(one per edge\), got \d+ rows"),
    (lambda: ops.typed_linear(G, torch.randn(E, 3), torch.randn(R + 1, 3, 2), by="etype"), "weight has 6 types but the graph has 5 relations"),
    (lambda: ops.typed_linear(G, torch.randn(E, 4), torch.randn(R, 3, 2), by="etype"), "input rows have 4 features, weight expects 3"),
    (lambda: ops.typed_linear(G, torch.randn(E, 3), torch.randn(R, 3, 2), by="edge"), "by must be 'ntype' or 'etype'"),
    (lambda: ops.gather(G, torch.randn(N, 3), by="source"), "by must be 'src', 'dst', 'etype' or 'ntype'"),
    (lambda: ops.aggregate(G, torch.randn(E, 3), reduce="min"), "reduce must be 'sum', 'mean' or 'max'"),
    (lambda: ops.aggregate(G, torch.randn(E, 3), reduce="max", group="dst_etype"), "only defined with group='dst'"),
    (lambda: ops.dot(torch.randn(E, 3), torch.randn(E, 2)), "same shape"),
    (lambda: ops.unary("softplus", torch.randn(3)), "unary: op must be one of"),
    (lambda: ops.split_heads(torch.randn(4, 5), 2), "H=2 dividing"),
])
def test_bad_input_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()

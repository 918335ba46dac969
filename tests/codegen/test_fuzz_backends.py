"""Differential fuzzing of the compiler: random well-typed programs of :mod:`graphcore.ops` on
random heterographs, compiled on the ``torch``, ``cpu`` and ``cuda-emu`` backends and compared
with eager PyTorch, forward and every gradient (input, parameters, edge data), in fp64.

A program is a list of steps (op, three small integers); the integers pick the operands among
the values built so far that the op accepts (a step with no acceptable operand does nothing), so
hypothesis shrinks a failure to the few steps that matter. Graphs: two of one schema per program
(the compiled model runs on both), 1-3 node types, 1-4 relations with 0-12 edges each (empty
relations, isolated nodes, duplicate edges, self loops, one relation or many), a positive
edge-weight field.

CI runs a fixed, small budget (derandomised, well under 2 minutes); a soak draws new examples:
``GRAPHCORE_FUZZ_EXAMPLES=2000 python -m pytest tests/codegen/test_fuzz_backends.py``.
Every failure found is kept below as a regression test (``test_regression_*``).
"""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import graphcore as gc
from graphcore import ops
from graphcore.codegen.backends.cuda_emu.executable import schedule
from graphcore.graph import HeteroGraph

SOAK = int(os.environ.get("GRAPHCORE_FUZZ_EXAMPLES", "0"))
EXAMPLES = SOAK or 10
BACKENDS = ("torch", "cpu", "cuda-emu")
UNARY = ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "neg", "identity")  # exp: see README
EWISE = ("add", "sub", "mul", "div")
OPS = ("linear", "typed_linear", "gather", "gather_param", "unary", "ewise", "scale", "split_heads",
       "merge_heads", "dot", "edge_softmax", "aggregate", "edge_data")
WIDTHS = (1, 2, 3, 4, 6)


class Program(nn.Module):
    """The model of a recipe: parameters are created on the first (eager) run on ``g``."""

    def __init__(self, recipe: list[tuple[str, int, int, int]], g: HeteroGraph, in_channels: int):
        super().__init__()
        self.recipe, self.in_channels = recipe, in_channels
        self.weights = nn.ParameterDict()
        self._creating = torch.Generator().manual_seed(len(recipe))
        with torch.no_grad():
            self.out_channels = self(g, torch.zeros(g.num_nodes(), in_channels)).shape[1]
        self._creating = None

    def param(self, name: str, *shape: int) -> torch.Tensor:
        if name not in self.weights:
            assert self._creating is not None, f"parameter {name} appeared after construction"
            self.weights[name] = nn.Parameter(0.5 * torch.randn(*shape, generator=self._creating))
        return self.weights[name]

    def forward(self, g: HeteroGraph, x: torch.Tensor) -> torch.Tensor:
        T, R = len(g.node_types), len(g.relations)
        values = [("node", x)]
        # positions in `values` (not tensor ids: an eager identity returns its input itself)
        used = set()  # of the values some step read
        read: list[int] = []  # of what the current step read

        def pick(i: int, accept) -> tuple[str, torch.Tensor] | None:
            ok = [n for n, v in enumerate(values) if accept(*v)]
            if not ok:
                return None
            at = ok[i % len(ok)]
            used.add(at)
            read.append(at)
            return values[at]

        for n, (op, i, j, k) in enumerate(self.recipe):
            name = f"p{n}"
            out = None
            read.clear()
            if op == "linear":
                got = pick(i, lambda kind, t: t.dim() == 2)
                if got:
                    kind, t = got
                    bias = self.param(name + "b", WIDTHS[k % 5]) if j % 2 else None
                    out = kind, ops.linear(t, self.param(name, t.shape[1], WIDTHS[k % 5]), bias)
            elif op == "typed_linear":
                got = pick(i, lambda kind, t: True)
                if got:
                    kind, t = got
                    types, by = (T, "ntype") if kind == "node" else (R, "etype")
                    width = WIDTHS[k % 5]
                    shape = (types, *t.shape[1:], width)  # [types, K, N] or per head [types, H, K, N]
                    bias = self.param(name + "b", types, *t.shape[1:-1], width) if j % 2 else None
                    out = kind, ops.typed_linear(g, t, self.param(name, *shape), by=by, bias=bias)
            elif op == "gather":
                got = pick(i, lambda kind, t: kind == "node")
                if got:
                    out = "edge", ops.gather(g, got[1], by="src" if j % 2 else "dst")
            elif op == "gather_param":
                kind, rows, by = ("edge", R, "etype") if j % 2 else ("node", T, "ntype")
                out = kind, ops.gather(g, self.param(name, rows, WIDTHS[k % 5]), by=by)
            elif op == "unary":
                got = pick(i, lambda kind, t: True)
                if got:
                    fn = UNARY[k % len(UNARY)]
                    out = got[0], ops.unary(fn, got[1], negative_slope=0.2, alpha=0.7)
            elif op == "ewise":
                got = pick(i, lambda kind, t: True)
                if got:
                    kind, a = got
                    other = pick(j, lambda kb, b: kb == kind and b.dim() == a.dim()
                                 and all(y in (x, 1) for x, y in zip(a.shape[1:], b.shape[1:])))
                    b = other[1]
                    fn = EWISE[k % 4]
                    if fn == "div":  # a denominator in [0.5, 1.5]
                        b = ops.ewise("add", ops.unary("sigmoid", b), 0.5)
                    out = kind, ops.ewise(fn, a, b)
            elif op == "scale":
                got = pick(i, lambda kind, t: True)
                if got:
                    out = got[0], ops.ewise("mul", got[1], (-1.5, 0.5, 2.0)[k % 3])
            elif op == "split_heads":
                heads = 2 + k % 2
                got = pick(i, lambda kind, t: t.dim() == 2 and t.shape[1] % heads == 0)
                if got:
                    out = got[0], ops.split_heads(got[1], heads)
            elif op == "merge_heads":
                got = pick(i, lambda kind, t: t.dim() == 3)
                if got:
                    out = got[0], ops.merge_heads(got[1])
            elif op == "dot":
                got = pick(i, lambda kind, t: True)
                if got:
                    kind, a = got
                    _, b = pick(j, lambda kb, b: kb == kind and b.shape[1:] == a.shape[1:])
                    out = kind, ops.dot(a, b)
            elif op == "edge_softmax":
                got = pick(i, lambda kind, t: kind == "edge" and t.shape[-1] == 1)
                if got:
                    out = "edge", ops.edge_softmax(g, got[1], group="dst_etype" if j % 2 else "dst")
            elif op == "aggregate":
                got = pick(i, lambda kind, t: kind == "edge")
                if got:
                    reduce = ("sum", "mean", "max")[k % 3]
                    group = "dst_etype" if j % 2 and reduce != "max" else "dst"
                    out = "node", ops.aggregate(g, got[1], reduce=reduce, group=group)
            elif op == "edge_data":
                out = "edge", ops.edge_data(g, "w")
            if out is not None:
                values.append(out)

        def as_node_rows(kind: str, t: torch.Tensor) -> torch.Tensor:
            t = ops.aggregate(g, t, reduce="sum") if kind == "edge" else t
            return ops.merge_heads(t) if t.dim() == 3 else t

        if len(values) == 1:  # no step applied: still one op to compile
            values.append(("node", ops.unary("tanh", x)))
        result = as_node_rows(*values[-1])
        for at, (kind, t) in enumerate(values[:-1]):  # every value no step read adds its row norm
            if at > 0 and at not in used:
                rows = as_node_rows(kind, t)
                result = ops.ewise("add", result, ops.dot(rows, rows))
        return result


@st.composite
def graphs(draw) -> tuple[HeteroGraph, HeteroGraph]:
    """Two graphs of one random schema (one compiled model serves both: graphs are run-time data)."""
    types = [f"t{i}" for i in range(draw(st.integers(1, 3)))]
    relations = [(draw(st.sampled_from(types)), f"r{i}", draw(st.sampled_from(types)))
                 for i in range(draw(st.integers(1, 4)))]
    return tuple(draw(graph_of(types, relations)) for _ in range(2))


@st.composite
def graph_of(draw, types: list[str], relations: list[tuple[str, str, str]]) -> HeteroGraph:
    num_nodes = {t: draw(st.integers(1, 6)) for t in types}
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    duplicates, self_loops, isolated = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    edges, weights = {}, {}
    for rel in relations:
        src, _, dst = rel
        count = draw(st.sampled_from((0, 1, 3, 12)))
        high = num_nodes[dst] - 1 if isolated and num_nodes[dst] > 1 else num_nodes[dst]
        s = torch.randint(num_nodes[src], (count,), generator=gen)
        d = torch.randint(high, (count,), generator=gen)
        if count and duplicates:
            s, d = torch.cat([s, s[:1]]), torch.cat([d, d[:1]])
        if count and self_loops and src == dst:
            loops = torch.arange(min(2, high))
            s, d = torch.cat([s, loops]), torch.cat([d, loops])
        edges[rel] = torch.stack([s, d])
        weights[rel] = 0.5 + torch.rand(s.numel(), generator=gen, dtype=torch.float64)
    return HeteroGraph(num_nodes, edges, edge_data={"w": weights})


steps = st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(0, 7), st.integers(0, 7))


def run(fn, model: nn.Module, g: HeteroGraph, x: torch.Tensor, probe: torch.Tensor, seed: int
        ) -> list[torch.Tensor]:
    """Output of ``fn`` (the model or a compiled copy) and the gradients of ``(out * probe).sum()``
    for the input, the parameters and the edge weights."""
    weights = [w.detach().requires_grad_() for w in g.edge_data["w"].values()]
    g = HeteroGraph({t: g.num_nodes(t) for t in g.node_types}, {r: g.edge_index(r) for r in g.relations},
                    edge_data={"w": dict(zip(g.relations, weights))})
    x = x.detach().requires_grad_()
    with schedule(seed):
        out = fn(g, x)
        leaves = [x, *model.parameters(), *weights]
        grads = torch.autograd.grad((out * probe).sum(), leaves, allow_unused=True)
    return [out.detach()] + [torch.zeros_like(l) if d is None else d for l, d in zip(leaves, grads)]


def check(recipe: list[tuple[str, int, int, int]], graphs: tuple[HeteroGraph, ...], in_channels: int = 3,
          seed: int = 0) -> None:
    """Every backend equals eager on ``recipe``'s program, forward and every gradient (fp64), on
    each of ``graphs`` (one schema) with one compiled model per backend."""
    torch.manual_seed(seed)
    model = Program(recipe, graphs[0], in_channels)
    cases = []
    for g in graphs:
        x = torch.randn(g.num_nodes(), in_channels)
        probe = torch.randn(g.num_nodes(), model.out_channels)
        cases.append((g, x, probe, run(model, model, g, x, probe, seed)))
    if SOAK:  # a line per program for the soak's log (pytest -s)
        print(f"fuzz: {len(recipe)} steps, {[g.num_nodes() for g in graphs]} nodes, "
              f"{[g.num_edges() for g in graphs]} edges, {graphs[0].num_relations} relations")
    names = ["output", "d input", *(f"d {n}" for n, _ in model.named_parameters()),
             *(f"d w{r}" for r in graphs[0].relations)]
    for backend in BACKENDS:
        compiled = gc.compile(model, backend=backend)
        for n, (g, x, probe, expected) in enumerate(cases):
            got = run(compiled, model, g, x, probe, seed)
            assert len(got) == len(expected) == len(names)
            for what, a, b in zip(names, got, expected):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10,
                                           msg=lambda m: f"{backend}, graph {n}, {what}: {m}")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # the autouse fp64 fixture
@given(recipe=st.lists(steps, min_size=1, max_size=10), graphs=graphs(), in_channels=st.integers(1, 5),
       seed=st.integers(0, 1000))
def test_every_backend_equals_eager_on_random_programs(recipe, graphs, in_channels, seed):
    check(recipe, graphs, in_channels, seed)


# ---------------------------------------------------------------------- regressions the fuzzer found
def empty_graph() -> HeteroGraph:
    return HeteroGraph({"t0": 3}, {("t0", "r0", "t0"): torch.zeros(2, 0, dtype=torch.long)},
                       edge_data={"w": {("t0", "r0", "t0"): torch.zeros(0)}})


@pytest.mark.parametrize("op", ["linear", "typed_linear"])
def test_regression_linear_of_zero_rows(op):
    check([("gather", 0, 0, 0), (op, 1, 0, 0)], (empty_graph(),))


@pytest.mark.parametrize("graph", ["one_relation", "mixed"])
def test_regression_compact_moves_a_reshape(graph):
    """merge_heads(aggregate(split_heads(gather(x, by="dst"), 2))) with gradients."""
    from graphcore.testing import edge_case_graphs

    g = edge_case_graphs()[graph]
    g = HeteroGraph({t: g.num_nodes(t) for t in g.node_types}, {r: g.edge_index(r) for r in g.relations},
                    edge_data={"w": {r: torch.ones(g.num_edges(r)) for r in g.relations}})
    check([("gather", 0, 0, 0), ("split_heads", 1, 0, 0)], (g,), in_channels=2)


def test_regression_fuse_gathers_a_value_of_its_own_kernel():
    """h = x W0; out = merge_heads(split_heads(h, 2)) + dot(x W1, x W1) + dot(s, s), s = aggregate(gather(h, src))."""
    from graphcore.testing import edge_case_graphs

    g = edge_case_graphs()["one_relation"]
    g = HeteroGraph({t: g.num_nodes(t) for t in g.node_types}, {r: g.edge_index(r) for r in g.relations},
                    edge_data={"w": {r: torch.ones(g.num_edges(r)) for r in g.relations}})
    check([("linear", 0, 0, 1), ("linear", 0, 0, 0), ("gather", 4, 5, 0), ("split_heads", 1, 0, 0)], (g,),
          in_channels=2)


@pytest.mark.parametrize("num_nodes, edges", [(1, []), (3, [(0, 1), (1, 2)])])
def test_regression_fuse_sums_rows_of_two_domains(num_nodes, edges):
    """out = aggregate(linear(w) + b) + dot(h, h), h = linear(x) + b: the backward's bias sums
    over edges and over nodes were one kernel, whose rows could only be one of the two."""
    index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()
    g = HeteroGraph({"t0": num_nodes}, {("t0", "r0", "t0"): index},
                    edge_data={"w": {("t0", "r0", "t0"): torch.ones(index.shape[1])}})
    check([("linear", 0, 1, 0), ("edge_data", 0, 0, 0), ("linear", 2, 1, 0)], (g,), in_channels=1)


def test_regression_one_trip_simd_copy_builds():
    """identity(h + h) of a width-1 h, summed with dots: GCC's -Wmaybe-uninitialized flagged the
    copy written by a one-trip `omp simd` loop, and -Werror stopped the build."""
    check([("linear", 0, 0, 0), ("linear", 0, 0, 0), ("aggregate", 0, 0, 0), ("edge_data", 0, 0, 0),
           ("ewise", 6, 3, 0), ("linear", 1, 0, 0), ("unary", 4, 0, 7)], (empty_graph(),), in_channels=3)


def test_regression_fuse_merges_no_two_regions_into_a_cycle():
    """Backward of two typed linears fed through each other's traversals: the sibling merge of
    traversals checked paths through outside ops only, so two merged traversals each fed the
    other through a GEMM (entering one at an op and leaving it at another)."""
    g = HeteroGraph({"t0": 1}, {("t0", "r0", "t0"): torch.tensor([[0], [0]])},
                    edge_data={"w": {("t0", "r0", "t0"): torch.ones(1)}})
    check([("linear", 0, 0, 0), ("typed_linear", 0, 3, 0), ("ewise", 0, 0, 0), ("linear", 6, 0, 0),
           ("typed_linear", 3, 3, 0), ("merge_heads", 0, 0, 0), ("edge_data", 0, 0, 0)], (g,), in_channels=1)


def test_regression_reorder_folds_no_untyped_weight_into_typed_ones():
    """linear(x, W1) then typed_linear(., W2[t]) on node rows, trained: reorder folded the chain
    into weight_matmul 'km,tmn->tkn', which lowering cannot run as one batched GEMM."""
    g = HeteroGraph({"t0": 6}, {("t0", "r0", "t0"): torch.tensor([[0, 1, 2], [3, 4, 5]]),
                                ("t0", "r1", "t0"): torch.tensor([[5, 4, 3], [0, 1, 2]])},
                    edge_data={"w": {("t0", "r0", "t0"): torch.ones(3), ("t0", "r1", "t0"): torch.ones(3)}})
    check([("linear", 0, 0, 0), ("typed_linear", 0, 3, 0), ("linear", 1, 4, 6), ("linear", 6, 6, 6),
           ("typed_linear", 3, 3, 1), ("merge_heads", 1, 2, 0), ("edge_data", 7, 0, 7), ("unary", 7, 4, 0),
           ("scale", 6, 4, 4)], (g,), in_channels=4, seed=890)


def test_regression_merge_heads_of_zero_rows_traces():
    """merge_heads(split_heads(per-relation rows)) on a graph without edges: the tracer's shape
    inference reshaped zero rows to [0, -1], which torch refuses as ambiguous."""
    check([("gather_param", 0, 1, 1), ("split_heads", 0, 0, 0), ("merge_heads", 0, 0, 0)], (empty_graph(),))

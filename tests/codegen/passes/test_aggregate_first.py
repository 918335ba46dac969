import torch

from graphcore.codegen.ir.program import OpKind
from graphcore.codegen.ir.values import Domain
from graphcore.codegen.passes import aggregate_first, dce
from graphcore import HeteroGraph, nn
from graphcore.trace import trace

from ..conftest import context


def program_for(g, aggr):
    model = nn.RGCN(8, 8, g.num_relations, aggr=aggr).double()
    program, _ = trace(model, g, (torch.randn(g.num_nodes(), 8, dtype=torch.float64),))
    return program


def test_rgcn_sums_per_destination_pair_before_the_gemm():
    dst = torch.tensor([0, 0, 0, 0, 1, 1])  # 2 (dst, etype) pairs over 6 edges
    src = torch.tensor([1, 2, 3, 4, 2, 3])
    g = HeteroGraph({"n": 5}, {("n", "r", "n"): torch.stack([src, dst])})
    for aggr in ("sum", "mean"):
        ctx = context(g, passes=("aggregate_first",))
        after = dce.run(aggregate_first.run(program_for(g, aggr), ctx), ctx)
        gemms = [op for op in after.ops if op.kind == OpKind.TYPED_LINEAR and op.inputs[1].domain == Domain.ETYPE]
        assert [op.inputs[0].domain for op in gemms] == [Domain.UDST]
        assert any(op.kind == OpKind.AGGREGATE and op.attr("index") == "udst_node" for op in after.ops)


def test_not_applied_without_repeated_destinations():
    src = torch.arange(5)
    g = HeteroGraph({"n": 10}, {("n", "r", "n"): torch.stack([src, src + 5])})
    program = program_for(g, "sum")
    assert aggregate_first.run(program, context(g, passes=("aggregate_first",))) is program

import torch

from graphcore.codegen.ir.program import OpKind
from graphcore.codegen.ir.values import Domain
from graphcore.codegen.passes import compact, dce
from graphcore import HeteroGraph, nn
from graphcore.trace import trace

from ..conftest import context


def rgcn(g):
    model = nn.RGCN(4, 3, g.num_relations).double()
    program, _ = trace(model, g, (torch.randn(g.num_nodes(), 4, dtype=torch.float64),))
    return program


def gemm_domains(program):
    return sorted(str(op.inputs[0].domain) for op in program.ops if op.kind == OpKind.TYPED_LINEAR)


def test_fires_when_sources_repeat():
    src = torch.tensor([0, 0, 0, 1, 1, 2])  # 3 distinct (src, etype) pairs over 6 edges
    dst = torch.tensor([1, 2, 3, 2, 3, 3])
    g = HeteroGraph({"n": 4}, {("n", "r", "n"): torch.stack([src, dst])})
    ctx = context(g, passes=("compact",))
    after = dce.run(compact.run(rgcn(g), ctx), ctx)
    assert gemm_domains(after) == ["node", "usrc"]
    assert any(op.kind == OpKind.GATHER and op.attr("index") == "usrc_inv" for op in after.ops)
    assert ctx.log and ctx.log[0][0] == "compact"


def test_does_not_fire_when_every_pair_is_distinct():
    src = torch.arange(6)
    g = HeteroGraph({"n": 7}, {("n", "r", "n"): torch.stack([src, torch.full((6,), 6)])})
    assert g.layout.unique_src.num_pairs == g.num_edges()
    program = rgcn(g)
    assert compact.run(program, context(g, passes=("compact",))) is program


def test_weight_gradient_sums_per_pair_first():
    from graphcore.codegen.passes import autodiff
    src = torch.tensor([0, 0, 0, 0, 1])
    dst = torch.tensor([1, 2, 3, 4, 2])
    g = HeteroGraph({"n": 5}, {("n", "r", "n"): torch.stack([src, dst])})
    ctx = context(g, passes=("compact",))
    joint = autodiff.run(rgcn(g), ctx)
    after = dce.run(compact.run(joint, ctx), ctx)
    outers = [op for op in after.ops if op.kind == OpKind.TYPED_OUTER and op.out.domain == Domain.ETYPE]
    assert outers and all(op.inputs[0].domain == Domain.USRC for op in outers)

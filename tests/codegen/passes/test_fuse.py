import pytest
import torch

from graphcore.codegen.ir.program import OpKind
from graphcore.codegen.lower import lower
from graphcore.codegen.ir.kernel import GemmSpec, Loop, TraversalSpec
from graphcore.codegen.ir.values import Domain
from graphcore.codegen.driver.plan import build_plan
from graphcore import nn
from graphcore.testing import edge_case_graphs
from graphcore.trace import trace
from graphcore.codegen.passes.context import GraphStats

G = edge_case_graphs()["mixed"]


def plan(model, train=False):
    program, _ = trace(model.double(), G, (torch.randn(G.num_nodes(), model.in_channels, dtype=torch.float64),))
    return build_plan(program, GraphStats.from_layout(G.layout), train=train, grad_inputs=(train,))


def test_attention_layer_is_two_gemms_a_weight_product_and_one_traversal():
    p = plan(nn.RGAT(6, 3, G.num_relations, heads=2))
    kernels = p.forward.kernels
    traversals = [k for k in kernels if isinstance(k, TraversalSpec)]
    assert len(traversals) == 1, [k.name for k in kernels]
    (t,) = traversals
    assert t.group_by == "dst" and t.rows == Domain.NODE
    loops = [s for s in t.body if isinstance(s, Loop)]
    assert len(loops) == 2, "online max-and-sum of exponentials, then normalise-and-aggregate"
    gemm_reads = {k.a.chain for k in kernels if isinstance(k, GemmSpec) and k.mode == "mm"}
    assert ("usrc_node",) in gemm_reads, "the message GEMM gathers its rows in the prologue"


def test_rgcn_gemm_scatters_in_its_epilogue():
    p = plan(nn.RGCN(6, 5, G.num_relations))
    scatters = [k for k in p.forward.kernels if isinstance(k, GemmSpec) and k.accumulate]
    assert scatters and scatters[0].c.chain in (("udst_node",), ("dst",))


def test_fused_programs_have_no_edge_sized_temporaries_for_rgat():
    p = plan(nn.RGAT(6, 3, G.num_relations, heads=2))
    temps = [b for b in p.forward.buffers if b.role == "temp" and b.domain == Domain.EDGE]
    assert temps == []


def edge_rows_wider_than(p, width):
    """Edge-domain buffers (|E| rows) of a plan, forward and backward, with more than ``width`` columns."""
    import math
    return [(b.name, b.shape) for prog in (p.forward, p.backward) if prog is not None for b in prog.buffers
            if b.domain == Domain.EDGE and b.role in ("temp", "output") and math.prod(b.shape) > width]


@pytest.mark.parametrize("layer", [
    lambda: nn.RGAT(6, 3, G.num_relations, heads=2),
    lambda: nn.RGAT(6, 6, G.num_relations, heads=1),
    lambda: nn.HGT(6, 6, G.num_node_types, G.num_relations, heads=2),
    lambda: nn.HGT(6, 6, G.num_node_types, G.num_relations, heads=1),
], ids=["rgat_2heads", "rgat", "hgt_2heads", "hgt"])
def test_attention_training_stores_no_edge_by_feature_rows(layer):
    """Only |E| x heads attention values cross between kernels; the |E| x d messages of the
    backward are recomputed inside the traversal that reduces them (DGL's u_mul_e_sum)."""
    model = layer()
    p = plan(model, train=True)
    assert edge_rows_wider_than(p, model.heads) == []
    assert any("recomputed in their consumers" in message for _, message in p.log)


def test_training_plan_fuses_backward_too():
    p = plan(nn.HGT(6, 6, G.num_node_types, G.num_relations, heads=2), train=True)
    assert p.backward is not None
    assert any(op.kind == OpKind.FUSED for op in p.programs["backward"].ops)
    assert len(p.backward.kernels) < len(p.programs["backward"].ops) + 20


def test_lowering_is_deterministic():
    program, _ = trace(nn.HGT(6, 6, G.num_node_types, G.num_relations).double(), G,
                       (torch.randn(G.num_nodes(), 6, dtype=torch.float64),))
    from graphcore.codegen.ir.values import Domain as D
    rows = {D.NTYPE: G.num_node_types, D.ETYPE: G.num_relations}
    assert lower(program, rows) == lower(program, rows)

"""Linear operator reordering: the cost model picks the known-better order in hand-computed cases.

Case 1 (RGAT, d_in = HF = 8, H = 1, only ``reorder`` enabled so nothing is compacted):
  destination side, before: h_dst = x_dst W_r costs 2*E*8*8 = 128E FLOPs, its score 2*E*8 = 16E;
  after: the folded [8, 1] weight costs 2*R*8*8 = 128R once, the score 16E. Saves 128(E - R): fold.
  source side: h_src is still needed for the messages, so folding only adds 128R: keep.
Case 2 (RGAT, d_in = 32, HF = 4): source side before 2*E*4 = 8E, after 2*E*32 = 64E: keep;
  destination side before 2*E*32*4 + 8E = 264E, after 64E (+ weights): fold.
Case 3 (HGT score (k_u W_r) . q_v with compaction): the relation matrix costs 2*D*D per distinct
  pair on whichever side it sits; on a star into one node (|U_dst| = 1 < |U_src| = 12) it moves to
  the destination side; on a star out of one node (|U_src| = 1) it stays on the source side.
"""
import torch

from graphcore.codegen.ir.program import OpKind
from graphcore.codegen.passes import dce, reorder
from graphcore.codegen.analysis.cost import estimate
from graphcore import HeteroGraph, nn
from graphcore.trace import trace

from ..conftest import context


def rgat_program(g, d_in, d_out):
    model = nn.RGAT(d_in, d_out, g.num_relations).double()
    program, _ = trace(model, g, (torch.randn(g.num_nodes(), d_in, dtype=torch.float64),))
    return program


def chain_graph(edges=40):
    src = torch.arange(edges) % 10
    dst = (torch.arange(edges) * 7) % 10
    return HeteroGraph({"n": 10}, {("n", "r0", "n"): torch.stack([src, dst]),
                                   ("n", "r1", "n"): torch.stack([dst, src])})


def typed_linears_reading(program, index_name):
    producers = program.producers()
    found = []
    for op in program.ops:
        if op.kind == OpKind.TYPED_LINEAR:
            p = producers.get(op.inputs[0].id)
            if p is not None and p.kind == OpKind.GATHER and p.attr("index") == index_name:
                found.append(op)
    return found


def test_case1_rgat_folds_destination_side_only():
    g = chain_graph()
    program = rgat_program(g, 8, 8)
    ctx = context(g, passes=("reorder",))
    after = dce.run(reorder.run(program, ctx), ctx)
    assert after.count(OpKind.WEIGHT_MATMUL) == 1
    assert len(typed_linears_reading(program, "dst")) == 1 and len(typed_linears_reading(after, "dst")) == 1
    folded = typed_linears_reading(after, "dst")[0]
    assert folded.out.shape == (1,), "the destination score reads x_dst through the folded [8, 1] weight"
    assert len(typed_linears_reading(after, "src")) == 1  # the message transform stays
    e, r = g.num_edges(), g.num_relations
    saved = estimate(program, ctx.stats).flops - estimate(after, ctx.stats).flops
    assert saved == 2 * e * 8 * 8 - 2 * r * 8 * 8 * 1


def test_case2_wide_input_keeps_source_side():
    g = chain_graph()
    program = rgat_program(g, 32, 4)
    ctx = context(g, passes=("reorder",))
    after = dce.run(reorder.run(program, ctx), ctx)
    assert after.count(OpKind.WEIGHT_MATMUL) == 1
    src_side = [op for op in after.ops if op.kind == OpKind.TYPED_LINEAR and op.out.shape == (1,)
                and op.inputs[0].shape == (4,)]
    assert len(src_side) == 1, "the source score still reads h_src (4 wide), not x_src (32 wide)"


def hgt_program(g):
    model = nn.HGT(4, 4, g.num_node_types, g.num_relations).double()
    program, _ = trace(model, g, (torch.randn(g.num_nodes(), 4, dtype=torch.float64),))
    return program


def att_side(program):
    producers = program.producers()
    for op in program.ops:
        if op.kind == OpKind.TYPED_LINEAR and op.attr("per_head") and op.inputs[1].name == "att_rel":
            source = producers[op.inputs[0].id]
            while source.kind == OpKind.RESHAPE:
                source = producers[source.inputs[0].id]
            return source.attr("index")
    raise AssertionError("no attention matrix found")


def test_case3_hgt_moves_attention_to_the_side_with_fewer_pairs():
    leaves = torch.arange(12)
    into_one = HeteroGraph({"n": 13}, {("n", "r", "n"): torch.stack([leaves, torch.full((12,), 12)])})
    out_of_one = HeteroGraph({"n": 13}, {("n", "r", "n"): torch.stack([torch.full((12,), 12), leaves])})
    passes = ("reorder", "compact")

    def optimised(g):
        ctx = context(g, passes)
        return dce.run(reorder.run(hgt_program(g), ctx), ctx)

    assert att_side(hgt_program(into_one)) == "src"
    assert att_side(optimised(into_one)) == "dst"
    assert att_side(optimised(out_of_one)) == "src"

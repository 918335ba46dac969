r"""The cost model: FLOPs and bytes of level-1 programs on one graph's real row counts.

Every op reads its inputs and writes its output once (the unfused upper bound); a GEMM-class op
costs :math:`2 M K N` FLOPs for :math:`M` rows. Reordering and compaction decide by comparing
the cost of the program with and without the rewrite, so the decision follows the actual
:math:`|E|`, :math:`|U|`, feature sizes and heads rather than a fixed rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from codegen.ir.program import Op, OpKind, Program
from codegen.ir.values import TYPE_DOMAINS, Domain, Value
from codegen.passes.context import GraphStats

ELEMENTWISE_FLOPS = {OpKind.EWISE: 1, OpKind.UNARY: 4, OpKind.DOT: 2, OpKind.EDGE_SOFTMAX: 6,
                     OpKind.AGGREGATE: 1, OpKind.SUM_TO: 1, OpKind.DROPOUT_MASK: 2}


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


def elements(v: Value, stats: GraphStats) -> int:
    """Number of scalars ``v`` holds on this graph."""
    return (1 if v.domain == Domain.SCALAR else stats[v.domain]) * v.row_size


def op_cost(op: Op, stats: GraphStats) -> Cost:
    itemsize = 8 if op.out.dtype == "float64" else 4
    moved = sum(elements(v, stats) for v in op.inputs) + elements(op.out, stats)
    if op.kind in (OpKind.TYPED_LINEAR, OpKind.TYPED_OUTER):
        rows = stats[op.inputs[0].domain]
        x, other = op.inputs
        width = op.out.row_size if op.kind == OpKind.TYPED_LINEAR else other.row_size
        flops = 2.0 * rows * x.row_size * width
        if op.attr("per_head"):
            flops /= x.shape[0]
        return Cost(flops, moved * itemsize)
    if op.kind == OpKind.WEIGHT_MATMUL:
        lhs, _ = op.attr("equation").split("->")
        sizes: dict[str, int] = {}
        for spec, v in zip(lhs.split(","), op.inputs):
            full = ((stats[v.domain],) if v.domain in TYPE_DOMAINS else ()) + v.shape
            sizes.update(zip(spec, full))
        return Cost(2.0 * float(torch.tensor(list(sizes.values()), dtype=torch.float64).prod()), moved * itemsize)
    if op.kind in (OpKind.CONST, OpKind.GRAPH_CONST, OpKind.RESHAPE):
        return Cost(0.0, 0.0)
    per = ELEMENTWISE_FLOPS.get(op.kind, 0)
    biggest = max([elements(v, stats) for v in op.inputs] + [elements(op.out, stats)])
    return Cost(float(per * biggest), moved * itemsize)


def estimate(program: Program, stats: GraphStats) -> Cost:
    """Total cost of a program (fused regions count their members)."""
    total = Cost(0.0, 0.0)
    for op in program.ops:
        for member in (op.attr("region") if op.kind == OpKind.FUSED else (op,)):
            total = total + op_cost(member, stats)
    return total

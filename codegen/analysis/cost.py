r"""The cost model: FLOPs and bytes of level-1 programs on one graph's real row counts.

Every op reads its inputs and writes its output once (the unfused upper bound); a GEMM-class op
costs :math:`2 M K N` FLOPs for :math:`M` rows. Gathers and reshapes are free: they are index
views that the consuming kernel reads through (its own cost counts those reads). The FLOPs of
each op are its op-table entry's (``codegen.ir.ops``). Reordering and compaction decide by
comparing costs with and without a rewrite (``codegen.passes.search``), so the decision follows
the actual :math:`|E|`, :math:`|U|`, feature sizes and heads rather than a fixed rule.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..ir.ops import definition
from ..ir.ops.base import elements
from ..ir.program import Op, OpKind, Program
from ..ir.values import Domain

@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


def op_cost(op: Op, stats: Mapping[Domain, int]) -> Cost:
    """FLOPs by the op table's rule; bytes: every input read and the output written once, none
    for views (their consumer pays for reading the rows)."""
    entry = definition(op.kind)
    if entry.traits.view:
        return Cost(0.0, 0.0)
    itemsize = 8 if op.out.dtype == "float64" else 4
    moved = sum(elements(v, stats) for v in op.inputs) + elements(op.out, stats)
    return Cost(entry.flops(op, stats), moved * itemsize)


def estimate(program: Program, stats: Mapping[Domain, int]) -> Cost:
    """Total cost of a program (fused regions count their members)."""
    total = Cost(0.0, 0.0)
    for op in program.ops:
        for member in (op.attr("region") if op.kind == OpKind.FUSED else (op,)):
            total = total + op_cost(member, stats)
    return total


def cheaper(a: Cost, b: Cost, tolerance: float = 1e-9) -> bool:
    """``a`` beats ``b``: fewer FLOPs, or as many FLOPs and fewer bytes."""
    if a.flops < b.flops * (1 - tolerance):
        return True
    return a.flops <= b.flops * (1 + tolerance) and a.bytes < b.bytes * (1 - tolerance)

r"""The cost model: FLOPs and bytes of level-1 programs on one graph's real row counts.

Every op reads its inputs and writes its output once (the unfused upper bound); a GEMM-class op
costs :math:`2 M K N` FLOPs for :math:`M` rows. Gathers and reshapes are free: they are index
views that the consuming kernel reads through (its own cost counts those reads). Reordering and compaction decide by comparing
the cost of the program with and without the rewrite, so the decision follows the actual
:math:`|E|`, :math:`|U|`, feature sizes and heads rather than a fixed rule.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from codegen.ir.ops import definition
from codegen.ir.ops.base import elements
from codegen.ir.program import Op, OpKind, Program
from codegen.passes.context import GraphStats, PassContext

@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


def op_cost(op: Op, stats: GraphStats) -> Cost:
    """FLOPs by the op table's rule; bytes: every input read and the output written once, none
    for views (their consumer pays for reading the rows)."""
    entry = definition(op.kind)
    if entry.traits.view:
        return Cost(0.0, 0.0)
    itemsize = 8 if op.out.dtype == "float64" else 4
    moved = sum(elements(v, stats) for v in op.inputs) + elements(op.out, stats)
    return Cost(entry.flops(op, stats), moved * itemsize)


def estimate(program: Program, stats: GraphStats) -> Cost:
    """Total cost of a program (fused regions count their members)."""
    total = Cost(0.0, 0.0)
    for op in program.ops:
        for member in (op.attr("region") if op.kind == OpKind.FUSED else (op,)):
            total = total + op_cost(member, stats)
    return total


def lookahead(program: Program, ctx: PassContext, after: str) -> Cost:
    """Cost of ``program`` once the optimising passes that follow ``after`` have run on it.

    A pass compares this for the program with and without a candidate rewrite, so a reorder
    that only pays after compaction (or loses after it) is judged on the final program.
    """
    from codegen.passes.pipeline import PASSES  # the registry imports every pass, this one included

    order = ctx.passes[ctx.passes.index(after) + 1:] if after in ctx.passes else ()
    quiet = replace(ctx, log=[])
    for name in ("cse", "dce", *(p for p in order if p != "fuse"), "dce"):
        program = PASSES[name](program, quiet)
    return estimate(program, ctx.stats)


def cheaper(a: Cost, b: Cost, tolerance: float = 1e-9) -> bool:
    """``a`` beats ``b``: fewer FLOPs, or as many FLOPs and fewer bytes."""
    if a.flops < b.flops * (1 - tolerance):
        return True
    return a.flops <= b.flops * (1 + tolerance) and a.bytes < b.bytes * (1 - tolerance)


def improve(program: Program, ctx: PassContext, name: str,
            candidates: Callable[[Program], Iterable[tuple[str, Program]]]) -> Program:
    """Greedy cost-driven rewriting: take the first candidate that makes the program cheaper
    (judged by :func:`lookahead`), log it under ``name``, and repeat until none does."""
    current = lookahead(program, ctx, name)
    improved = True
    while improved:
        improved = False
        for message, rewritten in candidates(program):
            cost = lookahead(rewritten, ctx, name)
            if cheaper(cost, current):
                ctx.note(name, message)
                program, current, improved = rewritten, cost, True
                break
    return program

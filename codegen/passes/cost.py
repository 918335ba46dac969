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

import torch

from codegen.ir.program import Op, OpKind, Program
from codegen.ir.values import TYPE_DOMAINS, Domain, Value
from codegen.passes.context import GraphStats, PassContext

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
    if op.kind in (OpKind.CONST, OpKind.GRAPH_CONST, OpKind.RESHAPE, OpKind.GATHER):
        return Cost(0.0, 0.0)  # views: their consumer pays for reading the rows
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

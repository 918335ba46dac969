r"""Cost-driven rewriting: the search the optimising passes share.

A pass offers candidate rewrites; :func:`improve` keeps the first that makes the program
cheaper *once the rest of the pipeline has run on it* (:func:`lookahead`), and repeats. Costs
are :mod:`codegen.analysis.cost`'s; the pass order is :mod:`codegen.passes.registry`'s.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from ..analysis.cost import Cost, cheaper, estimate
from ..ir.program import Program
from .context import PassContext


def lookahead(program: Program, ctx: PassContext, after: str) -> Cost:
    """Cost of ``program`` once the optimising passes that follow ``after`` have run on it.

    A pass compares this for the program with and without a candidate rewrite, so a reorder
    that only pays after compaction (or loses after it) is judged on the final program.
    """
    from .registry import PASSES, optimising_sequence  # the registry imports every pass

    quiet = replace(ctx, log=[])
    for name in optimising_sequence(ctx.passes, after=after):
        program = PASSES[name](program, quiet)
    return estimate(program, ctx.stats)


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

"""Running passes: each under the verifier (a failure names the pass), dumping what changed.

:func:`run_pass` runs one pass and verifies its result; :func:`optimise` runs one optimisation
round in the order of :mod:`codegen.passes.registry`. The whole compilation (autodiff,
partition, fusion, lowering) is :func:`codegen.driver.plan.build_plan`.
"""
from __future__ import annotations

from ..ir.program import Program
from ..ir.text import format_program
from ..ir.verify import verify
from .context import PassContext
from .dump import Dumper
from .registry import PASSES, Pass, optimising_sequence


def run_pass(name: str, fn: Pass, program: Program, ctx: PassContext, dumper: Dumper) -> Program:
    """``fn(program)``, verified; dumped under ``after_<name>`` if it changed anything."""
    result = verify(fn(program, ctx), pass_name=name)
    if result is not program:
        dumper.write(f"after_{name}", format_program(result, name))
    return result


def optimise(program: Program, ctx: PassContext, chosen: tuple[str, ...], dumper: Dumper) -> Program:
    """One optimisation round: clean-up, the chosen passes (``fuse`` excepted), clean-up."""
    for name in optimising_sequence(chosen):
        program = run_pass(name, PASSES[name], program, ctx, dumper)
    return program

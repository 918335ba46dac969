"""The compilation of one traced program into a :class:`Plan`.

Forward passes run on the traced program; ``autodiff`` appends the backward; the optimising
passes run again over the joint program (so the backward is optimised too); ``partition``
splits it; ``fuse`` groups each half into kernels; ``lower`` produces level-2 specs, verified.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.cost import Cost, estimate
from ..ir.kernel import KernelProgram
from ..ir.program import Program
from ..ir.text import format_kernels, format_program
from ..ir.values import Domain
from ..ir.verify import verify
from ..ir.verify_kernels import verify_kernels
from ..lower import lower
from ..passes import autodiff, partition
from ..passes.context import GraphStats, PassContext
from ..passes.dump import Dumper
from ..passes.pipeline import optimise, run_pass
from ..passes.registry import PASSES, resolve_passes


@dataclass
class Plan:
    """Everything one compilation produced."""

    forward: KernelProgram
    backward: KernelProgram | None
    num_saved: int
    programs: dict[str, Program]
    log: list[tuple[str, str]]
    stats: GraphStats
    cost_naive: Cost
    cost_optimised: Cost
    passes: tuple[str, ...] = field(default_factory=tuple)


def build_plan(traced: Program, stats: GraphStats, *, train: bool, grad_inputs: tuple[bool, ...],
               passes: Sequence[str] | None = None, dump_dir: str | Path | None = None) -> Plan:
    """Optimise, differentiate (if ``train``), fuse and lower a traced program."""
    chosen = resolve_passes(passes)
    dumper = Dumper(Path(dump_dir) if dump_dir is not None else None)
    ctx = PassContext(stats, num_primal_inputs=len(traced.inputs), num_primal_outputs=len(traced.outputs),
                      grad_inputs=grad_inputs, passes=chosen)
    dumper.write("traced", format_program(verify(traced, "trace"), "traced"))
    programs = {"traced": traced}
    type_rows = {Domain.NTYPE: stats[Domain.NTYPE], Domain.ETYPE: stats[Domain.ETYPE]}
    if train:
        naive = autodiff.run(traced, PassContext(stats, len(traced.inputs), len(traced.outputs), grad_inputs))
        cost_naive = estimate(naive, stats)
        program = optimise(traced, ctx, chosen, dumper)
        program = run_pass("autodiff", autodiff.run, program, ctx, dumper)
        program = optimise(program, ctx, chosen, dumper)
        programs["joint"] = program
        cost_optimised = estimate(program, stats)
        split = partition.run(program, ctx)
        halves = {"forward": split.forward, "backward": split.backward}
        num_saved = len(split.saved)
    else:
        cost_naive = estimate(traced, stats)
        program = optimise(traced, ctx, chosen, dumper)
        cost_optimised = estimate(program, stats)
        halves = {"forward": program}
        num_saved = 0
    kernels = {}
    for half, prog in halves.items():
        if "fuse" in chosen:
            prog = run_pass("fuse", PASSES["fuse"], prog, ctx, dumper)
        programs[half] = verify(prog, half)
        dumper.write(f"{half}_program", format_program(prog, half))
        kernels[half] = verify_kernels(lower(prog, type_rows), f"lower[{half}]")
        dumper.write(f"{half}_kernels", format_kernels(kernels[half]))
    return Plan(kernels["forward"], kernels.get("backward"), num_saved, programs, ctx.log, stats, cost_naive,
                cost_optimised, chosen)

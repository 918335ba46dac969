"""The compilation pipeline: named passes in order, the verifier after each, dumps, lowering.

Forward passes run on the traced program; ``autodiff`` appends the backward; the optimising
passes run again over the joint program (so the backward is optimised too); ``partition``
splits it; ``fuse`` groups each half into kernels; ``lower`` produces level-2 specs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codegen.errors import CompileError
from codegen.ir.kernel import KernelProgram
from codegen.ir.program import Program
from codegen.ir.text import format_kernels, format_program
from codegen.ir.values import Domain
from codegen.ir.verify import verify
from codegen.ir.verify_kernels import verify_kernels
from codegen.lower import lower
from codegen.passes import aggregate_first, autodiff, compact, cse, dce, fuse, partition, reorder
from codegen.passes.context import GraphStats, PassContext
from codegen.passes.cost import Cost, estimate

Pass = Callable[[Program, PassContext], Program]
# Optimising passes a user may choose (``compile(passes=[...])``), in pipeline order.
OPTIONAL: dict[str, Pass] = {"reorder": reorder.run, "aggregate_first": aggregate_first.run,
                             "compact": compact.run, "fuse": fuse.run}
PASSES: dict[str, Pass] = {"cse": cse.run, "dce": dce.run, **OPTIONAL}


@dataclass
class Dumper:
    """Writes numbered IR/spec text files into ``root`` (``dump_dir``)."""

    root: Path | None
    counter: int = 0

    def write(self, stage: str, text: str) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{self.counter:02d}_{stage}.txt").write_text(text + "\n")
        self.counter += 1


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


def _resolve(passes: Sequence[str] | None) -> tuple[str, ...]:
    if passes is None:
        return tuple(OPTIONAL)
    unknown = [p for p in passes if p not in OPTIONAL]
    if unknown:
        raise CompileError(f"unknown passes {unknown}; available: {list(OPTIONAL)}")
    return tuple(p for p in OPTIONAL if p in passes)


def _run(name: str, fn: Pass, program: Program, ctx: PassContext, dumper: Dumper) -> Program:
    result = verify(fn(program, ctx), pass_name=name)
    if result is not program:
        dumper.write(f"after_{name}", format_program(result, name))
    return result


def _optimise(program: Program, ctx: PassContext, chosen: tuple[str, ...], dumper: Dumper) -> Program:
    for name in ("cse", "dce", *(p for p in chosen if p != "fuse"), "cse", "dce"):
        program = _run(name, PASSES[name], program, ctx, dumper)
    return program


def build_plan(traced: Program, stats: GraphStats, *, train: bool, grad_inputs: tuple[bool, ...],
               passes: Sequence[str] | None = None, dump_dir: str | Path | None = None) -> Plan:
    """Optimise, differentiate (if ``train``), fuse and lower a traced program."""
    chosen = _resolve(passes)
    dumper = Dumper(Path(dump_dir) if dump_dir is not None else None)
    ctx = PassContext(stats, num_primal_inputs=len(traced.inputs), num_primal_outputs=len(traced.outputs),
                      grad_inputs=grad_inputs, passes=chosen)
    dumper.write("traced", format_program(verify(traced, "trace"), "traced"))
    programs = {"traced": traced}
    type_rows = {Domain.NTYPE: stats[Domain.NTYPE], Domain.ETYPE: stats[Domain.ETYPE]}
    if train:
        naive = autodiff.run(traced, PassContext(stats, len(traced.inputs), len(traced.outputs), grad_inputs))
        cost_naive = estimate(naive, stats)
        program = _optimise(traced, ctx, chosen, dumper)
        program = _run("autodiff", autodiff.run, program, ctx, dumper)
        program = _optimise(program, ctx, chosen, dumper)
        programs["joint"] = program
        cost_optimised = estimate(program, stats)
        split = partition.run(program, ctx)
        halves = {"forward": split.forward, "backward": split.backward}
        num_saved = len(split.saved)
    else:
        cost_naive = estimate(traced, stats)
        program = _optimise(traced, ctx, chosen, dumper)
        cost_optimised = estimate(program, stats)
        halves = {"forward": program}
        num_saved = 0
    kernels = {}
    for half, prog in halves.items():
        if "fuse" in chosen:
            prog = _run("fuse", PASSES["fuse"], prog, ctx, dumper)
        programs[half] = verify(prog, half)
        dumper.write(f"{half}_program", format_program(prog, half))
        kernels[half] = verify_kernels(lower(prog, type_rows), f"lower[{half}]")
        dumper.write(f"{half}_kernels", format_kernels(kernels[half]))
    return Plan(kernels["forward"], kernels.get("backward"), num_saved, programs, ctx.log, stats, cost_naive,
                cost_optimised, chosen)

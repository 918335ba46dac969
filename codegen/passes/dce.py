"""Dead-code elimination: drop ops whose outputs nothing reads."""
from __future__ import annotations

from ..ir.program import Program
from .context import PassContext


def run(program: Program, ctx: PassContext) -> Program:
    """Keep the ops that the outputs transitively read, in their order."""
    live = {v.id for v in program.outputs}
    kept = []
    for op in reversed(program.ops):
        if any(v.id in live for v in op.outputs):
            kept.append(op)
            live.update(v.id for v in op.inputs)
    if len(kept) == len(program.ops):
        return program
    ctx.note("dce", f"removed {len(program.ops) - len(kept)} dead ops")
    return Program(program.inputs, program.params, tuple(reversed(kept)), program.outputs)

r"""Reverse-mode autodiff inside the IR: one VJP rule per op kind.

The result is a *joint* program: inputs are the primal inputs followed by one cotangent per
primal output; outputs are the primal outputs, then the gradients of the inputs marked in
``ctx.grad_inputs``, then one gradient per parameter. Because the backward ops are ordinary IR
ops, every later pass (reordering, compaction, fusion) optimises them too; ``partition`` then
splits the joint program into a forward and a backward program.

The VJP rules are the op table's (``codegen.ir.ops``): each gets a builder, the op and its
output cotangent ``g``, and returns one cotangent per input (``None`` where the input is not
differentiable). For :math:`y = f(x_1, \dots)`, it emits :math:`\bar{x}_i = \bar{y}\, \partial y / \partial x_i`.
"""
from __future__ import annotations

from ..ir.ops import definition
from ..ir.ops.base import const
from ..ir.program import Builder, OpKind, Program
from ..ir.values import Value
from .context import PassContext


def run(program: Program, ctx: PassContext) -> Program:
    """Append the backward computation; see the module docstring for the joint interface."""
    if ctx.differentiated:
        return program
    b = Builder.after(program)
    b.ops = list(program.ops)
    cotangents = tuple(b.value(y.domain, y.shape, y.dtype, f"grad_output{i}") for i, y in enumerate(program.outputs))
    grads: dict[int, Value] = {}

    def accumulate(v: Value, g: Value) -> None:
        grads[v.id] = g if v.id not in grads else b.emit(OpKind.EWISE, (grads[v.id], g), op="add")

    for y, dy in zip(program.outputs, cotangents):
        accumulate(y, dy)
    for op in reversed(program.ops):
        g = grads.get(op.out.id)
        if g is None:
            continue
        b.loc = op.loc
        for inp, dinp in zip(op.inputs, definition(op.kind).vjp(b, op, g)):
            if dinp is not None:
                accumulate(inp, dinp)

    def gradient(v: Value) -> Value:
        if v.id in grads:
            return grads[v.id]
        return b.emit(OpKind.EWISE, (v, const(b, 0.0, v.dtype)), op="mul")  # unreachable: zero

    wanted = [v for v, flag in zip(program.inputs, ctx.grad_inputs) if flag]
    outputs = (*program.outputs, *(gradient(v) for v in wanted), *(gradient(p) for p in program.params))
    ctx.num_primal_inputs, ctx.num_primal_outputs = len(program.inputs), len(program.outputs)
    ctx.differentiated = True
    ctx.note("autodiff", f"added {len(b.ops) - len(program.ops)} backward ops for {len(wanted)} inputs "
                         f"and {len(program.params)} parameters")
    return Program(program.inputs + cotangents, program.params, tuple(b.ops), outputs)

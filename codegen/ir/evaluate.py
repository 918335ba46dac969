"""The level-1 interpreter: the meaning of a program, executed op by op with PyTorch.

Pass tests compare :func:`evaluate` before and after a pass in fp64; the reference backend
must agree with it. Values of a type domain are tensors ``[T, *row]``, scalar-domain values
are whole tensors, row-domain values ``[rows, *row]``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .layout import GraphLayout
from .ops import definition
from .program import Op, OpKind, Program


def run_op(op: Op, args: Sequence[Tensor], layout: GraphLayout, generator: torch.Generator | None = None) -> Tensor:
    """Execute one non-fused op on concrete tensors (the op table's ``evaluate`` rule)."""
    return definition(op.kind).evaluate(op, args, layout, generator)


def evaluate(program: Program, layout: GraphLayout, inputs: Sequence[Tensor], params: Sequence[Tensor],
             generator: torch.Generator | None = None) -> list[Tensor]:
    """Run ``program`` on one graph's layout; returns the output tensors."""
    env: dict[int, Tensor] = {}
    for value, tensor in zip(program.inputs, inputs, strict=True):
        env[value.id] = tensor
    for value, tensor in zip(program.params, params, strict=True):
        env[value.id] = tensor
    for op in program.ops:
        region = op.attr("region") if op.kind == OpKind.FUSED else (op,)
        for member in region:
            env[member.out.id] = run_op(member, [env[v.id] for v in member.inputs], layout, generator)
    return [env[v.id] for v in program.outputs]

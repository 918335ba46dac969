"""Common-subexpression elimination: one op per distinct (kind, inputs, attrs).

Ops with the ``distinct`` trait are never merged: two dropout masks are two draws.
"""
from __future__ import annotations

from ..ir.ops import traits
from ..ir.program import Program, rebuild
from ..ir.values import Value
from .context import PassContext


def run(program: Program, ctx: PassContext) -> Program:
    seen: dict[tuple, Value] = {}
    mapping: dict[int, Value] = {}
    kept = []
    for op in program.ops:
        inputs = tuple(mapping.get(v.id, v).id for v in op.inputs)
        key = (op.kind, inputs, op.attrs)
        if not traits(op).distinct and key in seen:
            mapping[op.out.id] = seen[key]
            continue
        seen[key] = op.out
        kept.append(op)
    if not mapping:
        return program
    ctx.note("cse", f"merged {len(mapping)} duplicate ops")
    return rebuild(program, kept, mapping)

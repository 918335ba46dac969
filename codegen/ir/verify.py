"""Shape and domain inference for level-1 ops, and the program verifier.

:func:`infer` applies the op table's typing rule (``codegen.ir.ops``): the
:class:`~codegen.ir.program.Builder` calls it to type new values, and :func:`verify` re-runs it on
every op after every pass, so a pass that builds an ill-typed op fails at once, named after the pass.
"""
from __future__ import annotations

from typing import Any

from ..errors import CompileError, VerifyError
from .ops import definition
from .program import Op, OpKind, Program
from .values import DTYPES, Domain, Value

Typing = tuple[Domain, tuple[int, ...], str]


def infer(kind: OpKind, inputs: tuple[Value, ...], attrs: dict[str, Any]) -> Typing:
    """Domain, row shape and dtype of ``kind(inputs)`` by the op table's rule; raises
    :class:`CompileError` if ill-typed. Every op's inputs share one dtype (a ``dtype`` attribute
    gives it to ops without inputs)."""
    dtypes = {v.dtype for v in inputs}
    if len(dtypes) > 1:
        raise CompileError(f"{kind}: mixed dtypes {sorted(dtypes)}", op=str(kind))
    dtype = dtypes.pop() if dtypes else attrs.get("dtype", "float32")
    if dtype not in DTYPES:
        raise CompileError(f"{kind}: unsupported dtype {dtype}", op=str(kind))
    domain, shape = definition(kind).infer(kind, inputs, attrs)
    return domain, shape, dtype


def verify(program: Program, pass_name: str | None = None) -> Program:
    """Check SSA form and re-infer every op's typing; returns the program for chaining.

    Raises:
        VerifyError: naming ``pass_name``, the op and what is wrong.
    """
    defined: dict[int, Value] = {}
    for v in (*program.inputs, *program.params):
        if v.id in defined:
            raise VerifyError(f"value %{v.id} is declared twice", pass_name=pass_name)
        defined[v.id] = v
    for op in program.ops:
        for v in op.inputs:
            if defined.get(v.id) != v:
                raise VerifyError(f"{op.kind} reads {v.describe()} before it is defined (or with another type)",
                                  pass_name=pass_name)
        if op.kind == OpKind.FUSED:
            _verify_region(op, pass_name)
            expected = [(v.domain, v.shape, v.dtype) for v in op.outputs]
        else:
            try:
                expected = [infer(op.kind, op.inputs, dict(op.attrs))]
            except CompileError as err:
                raise VerifyError(f"ill-typed op: {err}", pass_name=pass_name) from err
        got = [(v.domain, v.shape, v.dtype) for v in op.outputs]
        if got != expected:
            raise VerifyError(f"{op.kind} outputs {got} but its inputs infer {expected}", pass_name=pass_name)
        for v in op.outputs:
            if v.id in defined:
                raise VerifyError(f"value %{v.id} is defined twice ({op.kind})", pass_name=pass_name)
            defined[v.id] = v
    for v in program.outputs:
        if defined.get(v.id) != v:
            raise VerifyError(f"output {v.describe()} is never defined", pass_name=pass_name)
    return program


def _verify_region(fused: Op, pass_name: str | None) -> None:
    """The members of a fusion region: each well typed, reading only the region's inputs or
    earlier members, and defining every value the region lets escape."""
    region = fused.attr("region")
    if not region:
        raise VerifyError("a fused op has no members", pass_name=pass_name)
    defined = {v.id: v for v in fused.inputs}
    for member in region:
        if member.kind == OpKind.FUSED:
            raise VerifyError("a fusion region holds another fusion region", pass_name=pass_name)
        for v in member.inputs:
            if defined.get(v.id) != v:
                raise VerifyError(f"fused {fused.attr('kind')} region: member {member.kind} reads {v.describe()}, "
                                  "which is neither a region input nor an earlier member's output",
                                  pass_name=pass_name)
        try:
            expected = infer(member.kind, member.inputs, dict(member.attrs))
        except CompileError as err:
            raise VerifyError(f"fused region: ill-typed member: {err}", pass_name=pass_name) from err
        if (member.out.domain, member.out.shape, member.out.dtype) != expected:
            raise VerifyError(f"fused region: member {member.kind} outputs {member.out.describe()} but its inputs "
                              f"infer {expected}", pass_name=pass_name)
        defined.update((v.id, v) for v in member.outputs)
    for v in fused.outputs:
        if defined.get(v.id) != v:
            raise VerifyError(f"fused region lets {v.describe()} escape, but no member defines it", pass_name=pass_name)

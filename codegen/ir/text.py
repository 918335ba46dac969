"""Readable text for level-1 programs (what ``dump_dir`` writes and ``explain()`` shows)."""
from __future__ import annotations

from codegen.ir.program import Op, OpKind, Program
from codegen.ir.values import Value


def _type(v: Value) -> str:
    dims = "x".join(str(s) for s in v.shape) or "1"
    return f"{v.domain}[{dims}]"


def _attrs(op: Op) -> str:
    shown = [(k, v) for k, v in op.attrs if k != "region"]
    return "[" + ", ".join(f"{k}={v}" for k, v in shown) + "]" if shown else ""


def format_op(op: Op, indent: str = "  ") -> list[str]:
    outs = ", ".join(f"{v}: {_type(v)}" for v in op.outputs)
    args = ", ".join(str(v) for v in op.inputs)
    loc = f"  # {op.loc}" if op.loc else ""
    lines = [f"{indent}{outs} = {op.kind}{_attrs(op)}({args}){loc}"]
    if op.kind == OpKind.FUSED:
        lines[-1] = lines[-1] + " {"
        for member in op.attr("region"):
            lines.extend(format_op(member, indent + "  "))
        lines.append(f"{indent}}}")
    return lines


def format_program(program: Program, title: str = "program") -> str:
    """The program as text, one op per line: ``%3: edge[4x8] = gather[index=src](%0)``."""
    heads = [f"{v}: {_type(v)} {v.dtype}" + (f" '{v.name}'" if v.name else "")
             for v in (*program.inputs, *program.params)]
    lines = [f"{title}(" + ", ".join(heads) + ") {"]
    for op in program.ops:
        lines.extend(format_op(op))
    lines.append("  return " + ", ".join(str(v) for v in program.outputs))
    lines.append("}")
    return "\n".join(lines)

"""Readable text for level-1 programs (what ``dump_dir`` writes and ``explain()`` shows)."""
from __future__ import annotations

from .program import Op, OpKind, Program
from .values import Value


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


def _access(a) -> str:
    where = {"row": "i", "member": "m", "global": "0"}[a.base]
    for name in a.chain:
        where = f"{name}[{where}]"
    return f"{a.buffer}[{where}]"


def _stmt(s, indent: str) -> str:
    from .kernel import Loop

    if isinstance(s, Loop):
        inner = "\n".join(_stmt(x, indent + "  ") for x in s.body)
        return f"{indent}for m in members(i) {{\n{inner}\n{indent}}}"
    attrs = {k: v for k, v in s.attrs}
    access = attrs.pop("access", None)
    extra = ", ".join(f"{k}={v}" for k, v in attrs.items())
    shape = "x".join(str(d) for d in s.shape) or "1"
    if s.op == "load":
        return f"{indent}{s.out}[{shape}] = {_access(access)}"
    if s.op == "store":
        arrow = "+=" if attrs.get("mode") == "add" or access.chain else "="
        return f"{indent}{_access(access)} {arrow} {s.args[0]}"
    if s.op == "reduce":
        peak = f"  (running max in {attrs['peak']})" if "peak" in attrs else ""
        return f"{indent}{s.out} {attrs['fn']}= {s.args[0]}{peak}"
    return f"{indent}{s.out}[{shape}] = {s.op}[{extra}]({', '.join(s.args)})"


def format_kernels(program) -> str:
    """Level-2 specs as text: buffers, then each kernel's fields and body."""
    from .kernel import GemmSpec

    lines = ["buffers:"]
    for b in program.buffers:
        dims = "x".join(str(s) for s in b.shape) or "1"
        lines.append(f"  {b.name}: {b.domain}[{dims}] {b.dtype} ({b.role})")
    lines.append(f"inputs: {', '.join(program.inputs)}; params: {', '.join(program.params)}; "
                 f"outputs: {', '.join(program.outputs)}")
    if program.random:
        lines.append("random: " + ", ".join(f"{n} (dropout p={p})" for n, p in program.random))
    for k in program.kernels:
        lines.append("")
        if isinstance(k, GemmSpec):
            head = (f"GemmSpec {k.name}: mode={k.mode} rows={k.rows} segments={k.segments} heads={k.heads} "
                    f"k={k.k} n={k.n} transpose_b={k.transpose_b} accumulate={k.accumulate} tile={k.tile}")
            if k.mode == "dense":
                head += f" batch={k.batch} m={k.m} strides={k.strides}"
            lines.append(head)
            lines.append(f"  A = {_access(k.a)}   B = {_access(k.b)}   C = {_access(k.c)}")
            for s in k.epilogue:
                lines.append(_stmt(s, "  "))
            if k.epilogue:
                lines.append(f"  store {k.result}")
        else:
            lines.append(f"TraversalSpec {k.name}: rows={k.rows} group_by={k.group_by} members={k.members}")
            for s in k.body:
                lines.append(_stmt(s, "  "))
    return "\n".join(lines)

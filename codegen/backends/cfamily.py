r"""The C-family printer: level-2 specs to C++ (CPU) or CUDA C++ source.

A printer spells; it decides nothing. :class:`CFamilyPrinter` walks a
:class:`~codegen.ir.kernel.KernelProgram` and prints every statement, address and traversal
body; the dialects (``cpu/printer.py``, ``cuda/printer.py``) supply the spellings that differ:
type and math names, how a parallel loop over rows or groups is written, and the GEMM template's
outer loops.

**ABI.** A compiled model is one translation unit (:func:`print_module`); each of its programs
(``forward``, ``backward``) becomes one ``extern "C"`` entry ``graphcore_<name>(B, I, rows, numel, ...)``:
``B`` holds the data pointers of the buffers in :attr:`Abi.buffers` order, ``I`` the int64 index
arrays in :attr:`Abi.indices` order (index maps, segment pointers, group CSR pointers and
member lists), ``rows`` the row count of every domain in :data:`DOMAIN_ORDER`, ``numel`` the
element count of every buffer as the caller allocated it. Before any kernel runs, the entry
compares ``numel`` of every buffer the caller supplies (inputs, parameters, dropout masks) with
what the row counts imply and returns ``-(i + 1)`` for the first buffer ``i`` that disagrees:
the Python side checks this already, the native check is defence in depth against reading past
the end of a caller's tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .abi import DOMAIN_ORDER, Abi
from .writer import CodeWriter
from ..ir.kernel import Access, GemmSpec, KernelProgram, Loop, Stmt, TraversalSpec
from ..ir.ops.functions import BINARY, UNARY
from ..ir.values import ALL_ROWS, INDEX_MAPS, ROW_TYPES, Domain


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def _trailing_blocks(src: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, int] | None:
    """``(outer, inner)`` when summing ``src`` to ``target`` adds up contiguous blocks of
    ``inner`` elements (``target`` is a leading part of ``src`` followed by 1s, or a scalar);
    None for other broadcasts."""
    if _size(target) == 1:
        return 1, _size(src)
    if len(target) != len(src):
        return None
    lead = 0
    while lead < len(src) and src[lead] == target[lead]:
        lead += 1
    if any(d != 1 for d in target[lead:]):
        return None
    return _size(src[:lead]), _size(src[lead:])


@dataclass
class _Scope:
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


class CFamilyPrinter:
    """Shared printing; subclasses set the dialect hooks (see module doc)."""

    restrict = "__restrict__"

    def __init__(self, program: KernelProgram, prefix: str = "run"):
        self.program, self.prefix = program, prefix
        self.dtype = next((b.dtype for b in program.buffers), "float32")
        self.buffers = tuple(b.name for b in program.buffers)
        self._indices: list[tuple[str, str]] = []
        # what the kernel being printed reads: variable -> (C type, expression on B/I/rows)
        self.uses: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------ names
    def kernel_name(self, k) -> str:
        return f"{self.prefix}_{k.name}"

    def buf(self, name: str) -> int:
        return self.buffers.index(name)

    def index_slot(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._indices:
            self._indices.append(key)
        return self._indices.index(key)

    def index_var(self, kind: str, name: str) -> str:
        prefix = {"index": "ix", "ptr": "sp", "group_ptr": "gp", "group_perm": "gm"}[kind]
        return f"{prefix}_{'all' if name == ALL_ROWS else name}"

    def use_index(self, kind: str, name: str) -> str:
        var = self.index_var(kind, name)
        self.uses[var] = ("const int64_t*", f"I[{self.index_slot(kind, name)}]")
        return var

    def rows_of(self, domain: Domain | None) -> str:
        domain = domain or Domain.SCALAR
        var = f"n_{domain}"
        self.uses[var] = ("int64_t", f"rows[{DOMAIN_ORDER.index(domain)}]")
        return var

    def address(self, access: Access, base: str) -> str:
        expr = base
        for name in access.chain:
            expr = "0" if name == ALL_ROWS else f"{self.use_index('index', name)}[{expr}]"
        return expr

    def use_buffer(self, name: str) -> str:
        self.uses[name] = ("real*", f"(real*)B[{self.buf(name)}]")
        return name

    # ------------------------------------------------------------------ dialect hooks
    def literal(self, value: float) -> str:
        if math.isinf(value):
            return "(-(real)INFINITY)" if value < 0 else "((real)INFINITY)"
        return f"(real){value!r}"

    # ------------------------------------------------------------------ statements
    def math_prefix(self) -> str:  # the namespace of math functions in function spellings
        return "std::"

    def unary_expr(self, s: Stmt, x: str) -> str:
        return UNARY[s.attr("fn")].c.format(x=x, std=self.math_prefix(), slope=self.literal(s.attr("negative_slope", 0.01)),
                                            alpha=self.literal(s.attr("alpha", 1.0)))

    def binary_expr(self, s: Stmt, a: str, b: str) -> str:
        return BINARY[s.attr("fn")].c.format(a=a, b=b)

    def _broadcast_index(self, shape: tuple[int, ...], out: tuple[int, ...], loop_vars: list[str]) -> str:
        """Flat index into ``shape`` for the element of ``out`` at ``loop_vars`` (right-aligned broadcast)."""
        if _size(shape) == 1:
            return "0"
        terms, stride = [], 1
        offset = len(out) - len(shape)
        for d in reversed(range(len(shape))):
            if shape[d] != 1:
                terms.append(f"{loop_vars[d + offset]} * {stride}" if stride != 1 else loop_vars[d + offset])
            stride *= shape[d]
        return " + ".join(reversed(terms)) or "0"

    def assign(self, lhs: str, op: str, rhs: str) -> str:
        """One element update; ``atomic+=`` marks an add that other threads may race with."""
        if op == "atomic+=":
            raise ValueError("this dialect has no atomic add: legalise scatters before printing")
        return f"{lhs} {op} {rhs};"

    def elementwise(self, w: CodeWriter, out: str, shape: tuple[int, ...], args: list[tuple[str, tuple[int, ...]]],
                    expr, op: str = "=") -> None:
        """``out[e] op expr(arg_0[e'], ...)`` over every element of ``shape`` with broadcasting."""
        n = _size(shape)
        if all(a_shape == shape or _size(a_shape) == 1 for _, a_shape in args):
            items = [f"{a}[{'j' if a_shape == shape and n > 1 else '0'}]" for a, a_shape in args]
            if self.simd():
                w.line(self.simd())
            w.line(f"for (int64_t j = 0; j < {n}; ++j) {self.assign(f'{out}[j]', op, expr(*items))}")
            return
        loop_vars = [f"j{d}" for d in range(len(shape))]
        for d, extent in enumerate(shape):
            w.line(f"for (int64_t j{d} = 0; j{d} < {extent}; ++j{d})")
        flat = " + ".join(f"j{d} * {_size(shape[d + 1:])}" for d in range(len(shape)))
        items = [f"{a}[{self._broadcast_index(a_shape, shape, loop_vars)}]" for a, a_shape in args]
        w.line(f"  {self.assign(f'{out}[{flat}]', op, expr(*items))}")

    def member_loop_barrier(self) -> str:
        """A statement at the top of every member loop that keeps the compiler from vectorising
        across members (empty where a dialect needs none)."""
        return ""

    def member_prefetch(self, w: CodeWriter, loads: list[Access], group_ptr: str, group_perm: str | None) -> None:
        """Statements at the top of a member loop that fetch the rows a later member will load
        (none where a dialect hides latency otherwise)."""

    def simd(self, clause: str = "") -> str:
        """The vectorisation hint before an innermost loop (empty where a dialect has none)."""
        return f"#pragma omp simd {clause}".rstrip()

    def stmt(self, w: CodeWriter, s: Stmt, scope: _Scope, base: str) -> None:
        """Print one statement through :attr:`STATEMENTS`."""
        spell = self.STATEMENTS.get(s.op)
        if spell is None:
            raise ValueError(f"cannot print statement {s.op!r}")
        spell(self, w, s, scope.shapes, base)

    def _load(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        access: Access = s.attr("access")
        row = _size(self.program.buffer(access.buffer).shape)
        where = "0" if access.base == "global" else self.address(access, "m" if access.base == "member" else base)
        w.line(f"const real* {s.out} = {self.use_buffer(access.buffer)} + (int64_t)({where}) * {row};")
        shapes[s.out] = s.shape

    def _const(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        w.line(f"const real {s.out}[1] = {{{self.literal(s.attr('value'))}}};")
        shapes[s.out] = ()

    def _reshape(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        w.line(f"const real* {s.out} = {s.args[0]};")
        shapes[s.out] = s.shape

    def _ewise(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        w.line(f"real {s.out}[{_size(s.shape)}];")
        self.elementwise(w, s.out, s.shape, [(a, shapes[a]) for a in s.args], lambda a, b: self.binary_expr(s, a, b))
        shapes[s.out] = s.shape

    def _unary(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        w.line(f"real {s.out}[{_size(s.shape)}];")
        self.elementwise(w, s.out, s.shape, [(a, shapes[a]) for a in s.args], lambda x: self.unary_expr(s, x))
        shapes[s.out] = s.shape

    def _dot(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        a, b = s.args
        width = shapes[a][-1]
        outer = _size(s.shape)
        w.line(f"real {s.out}[{outer}];")
        with w.block(f"for (int64_t o = 0; o < {outer}; ++o)"):
            w.line("real dot = (real)0;")
            w.line(self.simd("reduction(+:dot)"))
            w.line(f"for (int64_t f = 0; f < {width}; ++f) dot += {a}[o * {width} + f] * {b}[o * {width} + f];")
            w.line(f"{s.out}[o] = dot;")
        shapes[s.out] = s.shape

    def _sum_to(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        (a,) = s.args
        blocks = _trailing_blocks(shapes[a], s.shape)
        if blocks is not None:
            # sums of contiguous blocks (a per-head or per-row total, HGT's and the edge-weight
            # gradients' dot products): one accumulator per block, reassociated so it vectorises;
            # a serial '+=' chain was latency-bound (6x slower on 1536-wide rows)
            outer, inner = blocks
            w.line(f"real {s.out}[{outer}];")
            with w.block(f"for (int64_t o = 0; o < {outer}; ++o)"):
                w.line("real total = (real)0;")
                if self.simd():
                    w.line(self.simd("reduction(+:total)"))
                w.line(f"for (int64_t f = 0; f < {inner}; ++f) total += {a}[o * {inner} + f];")
                w.line(f"{s.out}[o] = total;")
            shapes[s.out] = s.shape
            return
        w.line(f"real {s.out}[{_size(s.shape)}];")
        w.line(f"for (int64_t j = 0; j < {_size(s.shape)}; ++j) {s.out}[j] = (real)0;")
        src = shapes[a]
        loop_vars = [f"j{d}" for d in range(len(src))]
        for d, extent in enumerate(src):
            w.line(f"for (int64_t j{d} = 0; j{d} < {extent}; ++j{d})")
        flat = " + ".join(f"j{d} * {_size(src[d + 1:])}" for d in range(len(src))) or "0"
        w.line(f"  {s.out}[{self._broadcast_index(s.shape, src, loop_vars)}] += {a}[{flat}];")
        shapes[s.out] = s.shape

    def _init(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        w.line(f"real {s.out}[{_size(s.shape)}];")
        w.line(f"for (int64_t j = 0; j < {_size(s.shape)}; ++j) {s.out}[j] = {self.literal(s.attr('value'))};")
        shapes[s.out] = s.shape

    def _reduce(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        (a,) = s.args
        if s.attr("fn") == "softmax":
            peak, exp = s.attr("peak"), f"{self.math_prefix()}exp"
            with w.block(f"for (int64_t j = 0; j < {_size(s.shape)}; ++j)"):
                w.line(f"const real hi = {a}[j] > {peak}[j] ? {a}[j] : {peak}[j];")
                w.line(f"{s.out}[j] = {s.out}[j] * {exp}({peak}[j] - hi) + {exp}({a}[j] - hi);")
                w.line(f"{peak}[j] = hi;")
        elif s.attr("fn") == "sum":
            self.elementwise(w, s.out, s.shape, [(a, shapes[a])], lambda x: x, op="+=")
        else:
            self.elementwise(w, s.out, s.shape, [(s.out, s.shape), (a, shapes[a])],
                             lambda acc, x: f"(({x}) > ({acc}) ? ({x}) : ({acc}))")

    def _store(self, w: CodeWriter, s: Stmt, shapes: dict, base: str) -> None:
        access = s.attr("access")
        (a,) = s.args
        buffer = self.program.buffer(access.buffer)
        row = _size(buffer.shape)
        where = "0" if buffer.domain == Domain.SCALAR else self.address(access, "m" if access.base == "member" else base)
        mode = "+=" if s.attr("mode") == "add" else "="
        if mode == "+=" and access.chain:
            mode = "atomic+="  # rows of different threads may land on the same target
        self.elementwise(w, f"({self.use_buffer(access.buffer)} + (int64_t)({where}) * {row})", buffer.shape,
                         [(a, shapes[a])], lambda x: x, op=mode)

    # one spelling per level-2 statement op (``STMT_OPS``); dialects override the methods
    STATEMENTS = {"load": _load, "const": _const, "reshape": _reshape, "ewise": _ewise, "unary": _unary,
                  "dot": _dot, "sum_to": _sum_to, "init": _init, "reduce": _reduce, "store": _store}

    def body(self, w: CodeWriter, body, scope: _Scope, base: str, group_ptr: str | None, group_perm: str | None):
        for s in body:
            if isinstance(s, Loop):
                inner = _Scope(dict(scope.shapes))
                with w.block(f"for (int64_t p = {group_ptr}[{base}]; p < {group_ptr}[{base} + 1]; ++p)"):
                    if self.member_loop_barrier():
                        w.line(self.member_loop_barrier())
                    w.line(f"const int64_t m = {group_perm}[p];" if group_perm else "const int64_t m = p;")
                    loads = [t.attr("access") for t in s.body if not isinstance(t, Loop) and t.op == "load"]
                    self.member_prefetch(w, [a for a in loads if a.base == "member"], group_ptr, group_perm)
                    self.body(w, s.body, inner, base, group_ptr, group_perm)
            else:
                self.stmt(w, s, scope, base)

    # ------------------------------------------------------------------ program
    def kernel(self, w: CodeWriter, k) -> None:
        raise NotImplementedError

    def header(self, w: CodeWriter) -> None:
        raise NotImplementedError

    def entry(self, w: CodeWriter, names: list[str], symbol: str) -> None:
        raise NotImplementedError

    def size_checks(self, w: CodeWriter) -> None:
        """``return -(i + 1);`` when caller-supplied buffer ``i`` is not as large as the row counts say."""
        supplied = {name for name, _ in self.program.random}
        for i, b in enumerate(self.program.buffers):
            if b.role not in ("input", "param") and b.name not in supplied:
                continue
            size = _size(b.shape)
            expected = str(size) if b.domain == Domain.SCALAR else f"rows[{DOMAIN_ORDER.index(b.domain)}] * {size}"
            w.line(f"if (numel[{i}] != {expected}) return -{i + 1};")

    def print_program(self, w: CodeWriter) -> Abi:
        """Print this program's kernels and its entry ``graphcore_<prefix>``; return its ABI."""
        for k in self.program.kernels:
            self.kernel(w, k)
            w.blank()
        self.entry(w, [self.kernel_name(k) for k in self.program.kernels], f"graphcore_{self.prefix}")
        w.blank()
        return Abi(self.buffers, tuple(self._indices), self.dtype)

    # ------------------------------------------------------------------ shared pieces of the templates
    def group_arrays(self, k: TraversalSpec) -> tuple[str | None, str | None]:
        """CSR pointer and member list of a grouped traversal (None for flat or ``*``)."""
        if k.group_by is None or k.group_by == ALL_ROWS:
            return None, None
        members = None if INDEX_MAPS[k.group_by].ordered else self.use_index("group_perm", k.group_by)
        return self.use_index("group_ptr", k.group_by), members

    def segment_pointer(self, k: GemmSpec) -> tuple[str | None, str]:
        """The segment pointer and type count of a GEMM (None and "1" for a shared weight)."""
        if k.segments is None:
            return None, "1"
        types = ROW_TYPES[k.rows][0]
        return self.use_index("ptr", k.segments), self.rows_of(types)

    @staticmethod
    def group_domain(k: TraversalSpec) -> Domain:
        return Domain.SCALAR if k.group_by == ALL_ROWS else INDEX_MAPS[k.group_by].source


def print_module(printer: type[CFamilyPrinter], programs: dict[str, KernelProgram]) -> tuple[str, dict[str, Abi]]:
    """One translation unit holding every program of a compiled model (e.g. forward and backward)."""
    printers = {name: printer(program, prefix=name) for name, program in programs.items()}
    dtypes = {p.dtype for p in printers.values()}
    if len(dtypes) != 1:
        raise ValueError(f"one module needs one dtype, got {sorted(dtypes)}")
    w = CodeWriter()
    next(iter(printers.values())).header(w)
    w.line(f"typedef {'double' if dtypes.pop() == 'float64' else 'float'} real;")
    w.blank()
    abis = {name: p.print_program(w) for name, p in printers.items()}
    return w.getvalue(), abis

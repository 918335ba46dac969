r"""Lowering: level-1 programs (with fusion regions) to level-2 kernel specs.

Each fusion region (or each op left alone) becomes one kernel. A region holding a GEMM-class
op (``typed_linear``, ``typed_outer``, ``weight_matmul``) becomes a :class:`GemmSpec`: gathers
that feed its rows become the operand's index chain (the gather prologue) and the ops after it
become epilogue statements, ending in a store or a scatter-add (``aggregate``). Any other region
becomes a :class:`TraversalSpec`: flat over one domain, or grouped by the single index map its
reductions (``aggregate``, ``edge_softmax``, whole-domain ``sum_to``) share, with the member
statements placed in as many :class:`Loop` passes as the reductions need (softmax: two, an
online max-and-sum pass and a normalising one).

Values crossing a region boundary become buffers; constants are inlined; graph constants and
dropout masks are buffers the runtime fills.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import CompileError
from .ir.kernel import Access, Buffer, GemmSpec, Kernel, KernelProgram, Loop, Stmt, TraversalSpec
from .ir.ops import ALL_ROWS, definition, group_index, traits
from .ir.program import Op, OpKind, Program
from .ir.values import INDEX_MAPS, ROW_TYPES, Domain, Value



def buffer_name(v: Value) -> str:
    return f"v{v.id}"


@dataclass
class _Var:
    name: str
    level: str  # "row" (row or group), "member", "global"
    phase: int


@dataclass
class _Load:
    """A value that is a (possibly chained) gather of a buffer: not yet read."""

    buffer: str
    chain: tuple[str, ...]
    domain: Domain


@dataclass
class _Emitter:
    """Turns the ops of one region into statements (see module doc)."""

    lowering: _Lowering
    member_domain: Domain | None  # grouped: domain of Loop members; flat: None
    group_index: str | None
    stmts: list[tuple[str, int, Stmt]] = field(default_factory=list)  # (level, phase or loop, stmt)
    env: dict[int, _Var | _Load] = field(default_factory=dict)
    loads: dict[int, _Load] = field(default_factory=dict)  # buffer reads, kept after a var holds one row of them
    counter: int = 0

    def fresh(self, hint: str = "t") -> str:
        self.counter += 1
        return f"{hint}{self.counter}"

    def level_of(self, domain: Domain) -> str:
        if domain == Domain.SCALAR:
            return "global"
        if self.member_domain is not None and domain == self.member_domain and self.group_index is not None:
            return "member"
        return "row"

    def add(self, level: str, phase: int, stmt: Stmt) -> None:
        self.stmts.append((level, phase, stmt))

    def ref(self, v: Value) -> _Var:
        """A variable holding ``v`` (loading or inlining it on first use)."""
        entry = self.env.get(v.id)
        if isinstance(entry, _Var):
            return entry
        if entry is None:
            const = self.lowering.consts.get(v.id)
            if const is not None:
                var = _Var(self.fresh("c"), "global", 0)
                self.add("global", 0, Stmt("const", var.name, shape=v.shape, attrs=(("value", const),)))
                self.env[v.id] = var
                return var
            entry = _Load(self.lowering.buffer_for(v), (), v.domain)
        self.loads[v.id] = entry
        level = self.level_of(v.domain)
        var = _Var(self.fresh("x"), level, 0)
        access = Access(entry.buffer, entry.chain, "member" if level == "member" else level)
        self.add(level, 0, Stmt("load", var.name, shape=v.shape, attrs=(("access", access),)))
        self.env[v.id] = var
        return var

    def compute(self, op: Op, stmt_op: str, args: list[_Var], **attrs) -> _Var:
        out = op.out
        level = self.level_of(out.domain)
        phase = max((a.phase for a in args), default=0)
        var = _Var(self.fresh(), level, phase)
        self.add(level, phase, Stmt(stmt_op, var.name, tuple(a.name for a in args), out.shape,
                                    tuple(sorted((k, v) for k, v in attrs.items() if v is not None))))
        self.env[out.id] = var
        return var

    def reduce(self, member: _Var, fn: str, shape: tuple[int, ...], init: float) -> _Var:
        acc = _Var(self.fresh("acc"), "row", member.phase + 1)
        self.add("init", member.phase + 1, Stmt("init", acc.name, shape=shape, attrs=(("value", init),)))
        self.add("reduce", member.phase + 1, Stmt("reduce", acc.name, (member.name,), shape, (("fn", fn),)))
        return acc

    # ------------------------------------------------------------------ ops
    def op(self, op: Op) -> None:
        """The statements of ``op``, by the op table's ``emit`` rule."""
        emit = definition(op.kind).emit
        if emit is None:
            raise CompileError(f"{op.kind} cannot be lowered into a traversal kernel", op=str(op.kind),
                               source_line=op.loc)
        emit(self, op)

    def aggregate(self, op: Op) -> None:
        """A reduction of members into their group (empty max-groups give 0, as PyG/DGL)."""
        member = self.ref(op.inputs[0])
        fn = op.attr("reduce")
        acc = self.reduce(member, fn, op.out.shape, 0.0 if fn == "sum" else float("-inf"))
        if fn == "max":
            fixed = _Var(self.fresh(), "row", acc.phase)
            self.add("row", acc.phase, Stmt("unary", fixed.name, (acc.name,), op.out.shape, (("fn", "inf_to_zero"),)))
            acc = fixed
        self.env[op.out.id] = acc

    def gather(self, op: Op) -> None:
        (x,) = op.inputs
        index = op.attr("index")
        # A buffer this kernel already read at its own row is still gathered along ``index``.
        entry = self.loads.get(x.id) or self.env.get(x.id)
        if entry is None and x.id not in self.lowering.consts:
            entry = _Load(self.lowering.buffer_for(x), (), x.domain)
        if isinstance(entry, _Load):
            self.env[op.out.id] = _Load(entry.buffer, (index,) + entry.chain, op.out.domain)
            return
        var = entry if entry is not None else self.ref(x)
        if var.level == "global":
            self.env[op.out.id] = var
        elif index == self.group_index and var.level == "row":
            self.env[op.out.id] = _Var(var.name, "row", var.phase)  # the member's group value
        else:
            raise CompileError(f"gather[{index}] of a value computed in the same kernel (internal fusion error)",
                               op="gather", source_line=op.loc)

    def softmax(self, op: Op) -> None:
        """Online softmax: one pass keeps the running max ``m`` and the sum ``z`` of exponentials
        (rescaled when the max grows), the next pass normalises; the scores are computed twice,
        not three times."""
        s = self.ref(op.inputs[0])
        shape = op.out.shape
        phase = s.phase + 1
        peak = _Var(self.fresh("acc"), "row", phase)
        total = _Var(self.fresh("acc"), "row", phase)
        self.add("init", phase, Stmt("init", peak.name, shape=shape, attrs=(("value", float("-inf")),)))
        self.add("init", phase, Stmt("init", total.name, shape=shape, attrs=(("value", 0.0),)))
        self.add("reduce", phase, Stmt("reduce", total.name, (s.name,), shape,
                                       (("fn", "softmax"), ("peak", peak.name))))
        shifted = _Var(self.fresh(), "member", phase)
        self.add("member", phase, Stmt("ewise", shifted.name, (s.name, peak.name), shape, (("fn", "sub"),)))
        ex = _Var(self.fresh(), "member", phase)
        self.add("member", phase, Stmt("unary", ex.name, (shifted.name,), shape, (("fn", "exp"),)))
        alpha = _Var(self.fresh(), "member", phase)
        self.add("member", phase, Stmt("ewise", alpha.name, (ex.name, total.name), shape, (("fn", "div"),)))
        self.env[op.out.id] = alpha

    def store(self, v: Value, access: Access | None = None, mode: str = "set") -> None:
        var = self.ref(v)
        access = access or Access(self.lowering.buffer_for(v), (), "member" if var.level == "member" else "row")
        placement = "store_member" if var.level == "member" else "store"
        self.add(placement, var.phase + 1 if var.level == "member" else var.phase,
                 Stmt("store", None, (var.name,), v.shape, (("access", access), ("mode", mode))))

    # ------------------------------------------------------------------ scheduling
    def flat_body(self) -> tuple[Stmt, ...]:
        return tuple(stmt for _, _, stmt in self.stmts)

    def grouped_body(self) -> tuple[Stmt | Loop, ...]:
        """Order statements into group-level code and Loop passes (see module doc)."""
        defs = {stmt.out: (level, phase, stmt) for level, phase, stmt in self.stmts
                if stmt.out is not None and level not in ("init", "reduce")}
        loops = sorted({phase for level, phase, _ in self.stmts if level in ("reduce", "store_member")})
        body: list[Stmt | Loop] = [s for level, _, s in self.stmts if level == "global"]
        body += [s for level, phase, s in self.stmts if level == "row" and phase == 0]
        done_rows = {id(s) for s in body}
        for p in loops:
            roots = [s for level, phase, s in self.stmts if level in ("reduce", "store_member") and phase == p]
            needed: set[str] = set()
            stack = [a for s in roots for a in s.args]
            while stack:
                name = stack.pop()
                entry = defs.get(name)
                if entry is None or entry[0] != "member" or name in needed:
                    continue
                needed.add(name)
                stack.extend(entry[2].args)
            members = [s for level, _, s in self.stmts if level == "member" and s.out in needed]
            body += [s for level, phase, s in self.stmts if level == "init" and phase == p]
            body.append(Loop(tuple(members + roots)))
            later = [s for level, phase, s in self.stmts if level == "row" and phase == p and id(s) not in done_rows]
            body += later
            done_rows.update(id(s) for s in later)
        body += [s for level, _, s in self.stmts if level == "store"]
        return tuple(body)


@dataclass
class _Lowering:
    program: Program
    type_rows: dict[Domain, int]
    buffers: dict[str, Buffer] = field(default_factory=dict)
    consts: dict[int, float] = field(default_factory=dict)
    random: list[tuple[str, float]] = field(default_factory=list)
    kernels: list[Kernel] = field(default_factory=list)
    aliases: dict[int, Value] = field(default_factory=dict)

    def declare(self, v: Value, role: str) -> str:
        name = buffer_name(v)
        if name not in self.buffers:
            self.buffers[name] = Buffer(name, v.domain, v.shape, v.dtype, role)
        return name

    def buffer_for(self, v: Value) -> str:
        """The buffer holding ``v``; a reshape that no kernel absorbed reads its input's buffer
        (same row-major bytes, another row shape), so it never costs a copy."""
        source = self.aliases.get(v.id)
        return self.buffer_for(source) if source is not None else self.declare(v, "temp")

    # ------------------------------------------------------------------ regions
    def region(self, ops: tuple[Op, ...], escaping: list[Value]) -> Kernel:
        gemms = [op for op in ops if traits(op).gemm]
        name = f"k{len(self.kernels)}_{'_'.join(dict.fromkeys(str(op.kind) for op in ops))}"[:60]
        if len(gemms) > 1:
            raise CompileError("a fusion region holds more than one GEMM (internal fusion error)")
        if gemms:
            return self.gemm(name, ops, gemms[0], escaping)
        return self.traversal(name, ops, escaping)

    def traversal(self, name: str, ops: tuple[Op, ...], escaping: list[Value]) -> TraversalSpec:
        groups = {index for index in map(group_index, ops) if index is not None}
        if len(groups) > 1:
            raise CompileError(f"a traversal region reduces along {sorted(groups)} (internal fusion error)")
        if groups:
            index = groups.pop()
            if index == ALL_ROWS:
                members = next(op.inputs[0].domain for op in ops if group_index(op) == ALL_ROWS)
                rows = Domain.SCALAR
            else:
                rows, members = INDEX_MAPS[index].source, INDEX_MAPS[index].target
            emitter = _Emitter(self, members, index)
        else:
            index, members = None, None
            rows = escaping[0].domain
            emitter = _Emitter(self, None, None)
        for op in ops:
            emitter.op(op)
        for v in escaping:
            emitter.store(v)
        body = emitter.grouped_body() if index is not None else emitter.flat_body()
        return TraversalSpec(name, rows, body, index, members)

    def _operand(self, v: Value, emitter: _Emitter) -> Access:
        entry = emitter.env.get(v.id)
        if entry is None:
            return Access(self.buffer_for(v))
        if isinstance(entry, _Load):
            return Access(entry.buffer, entry.chain)
        raise CompileError("a GEMM operand is computed inside its own region (internal fusion error)")

    def gemm(self, name: str, ops: tuple[Op, ...], g: Op, escaping: list[Value]) -> GemmSpec:
        if traits(g).weight_space:
            return self.dense(name, g)
        at = ops.index(g)
        pre = _Emitter(self, None, None)  # one emitter: prologue loads, then epilogue statements
        for op in ops[:at]:
            if op.kind == OpKind.GATHER:
                pre.gather(op)
            elif op.kind == OpKind.RESHAPE and isinstance(pre.env.get(op.inputs[0].id), _Load):
                pre.env[op.out.id] = pre.env[op.inputs[0].id]  # a row reshape of a load reads the same row
            else:
                raise CompileError(f"{op.kind} cannot precede a GEMM in one kernel (internal fusion error)")
        x = g.inputs[0]
        a = self._operand(x, pre)
        if g.kind == OpKind.TYPED_OUTER:
            dy = g.inputs[1]
            seg = None if g.attr("weight_domain") == "scalar" else ROW_TYPES[x.domain][1]
            heads = x.shape[0] if g.attr("per_head") else 1
            return GemmSpec(name, "outer", x.domain, seg, a, self._operand(dy, pre),
                            Access(self.buffer_for(g.out)), k=x.row_size // heads, n=dy.row_size // heads,
                            heads=heads, transpose_b=bool(g.attr("transpose_w")))
        w = g.inputs[1]
        seg = None if w.domain == Domain.SCALAR else ROW_TYPES[x.domain][1]
        heads = w.shape[0] if g.attr("per_head") else 1
        k, n = x.row_size // heads, g.out.row_size // heads
        post = pre
        post.env[g.out.id] = _Var("acc", "row", 0)
        rest = ops[at + 1:]
        out, access, accumulate = g.out, None, False
        if rest and rest[-1].kind == OpKind.AGGREGATE:
            final = rest[-1]
            rest = rest[:-1]
            out = final.inputs[0]
            access = Access(self.buffer_for(final.out), (final.attr("index"),))
            accumulate = True
        for op in rest:
            post.op(op)
        if access is None:
            (out,) = escaping
            access = Access(self.buffer_for(out))
        result = post.ref(out)
        return GemmSpec(name, "mm", x.domain, seg, a, Access(self.buffer_for(w)), access, k=k, n=n, heads=heads,
                        transpose_b=bool(g.attr("transpose_w")), accumulate=accumulate,
                        epilogue=post.flat_body(), result=result.name)

    def dense(self, name: str, g: Op) -> GemmSpec:
        """An einsum between weights as a strided batched GEMM."""
        a, b = g.inputs
        strides = einsum_as_gemm(g.attr("equation"), self.full_shape(a), self.full_shape(b))
        if strides is None:
            raise CompileError(f"weight_matmul '{g.attr('equation')}' is not a batched GEMM", op="weight_matmul",
                               source_line=g.loc)
        batch, m, k, n, s = strides
        return GemmSpec(name, "dense", None, None, Access(self.buffer_for(a)), Access(self.buffer_for(b)),
                        Access(self.buffer_for(g.out)), k=k, n=n, batch=batch, m=m, strides=s)

    def full_shape(self, v: Value) -> tuple[int, ...]:
        return ((self.type_rows[v.domain],) if v.domain in self.type_rows else ()) + v.shape

    # ------------------------------------------------------------------ program
    def run(self) -> KernelProgram:
        prog = self.program
        for v in prog.inputs:
            self.declare(v, "input")
        for v in prog.params:
            self.declare(v, "param")
        for v in prog.outputs:
            if v.id not in {x.id for x in (*prog.inputs, *prog.params)}:
                self.declare(v, "output")
        output_ids = {v.id for v in prog.outputs}
        for op in prog.ops:
            lowering = definition(op.kind).lowering
            if lowering == "inline":
                self.consts[op.out.id] = op.attr("value")
                continue
            if lowering == "graph_buffer":
                name = buffer_name(op.out)
                self.buffers[name] = Buffer(name, op.out.domain, op.out.shape, op.out.dtype,
                                            f"graph:{op.attr('name')}")
                continue
            if lowering == "random_buffer":
                name = buffer_name(op.out)
                self.buffers[name] = Buffer(name, op.out.domain, op.out.shape, op.out.dtype, "random")
                self.random.append((name, op.attr("p")))
                continue
            if lowering == "alias" and op.out.id not in output_ids and op.inputs[0].id not in self.consts:
                self.aliases[op.out.id] = op.inputs[0]
                continue
            region = op.attr("region") if lowering == "region" else (op,)
            self.kernels.append(self.region(region, list(op.outputs)))  # a fused op's outputs escape
        return KernelProgram(tuple(self.buffers.values()), tuple(buffer_name(v) for v in prog.inputs),
                             tuple(buffer_name(v) for v in prog.params), tuple(buffer_name(v) for v in prog.outputs),
                             tuple(self.kernels), tuple(self.random))


def einsum_as_gemm(equation: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]):
    """Read a two-operand einsum as a batched GEMM over row-major operands.

    Axes in both operands and the output are batch, in the first only M, in the second only
    N, in both inputs but not the output K. Returns ``(batch, m, k, n, strides)`` with
    ``strides = ((a_batch, a_m, a_k), (b_batch, b_k, b_n), (c_batch, c_m, c_n))``, or None when
    a group of axes is not contiguous in some operand (not expressible with one stride).
    """
    lhs, out = equation.split("->")
    sa, sb = lhs.split(",")
    size = dict(zip(sa, a_shape)) | dict(zip(sb, b_shape))
    batch = [c for c in out if c in sa and c in sb]
    m_axes = [c for c in out if c in sa and c not in sb]
    n_axes = [c for c in out if c in sb and c not in sa]
    k_axes = [c for c in sa if c in sb and c not in out]
    if set(sa) != set(batch + m_axes + k_axes) or set(sb) != set(batch + k_axes + n_axes):
        return None

    def group_strides(spec: str, groups: list[list[str]]) -> tuple[int, ...] | None:
        strides, stride = {}, 1
        for c in reversed(spec):
            strides[c] = stride
            stride *= size[c]
        result = []
        for axes in groups:
            if not axes:
                result.append(0)
                continue
            positions = [spec.index(c) for c in axes]
            if positions != list(range(positions[0], positions[0] + len(axes))):
                return None
            result.append(strides[axes[-1]])
        return tuple(result)

    def prod(axes: list[str]) -> int:
        total = 1
        for c in axes:
            total *= size[c]
        return total

    strides = (group_strides(sa, [batch, m_axes, k_axes]), group_strides(sb, [batch, k_axes, n_axes]),
               group_strides(out, [batch, m_axes, n_axes]))
    if None in strides:
        return None
    return prod(batch), prod(m_axes), prod(k_axes), prod(n_axes), strides


def lower(program: Program, type_rows: dict[Domain, int]) -> KernelProgram:
    """Lower a (fused) level-1 program to a :class:`KernelProgram`.

    Args:
        type_rows: the number of node types and relations (``{Domain.NTYPE: T, Domain.ETYPE: R}``)
            of the graph compiled for; weight-space GEMMs need concrete shapes.
    """
    return _Lowering(program, type_rows).run()

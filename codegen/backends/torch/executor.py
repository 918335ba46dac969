"""The reference backend: executes level-2 kernel specs with PyTorch tensor ops.

Every statement is evaluated for all rows at once (a ``Loop`` for all members at once, its
reductions as scatters), so this backend is the oracle the native backends are tested
against and the executable proof that lowering and every pass are right.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...ir.kernel import Access, GemmSpec, KernelProgram, Loop, Stmt, TraversalSpec
from ...ir.values import ALL_ROWS, Domain
from ...numerics import elementwise, segment
from ...ir.layout import GraphLayout


def _rows(layout: GraphLayout, domain: Domain | None) -> int:
    return 1 if domain in (None, Domain.SCALAR) else layout.rows(str(domain))


def _address(layout: GraphLayout, chain: tuple[str, ...], ids: Tensor) -> Tensor:
    for name in chain:
        ids = torch.zeros_like(ids) if name == ALL_ROWS else layout.index(name).index_select(0, ids)
    return ids


@dataclass
class _Rows:
    """Where a statement runs: the buffers, the kernel's variables and their levels, the row and
    member ids, each member's group, and whether it runs inside a loop over members."""

    env: dict[str, Tensor]
    local: dict[str, Tensor]
    levels: dict[str, str]
    ids: Tensor
    member_ids: Tensor | None
    group: Tensor | None
    in_loop: bool

    def level(self, names=()) -> str:
        """The level of a result computed from variables ``names`` (none: a fresh load's)."""
        if not names:
            return "member" if self.in_loop else "row"
        return TorchKernels._level(names, self.levels, self.in_loop)


class TorchExecutable:
    """A :class:`KernelProgram` runnable with PyTorch on any graph of its schema."""

    def __init__(self, program: KernelProgram):
        self.program = program

    def run(self, layout: GraphLayout, inputs: Sequence[Tensor], params: Sequence[Tensor],
            randoms: dict[str, Tensor] | None = None) -> list[Tensor]:
        return TorchKernels(self.program, layout).run(inputs, params, randoms)


class TorchKernels:
    """One call of a :class:`KernelProgram` on one graph layout (see module doc)."""

    def __init__(self, program: KernelProgram, layout: GraphLayout):
        self.program, self.layout = program, layout

    # ------------------------------------------------------------------ entry point
    def run(self, inputs: Sequence[Tensor], params: Sequence[Tensor], randoms: dict[str, Tensor] | None = None
            ) -> list[Tensor]:
        prog = self.program
        env: dict[str, Tensor] = dict(zip(prog.inputs, inputs, strict=True))
        env.update(zip(prog.params, params, strict=True))
        env.update(randoms or {})
        dtype = inputs[0].dtype if inputs else params[0].dtype
        for buf in prog.buffers:
            if buf.role.startswith("graph:"):
                env[buf.name] = self.layout.constant(buf.role.split(":", 1)[1]).to(dtype).view(-1, 1)
        for kernel in prog.kernels:
            if isinstance(kernel, GemmSpec):
                self.gemm(kernel, env)
            else:
                self.traversal(kernel, env)
        return [env[name] for name in prog.outputs]

    def _full_shape(self, name: str) -> tuple[int, ...]:
        buf = self.program.buffer(name)
        return buf.shape if buf.domain == Domain.SCALAR else (_rows(self.layout, buf.domain), *buf.shape)

    def _alloc(self, name: str, env: dict[str, Tensor], like: Tensor) -> Tensor:
        if name not in env:
            env[name] = torch.zeros(self._full_shape(name), dtype=like.dtype, device=like.device)
        return env[name]

    def _read(self, access: Access, env: dict[str, Tensor], ids: Tensor) -> Tensor:
        data = env[access.buffer]
        if access.base == "global":
            return data
        return data if not access.chain and data.size(0) == ids.numel() else data.index_select(
            0, _address(self.layout, access.chain, ids))

    # ------------------------------------------------------------------ GEMM template
    def gemm(self, k: GemmSpec, env: dict[str, Tensor]) -> None:
        if k.mode == "dense":
            self.dense(k, env)
            return
        rows = _rows(self.layout, k.rows)
        ids = torch.arange(rows, device=self.layout.device)
        a = self._read(k.a, env, ids)
        a = a.reshape(rows, k.heads, k.k) if k.heads > 1 else a.reshape(rows, k.k)
        ptr = self.layout.ptr(k.segments).tolist() if k.segments else None
        if k.mode == "outer":
            b = self._read(k.b, env, ids)
            b = b.reshape(rows, k.heads, k.n) if k.heads > 1 else b.reshape(rows, k.n)
            if ptr is None:
                out = torch.einsum("mhk,mhn->hkn", a, b) if k.heads > 1 else a.t() @ b
            else:
                out = segment.segment_outer(a, b, ptr, len(ptr) - 1)
            out = out.transpose(-1, -2) if k.transpose_b else out
            env[k.c.buffer] = out.reshape(self._full_shape(k.c.buffer))
            return
        w = env[k.b.buffer]
        if k.heads == 1 and w.dim() == (4 if ptr is not None else 3):
            w = w.squeeze(-3)  # a per-head weight with one head is a plain matrix
        if k.transpose_b:
            w = w.transpose(-1, -2)
        if ptr is None:
            acc = torch.einsum("mhk,hkn->mhn", a, w) if k.heads > 1 else a @ w
        else:
            acc = segment.segment_matmul(a, w, ptr)
        local = {"acc": acc}
        levels = {"acc": "row"}
        self._body(k.epilogue, env, local, levels, ids, None, None)
        result = local[k.result]
        if k.accumulate:
            target = self._alloc(k.c.buffer, env, result)
            target.index_add_(0, _address(self.layout, k.c.chain, ids), result.reshape(rows, *target.shape[1:]))
        else:
            buf = self.program.buffer(k.c.buffer)
            env[k.c.buffer] = result.reshape(rows, *buf.shape)

    def dense(self, k: GemmSpec, env: dict[str, Tensor]) -> None:
        (sa, sb, sc) = k.strides
        a = env[k.a.buffer].contiguous().reshape(-1)
        b = env[k.b.buffer].contiguous().reshape(-1)
        av = torch.as_strided(a, (k.batch, k.m, k.k), sa)
        bv = torch.as_strided(b, (k.batch, k.k, k.n), sb)
        out = torch.zeros(self._full_shape(k.c.buffer), dtype=a.dtype, device=a.device)
        torch.as_strided(out.view(-1), (k.batch, k.m, k.n), sc).copy_(torch.bmm(av, bv))
        env[k.c.buffer] = out

    # ------------------------------------------------------------------ traversal template
    def traversal(self, k: TraversalSpec, env: dict[str, Tensor]) -> None:
        rows = _rows(self.layout, k.rows)
        ids = torch.arange(rows, device=self.layout.device)
        group, member_ids = None, None
        if k.group_by is not None:
            count = _rows(self.layout, k.members)
            member_ids = torch.arange(count, device=self.layout.device)
            group = torch.zeros_like(member_ids) if k.group_by == ALL_ROWS else self.layout.index(k.group_by)
        self._body(k.body, env, {}, {}, ids, member_ids, group)

    def _body(self, body, env, local: dict[str, Tensor], levels: dict[str, str], ids: Tensor,
              member_ids: Tensor | None, group: Tensor | None, in_loop: bool = False) -> None:
        for stmt in body:
            if isinstance(stmt, Loop):
                self._body(stmt.body, env, local, levels, ids, member_ids, group, in_loop=True)
                continue
            self._stmt(stmt, env, local, levels, ids, member_ids, group, in_loop)

    def _arg(self, name: str, local, levels, group: Tensor | None, in_loop: bool) -> Tensor:
        value = local[name]
        if in_loop and levels[name] == "row":
            return value.index_select(0, group)  # a member reads its group's value
        return value

    def _stmt(self, s: Stmt, env, local, levels, ids, member_ids, group, in_loop: bool) -> None:
        """Run one statement for all rows at once, through :attr:`STATEMENTS`."""
        run = self.STATEMENTS.get(s.op)
        if run is None:
            raise ValueError(f"unknown statement {s.op!r}")
        args = [self._arg(a, local, levels, group, in_loop) for a in s.args]
        result = run(self, s, args, _Rows(env, local, levels, ids, member_ids, group, in_loop))
        if result is not None:
            local[s.out], levels[s.out] = result

    def _load(self, s, args, at):
        access: Access = s.attr("access")
        out = self._read(access, at.env, at.member_ids if access.base == "member" else at.ids)
        if access.base == "global":
            return out.reshape(s.shape), "global"
        return out.reshape(out.size(0), *s.shape), at.level()

    def _const(self, s, args, at):
        return torch.tensor(s.attr("value"), dtype=self._dtype(at.env), device=self.layout.device), "global"

    def _ewise(self, s, args, at):
        return elementwise.binary(s.attr("fn"), args[0], args[1]), at.level(s.args)

    def _unary(self, s, args, at):
        return (elementwise.activation(s.attr("fn"), args[0], s.attr("negative_slope", 0.01), s.attr("alpha", 1.0)),
                at.level(s.args))

    def _dot(self, s, args, at):
        return (args[0] * args[1]).sum(-1, keepdim=True), at.level(s.args)

    def _reshape(self, s, args, at):
        level = at.level(s.args)
        return (args[0].reshape(s.shape) if level == "global" else args[0].reshape(args[0].size(0), *s.shape)), level

    def _sum_to(self, s, args, at):
        level = at.level(s.args)
        return elementwise.sum_to(args[0], s.shape, has_rows=level != "global", keep_rows=True), level

    def _init(self, s, args, at):
        return (torch.full((at.ids.numel(), *s.shape), s.attr("value"), dtype=self._dtype(at.env),
                           device=at.ids.device), "row")

    def _reduce(self, s, args, at):
        local, group = at.local, at.group
        acc = local[s.out]
        contrib = args[0]
        if contrib.dim() == 0 or at.levels.get(s.args[0]) == "global":
            contrib = contrib.expand(at.member_ids.numel(), *s.shape)
        if s.attr("fn") == "softmax":  # the online max-and-sum, computed as two scatters
            index = group.view(-1, *([1] * len(s.shape))).expand(-1, *s.shape)
            peak = local[s.attr("peak")].scatter_reduce(0, index, contrib, "amax")
            local[s.attr("peak")] = peak
            local[s.out] = acc + segment.scatter_sum(torch.exp(contrib - peak.index_select(0, group)), group,
                                                     acc.size(0))
        elif s.attr("fn") == "sum":
            local[s.out] = acc + segment.scatter_sum(contrib.reshape(-1, *s.shape), group, acc.size(0))
        else:
            index = group.view(-1, *([1] * len(s.shape))).expand(-1, *s.shape)
            local[s.out] = acc.scatter_reduce(0, index, contrib.reshape(-1, *s.shape), "amax")

    def _store_stmt(self, s, args, at):
        self._store(s, args[0], at.env, at.ids, at.member_ids, at.in_loop)

    # one implementation per level-2 statement op (``STMT_OPS``)
    STATEMENTS = {"load": _load, "const": _const, "ewise": _ewise, "unary": _unary, "dot": _dot,
                  "reshape": _reshape, "sum_to": _sum_to, "init": _init, "reduce": _reduce, "store": _store_stmt}

    @staticmethod
    def _level(names, levels, in_loop: bool) -> str:
        found = {levels[n] for n in names}
        if in_loop and found - {"global"}:
            return "member"
        return "row" if "row" in found or "member" in found else "global"

    def _store(self, s: Stmt, value: Tensor, env, ids, member_ids, in_loop: bool) -> None:
        access: Access = s.attr("access")
        base = member_ids if in_loop else ids
        buf = self.program.buffer(access.buffer)
        rows = base.numel()
        if buf.domain == Domain.SCALAR:
            env[access.buffer] = value.reshape(buf.shape)
            return
        value = value.expand(rows, *buf.shape) if value.dim() <= len(buf.shape) else value.reshape(rows, *buf.shape)
        if not access.chain and s.attr("mode") == "set":
            env[access.buffer] = value
            return
        target = self._alloc(access.buffer, env, value)
        target.index_add_(0, _address(self.layout, access.chain, base), value)

    def _dtype(self, env: dict[str, Tensor]) -> torch.dtype:
        return next(iter(env.values())).dtype

r"""The level-2 verifier: what a printer may take for granted about a :class:`KernelProgram`.

It runs after lowering and after each backend's legalisation (see ``codegen.backends``), so a
lowering or legalisation bug is caught as a :class:`~codegen.errors.VerifyError` naming the
stage, the kernel and the statement, instead of as wrong numbers or a crash in native code.

Checks:

* buffers are declared once; the program's inputs, parameters and outputs are among them;
* every :class:`~codegen.ir.kernel.Access` names a declared buffer and known index maps, and its
  chain *composes*: starting from the domain of its base (the kernel's rows, the loop's members,
  or nothing for ``global``), each map must read rows of the current domain
  (``map.target``) and leads to ``map.source``; the chain must end in the buffer's domain;
* a kernel's domains agree: a grouped traversal's rows and members are its map's source and
  target, a GEMM's segment pointer is the one of its row domain, its weight lives in that row
  domain's type domain (or is shared);
* statements read only variables defined before them, loads and stores agree with the buffer's
  row size, and every ``reduce`` accumulates into a variable an ``init`` started;
* a ``set`` store (or a GEMM store that does not accumulate) through a non-empty chain writes
  every target row once only if each map of the chain is injective; otherwise two rows race for
  one target and the store is rejected.
"""
from __future__ import annotations

import math

from ..errors import VerifyError
from .kernel import Access, GemmSpec, KernelProgram, Loop, Stmt, TraversalSpec
from .values import ALL_ROWS, INDEX_MAPS, ROW_DOMAINS, ROW_TYPES, Domain



class _Checker:
    def __init__(self, program: KernelProgram, stage: str | None):
        self.program, self.stage = program, stage
        self.buffers = {}
        for b in program.buffers:
            if b.name in self.buffers:
                self.fail(f"buffer '{b.name}' is declared twice")
            self.buffers[b.name] = b
        for role, names in (("input", program.inputs), ("parameter", program.params), ("output", program.outputs)):
            for name in names:
                if name not in self.buffers:
                    self.fail(f"{role} buffer '{name}' is not declared")
        self.where = ""

    def fail(self, message: str) -> None:
        raise VerifyError(f"{self.where}{message}", pass_name=self.stage)

    # ------------------------------------------------------------------ accesses
    def access(self, access: Access, base_domain: Domain | None, *, writes: bool = False, accumulates: bool = False):
        """Check one access from rows of ``base_domain`` (None: ``global``); returns its buffer."""
        buffer = self.buffers.get(access.buffer)
        if buffer is None:
            self.fail(f"reads or writes undeclared buffer '{access.buffer}'")
        if base_domain is None:
            if access.chain or buffer.domain != Domain.SCALAR:
                self.fail(f"a global access must read a scalar-domain buffer directly, got '{access.buffer}' "
                          f"({buffer.domain}) through {list(access.chain)}")
            return buffer
        current = base_domain
        for name in access.chain:
            if name == ALL_ROWS:
                current = Domain.SCALAR
                continue
            index = INDEX_MAPS.get(name)
            if index is None:
                self.fail(f"access to '{access.buffer}' uses unknown index map '{name}'")
            if index.target != current:
                self.fail(f"access chain {list(access.chain)} to '{access.buffer}' applies '{name}' (reads "
                          f"{index.target} rows) to {current} rows")
            current = index.source
        if current != buffer.domain:
            self.fail(f"access chain {list(access.chain)} from {base_domain} rows ends in {current} rows, but "
                      f"buffer '{access.buffer}' has {buffer.domain} rows")
        if writes and not accumulates and access.chain and not all(
                name != ALL_ROWS and INDEX_MAPS[name].injective for name in access.chain):
            self.fail(f"a 'set' store to '{access.buffer}' through {list(access.chain)} is racy: rows that map to "
                      "the same target overwrite each other (use an accumulating store)")
        return buffer

    # ------------------------------------------------------------------ statements
    def body(self, stmts, defined: set[str], accumulators: set[str], row: Domain | None, member: Domain | None,
             kernel: str) -> None:
        for i, s in enumerate(stmts):
            if isinstance(s, Loop):
                if member is None:
                    self.where = f"kernel '{kernel}', statement {i} (loop): "
                    self.fail("a loop outside a grouped traversal has no member rows")
                self.body(s.body, set(defined), accumulators, row, member, kernel)
                continue
            self.where = f"kernel '{kernel}', statement {i} ({s.op}{' ' + s.out if s.out else ''}): "
            self.stmt(s, defined, accumulators, row, member)
        self.where = ""

    def stmt(self, s: Stmt, defined: set[str], accumulators: set[str], row: Domain | None,
             member: Domain | None) -> None:
        for arg in s.args:
            if arg not in defined:
                self.fail(f"reads '{arg}' before it is defined")
        bases = {"row": row, "member": member, "global": None}
        if s.op in ("load", "store"):
            access: Access = s.attr("access")
            if access.base not in bases or (access.base == "member" and member is None):
                self.fail(f"access base '{access.base}' is not available here")
            store = s.op == "store"
            if store and s.attr("mode") not in ("set", "add"):
                self.fail(f"store mode must be 'set' or 'add', got {s.attr('mode')!r}")
            buffer = self.access(access, bases[access.base], writes=store, accumulates=s.attr("mode") == "add")
            if math.prod(s.shape) != math.prod(buffer.shape):
                self.fail(f"{'stores' if store else 'loads'} rows of shape {s.shape} from buffer '{buffer.name}' "
                          f"with rows of shape {buffer.shape}")
        if s.op == "init":
            accumulators.add(s.out)
        if s.op == "reduce":
            for acc in (s.out, s.attr("peak")):
                if acc is not None and acc not in accumulators:
                    self.fail(f"accumulates into '{acc}', which no init started")
        if s.out is not None:
            defined.add(s.out)

    # ------------------------------------------------------------------ kernels
    def traversal(self, k: TraversalSpec) -> None:
        self.where = f"kernel '{k.name}': "
        member = None
        if k.group_by is not None:
            if k.group_by == ALL_ROWS:
                rows, member = Domain.SCALAR, k.members
            else:
                index = INDEX_MAPS.get(k.group_by)
                if index is None:
                    self.fail(f"groups by unknown index map '{k.group_by}'")
                rows, member = index.source, index.target
            if (k.rows, k.members) != (rows, member):
                self.fail(f"grouped by '{k.group_by}' means {rows} groups of {member} members, got rows={k.rows} "
                          f"members={k.members}")
        self.body(k.body, set(), set(), k.rows, member, k.name)

    def gemm(self, k: GemmSpec) -> None:
        self.where = f"kernel '{k.name}': "
        if k.mode == "dense":
            for access in (k.a, k.b, k.c):
                buffer = self.buffers.get(access.buffer)
                if buffer is None:
                    self.fail(f"reads or writes undeclared buffer '{access.buffer}'")
                if access.chain or buffer.domain in ROW_DOMAINS:
                    self.fail(f"a dense GEMM multiplies whole weights, but reads '{buffer.name}' ({buffer.domain}) "
                              f"through {list(access.chain)}")
            return
        if k.mode not in ("mm", "outer") or k.rows not in ROW_TYPES:
            self.fail(f"mode {k.mode!r} over {k.rows} rows is not a GEMM this template runs")
        types, ptr = ROW_TYPES[k.rows]
        if k.segments not in (None, ptr):
            self.fail(f"segments '{k.segments}' do not type {k.rows} rows (expected '{ptr}')")
        weight = k.b if k.mode == "mm" else k.c
        buffer = self.buffers.get(weight.buffer)
        if buffer is None:
            self.fail(f"reads or writes undeclared buffer '{weight.buffer}'")
        expected = types if k.segments is not None else Domain.SCALAR
        if buffer.domain != expected or weight.chain:
            self.fail(f"the weight '{buffer.name}' ({buffer.domain}) must be a plain {expected} buffer")
        self.access(k.a, k.rows)
        if k.mode == "outer":
            self.access(k.b, k.rows)
            return
        self.access(k.c, k.rows, writes=True, accumulates=k.accumulate)
        self.body(k.epilogue, {"acc"}, set(), k.rows, None, k.name)
        if k.result not in {"acc", *(s.out for s in k.epilogue if s.out)}:
            self.where = f"kernel '{k.name}': "
            self.fail(f"stores '{k.result}', which the epilogue never defines")


def verify_kernels(program: KernelProgram, stage: str | None = None) -> KernelProgram:
    """Check ``program`` (see module doc); returns it for chaining.

    Raises:
        VerifyError: naming ``stage`` (``lower``, ``legalize[cpu]``...), the kernel and the statement.
    """
    checker = _Checker(program, stage)
    for k in program.kernels:
        if isinstance(k, GemmSpec):
            checker.gemm(k)
        else:
            checker.traversal(k)
    return program


__all__ = ["verify_kernels"]

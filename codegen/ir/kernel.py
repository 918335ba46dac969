r"""Level-2 kernel specs: :class:`GemmSpec` and :class:`TraversalSpec`, nothing else.

[Note: level-2 IR]
A :class:`KernelProgram` is a list of kernels over named buffers. Every decision a printer
needs is a field here (access modes, schedule, tile sizes), so a backend never sees a model
and never decides anything beyond spelling.

**Addresses.** A kernel reads and writes rows through an :class:`Access`: a buffer and an
index *chain* applied to the kernel's current row. ``Access("h", ("usrc_inv",))`` in an edge
loop reads ``h[usrc_inv[e]]`` (compact materialization); ``Access("x", ("src",))`` is a gather
prologue; an empty chain reads row ``e`` itself. Index names are the level-1 index maps
(``codegen.ir.values.INDEX_MAPS``) plus ``ALL_ROWS = "*"`` (every row maps to row 0, for whole-domain
reductions).

**GemmSpec** (one template). ``mode="mm"``: for each row ``i`` of ``rows``, with type
``t = type(i)`` from the ``segments`` pointer, ``acc = A[i] @ op(W[t])`` (per head if ``heads > 1``),
then the ``epilogue`` statements run on ``acc``, then the row is stored (or scatter-added when
``c.chain`` is not empty). ``mode="outer"``: ``W[t] += A[i]^T B[i]`` summed per segment (weight
gradients). ``mode="dense"``: ``batch`` independent ``M x K @ K x N`` products with explicit
strides (weight-space algebra: basis combination, reordered weights).

**TraversalSpec** (one template). Flat (``group_by=None``): for each row of ``rows``, run
``body``. Grouped: for each group ``g`` (a row of ``rows``), run ``body``, where
:class:`Loop` blocks iterate the *member* rows ``m`` with ``group_by[m] == g`` (a CSR list:
incoming edges of a node, say), accumulating into group variables with ``reduce`` statements.
Softmax is two loops: an online max-and-sum, then normalise and use.
"""
from __future__ import annotations

from dataclasses import dataclass

from .values import Domain

Attr = object


@dataclass(frozen=True, slots=True)
class Buffer:
    """A tensor the kernels read or write: ``rows(domain) x shape`` (``shape`` alone if scalar)."""

    name: str
    domain: Domain
    shape: tuple[int, ...]
    dtype: str
    role: str  # input | param | output | temp | random


@dataclass(frozen=True, slots=True)
class Access:
    """Row ``chain(current row)`` of ``buffer``: the index maps of ``chain`` are applied to the
    current row id left to right (``("usrc_inv", "usrc_node")`` reads ``buf[usrc_node[usrc_inv[e]]]``).
    ``base`` is ``row`` (the kernel's row or group), ``member`` (the current member of a
    :class:`Loop`) or ``global`` (a scalar-domain buffer, the same for every row)."""

    buffer: str
    chain: tuple[str, ...] = ()
    base: str = "row"


# The statement ops of level 2; every printer spells each of them (tests/codegen/test_op_table.py).
STMT_OPS = ("load", "const", "reshape", "ewise", "unary", "dot", "sum_to", "init", "reduce", "store")


@dataclass(frozen=True, slots=True)
class Stmt:
    """One statement on small row vectors.

    ``op`` is one of :data:`STMT_OPS`: ``load`` (``access``), ``const`` (``value``),
    ``ewise`` / ``unary`` (``fn``), ``dot``, ``sum_to`` (``shape``), ``reshape``
    (``shape``), ``init`` (``value``: 0 or -inf), ``reduce`` (``fn``: sum | max | softmax; ``out``
    is the accumulator; ``softmax`` keeps the running max in accumulator ``peak`` and rescales
    ``out``, the sum of exponentials, whenever it grows), ``store`` (``access``, ``mode``: set|add).
    """

    op: str
    out: str | None
    args: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    attrs: tuple[tuple[str, Attr], ...] = ()

    def attr(self, key: str, default: Attr = None) -> Attr:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


@dataclass(frozen=True, slots=True)
class Loop:
    """Iterate the member rows of the current group, running ``body`` for each."""

    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class GemmSpec:
    """A (gather ->) GEMM (-> epilogue -> scatter) kernel; see the module doc.

    Attributes:
        mode: ``mm``, ``outer`` or ``dense``.
        rows: iteration space of ``mm``/``outer`` (a row domain).
        segments: type-segment pointer over ``rows`` (``rel_ptr``...) or None for one shared weight.
        a: rows operand (``mm``, ``outer``) or first matrix (``dense``).
        b: the weight (``mm``), second rows operand (``outer``) or second matrix (``dense``).
        c: output (row store/scatter for ``mm``; the weight for ``outer``; matrix for ``dense``).
        k, n, heads: per-head inner and output width, number of heads (block diagonal).
        transpose_b: ``mm`` uses ``W[t]^T``; ``outer`` writes the transpose.
        accumulate: ``mm`` adds into ``c`` (scatter epilogue) instead of storing.
        epilogue: statements run on the accumulator row ``acc`` before the store; the stored
            variable is ``result``.
        batch, m, strides: ``dense`` mode only: ``strides`` = ((a_batch, a_m, a_k),
            (b_batch, b_k, b_n), (c_batch, c_m, c_n)) in elements.
        tile: (rows, cols, depth) tile of the blocked template.
    """

    name: str
    mode: str
    rows: Domain | None
    segments: str | None
    a: Access
    b: Access
    c: Access
    k: int
    n: int
    heads: int = 1
    transpose_b: bool = False
    accumulate: bool = False
    epilogue: tuple[Stmt, ...] = ()
    result: str = "acc"
    batch: int = 1
    m: int = 0
    strides: tuple[tuple[int, int, int], ...] = ()
    tile: tuple[int, int, int] = (32, 32, 8)


@dataclass(frozen=True, slots=True)
class TraversalSpec:
    """A node/edge traversal kernel; see the module doc.

    Attributes:
        rows: the parallel iteration space (rows, or groups when grouped).
        group_by: index map whose groups are traversed (members are its target rows), or None.
        members: domain of the member rows (grouped only).
        body: statements and :class:`Loop` blocks.
    """

    name: str
    rows: Domain
    body: tuple[Stmt | Loop, ...]
    group_by: str | None = None
    members: Domain | None = None


Kernel = GemmSpec | TraversalSpec


@dataclass(frozen=True, slots=True)
class KernelProgram:
    """Kernels over buffers, with the calling convention of the level-1 program it lowers."""

    buffers: tuple[Buffer, ...]
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    outputs: tuple[str, ...]
    kernels: tuple[Kernel, ...]
    random: tuple[tuple[str, float], ...] = ()  # dropout masks the runtime draws: (buffer, p)

    def accumulated(self) -> set[str]:
        """Buffers that kernels add into (scatter epilogues, ``add`` stores): allocate them zeroed."""
        names = {k.c.buffer for k in self.kernels if isinstance(k, GemmSpec) and k.accumulate}

        def walk(body):
            for s in body:
                if isinstance(s, Loop):
                    walk(s.body)
                elif s.op == "store" and s.attr("mode") == "add":
                    names.add(s.attr("access").buffer)

        for k in self.kernels:
            walk(k.body if isinstance(k, TraversalSpec) else k.epilogue)
        return names

    def touched(self) -> list[set[str]]:
        """For each kernel, the buffers it reads or writes (for liveness: see ``codegen.runtime.liveness``)."""

        def walk(body, names):
            for s in body:
                if isinstance(s, Loop):
                    walk(s.body, names)
                elif s.attr("access") is not None:
                    names.add(s.attr("access").buffer)
            return names

        return [walk(k.body, set()) if isinstance(k, TraversalSpec)
                else walk(k.epilogue, {k.a.buffer, k.b.buffer, k.c.buffer}) for k in self.kernels]

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

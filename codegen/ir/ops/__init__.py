r"""The op table: every level-1 op kind declared once.

[Note: the op table]
Each :class:`~codegen.ir.program.OpKind` has one :class:`OpDef`: its typing rule (``infer``), its
reference meaning (``evaluate``), its VJP rule, its FLOP count, its :class:`Traits` and how it
lowers to level 2. The verifier, the interpreter, autodiff, the cost model, the passes and the
lowering all read this table; none keeps a list of op names. ``tests/codegen/test_op_table.py``
fails when an op kind lacks an entry, or a level-2 statement lacks a spelling in a printer.

Adding an op
------------
*An elementwise function* (a new activation, say ``softplus``): three files.

1. ``codegen/numerics/elementwise.py``: its PyTorch definition in :func:`activation` (or
   :func:`binary`) and its name in ``ACTIVATIONS`` (``BINARY``).
2. ``codegen/ir/ops/functions.py``: one :class:`~codegen.ir.ops.functions.Function` with its
   C spelling and its VJP.
3. ``graphcore/trace.py``: the torch function(s) that trace to it (``_ACTIVATIONS``), and
   ``graphcore/ops.py`` if it needs an op of its own.

A helper the C spelling calls goes in the printers' preludes (``cpu/prelude.h``,
``cuda/prelude.cuh``).

*A new op kind*: a member of ``OpKind`` (``codegen/ir/program.py``), one ``register(OpDef(...))``
in the module of its family here (or a new module imported below), and its front end in
``graphcore`` (``ops.py``, ``trace.py``). If it lowers through statements the level-2 IR does
not have yet, add the statement to ``STMT_OPS`` in ``codegen/ir/kernel.py`` and its spelling to
each printer's dispatch table (``cfamily.py``, ``torch/executor.py``); the completeness test
says which are missing.
"""
from __future__ import annotations

from . import graph, linear, rowwise, sources  # noqa: F401  (fill the table)
from .base import LOWERINGS, OPS, OpDef, Traits
from ..program import Op, OpKind
from ..values import ALL_ROWS


def definition(kind: OpKind) -> OpDef:
    """The table entry of ``kind``."""
    return OPS[kind]


def traits(op: Op) -> Traits:
    """The traits of ``op``'s kind (``traits(op).recompute``...)."""
    return OPS[op.kind].traits


def group_index(op: Op) -> str | None:
    """The index map ``op`` reduces along (``"*"``: all rows), or None."""
    return OPS[op.kind].group_index(op)


__all__ = ["ALL_ROWS", "LOWERINGS", "OPS", "OpDef", "Traits", "definition", "group_index", "traits"]

"""The passes there are, and the order they run in: one place for both.

``OPTIONAL`` are the optimising passes a user may choose (``graphcore.compile(passes=[...])``),
in pipeline order; ``cse`` and ``dce`` always run around them. The same sequence serves the
pipeline and the cost look-ahead of :mod:`codegen.passes.search`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import OptionError
from ..ir.program import Program
from . import aggregate_first, compact, cse, dce, fuse, reorder
from .context import PassContext

Pass = Callable[[Program, PassContext], Program]
OPTIONAL: dict[str, Pass] = {"reorder": reorder.run, "aggregate_first": aggregate_first.run,
                             "compact": compact.run, "fuse": fuse.run}
PASSES: dict[str, Pass] = {"cse": cse.run, "dce": dce.run, **OPTIONAL}


def resolve_passes(passes: Sequence[str] | None) -> tuple[str, ...]:
    """The chosen optimising passes in pipeline order (all when None).

    Raises:
        OptionError: (a ``ValueError``) naming the unknown passes and the available ones.
    """
    if passes is None:
        return tuple(OPTIONAL)
    unknown = [p for p in passes if p not in OPTIONAL]
    if unknown:
        raise OptionError(f"unknown passes {unknown}; available: {list(OPTIONAL)}")
    return tuple(p for p in OPTIONAL if p in passes)


def optimising_sequence(chosen: Sequence[str], after: str | None = None) -> tuple[str, ...]:
    """The passes one optimisation round runs: clean-up, the chosen passes except ``fuse`` (which
    runs once per half after the partition), clean-up. With ``after``, only the chosen passes that
    follow it (the look-ahead of a pass judging its own rewrite)."""
    if after is not None:
        chosen = chosen[list(chosen).index(after) + 1:] if after in chosen else ()
    return ("cse", "dce", *(p for p in chosen if p != "fuse"), "cse", "dce")

"""What every pass may read: graph statistics, the program's calling convention, and a log.

Passes stay pure (``run(program, ctx) -> Program``); the context is the only other input and the
log is the only thing a pass writes besides its result (for ``explain()``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.values import Domain


@dataclass(frozen=True)
class GraphStats:
    """Row counts of every domain on the graph being compiled for (the cost model's inputs)."""

    rows: dict[Domain, int]

    @classmethod
    def from_layout(cls, layout) -> GraphStats:
        return cls({d: layout.rows(str(d)) for d in Domain if d != Domain.SCALAR} | {Domain.SCALAR: 1})

    def __getitem__(self, domain: Domain) -> int:
        return self.rows[domain]


@dataclass
class PassContext:
    """Inputs and log shared by the passes of one compilation.

    Attributes:
        stats: domain row counts of the graph.
        num_primal_inputs / num_primal_outputs: how many of the program's inputs/outputs belong
            to the forward computation; the rest (set by ``autodiff``) are cotangents / gradients.
        grad_inputs: which primal inputs get a gradient.
        differentiated: set by ``autodiff`` once the program holds its backward.
        passes: the optimising passes of this compilation, in order (for look-ahead costing).
        log: ``(pass name, message)`` for each rewrite that fired.
    """

    stats: GraphStats
    num_primal_inputs: int = 1
    num_primal_outputs: int = 1
    grad_inputs: tuple[bool, ...] = (True,)
    differentiated: bool = False
    passes: tuple[str, ...] = ()
    log: list[tuple[str, str]] = field(default_factory=list)

    def note(self, pass_name: str, message: str) -> None:
        self.log.append((pass_name, message))

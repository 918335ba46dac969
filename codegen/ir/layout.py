r"""What the compiler needs to know of a graph: the graph-layout protocol.

The compiler never sees a graph type. A compiled program names rows by domain
(:class:`~codegen.ir.values.Domain`), index vectors by the names of
:data:`~codegen.ir.values.INDEX_MAPS`, type-segment pointers by the names in
:data:`~codegen.ir.values.ROW_TYPES` and graph constants by the names of
:data:`~codegen.ir.values.GRAPH_CONSTANTS`; any object with the methods below can run it.
``graphcore.layouts.Layout`` is the implementation for a ``HeteroGraph`` (the full graph or a
sampled batch alike). Keeping the protocol here is what lets ``codegen`` import nothing of
``graphcore``: imports point down only.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class GraphLayout(Protocol):
    """The run-time data of one graph, as the kernels read it."""

    @property
    def device(self) -> torch.device:
        """Where the index vectors live (and so where the kernels run)."""
        ...

    def rows(self, domain: str) -> int:
        """Number of rows of a row or type domain (``node``, ``edge``, ``usrc``, ``udst``, ``ntype``, ``etype``)."""
        ...

    def index(self, name: str) -> Tensor:
        """The int64 vector of index map ``name``: ``out[i] = x[index[i]]``."""
        ...

    def ptr(self, name: str) -> Tensor:
        """The int64 type-segment pointer ``name`` (``[T + 1]``) of a segment-sorted row domain."""
        ...

    def group_csr(self, index_name: str, num_groups: int) -> tuple[Tensor, Tensor]:
        """Rows grouped by the value of index ``index_name``: ``(ptr [G + 1], rows)``, rows ascending."""
        ...

    def group_ptr(self, index_name: str, num_groups: int) -> Tensor:
        """``group_csr(index_name, num_groups)[0]`` alone (an ordered map's rows are never built)."""
        ...

    def constant(self, name: str) -> Tensor:
        """Graph constant ``name`` as a float64 vector with one entry per row of its domain."""
        ...


__all__ = ["GraphLayout"]

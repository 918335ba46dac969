"""The calling convention of the native entries, and the marshalling of arguments into it.

Every entry ``graphcore_<name>(B, I, rows, numel, ...)`` takes the buffers' data pointers (``B``,
in :attr:`Abi.buffers` order), the graph's int64 index arrays (``I``, in :attr:`Abi.indices`
order), the row count of every domain (``rows``, in :data:`DOMAIN_ORDER`) and the element count
of every buffer (``numel``); see ``codegen.backends.cfamily`` for what the entry does with them.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from torch import Tensor

from ..ir.layout import GraphLayout
from ..ir.values import INDEX_MAPS, Domain

DOMAIN_ORDER = (Domain.NODE, Domain.EDGE, Domain.USRC, Domain.UDST, Domain.NTYPE, Domain.ETYPE, Domain.SCALAR)
ABI_VERSION = 2


@dataclass(frozen=True)
class Abi:
    """The calling convention of a printed program (see module doc)."""

    buffers: tuple[str, ...]
    indices: tuple[tuple[str, str], ...]  # (kind, name); kind: index | ptr | group_ptr | group_perm
    dtype: str



def rows_array(layout: GraphLayout) -> ctypes.Array:
    """Row counts of every domain, in the ABI's ``DOMAIN_ORDER``, as a C ``int64`` array."""
    rows = [1 if d == Domain.SCALAR else layout.rows(str(d)) for d in DOMAIN_ORDER]
    return (ctypes.c_int64 * len(rows))(*rows)


def numel_array(tensors: list[Tensor]) -> ctypes.Array:
    """Element counts as a C ``int64`` array (one slot at least), for the entry's size checks."""
    return (ctypes.c_int64 * max(len(tensors), 1))(*[t.numel() for t in tensors])


def pointer_array(tensors: list[Tensor]) -> ctypes.Array:
    """Data pointers as a C ``void*`` array (one slot at least, for empty lists)."""
    return (ctypes.c_void_p * max(len(tensors), 1))(*[t.data_ptr() for t in tensors])


def index_tensors(layout: GraphLayout, abi: Abi) -> list[Tensor]:
    """The int64 arrays behind the ABI's index slots, contiguous, on the layout's device."""
    tensors = []
    for kind, name in abi.indices:
        if kind == "index":
            tensors.append(layout.index(name))
        elif kind == "ptr":
            tensors.append(layout.ptr(name))
        elif kind == "group_ptr":
            tensors.append(layout.group_ptr(name, layout.rows(str(INDEX_MAPS[name].source))))
        else:
            tensors.append(layout.group_csr(name, layout.rows(str(INDEX_MAPS[name].source)))[1])
    return [t.contiguous() for t in tensors]

r"""Stable grouping of rows by small integer keys: the sort behind every graph layout.

Each layout of :mod:`graphcore.layouts` (canonical edge order, the destination CSR, the
compact ``(relation, node)`` pairs) is a stable sort of ``|E|`` integer keys bounded by
``|R| * |V|``. A comparison sort costs ``O(E log E)``: at ogbn-mag's size (42 M edges) each
``torch.sort`` took 4-10 s on two cores, and a layout needed five of them. A counting sort
is ``O(E + K)`` for keys below ``K``: two passes over the keys, one prefix sum. It runs in a
small C++ function built once into the native build cache; where no compiler exists, the
graph is on a GPU, or the key range is far larger than the rows (the counts array would
dominate), :func:`torch.sort` gives the same order.
"""
from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from graphcore.codegen.errors import BuildError
from graphcore.codegen.runtime.cache import Toolchain
from graphcore.codegen.runtime.load import load_library

# Symbol the build-count tests recognise (tests/graphcore/test_compile_schema.py).
NATIVE_SYMBOL = "gc_group_by"

_SOURCE = r"""
#include <cstdint>
#include <vector>

// Stable counting sort: order lists 0..n-1 by keys[i] ascending, ties in index order.
// Returns 0, or -1 (order untouched) if some key lies outside [0, num_keys).
extern "C" int gc_group_by(const int64_t* keys, int64_t n, int64_t num_keys, int64_t* order) {
    std::vector<int64_t> next(num_keys + 1, 0);
    for (int64_t i = 0; i < n; ++i) {
        int64_t k = keys[i];
        if (k < 0 || k >= num_keys) return -1;
        ++next[k + 1];
    }
    for (int64_t k = 0; k < num_keys; ++k) next[k + 1] += next[k];
    for (int64_t i = 0; i < n; ++i) order[next[keys[i]]++] = i;
    return 0;
}
"""
_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c++17")
_ABI = 1
# Counting sort pays O(num_keys) memory and time: beyond this many keys per row (plus a slack that
# lets a sparse key space through when the rows are many), sort instead.
_MAX_KEYS_PER_ROW = 4
_MIN_NATIVE_ROWS = 512  # below this a torch.sort is as fast as a ctypes call
# (measured, one thread: 2,000 rows 81 -> 11 us, 12,000 rows (a sampled batch) 675 -> 74 us)


@functools.cache
def _native():
    """The loaded ``gc_group_by`` function, or None when no C++ compiler is available."""
    try:
        lib = load_library(_SOURCE, Toolchain("g++", _FLAGS), _ABI)
    except BuildError:
        return None
    fn = getattr(lib, NATIVE_SYMBOL)
    fn.restype = ctypes.c_int
    fn.argtypes = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
    return fn


def group_by(keys: Tensor, num_keys: int) -> Tensor:
    """The stable sorting permutation of ``keys`` (integers in ``[0, num_keys)``).

    Equal to ``torch.sort(keys, stable=True).indices``; ``O(len + num_keys)`` on CPU.
    """
    n = keys.numel()
    fn = None
    if keys.device.type == "cpu" and n >= _MIN_NATIVE_ROWS and num_keys <= _MAX_KEYS_PER_ROW * n + min(64 * n, 1 << 22):
        fn = _native()
    if fn is None:
        return torch.sort(keys, stable=True).indices
    keys = keys.to(torch.int64).contiguous()
    order = torch.empty(n, dtype=torch.int64)
    if fn(keys.data_ptr(), n, num_keys, order.data_ptr()) != 0:
        raise ValueError(f"group_by: keys must lie in [0, {num_keys}), got [{int(keys.min())}, {int(keys.max())}]")
    return order


def runs(sorted_keys: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct values of a sorted key vector and where each run starts: ``(values [U], starts [U + 1])``."""
    n = sorted_keys.numel()
    if n == 0:
        return sorted_keys[:0], torch.zeros(1, dtype=torch.int64, device=sorted_keys.device)
    head = torch.ones(n, dtype=torch.bool, device=sorted_keys.device)
    torch.ne(sorted_keys[1:], sorted_keys[:-1], out=head[1:])
    starts = torch.nonzero(head).squeeze(1)
    end = torch.tensor([n], dtype=torch.int64, device=sorted_keys.device)
    return sorted_keys[starts], torch.cat([starts, end])

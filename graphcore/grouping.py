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
from collections.abc import Callable
from dataclasses import dataclass

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

// The distinct keys of keys[order[0..n)] (non-decreasing) in one pass: key u's value, the
// position starts[u] of its first row in that order (starts[U] = n), and inverse[order[i]] = u.
// Returns U.
extern "C" int64_t gc_runs(const int64_t* keys, const int64_t* order, int64_t n, int64_t* values,
                           int64_t* starts, int64_t* inverse) {
    int64_t u = -1, previous = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t row = order ? order[i] : i, k = keys[row];
        if (u < 0 || k != previous) {
            values[++u] = k;
            starts[u] = i;
            previous = k;
        }
        inverse[row] = u;
    }
    starts[u + 1] = n;
    return u + 1;
}
"""
_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c++17")
_ABI = 2
# Counting sort pays O(num_keys) memory and time: beyond this many keys per row (plus a slack that
# lets a sparse key space through when the rows are many), sort instead.
_MAX_KEYS_PER_ROW = 4
_MIN_NATIVE_ROWS = 512  # below this a torch.sort is as fast as a ctypes call
# (measured, one thread: 2,000 rows 81 -> 11 us, 12,000 rows (a sampled batch) 675 -> 74 us)


@functools.cache
def _native() -> _Native | None:
    """The loaded ``gc_group_by`` and ``gc_runs`` functions, or None when no C++ compiler is available."""
    try:
        lib = load_library(_SOURCE, Toolchain("g++", _FLAGS), _ABI)
    except BuildError:
        return None
    fn = getattr(lib, NATIVE_SYMBOL)
    fn.restype = ctypes.c_int
    fn.argtypes = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
    walk = lib.gc_runs
    walk.restype = ctypes.c_int64
    walk.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                     ctypes.c_void_p)
    return _Native(fn, walk)


@dataclass(frozen=True)
class _Native:
    group_by: Callable
    runs: Callable


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
    if fn.group_by(keys.data_ptr(), n, num_keys, order.data_ptr()) != 0:
        raise ValueError(f"group_by: keys must lie in [0, {num_keys}), got [{int(keys.min())}, {int(keys.max())}]")
    return order


def runs(keys: Tensor, order: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct values of ``keys[order]`` (non-decreasing; ``order`` None: ``keys`` itself),
    where each run starts in that order, and each row's run: ``(values [U], starts [U + 1],
    inverse [len])`` with ``values[inverse] == keys``. One native pass on CPU (a sampled batch's
    12,000 keys: about 20 torch ops fewer per pair map); torch ops elsewhere."""
    n = keys.numel()
    fn = _native() if keys.device.type == "cpu" and n >= _MIN_NATIVE_ROWS else None
    if fn is not None:
        keys = keys.to(torch.int64).contiguous()
        order = None if order is None else order.to(torch.int64).contiguous()
        values, starts, inverse = (torch.empty(n, dtype=torch.int64), torch.empty(n + 1, dtype=torch.int64),
                                   torch.empty(n, dtype=torch.int64))
        count = fn.runs(keys.data_ptr(), None if order is None else order.data_ptr(), n, values.data_ptr(),
                        starts.data_ptr(), inverse.data_ptr())
        return values[:count], starts[:count + 1], inverse
    ordered = keys if order is None else keys[order]
    if n == 0:
        return ordered[:0], torch.zeros(1, dtype=torch.int64, device=keys.device), ordered[:0]
    head = torch.ones(n, dtype=torch.bool, device=keys.device)
    torch.ne(ordered[1:], ordered[:-1], out=head[1:])
    starts = torch.nonzero(head).squeeze(1)
    end = torch.tensor([n], dtype=torch.int64, device=keys.device)
    starts = torch.cat([starts, end])
    ranks = torch.repeat_interleave(torch.arange(starts.numel() - 1, device=keys.device), starts.diff())
    if order is None:
        inverse = ranks
    else:
        inverse = torch.empty_like(ranks)
        inverse[order] = ranks
    return ordered[starts[:-1]], starts, inverse

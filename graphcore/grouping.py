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
#include <omp.h>
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

// gc_group_by on several threads: each counts its contiguous chunk of rows into its own
// histogram, one prefix sum runs over (key, thread), and each scatters its chunk. Chunks are in
// row order and the prefix puts thread t's rows of a key before thread t + 1's: still stable.
extern "C" int gc_group_by_parallel(const int64_t* keys, int64_t n, int64_t num_keys, int threads, int64_t* order) {
    std::vector<int64_t> hist((std::size_t)threads * (std::size_t)num_keys, 0);
    int bad = 0;
    #pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
        int64_t* h = hist.data() + t * num_keys;
        for (int64_t i = lo; i < hi; ++i) {
            const int64_t k = keys[i];
            if (k < 0 || k >= num_keys) {
                #pragma omp atomic write
                bad = 1;
                break;
            }
            ++h[k];
        }
        #pragma omp barrier
        #pragma omp single
        {
            int64_t running = 0;
            for (int64_t k = 0; k < num_keys; ++k) {
                for (int64_t u = 0; u < nt; ++u) {
                    const int64_t c = hist[u * num_keys + k];
                    hist[u * num_keys + k] = running;
                    running += c;
                }
            }
        }
        if (!bad) {
            for (int64_t i = lo; i < hi; ++i) order[h[keys[i]]++] = i;
        }
    }
    return bad ? -1 : 0;
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

// The canonical edge order of R relations in one pass per relation (relations in parallel):
// relation r's edges (srcs[r][i], dsts[r][i]), i < counts[r], local ids, stably sorted by
// destination, relation after relation. A counting sort per relation needs counts only over
// its destination type (at ogbn-mag's size at most 1.1 M, against 15.5 M (relation, node) keys
// for all relations at once), and writes the global ids and the input position (perm) in the
// same scatter. Returns 0, or r + 1 for a relation with an id outside its types.
extern "C" int64_t gc_relation_sort(int64_t R, const int64_t* const* srcs, const int64_t* const* dsts,
                                    const int64_t* counts, const int64_t* src_offset, const int64_t* src_count,
                                    const int64_t* dst_offset, const int64_t* dst_count, int threads,
                                    int64_t* out_src, int64_t* out_dst, int64_t* perm) {
    std::vector<int64_t> base(R + 1, 0), bad(R, 0);
    for (int64_t r = 0; r < R; ++r) base[r + 1] = base[r] + counts[r];
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t r = 0; r < R; ++r) {
        const int64_t* src = srcs[r];
        const int64_t* dst = dsts[r];
        const uint64_t ns = (uint64_t)src_count[r], nd = (uint64_t)dst_count[r];
        std::vector<int64_t> next(nd + 1, 0);
        for (int64_t i = 0; i < counts[r]; ++i) {
            if ((uint64_t)src[i] >= ns || (uint64_t)dst[i] >= nd) { bad[r] = 1; break; }
            ++next[dst[i] + 1];
        }
        if (bad[r]) continue;
        next[0] = base[r];
        for (uint64_t k = 0; k < nd; ++k) next[k + 1] += next[k];
        for (int64_t i = 0; i < counts[r]; ++i) {
            const int64_t p = next[dst[i]]++;
            out_src[p] = src[i] + src_offset[r];
            out_dst[p] = dst[i] + dst_offset[r];
            perm[p] = base[r] + i;
        }
    }
    for (int64_t r = 0; r < R; ++r) if (bad[r]) return r + 1;
    return 0;
}

// Distinct (relation, node) pairs of edges grouped by relation (relation r's edges at
// [rel_ptr[r], rel_ptr[r + 1]), node ids keys[e] - offset[r] in [0, count[r])), in two passes:
// gc_pairs_count finds how many pairs each relation has (so the caller allocates exact sizes),
// gc_pairs_fill writes them. Both return 0, or r + 1 for a relation with a key outside its range.
extern "C" int64_t gc_pairs_count(int64_t R, const int64_t* rel_ptr, const int64_t* keys, const int64_t* offset,
                                  const int64_t* count, int threads, int64_t* num_pairs) {
    std::vector<int64_t> bad(R, 0);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t r = 0; r < R; ++r) {
        const uint64_t n = (uint64_t)count[r];
        std::vector<uint8_t> seen(n, 0);
        int64_t distinct = 0;
        for (int64_t e = rel_ptr[r]; e < rel_ptr[r + 1]; ++e) {
            const uint64_t k = (uint64_t)(keys[e] - offset[r]);
            if (k >= n) { bad[r] = 1; break; }
            distinct += !seen[k];
            seen[k] = 1;
        }
        num_pairs[r] = distinct;
    }
    for (int64_t r = 0; r < R; ++r) if (bad[r]) return r + 1;
    return 0;
}

// The pairs of relation r are pair_ptr[r] .. pair_ptr[r + 1] - 1, by ascending node: node
// (global id), etype, starts[u] (first position of pair u's edges in the grouped order; the
// caller's starts has U + 1 entries and ends with E), inverse[e] (each edge's pair) and, when
// order is not null, order (edge positions grouped by pair, ascending inside each pair).
extern "C" int64_t gc_pairs_fill(int64_t R, const int64_t* rel_ptr, const int64_t* keys, const int64_t* offset,
                                 const int64_t* count, const int64_t* pair_ptr, int threads, int64_t* node,
                                 int64_t* etype, int64_t* starts, int64_t* inverse, int64_t* order) {
    std::vector<int64_t> bad(R, 0);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t r = 0; r < R; ++r) {
        const uint64_t n = (uint64_t)count[r];
        std::vector<int64_t> next(n, 0), pair(n, 0);
        for (int64_t e = rel_ptr[r]; e < rel_ptr[r + 1]; ++e) {
            const uint64_t k = (uint64_t)(keys[e] - offset[r]);
            if (k >= n) { bad[r] = 1; break; }
            ++next[k];
        }
        if (bad[r]) continue;
        int64_t u = pair_ptr[r], position = rel_ptr[r];
        for (uint64_t k = 0; k < n; ++k) {
            if (!next[k]) continue;
            node[u] = (int64_t)k + offset[r];
            etype[u] = r;
            starts[u] = position;
            pair[k] = u++;
            const int64_t edges = next[k];
            next[k] = position;
            position += edges;
        }
        for (int64_t e = rel_ptr[r]; e < rel_ptr[r + 1]; ++e) {
            const int64_t k = keys[e] - offset[r];
            inverse[e] = pair[k];
            if (order) order[next[k]++] = e;
        }
    }
    for (int64_t r = 0; r < R; ++r) if (bad[r]) return r + 1;
    starts[pair_ptr[R]] = rel_ptr[R];
    return 0;
}
"""
_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c++17", "-fopenmp")
_ABI = 5
# Counting sort pays O(num_keys) memory and time: beyond this many keys per row (plus a slack that
# lets a sparse key space through when the rows are many), sort instead.
_MAX_KEYS_PER_ROW = 4
_MIN_NATIVE_ROWS = 512  # below this a torch.sort is as fast as a ctypes call
# Threads pay for themselves on large inputs only, and each needs its own histogram (at most as
# large as the rows, or the per-thread counts would dominate).
_MIN_PARALLEL_ROWS = 1 << 20
# (measured, one thread: 2,000 rows 81 -> 11 us, 12,000 rows (a sampled batch) 675 -> 74 us)


_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
# name (C symbol gc_<name>) -> (return type, argument types)
_SIGNATURES = {
    "group_by": (_INT, (_P, _I64, _I64, _P)),
    "group_by_parallel": (_INT, (_P, _I64, _I64, _INT, _P)),
    "runs": (_I64, (_P, _P, _I64, _P, _P, _P)),
    "relation_sort": (_I64, (_I64, _P, _P, _P, _P, _P, _P, _P, _INT, _P, _P, _P)),
    "pairs_count": (_I64, (_I64, _P, _P, _P, _P, _INT, _P)),
    "pairs_fill": (_I64, (_I64, _P, _P, _P, _P, _P, _INT, _P, _P, _P, _P, _P)),
}


@functools.cache
def _native() -> _Native | None:
    """The loaded native functions (:data:`_SIGNATURES`), or None when no C++ compiler is available."""
    try:
        lib = load_library(_SOURCE, Toolchain("g++", _FLAGS), _ABI)
    except BuildError:
        return None
    functions = {}
    for name, (restype, argtypes) in _SIGNATURES.items():
        functions[name] = getattr(lib, f"gc_{name}")
        functions[name].restype, functions[name].argtypes = restype, argtypes
    return _Native(**functions)


@dataclass(frozen=True)
class _Native:
    group_by: Callable
    group_by_parallel: Callable
    runs: Callable
    relation_sort: Callable
    pairs_count: Callable
    pairs_fill: Callable


class RelationRangeError(ValueError):
    """A relation's node id outside its node type's range, found by the native layout passes
    (which would otherwise write out of bounds); ``relation`` is the relation's index."""

    def __init__(self, relation: int):
        super().__init__(f"relation {relation} has a node id outside its node type's range")
        self.relation = relation


def _int64(values) -> Tensor:
    return torch.as_tensor(values, dtype=torch.int64).contiguous()


def _native_for(rows: int, device: torch.device) -> _Native | None:
    """The native functions where they pay (CPU tensors, enough rows), else None."""
    return _native() if device.type == "cpu" and rows >= _MIN_NATIVE_ROWS else None


def relation_sort(edges: list[tuple[Tensor, Tensor]], src_offset: list[int], src_count: list[int],
                  dst_offset: list[int], dst_count: list[int]) -> tuple[Tensor, Tensor, Tensor] | None:
    """The canonical edge order (:mod:`graphcore.layouts`) of per-relation ``(src, dst)`` local ids:
    ``(src, dst, perm)``, global ids stably sorted by ``(relation, dst)``, ``perm`` the position
    in the relation-by-relation input. One native counting sort per relation (relations
    in parallel on torch's threads): at ogbn-mag's size this replaced a concatenation, key
    arithmetic, one 15.5 M-key sort and three 42 M-row gathers (about 6.8 s on one thread).
    None where the native path does not apply (GPU tensors, few edges, no compiler): the caller
    sorts with torch.

    Raises:
        RelationRangeError: a node id outside its type's range.
    """
    total = sum(int(src.numel()) for src, _ in edges)
    device = edges[0][0].device if edges else torch.device("cpu")
    fn = _native_for(total, device)
    if fn is None:
        return None
    columns = [(src.to(torch.int64).contiguous(), dst.to(torch.int64).contiguous()) for src, dst in edges]
    src_ptrs = (ctypes.c_void_p * len(columns))(*(src.data_ptr() for src, _ in columns))
    dst_ptrs = (ctypes.c_void_p * len(columns))(*(dst.data_ptr() for _, dst in columns))
    counts = _int64([src.numel() for src, _ in columns])
    meta = [_int64(v) for v in (src_offset, src_count, dst_offset, dst_count)]
    src, dst, perm = (torch.empty(total, dtype=torch.int64) for _ in range(3))
    status = fn.relation_sort(len(columns), src_ptrs, dst_ptrs, counts.data_ptr(), *(m.data_ptr() for m in meta),
                              torch.get_num_threads(), src.data_ptr(), dst.data_ptr(), perm.data_ptr())
    if status:
        raise RelationRangeError(status - 1)
    return src, dst, perm


def relation_pair_counts(rel_ptr: Tensor, keys: Tensor, offset: list[int], count: list[int]) -> Tensor | None:
    """``[R]`` number of distinct pairs of each relation in :func:`relation_pairs`, without
    building them (one byte per node of the relation's type); None where the native path does not apply.

    Raises:
        RelationRangeError: a key outside its relation's range.
    """
    fn = _native_for(keys.numel(), keys.device)
    if fn is None:
        return None
    num_relations = rel_ptr.numel() - 1
    rel_ptr, keys, offset, count = _int64(rel_ptr), _int64(keys), _int64(offset), _int64(count)
    num_pairs = torch.zeros(num_relations, dtype=torch.int64)
    status = fn.pairs_count(num_relations, rel_ptr.data_ptr(), keys.data_ptr(), offset.data_ptr(), count.data_ptr(),
                            torch.get_num_threads(), num_pairs.data_ptr())
    if status:
        raise RelationRangeError(status - 1)
    return num_pairs


def relation_pairs(rel_ptr: Tensor, keys: Tensor, offset: list[int], count: list[int], with_order: bool
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None] | None:
    """The distinct ``(relation, node)`` pairs of edges grouped by relation (``rel_ptr``), node ids
    ``keys[e] - offset[r]`` in ``[0, count[r])``: ``(node [U], etype [U], starts [U + 1], inverse
    [E], order [E] or None)``, equal to :func:`runs` over :func:`group_by` of ``etype * N + keys``
    (``order`` that grouping, when ``with_order``). Per relation with counts over its own node
    type only, exact-size outputs (:func:`runs` slices ``E``-row buffers). None where the native
    path does not apply.

    Raises:
        RelationRangeError: a key outside its relation's range.
    """
    num_pairs = relation_pair_counts(rel_ptr, keys, offset, count)
    if num_pairs is None:
        return None
    fn, threads, num_relations = _native(), torch.get_num_threads(), rel_ptr.numel() - 1
    rel_ptr, keys, offset, count = _int64(rel_ptr), _int64(keys), _int64(offset), _int64(count)
    pair_ptr = torch.zeros(num_relations + 1, dtype=torch.int64)
    torch.cumsum(num_pairs, 0, out=pair_ptr[1:])
    pairs, edges = int(pair_ptr[-1]), keys.numel()
    node, etype, starts = (torch.empty(pairs, dtype=torch.int64), torch.empty(pairs, dtype=torch.int64),
                           torch.empty(pairs + 1, dtype=torch.int64))
    inverse = torch.empty(edges, dtype=torch.int64)
    order = torch.empty(edges, dtype=torch.int64) if with_order else None
    status = fn.pairs_fill(num_relations, rel_ptr.data_ptr(), keys.data_ptr(), offset.data_ptr(), count.data_ptr(),
                           pair_ptr.data_ptr(), threads, node.data_ptr(), etype.data_ptr(), starts.data_ptr(),
                           inverse.data_ptr(), None if order is None else order.data_ptr())
    if status:
        raise RelationRangeError(status - 1)
    return node, etype, starts, inverse, order


def group_by(keys: Tensor, num_keys: int) -> Tensor:
    """The stable sorting permutation of ``keys`` (integers in ``[0, num_keys)``).

    Equal to ``torch.sort(keys, stable=True).indices``; ``O(len + num_keys)`` on CPU.
    """
    n = keys.numel()
    fn = _native_for(n, keys.device) if num_keys <= _MAX_KEYS_PER_ROW * n + min(64 * n, 1 << 22) else None
    if fn is None:
        return torch.sort(keys, stable=True).indices
    keys = keys.to(torch.int64).contiguous()
    order = torch.empty(n, dtype=torch.int64)
    threads = torch.get_num_threads()
    if threads > 1 and n >= _MIN_PARALLEL_ROWS and num_keys * threads <= n:
        status = fn.group_by_parallel(keys.data_ptr(), n, num_keys, threads, order.data_ptr())
    else:
        status = fn.group_by(keys.data_ptr(), n, num_keys, order.data_ptr())
    if status != 0:
        raise ValueError(f"group_by: keys must lie in [0, {num_keys}), got [{int(keys.min())}, {int(keys.max())}]")
    return order


def runs(keys: Tensor, order: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct values of ``keys[order]`` (non-decreasing; ``order`` None: ``keys`` itself),
    where each run starts in that order, and each row's run: ``(values [U], starts [U + 1],
    inverse [len])`` with ``values[inverse] == keys``. One native pass on CPU (a sampled batch's
    12,000 keys: about 20 torch ops fewer per pair map); torch ops elsewhere."""
    n = keys.numel()
    fn = _native_for(n, keys.device)
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

"""Transparent huge pages for torch's large CPU allocations, switched on by ``graphcore.compile``.

Compiled plans at scale allocate workspaces of gigabytes and touch every page of them on the
first call, then stream through them on every call. With 4 KiB pages that is one page fault per
4 KiB on first touch and a TLB miss on most random gathers. torch's CPU allocator asks the kernel
for 2 MiB pages (``madvise(MADV_HUGEPAGE)`` on allocations of 2 MiB or more) when the environment
variable ``THP_MEM_ALLOC_ENABLE`` is ``1``; it reads the variable when it allocates, so setting it
in the running process works. On the MAG-size graph (``mag_like:1.0``, R-GCN training, d = 64,
one thread) it took the steady step from 10.4-10.6 s to 8.8-8.9 s and the first call from 31-34 s
to 27-28.5 s.

A value the user has set, ``0`` included, is left alone; systems where THP is ``never`` ignore
the advice.
"""
from __future__ import annotations

import os

THP_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def enable_huge_pages() -> bool:
    """Ask torch for huge pages on large CPU allocations unless the user chose otherwise.

    Returns whether the variable is now ``1``.
    """
    os.environ.setdefault(THP_VARIABLE, "1")
    return os.environ[THP_VARIABLE] == "1"

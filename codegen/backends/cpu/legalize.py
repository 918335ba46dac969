"""Level-2 rewrites for the CPU before printing: what the C++ templates do not express.

A GEMM with a scatter-add epilogue (``accumulate``) would need atomics, and float atomics make
results depend on the thread count. On the CPU it becomes the GEMM storing its rows to a
temporary, then a traversal that sums each target's rows in CSR order: deterministic, and the
temporary has one row per GEMM row (pairs after compaction, not edges).
"""
from __future__ import annotations

from dataclasses import replace

from ...ir.kernel import Access, Buffer, GemmSpec, KernelProgram, Loop, Stmt, TraversalSpec
from ...ir.values import INDEX_MAPS


def split_scatter(program: KernelProgram) -> KernelProgram:
    buffers = list(program.buffers)
    kernels = []
    for k in program.kernels:
        if not (isinstance(k, GemmSpec) and k.mode == "mm" and k.accumulate):
            kernels.append(k)
            continue
        (index,) = k.c.chain
        target = program.buffer(k.c.buffer)
        rows = Buffer(f"{k.c.buffer}_rows", k.rows, target.shape, target.dtype, "temp")
        buffers.append(rows)
        kernels.append(replace(k, c=Access(rows.name), accumulate=False))
        body = (
            Stmt("init", "acc", shape=target.shape, attrs=(("value", 0.0),)),
            Loop((Stmt("load", "x", shape=target.shape, attrs=(("access", Access(rows.name, (), "member")),)),
                  Stmt("reduce", "acc", ("x",), target.shape, (("fn", "sum"),)))),
            Stmt("store", None, ("acc",), target.shape, (("access", Access(target.name)), ("mode", "set"))),
        )
        kernels.append(TraversalSpec(f"{k.name}_scatter", INDEX_MAPS[index].source, body, index,
                                     INDEX_MAPS[index].target))
    return replace(program, buffers=tuple(buffers), kernels=tuple(kernels))

"""Level-2 rewrites for CUDA before printing.

The CUDA GEMM template tiles a row's outputs across thread blocks (32 columns each), so it can
store or scatter-add elements but cannot run a row-wide epilogue (a per-head dot, a broadcast
scale). A GEMM with an epilogue becomes the GEMM into a temporary plus a row traversal that runs
the epilogue and stores (or atomically scatter-adds) the result.
"""
from __future__ import annotations

from dataclasses import replace

from ...ir.kernel import Access, Buffer, GemmSpec, KernelProgram, Stmt, TraversalSpec


def split_epilogues(program: KernelProgram) -> KernelProgram:
    buffers = list(program.buffers)
    kernels = []
    for k in program.kernels:
        if not (isinstance(k, GemmSpec) and k.mode == "mm" and k.epilogue):
            kernels.append(k)
            continue
        shape = (k.heads, k.n) if k.heads > 1 else (k.n,)
        rows = Buffer(f"{k.name}_acc", k.rows, shape, program.buffers[0].dtype, "temp")
        buffers.append(rows)
        kernels.append(replace(k, c=Access(rows.name), accumulate=False, epilogue=(), result="acc"))
        target = program.buffer(k.c.buffer)
        body = (Stmt("load", "acc", shape=shape, attrs=(("access", Access(rows.name)),)), *k.epilogue,
                Stmt("store", None, (k.result,), target.shape,
                     (("access", k.c), ("mode", "add" if k.accumulate else "set"))))
        kernels.append(TraversalSpec(f"{k.name}_epilogue", k.rows, body))
    return replace(program, buffers=tuple(buffers), kernels=tuple(kernels))

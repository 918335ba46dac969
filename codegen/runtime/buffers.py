"""What a native executable passes to its kernels: index arrays and allocated buffers.

Shared by the CPU and CUDA backends: the graph's index arrays in ABI order, and one tensor per
buffer (inputs and parameters as given, graph constants from the layout, dropout masks from the
runtime, ``torch.empty`` for the rest, zeroed where kernels accumulate).
"""
from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from codegen.backends.cfamily import DOMAIN_ORDER, Abi
from codegen.errors import CompileError
from codegen.ir.kernel import KernelProgram
from codegen.ir.values import INDEX_MAPS, Domain
from graphcore.layouts import Layout


def rows_array(layout: Layout) -> ctypes.Array:
    """Row counts of every domain, in the ABI's ``DOMAIN_ORDER``, as a C ``int64`` array."""
    rows = [1 if d == Domain.SCALAR else layout.rows(str(d)) for d in DOMAIN_ORDER]
    return (ctypes.c_int64 * len(rows))(*rows)


def pointer_array(tensors: list[Tensor]) -> ctypes.Array:
    """Data pointers as a C ``void*`` array (one slot at least, for empty lists)."""
    return (ctypes.c_void_p * max(len(tensors), 1))(*[t.data_ptr() for t in tensors])


def index_tensors(layout: Layout, abi: Abi) -> list[Tensor]:
    """The int64 arrays behind the ABI's index slots, contiguous, on the layout's device."""
    tensors = []
    for kind, name in abi.indices:
        if kind == "index":
            tensors.append(layout.index(name))
        elif kind == "ptr":
            tensors.append(layout.ptr(name))
        else:
            ptr, members = layout.group_csr(name, layout.rows(str(INDEX_MAPS[name].source)))
            tensors.append(ptr if kind == "group_ptr" else members)
    return [t.contiguous() for t in tensors]


def allocate(program: KernelProgram, layout: Layout, inputs: list[Tensor], params: list[Tensor],
             randoms: dict[str, Tensor] | None, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
    """One contiguous tensor per buffer of ``program``."""
    env: dict[str, Tensor] = {}
    for name, t in (*zip(program.inputs, inputs, strict=True), *zip(program.params, params, strict=True)):
        if t.dtype != dtype or t.device.type != device.type:
            raise CompileError(f"the compiled kernels expect {dtype} tensors on {device}, got {t.dtype} on {t.device}")
        env[name] = t.detach().contiguous()
    env.update({k: v.contiguous() for k, v in (randoms or {}).items()})
    zeroed = program.accumulated()
    for buf in program.buffers:
        if buf.name in env:
            continue
        if buf.role.startswith("graph:"):
            env[buf.name] = layout.constant(buf.role.split(":", 1)[1]).to(dtype).view(-1, 1).contiguous()
            continue
        shape = buf.shape if buf.domain == Domain.SCALAR else (layout.rows(str(buf.domain)), *buf.shape)
        env[buf.name] = (torch.zeros if buf.name in zeroed else torch.empty)(shape, dtype=dtype, device=device)
    return env

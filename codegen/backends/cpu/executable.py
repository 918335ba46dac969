"""The CPU backend: print C++, build it (cached), call it through a plain C ABI with ctypes.

Buffers are torch tensors allocated here (inputs and parameters are passed as they are, made
contiguous); the kernels read the graph's index arrays straight from its cached layout.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from codegen.backends.cfamily import ABI_VERSION, DOMAIN_ORDER, Abi, print_module
from codegen.backends.cpu.legalize import split_scatter
from codegen.backends.cpu.printer import CpuPrinter
from codegen.errors import CompileError
from codegen.ir.kernel import KernelProgram
from codegen.ir.values import Domain
from codegen.runtime.cache import Toolchain
from codegen.runtime.load import load_library
from graphcore.layouts import Layout

PRELUDE_DIR = Path(__file__).resolve().parent
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17", "-Wall", "-Werror",
         "-Wno-unused-variable", "-Wno-unknown-pragmas", f"-I{PRELUDE_DIR}")


def toolchain() -> Toolchain:
    return Toolchain("g++", FLAGS, headers=(PRELUDE_DIR / "prelude.h",))


def index_tensor(layout: Layout, kind: str, name: str) -> Tensor:
    """The int64 array behind one ABI index slot."""
    if kind == "index":
        return layout.index(name)
    if kind == "ptr":
        return layout.ptr(name)
    from codegen.ir.values import INDEX_MAPS

    ptr, perm = layout.group_csr(name, layout.rows(str(INDEX_MAPS[name].source)))
    return ptr if kind == "group_ptr" else perm


def build_module(programs: dict[str, KernelProgram], layout: Layout) -> dict[str, CpuExecutable]:
    """Compile a model's programs (forward, backward) as one library; one executable each."""
    legal = {name: split_scatter(p) for name, p in programs.items()}
    source, abis = print_module(CpuPrinter, legal)
    lib = load_library(source, toolchain(), ABI_VERSION)
    return {name: CpuExecutable(legal[name], layout, getattr(lib, f"graphcore_{name}"), abis[name], source)
            for name in legal}


class CpuExecutable:
    """One entry of a compiled CPU library, bound to one graph layout."""

    def __init__(self, program: KernelProgram, layout: Layout, entry, abi: Abi, source: str):
        self.program, self.layout, self.entry, self.abi, self.source = program, layout, entry, abi, source
        self.entry.restype = ctypes.c_int
        self.entry.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p),
                               ctypes.POINTER(ctypes.c_int64), ctypes.c_int, ctypes.POINTER(ctypes.c_double)]
        self.profile: list[float] | None = None  # set to a list to accumulate per-kernel seconds
        self.indices = [index_tensor(layout, kind, name).contiguous() for kind, name in self.abi.indices]
        self.index_ptrs = (ctypes.c_void_p * max(len(self.indices), 1))(*[t.data_ptr() for t in self.indices])
        rows = [1 if d == Domain.SCALAR else layout.rows(str(d)) for d in DOMAIN_ORDER]
        self.rows = (ctypes.c_int64 * len(rows))(*rows)

    def _shape(self, name: str) -> tuple[int, ...]:
        buf = self.program.buffer(name)
        return buf.shape if buf.domain == Domain.SCALAR else (self.layout.rows(str(buf.domain)), *buf.shape)

    def run(self, inputs: list[Tensor], params: list[Tensor], randoms: dict[str, Tensor] | None = None
            ) -> list[Tensor]:
        prog = self.program
        dtype = torch.float64 if self.abi.dtype == "float64" else torch.float32
        env: dict[str, Tensor] = {}
        for name, t in (*zip(prog.inputs, inputs, strict=True), *zip(prog.params, params, strict=True)):
            if t.dtype != dtype or t.device.type != "cpu":
                raise CompileError(f"the CPU kernels expect {dtype} tensors on the CPU, got {t.dtype} on {t.device}")
            env[name] = t.detach().contiguous()
        env.update({k: v.contiguous() for k, v in (randoms or {}).items()})
        for buf in prog.buffers:
            if buf.name in env:
                continue
            if buf.role.startswith("graph:"):
                env[buf.name] = self.layout.constant(buf.role.split(":", 1)[1]).to(dtype).view(-1, 1).contiguous()
            else:
                env[buf.name] = torch.empty(self._shape(buf.name), dtype=dtype)
        pointers = (ctypes.c_void_p * len(self.abi.buffers))(*[env[n].data_ptr() for n in self.abi.buffers])
        seconds = (ctypes.c_double * len(prog.kernels))() if self.profile is not None else None
        status = self.entry(pointers, self.index_ptrs, self.rows, torch.get_num_threads(), seconds)
        if seconds is not None:
            if not self.profile:
                self.profile.extend([0.0] * len(prog.kernels))
            for i, t in enumerate(seconds):
                self.profile[i] += t
        if status != 0:
            raise CompileError(f"the CPU kernels returned status {status}")
        return [env[name] for name in prog.outputs]

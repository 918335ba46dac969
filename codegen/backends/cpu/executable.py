"""The CPU backend: print C++, build it (cached), call it through a plain C ABI with ctypes.

Buffers are torch tensors allocated here (inputs and parameters are passed as they are, made
contiguous); the kernels read the graph's index arrays straight from its cached layout.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from ..abi import ABI_VERSION, Abi
from ..cfamily import print_module
from .legalize import split_scatter
from .printer import CpuPrinter
from ...errors import CompileError
from ...ir.kernel import KernelProgram
from ...ir.verify_kernels import verify_kernels
from ..native import NativeExecutable
from ...runtime.workspace import WorkspacePool, allocate
from ...runtime.cache import Toolchain
from ...runtime.load import load_library
from ...ir.layout import GraphLayout

PRELUDE_DIR = Path(__file__).resolve().parent
# -Wno-maybe-uninitialized: GCC 12 flags a one-element array written by a one-trip `omp simd`
# loop and read after it (the fuzzer's identity of a width-1 value), a false positive
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17", "-Wall", "-Werror",
         "-Wno-unused-variable", "-Wno-unknown-pragmas", "-Wno-maybe-uninitialized", f"-I{PRELUDE_DIR}")


def toolchain() -> Toolchain:
    return Toolchain("g++", FLAGS, headers=(PRELUDE_DIR / "prelude.h",))


def module_source(programs: dict[str, KernelProgram]) -> tuple[str, dict[str, Abi], dict[str, KernelProgram]]:
    """The translation unit of a model's programs after the CPU legalisation, with their ABIs."""
    legal = {name: verify_kernels(split_scatter(p), f"legalize[cpu, {name}]") for name, p in programs.items()}
    source, abis = print_module(CpuPrinter, legal)
    return source, abis, legal


def build_module(programs: dict[str, KernelProgram], pool: WorkspacePool) -> dict[str, CpuExecutable]:
    """Compile a model's programs (forward, backward) as one library; one executable each."""
    source, abis, legal = module_source(programs)
    lib = load_library(source, toolchain(), ABI_VERSION)
    return {name: CpuExecutable(legal[name], getattr(lib, f"graphcore_{name}"), abis[name], source, pool)
            for name in legal}


class CpuExecutable(NativeExecutable):
    """One entry of a compiled CPU library: ``entry(B, I, rows, numel, threads, seconds)``."""

    EXTRA_ARGTYPES = (ctypes.c_int, ctypes.POINTER(ctypes.c_double))

    def __init__(self, program: KernelProgram, entry, abi: Abi, source: str, pool: WorkspacePool):
        super().__init__(program, entry, abi, source, pool)
        self.profile: list[float] | None = None  # set to a list to accumulate per-kernel seconds

    def run(self, layout: GraphLayout, inputs: list[Tensor], params: list[Tensor],
            randoms: dict[str, Tensor] | None = None) -> list[Tensor]:
        prog = self.program
        seconds = (ctypes.c_double * len(prog.kernels))() if self.profile is not None else None
        bound = self.binding(layout)
        with self.lock:
            env = allocate(bound.workspace, inputs, params, randoms, torch.device("cpu"))
            status = self.entry(*self.arguments(env, bound), torch.get_num_threads(), seconds)
        if seconds is not None:
            if not self.profile:
                self.profile.extend([0.0] * len(prog.kernels))
            for i, t in enumerate(seconds):
                self.profile[i] += t
        if status < 0:
            raise self.refused(status)
        if status != 0:
            raise CompileError(f"the CPU kernels returned status {status}")
        return [env[name] for name in prog.outputs]

"""The CUDA backend: print CUDA C++, build it with nvcc (cached), launch through a C ABI.

``ptxas_report`` compiles a module to a cubin for one architecture and reads ``-Xptxas -v``:
registers, shared memory and spills per kernel. The test suite runs it for sm_80 and sm_90 on
machines without a GPU; execution needs ``torch.cuda.is_available()`` (backend ``cuda-emu``,
``codegen/backends/cuda_emu``, runs the same text on the CPU).
"""
from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import torch
from torch import Tensor

from ..abi import ABI_VERSION, Abi
from ..cfamily import print_module
from .legalize import split_epilogues
from .printer import CudaPrinter
from ...errors import BuildError, CompileError
from ...ir.kernel import KernelProgram
from ...ir.verify_kernels import verify_kernels
from ..native import NativeExecutable
from ...runtime.workspace import WorkspacePool, allocate
from ...runtime.cache import Toolchain
from ...runtime.load import load_library
from ...ir.layout import GraphLayout

PRELUDE_DIR = Path(__file__).resolve().parent


def toolchain(arch: str) -> Toolchain:
    flags = ("-O3", f"-arch={arch}", "-std=c++17", "-shared", "-Xcompiler", "-fPIC", f"-I{PRELUDE_DIR}")
    return Toolchain("nvcc", flags, headers=(PRELUDE_DIR / "prelude.cuh",), source_name="source.cu")


def module_source(programs: dict[str, KernelProgram]) -> tuple[str, dict[str, Abi], dict[str, KernelProgram]]:
    legal = {name: verify_kernels(split_epilogues(p), f"legalize[cuda, {name}]") for name, p in programs.items()}
    source, abis = print_module(CudaPrinter, legal)
    return source, abis, legal


def ptxas_report(source: str, arch: str, workdir: Path) -> dict[str, dict[str, int]]:
    """Compile ``source`` to a cubin for ``arch`` (e.g. ``sm_90``); per-kernel ptxas statistics."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"module_{arch}.cu"
    path.write_text(source)
    command = ["nvcc", "-cubin", f"-arch={arch}", "-O3", "-std=c++17", "-Xptxas", "-v", f"-I{PRELUDE_DIR}",
               "-o", str(workdir / f"module_{arch}.cubin"), str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise BuildError("nvcc failed", command=command, returncode=result.returncode, stderr=result.stderr,
                         source_path=str(path))
    stats: dict[str, dict[str, int]] = {}
    current = None
    for line in result.stderr.splitlines():
        found = re.search(r"Compiling entry function '(\w+)'", line)
        if found:
            current = found.group(1)
            stats[current] = {"registers": 0, "shared_bytes": 0, "spill_stores": 0, "spill_loads": 0}
            continue
        if current is None:
            continue
        spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if spill:
            stats[current]["spill_stores"], stats[current]["spill_loads"] = map(int, spill.groups())
        used = re.search(r"Used (\d+) registers", line)
        if used:
            stats[current]["registers"] = int(used.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            stats[current]["shared_bytes"] = int(smem.group(1)) if smem else 0
    return stats


def _arch() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"


def build_module(programs: dict[str, KernelProgram], pool: WorkspacePool) -> dict[str, CudaExecutable]:
    if not torch.cuda.is_available():
        raise CompileError("backend='cuda' needs a CUDA device; use backend='cpu' or 'torch'")
    source, abis, legal = module_source(programs)
    lib = load_library(source, toolchain(_arch()), ABI_VERSION)
    return {name: CudaExecutable(legal[name], getattr(lib, f"graphcore_{name}"), abis[name], source, pool)
            for name in legal}


class CudaExecutable(NativeExecutable):
    """One entry of a compiled CUDA library (the graph's layout on the GPU):
    ``entry(B, I, rows, numel, stream)``."""

    EXTRA_ARGTYPES = (ctypes.c_void_p,)

    def run(self, layout: GraphLayout, inputs: list[Tensor], params: list[Tensor],
            randoms: dict[str, Tensor] | None = None) -> list[Tensor]:
        prog = self.program
        stream = torch.cuda.current_stream(layout.device)
        pool = self.pool
        bound = self.binding(layout)
        with self.lock:
            # kernels run asynchronously: a call on another stream must not touch the pool
            # before the previous call's kernels are done with it
            if pool.last_use is not None:
                stream.wait_event(pool.last_use)
            env = allocate(bound.workspace, inputs, params, randoms, layout.device)
            for buffer in pool.buffers:  # the caching allocator must not hand them out under us
                buffer.record_stream(stream)
            status = self.entry(*self.arguments(env, bound), stream.cuda_stream)
            pool.last_use = torch.cuda.Event()
            pool.last_use.record(stream)
        if status < 0:
            raise self.refused(status)
        if status != 0:
            raise CompileError(f"CUDA kernels failed with cudaError {status}")
        return [env[name] for name in prog.outputs]

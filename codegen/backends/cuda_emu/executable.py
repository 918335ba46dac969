"""Backend ``cuda-emu``: the CUDA backend's translation unit, run on the CPU.

The very text the CUDA backend gives nvcc (same legalisation, same printer, same ABI) is compiled
by g++ with ``-DGC_CUDA_EMULATION``: ``prelude.cuh`` then includes ``gc_emulation.h``, which runs
every ``GC_LAUNCH`` on the host (each CUDA thread a fiber, ``__syncthreads`` a barrier of the
block's fibers, ``__shared__`` storage per running block, ``atomicAdd`` a compare-and-swap; see
the header). So the CUDA kernels' indexing, tiling, barriers and atomics are executed, and
checked against the reference backend, on machines without a GPU.

A run's schedule is set with :func:`schedule`: by default blocks run in order and a block's
threads in thread order (blocks on ``torch.get_num_threads()`` OS threads); ``schedule(seed)``
draws block order, thread interleaving at barriers and yields before atomics from ``seed``, on
one OS thread, so every run with that seed executes the same interleaving. Two seeds must agree
(bitwise where no atomics add, to rounding where they do): a kernel that depends on an order CUDA
does not promise gives a different answer.
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..abi import ABI_VERSION
from ..cuda.executable import PRELUDE_DIR as CUDA_DIR, module_source
from ..native import NativeExecutable
from ...errors import CompileError
from ...ir.kernel import KernelProgram
from ...ir.layout import GraphLayout
from ...runtime.cache import Toolchain
from ...runtime.load import load_library
from ...runtime.workspace import WorkspacePool, allocate

EMU_DIR = Path(__file__).resolve().parent
# -x c++: the source is the .cu file; no -march=native, so no FMA contraction the GPU would not do either way
FLAGS = ("-x", "c++", "-O1", "-fopenmp", "-shared", "-fPIC", "-std=c++17", "-DGC_CUDA_EMULATION", "-Wall",
         "-Werror", "-Wno-unused-variable", "-Wno-unknown-pragmas", "-Wno-maybe-uninitialized", f"-I{EMU_DIR}",
         f"-I{CUDA_DIR}")  # maybe-uninitialized: see the CPU backend's flags
ERRORS = {1001: "a __syncthreads was reached by only part of a block (some of its threads had exited)",
          1002: "a block has no threads or more than 1024",
          1003: "no memory for the emulated threads' stacks"}


class EmuConfig(ctypes.Structure):
    """``GcEmuConfig`` of ``gc_emulation.h``: passed through the entry's stream argument."""

    _fields_ = [("seed", ctypes.c_uint64), ("shuffle", ctypes.c_int32), ("threads", ctypes.c_int32),
                ("launches", ctypes.c_int64), ("blocks", ctypes.c_int64), ("yields", ctypes.c_int64)]


@dataclass(frozen=True)
class Schedule:
    """How the emulator orders blocks and threads: ``seed=None`` is the natural order."""

    seed: int | None = None


_SCHEDULE: contextvars.ContextVar[Schedule] = contextvars.ContextVar("graphcore_emu_schedule", default=Schedule())


@contextlib.contextmanager
def schedule(seed: int | None) -> Iterator[Schedule]:
    """Run the ``cuda-emu`` kernels called inside the block under the shuffled schedule drawn from
    ``seed`` (``None``: the natural schedule)."""
    token = _SCHEDULE.set(Schedule(seed))
    try:
        yield _SCHEDULE.get()
    finally:
        _SCHEDULE.reset(token)


def toolchain() -> Toolchain:
    return Toolchain("g++", FLAGS, headers=(CUDA_DIR / "prelude.cuh", EMU_DIR / "gc_emulation.h"),
                     source_name="source.cu")


def build_module(programs: dict[str, KernelProgram], pool: WorkspacePool) -> dict[str, EmuExecutable]:
    """Compile the CUDA translation unit of a model's programs for the emulator; one executable each."""
    source, abis, legal = module_source(programs)
    return build_from_source(source, abis, legal, pool)


def build_from_source(source: str, abis, programs: dict[str, KernelProgram], pool: WorkspacePool
                      ) -> dict[str, EmuExecutable]:
    """Executables for a given CUDA text (the race tests plant bugs in a copy of a generated one)."""
    lib = load_library(source, toolchain(), ABI_VERSION)
    return {name: EmuExecutable(programs[name], getattr(lib, f"graphcore_{name}"), abis[name], source, pool)
            for name in programs}


class EmuExecutable(NativeExecutable):
    """One entry of an emulated CUDA library: ``entry(B, I, rows, numel, config)``, CPU tensors."""

    EXTRA_ARGTYPES = (ctypes.c_void_p,)

    def __init__(self, program, entry, abi, source, pool):
        super().__init__(program, entry, abi, source, pool)
        self.last_run: EmuConfig | None = None  # what the latest call ran: launches, blocks, yields

    def run(self, layout: GraphLayout, inputs: list[Tensor], params: list[Tensor],
            randoms: dict[str, Tensor] | None = None) -> list[Tensor]:
        plan = _SCHEDULE.get()
        config = EmuConfig(seed=plan.seed or 0, shuffle=int(plan.seed is not None),
                           threads=1 if plan.seed is not None else max(torch.get_num_threads(), 1))
        bound = self.binding(layout)
        with self.lock:
            env = allocate(bound.workspace, inputs, params, randoms, torch.device("cpu"))
            status = self.entry(*self.arguments(env, bound), ctypes.addressof(config))
        self.last_run = config
        if status < 0:
            raise self.refused(status)
        if status != 0:
            raise CompileError(f"the emulated CUDA kernels failed: {ERRORS.get(status, f'status {status}')}")
        return [env[name] for name in self.program.outputs]

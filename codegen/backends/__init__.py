"""Backends turn a :class:`~codegen.ir.kernel.KernelProgram` into something that runs on one graph.

Every backend offers ``build(programs, pool) -> {name: executable}`` with
``executable.run(layout, inputs, params, randoms) -> outputs``; the runtime treats them alike.
"""
from __future__ import annotations

from typing import Protocol

from torch import Tensor

from ..errors import CompileError
from ..ir.kernel import KernelProgram
from ..ir.layout import GraphLayout
from ..runtime.workspace import WorkspacePool


class Executable(Protocol):
    def run(self, layout: GraphLayout, inputs: list[Tensor], params: list[Tensor],
            randoms: dict[str, Tensor] | None = None) -> list[Tensor]: ...


BACKENDS = ("torch", "cpu", "cuda", "cuda-emu")


def build(backend: str, programs: dict[str, KernelProgram], pool: WorkspacePool) -> dict[str, Executable]:
    """Build a model's programs (``forward``, maybe ``backward``); native backends compile them as
    one translation unit and take their temporaries from ``pool``. The executables take a graph
    layout on every call: one build serves every graph of the schema."""
    if backend == "torch":
        from .torch.executor import TorchExecutable

        return {name: TorchExecutable(p) for name, p in programs.items()}
    if backend == "cpu":
        from .cpu.executable import build_module

        return build_module(programs, pool)
    if backend == "cuda":
        from .cuda.executable import build_module as build_cuda

        return build_cuda(programs, pool)
    if backend == "cuda-emu":  # the CUDA translation unit run on the CPU (tests without a GPU)
        from .cuda_emu.executable import build_module as build_emulated

        return build_emulated(programs, pool)
    raise CompileError(f"unknown backend {backend!r}; available: {list(BACKENDS)}")


def resolve(backend: str, device_type: str) -> str:
    """The concrete backend for ``"auto"`` on a device type."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise CompileError(f"unknown backend {backend!r}; available: {['auto', *BACKENDS]}")
        return backend
    return {"cpu": "cpu", "cuda": "cuda"}.get(device_type, "torch")

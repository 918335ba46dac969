"""Backends turn a :class:`~codegen.ir.kernel.KernelProgram` into something that runs on one graph.

Every backend offers ``build(program, layout) -> executable`` with
``executable.run(inputs, params, randoms) -> outputs``; the runtime treats them alike.
"""
from __future__ import annotations

from typing import Protocol

from torch import Tensor

from codegen.errors import CompileError
from codegen.ir.kernel import KernelProgram
from graphcore.layouts import Layout


class Executable(Protocol):
    def run(self, inputs: list[Tensor], params: list[Tensor], randoms: dict[str, Tensor] | None = None
            ) -> list[Tensor]: ...


BACKENDS = ("torch", "cpu")


def build(backend: str, program: KernelProgram, layout: Layout) -> Executable:
    """Build ``program`` for ``layout`` with the named backend."""
    if backend == "torch":
        from codegen.backends.torch.executor import TorchExecutable

        return TorchExecutable(program, layout)
    if backend == "cpu":
        from codegen.backends.cpu.executable import CpuExecutable

        return CpuExecutable(program, layout)
    raise CompileError(f"unknown backend {backend!r}; available: {list(BACKENDS)}")


def resolve(backend: str, device_type: str) -> str:
    """The concrete backend for ``"auto"`` on a device type."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise CompileError(f"unknown backend {backend!r}; available: {['auto', *BACKENDS]}")
        return backend
    return "cpu" if device_type == "cpu" else "torch"

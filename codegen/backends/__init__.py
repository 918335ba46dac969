"""Backends turn a :class:`~codegen.ir.kernel.KernelProgram` into something that runs on one graph.

Every backend offers ``build(programs, layout) -> {name: executable}`` with
``executable.run(inputs, params, randoms) -> outputs``; the runtime treats them alike.
"""
from __future__ import annotations

from typing import Protocol

from torch import Tensor

from codegen.errors import CompileError
from codegen.ir.kernel import KernelProgram
from codegen.ir.layout import GraphLayout


class Executable(Protocol):
    def run(self, inputs: list[Tensor], params: list[Tensor], randoms: dict[str, Tensor] | None = None
            ) -> list[Tensor]: ...


BACKENDS = ("torch", "cpu", "cuda")


def build(backend: str, programs: dict[str, KernelProgram], layout: GraphLayout, pool=None) -> dict[str, Executable]:
    """Build a model's programs (``forward``, maybe ``backward``) for ``layout``; native backends
    compile them as one translation unit and take their temporaries from ``pool`` (a
    :class:`~codegen.runtime.workspace.WorkspacePool`; one of their own if None)."""
    if backend == "torch":
        from codegen.backends.torch.executor import TorchExecutable

        return {name: TorchExecutable(p, layout) for name, p in programs.items()}
    if backend == "cpu":
        from codegen.backends.cpu.executable import build_module

        return build_module(programs, layout, pool)
    if backend == "cuda":
        from codegen.backends.cuda.executable import build_module as build_cuda

        return build_cuda(programs, layout, pool)
    raise CompileError(f"unknown backend {backend!r}; available: {list(BACKENDS)}")


def resolve(backend: str, device_type: str) -> str:
    """The concrete backend for ``"auto"`` on a device type."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise CompileError(f"unknown backend {backend!r}; available: {['auto', *BACKENDS]}")
        return backend
    return {"cpu": "cpu", "cuda": "cuda"}.get(device_type, "torch")

"""What the CPU and CUDA executables share: one entry of a compiled library bound to a layout."""
from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from codegen.backends.abi import Abi, index_tensors, numel_array, pointer_array, rows_array
from codegen.errors import GraphError
from codegen.ir.kernel import KernelProgram
from codegen.ir.layout import GraphLayout
from codegen.runtime.workspace import Workspace, WorkspacePool


class NativeExecutable:
    """One entry of a compiled native library (``graphcore_<name>``) bound to one graph layout.

    Subclasses give the entry's trailing C argument types (``EXTRA_ARGTYPES``, after the buffer
    pointers, index pointers, row counts and buffer sizes every entry takes) and ``run``.
    """

    EXTRA_ARGTYPES: tuple = ()

    def __init__(self, program: KernelProgram, layout: GraphLayout, entry, abi: Abi, source: str,
                 pool: WorkspacePool | None = None):
        self.program, self.layout, self.entry, self.abi, self.source = program, layout, entry, abi, source
        self.entry.restype = ctypes.c_int
        self.entry.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p),
                               ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64), *self.EXTRA_ARGTYPES]
        self.indices = index_tensors(layout, abi)
        self.index_ptrs = pointer_array(self.indices)
        self.rows = rows_array(layout)
        self.dtype = torch.float64 if abi.dtype == "float64" else torch.float32
        pool = pool or WorkspacePool(layout.device)
        self.workspace = Workspace(program, layout, self.dtype, pool)
        self.lock = pool.lock  # one call at a time among the programs sharing the pool

    def arguments(self, env: dict[str, Tensor]) -> tuple[ctypes.Array, ctypes.Array, ctypes.Array, ctypes.Array]:
        """The four arguments every entry takes first: buffers, indices, row counts, buffer sizes."""
        tensors = [env[n] for n in self.abi.buffers]
        return pointer_array(tensors), self.index_ptrs, self.rows, numel_array(tensors)

    def refused(self, status: int) -> GraphError:
        """The error for a negative entry status: the entry's size check refused buffer ``-status - 1``."""
        name = self.abi.buffers[-status - 1]
        return GraphError(f"the native kernels refused buffer '{name}': its size does not match the graph's row "
                          "counts (a graphcore bug if the Python checks let it through; please report it)")

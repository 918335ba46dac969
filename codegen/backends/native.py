"""What the CPU and CUDA executables share: one entry of a compiled library, and its per-graph arguments."""
from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

from .abi import Abi, index_tensors, numel_array, pointer_array, rows_array
from ..errors import GraphError
from ..ir.kernel import KernelProgram
from ..ir.layout import GraphLayout
from ..runtime.workspace import Workspace, WorkspacePool


@dataclass(frozen=True)
class Binding:
    """What one graph gives an executable: its index arrays (kept alive), their pointers, its row
    counts, and the workspace sized for its rows."""

    indices: list[Tensor]
    index_ptrs: ctypes.Array
    rows: ctypes.Array
    workspace: Workspace


class NativeExecutable:
    """One entry of a compiled native library (``graphcore_<name>``); the graph is run-time data.

    The kernels take a graph's index arrays and row counts as arguments, so one build serves
    every graph of the schema it was compiled for (the full graph, a sampled batch): a graph's
    :class:`Binding` is made on its first call and cached while its layout lives. Subclasses give
    the entry's trailing C argument types (``EXTRA_ARGTYPES``, after the buffer pointers, index
    pointers, row counts and buffer sizes every entry takes) and ``run(layout, ...)``.
    """

    EXTRA_ARGTYPES: tuple = ()

    def __init__(self, program: KernelProgram, entry, abi: Abi, source: str, pool: WorkspacePool):
        self.program, self.entry, self.abi, self.source, self.pool = program, entry, abi, source, pool
        self.entry.restype = ctypes.c_int
        self.entry.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p),
                               ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64), *self.EXTRA_ARGTYPES]
        self.dtype = torch.float64 if abi.dtype == "float64" else torch.float32
        self.lock = pool.lock  # one call at a time among the programs sharing the pool
        self._bindings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def binding(self, layout: GraphLayout) -> Binding:
        """The run-time arguments of ``layout``'s graph (built once per layout)."""
        bound = self._bindings.get(layout)
        if bound is None:
            indices = index_tensors(layout, self.abi)
            bound = Binding(indices, pointer_array(indices), rows_array(layout),
                            Workspace(self.program, layout, self.dtype, self.pool))
            self._bindings[layout] = bound
        return bound

    def arguments(self, env: dict[str, Tensor], bound: Binding
                  ) -> tuple[ctypes.Array, ctypes.Array, ctypes.Array, ctypes.Array]:
        """The four arguments every entry takes first: buffers, indices, row counts, buffer sizes."""
        tensors = [env[n] for n in self.abi.buffers]
        return pointer_array(tensors), bound.index_ptrs, bound.rows, numel_array(tensors)

    def refused(self, status: int) -> GraphError:
        """The error for a negative entry status: the entry's size check refused buffer ``-status - 1``."""
        name = self.abi.buffers[-status - 1]
        return GraphError(f"the native kernels refused buffer '{name}': its size does not match the graph's row "
                          "counts (a graphcore bug if the Python checks let it through; please report it)")

"""What a native executable passes to its kernels: index arrays and allocated buffers.

Shared by the CPU and CUDA backends: the graph's index arrays in ABI order, and one tensor per
buffer (inputs and parameters as given, dropout masks from the runtime, temporaries and graph
constants from a workspace kept between calls, new tensors for the outputs).
"""
from __future__ import annotations

import ctypes
import math
import threading

import torch
from torch import Tensor

from codegen.backends.cfamily import DOMAIN_ORDER, Abi
from codegen.errors import CompileError, GraphError
from codegen.ir.kernel import KernelProgram
from codegen.ir.values import INDEX_MAPS, Domain
from codegen.ir.layout import GraphLayout


def rows_array(layout: GraphLayout) -> ctypes.Array:
    """Row counts of every domain, in the ABI's ``DOMAIN_ORDER``, as a C ``int64`` array."""
    rows = [1 if d == Domain.SCALAR else layout.rows(str(d)) for d in DOMAIN_ORDER]
    return (ctypes.c_int64 * len(rows))(*rows)


def numel_array(tensors: list[Tensor]) -> ctypes.Array:
    """Element counts as a C ``int64`` array (one slot at least), for the entry's size checks."""
    return (ctypes.c_int64 * max(len(tensors), 1))(*[t.numel() for t in tensors])


def pointer_array(tensors: list[Tensor]) -> ctypes.Array:
    """Data pointers as a C ``void*`` array (one slot at least, for empty lists)."""
    return (ctypes.c_void_p * max(len(tensors), 1))(*[t.data_ptr() for t in tensors])


def index_tensors(layout: GraphLayout, abi: Abi) -> list[Tensor]:
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


def share_temporaries(program: KernelProgram, numel: dict[str, int]) -> dict[str, int]:
    """Slot of each shareable temporary: temporaries whose live ranges (first to last kernel that
    touches them) do not overlap may use the same memory, since kernels run one after another.

    Only ``temp`` buffers that are not accumulated into qualify (those must start at zero).
    Greedy in order of first use; a buffer takes the smallest free slot that holds it, else the
    largest free slot (which grows), else a new one. Returns ``{buffer: slot}``.
    """
    zeroed = program.accumulated()
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, names in enumerate(program.touched()):
        for name in names:
            first.setdefault(name, i)
            last[name] = i
    temps = sorted((b.name for b in program.buffers if b.role == "temp" and b.name not in zeroed and b.name in first),
                   key=lambda n: first[n])
    slot_size: list[int] = []
    slot_free_after: list[int] = []  # last kernel using the slot's current tenant
    slots: dict[str, int] = {}
    for name in temps:
        free = [s for s in range(len(slot_size)) if slot_free_after[s] < first[name]]
        fitting = [s for s in free if slot_size[s] >= numel[name]]
        if fitting:
            slot = min(fitting, key=lambda s: slot_size[s])
        elif free:
            slot = max(free, key=lambda s: slot_size[s])
        else:
            slot = len(slot_size)
            slot_size.append(0)
            slot_free_after.append(-1)
        slot_size[slot] = max(slot_size[slot], numel[name])
        slot_free_after[slot] = last[name]
        slots[name] = slot
    return slots


class WorkspacePool:
    """Byte buffers that the programs of one compiled module (forward, backward) take their
    temporaries from, kept between calls.

    Temporaries never leave a call (outputs do), so they need not be allocated per call: fresh
    multi-megabyte allocations are returned to the system and page-faulted back in, which costs
    as much as a GEMM on these sizes. The forward's temporaries are dead when the backward runs,
    so both programs (and every plan of one compiled model) use the same buffers: buffer ``i``
    holds the largest ``i``-th slot among them, not the sum. Calls take :attr:`lock` (one program
    runs at a time); on a GPU, where kernels run asynchronously, ``last_use`` is the event after
    the latest call's kernels, which the next call's stream waits for.
    """

    def __init__(self, device: torch.device):
        self.device, self.lock, self.buffers = torch.device(device), threading.Lock(), []
        self.last_use = None

    def take(self, nbytes: list[int]) -> list[Tensor]:
        """Byte tensors of the given sizes (buffer ``i`` of the pool for the ``i``-th size)."""
        for i, size in enumerate(nbytes):
            if i == len(self.buffers):
                self.buffers.append(torch.empty(0, dtype=torch.uint8, device=self.device))
            if self.buffers[i].numel() < size:
                self.buffers[i] = torch.empty(size, dtype=torch.uint8, device=self.device)
        return [self.buffers[i][:size] for i, size in enumerate(nbytes)]


class Workspace:
    """Where each buffer of a program that is not an input, parameter or output comes from, fixed
    once per program: temporaries in slots of :func:`share_temporaries` (temporaries with disjoint
    live ranges share one) or, when accumulated, in slots of their own (zeroed per call), all
    taken from a :class:`WorkspacePool`; graph constants converted to the program's dtype."""

    def __init__(self, program: KernelProgram, layout: GraphLayout, dtype: torch.dtype, pool: WorkspacePool):
        self.shapes = {b.name: b.shape if b.domain == Domain.SCALAR else (layout.rows(str(b.domain)), *b.shape)
                       for b in program.buffers}
        self.accumulated = program.accumulated()
        self.constants = {b.name: layout.constant(b.role.split(":", 1)[1]).to(dtype).view(-1, 1).contiguous()
                          for b in program.buffers if b.role.startswith("graph:")}
        numel = {name: math.prod(shape) for name, shape in self.shapes.items()}
        slots = share_temporaries(program, numel)
        zeroed = sorted(b.name for b in program.buffers if b.role == "temp" and b.name in self.accumulated)
        capacity: dict[object, int] = {}
        for name, slot in slots.items():
            capacity[slot] = max(capacity.get(slot, 0), numel[name])
        capacity.update({name: numel[name] for name in zeroed})
        order = sorted(capacity, key=lambda slot: -capacity[slot])  # largest first: pools line up
        self.index = {slot: i for i, slot in enumerate(order)}
        self.nbytes = [capacity[slot] * dtype.itemsize for slot in order]
        self.slots = {**slots, **{name: name for name in zeroed}}
        self.program, self.zeroed, self.dtype, self.pool = program, zeroed, dtype, pool

    def views(self) -> dict[str, Tensor]:
        """A tensor per temporary (accumulated ones zeroed); hold ``pool.lock`` while they are used."""
        storage = self.pool.take(self.nbytes)
        env = {}
        for name, slot in self.slots.items():
            size = math.prod(self.shapes[name])
            env[name] = storage[self.index[slot]].view(self.dtype)[:size].view(self.shapes[name])
        for name in self.zeroed:
            env[name].zero_()
        return env


def allocate(workspace: Workspace, inputs: list[Tensor], params: list[Tensor], randoms: dict[str, Tensor] | None,
             device: torch.device) -> dict[str, Tensor]:
    """One contiguous tensor per buffer of the workspace's program: inputs and parameters as
    given (on ``device``, in the program's dtype); temporaries and graph constants from
    ``workspace``, which fixed them once; new tensors for the outputs (zeroed where kernels
    accumulate into them)."""
    program, dtype = workspace.program, workspace.dtype
    env: dict[str, Tensor] = {}
    supplied = [*((name, f"input {i}", t) for i, (name, t) in enumerate(zip(program.inputs, inputs, strict=True))),
                *((name, f"parameter {i}", t) for i, (name, t) in enumerate(zip(program.params, params, strict=True))),
                *((name, "dropout mask", t) for name, t in (randoms or {}).items())]
    for name, what, t in supplied:
        if t.dtype != dtype or t.device.type != device.type:
            raise CompileError(f"the compiled kernels expect {dtype} tensors on {device}, got {t.dtype} on {t.device}")
        if tuple(t.shape) != workspace.shapes[name]:
            raise GraphError(f"{what} (buffer '{name}') of the compiled kernels needs shape "
                             f"{list(workspace.shapes[name])} for this graph, got {list(t.shape)}")
        env[name] = t.detach().contiguous()
    for source in (workspace.views(), workspace.constants):
        env.update({k: v for k, v in source.items() if k not in env})
    for buf in program.buffers:
        if buf.name not in env:
            alloc = torch.zeros if buf.name in workspace.accumulated else torch.empty
            env[buf.name] = alloc(workspace.shapes[buf.name], dtype=dtype, device=device)
    return env


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

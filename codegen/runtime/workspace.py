"""Where a program's buffers come from on each call: a pool of byte buffers kept between calls,
a workspace per program that places its temporaries in it, and the allocation of every buffer.

Inputs and parameters are used as given (checked against the shapes the graph implies), dropout
masks come from the runtime, temporaries and graph constants from the workspace, outputs are
new tensors.
"""
from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

from ..errors import CompileError, GraphError
from ..ir.kernel import KernelProgram
from ..ir.layout import GraphLayout
from ..ir.values import Domain
from .liveness import share_temporaries


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
    supplied = (("input", zip(program.inputs, inputs, strict=True)), ("parameter", zip(program.params, params, strict=True)),
                ("dropout mask", (randoms or {}).items()))
    for role, pairs in supplied:
        for i, (name, t) in enumerate(pairs):
            if t.dtype != dtype or t.device.type != device.type:
                raise CompileError(f"the compiled kernels expect {dtype} tensors on {device}, got {t.dtype} on "
                                   f"{t.device}")
            if tuple(t.shape) != workspace.shapes[name]:
                what = role if role == "dropout mask" else f"{role} {i}"
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

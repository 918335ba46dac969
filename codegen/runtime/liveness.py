"""Which temporaries of a kernel program may share memory: a liveness plan over kernel order."""
from __future__ import annotations

from ..ir.kernel import KernelProgram


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

r"""Stable seeds: every random role, sequence matrix and item vector derives from a name.

Python's :func:`hash` is salted per process (``PYTHONHASHSEED``), so it can never seed a
vector that must be identical in two processes or on two machines. Here a name is hashed
with SHAKE-256 over ``seed`` and the UTF-8 bytes of each part, so

.. math::
    \text{seed}(s, n_1, \dots, n_k) = \text{SHAKE256}(s \,\|\, n_1 \,\|\, \dots \,\|\, n_k)

is the same everywhere. Random tensors are always drawn on the CPU from a
:class:`torch.Generator` seeded this way and moved afterwards, because CUDA generators
produce other streams.
"""
from __future__ import annotations

import hashlib

import torch

_SEPARATOR = b"\x1f"


def stable_digest(seed: int, *parts: str, size: int = 8) -> bytes:
    """Return ``size`` bytes of SHAKE-256 over the seed and the name parts.

    Args:
        seed: the encoder's global seed (any Python int, negative allowed).
        *parts: name parts, e.g. ``("role", "latlng")``; each is joined with a separator
            so that ``("ab", "c")`` and ``("a", "bc")`` differ.
        size: number of bytes to return.
    """
    h = hashlib.shake_256(str(int(seed)).encode("ascii"))
    for part in parts:
        h.update(_SEPARATOR)
        h.update(part.encode("utf-8"))
    return h.digest(size)


def stable_seed(seed: int, *parts: str) -> int:
    """A 63-bit integer seed derived from ``seed`` and ``parts`` (identical across processes)."""
    return int.from_bytes(stable_digest(seed, *parts, size=8), "little") >> 1


def generator(seed: int, *parts: str) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded by :func:`stable_seed`."""
    g = torch.Generator(device="cpu")
    g.manual_seed(stable_seed(seed, *parts))
    return g

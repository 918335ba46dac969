r"""The MBAT vector-symbolic operations: bind, unbind, bundle, compare.

.. math::
    \mathrm{bind}(R, x) = R x, \qquad \mathrm{unbind}(R, y) = R^\top y, \qquad
    \mathrm{bundle}(x_1, \dots, x_n; w) = \textstyle\sum_i w_i x_i, \qquad
    \cos(a, b) = \frac{a^\top b}{\lVert a\rVert\,\lVert b\rVert}.

All functions take batches ``[..., D]``, run on any device and keep the input dtype
(float32 or float64).
"""
from __future__ import annotations

import torch
from torch import Tensor

from graphcore.tasks.mbat.orthogonal import OrthogonalMap

_EPS = 1e-12


def bind(role: OrthogonalMap, x: Tensor) -> Tensor:
    """Bind every row of ``x`` ``[..., D]`` to ``role``: :math:`R x`."""
    return role.apply(x)


def unbind(role: OrthogonalMap, y: Tensor) -> Tensor:
    """Exact inverse of :func:`bind`: :math:`R^\\top y`."""
    return role.apply_transpose(y)


def bundle(xs: Tensor, weights: Tensor | None = None, dim: int = -2) -> Tensor:
    """Superpose vectors along ``dim`` (default: the rows of ``[..., n, D]``), optionally weighted.

    Args:
        xs: the vectors, e.g. ``[n, D]`` or ``[B, n, D]``.
        weights: ``[n]`` (or broadcastable to the bundled axis); ``None`` for a plain sum.
        dim: the axis to sum over.
    """
    if weights is not None:
        shape = [1] * xs.ndim
        shape[dim] = -1
        xs = xs * weights.reshape(shape).to(xs.dtype)
    return xs.sum(dim=dim)


def normalise(x: Tensor) -> Tensor:
    """Rows scaled to unit norm (zero rows stay zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity of broadcastable ``a`` and ``b`` ``[..., D]`` -> ``[...]``."""
    return (normalise(a) * normalise(b)).sum(-1)


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """All-pairs cosine similarity: ``[n, D] x [m, D] -> [n, m]``."""
    return normalise(a) @ normalise(b).T

r"""Adjacency over real and virtual nodes, and its two random-walk transition matrices.

Nodes ``0..N-1`` are sensors, ``N..N+n_v-1`` virtual nodes. Four modes build the
``[N+n_v, N+n_v]`` matrix from the sensors' distance kernel :math:`D` and the learned, pruned

.. math::
    A_{adapt} = \operatorname{ReLU}(E_1 E_2^\top - E_2 E_1^\top),\qquad
    A_{adapt} \leftarrow A_{adapt} \odot [A_{adapt} \ge \tau]

(:math:`E_1, E_2 \in \mathbb{R}^{(N+n_v) \times d}`; the antisymmetric argument makes each learned
edge one-way):

=============  ================================  ==================================
mode           sensor ↔ sensor block             every block touching a virtual node
=============  ================================  ==================================
``distance``   :math:`D`                         ones (the classic virtual node)
``all_ones``   ones                              ones
``adaptive``   :math:`A_{adapt}`                 :math:`A_{adapt}`
``semi``       :math:`D`                         :math:`A_{adapt}`
=============  ================================  ==================================

With ``n_virtual = 0``, ``semi`` equals ``distance``.

This dense ``[N+n_v]²`` form is the reference of the graph form the model runs,
:class:`~tasks.traffic.spatial.GraphSpatial` (tests compare the two, and
``benchmarks/traffic_scale.py`` times both); it costs O((N+n_v)²) memory and time per diffusion step.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from graphcore.tasks.cli_errors import UsageError

ADJACENCY_MODES = ("distance", "all_ones", "adaptive", "semi")


def check_sensor_graph(distance: Tensor, n_virtual: int) -> None:
    """Refuse a non-square distance matrix or a negative number of virtual nodes (:class:`UsageError`)."""
    if distance.ndim != 2 or distance.shape[0] != distance.shape[1]:
        raise UsageError(f"distance adjacency must be square, got shape {tuple(distance.shape)}")
    if n_virtual < 0:
        raise UsageError(f"n_virtual must be >= 0, got {n_virtual}")


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`ADJACENCY_MODES`, else raise :class:`UsageError` (a ``ValueError``)."""
    if mode not in ADJACENCY_MODES:
        raise UsageError(f"unknown adjacency mode {mode!r}; choose one of {', '.join(ADJACENCY_MODES)}")
    return mode


def transition_matrices(adj: Tensor) -> tuple[Tensor, Tensor]:
    r"""Random-walk normalisation in both directions (DCRNN's diffusion supports).

    .. math::
        P_{fwd} = D_{out}^{-1} A,\qquad P_{bwd} = D_{in}^{-1} A^\top

    so :math:`(P_{fwd} h)_i` averages the successors of i (edges i → j) and
    :math:`(P_{bwd} h)_i` its predecessors. A node without edges in a direction gets a zero row.

    Args:
        adj: ``[M, M]`` non-negative weights, ``adj[i, j]`` for edge i → j.

    Returns:
        ``(P_fwd, P_bwd)``, each ``[M, M]`` with rows summing to 1 or 0.
    """
    out_deg = adj.sum(dim=1, keepdim=True)
    in_deg = adj.sum(dim=0).unsqueeze(1)
    p_fwd = adj / out_deg.clamp_min(1e-12)
    p_bwd = adj.t() / in_deg.clamp_min(1e-12)
    return p_fwd, p_bwd


class DenseSupports:
    """Both diffusion directions as dense transition matrices (the reference of
    :class:`~tasks.traffic.spatial.GraphSupports`)."""

    def __init__(self, p_fwd: Tensor, p_bwd: Tensor):
        self.matrices = (p_fwd, p_bwd)

    def diffuse(self, direction: int, ys: Sequence[Tensor]) -> Tensor:
        """``P (y_1 + P (y_2 + ...))`` with ``P`` = ``P_fwd`` (``direction`` 0) or ``P_bwd`` (1);
        ``ys[k]: [M, ...]`` node-major."""
        p = self.matrices[direction]
        h = ys[-1]
        for y in reversed(ys[:-1]):
            h = y + propagate(p, h)
        return propagate(p, h)


def propagate(p: Tensor, h: Tensor) -> Tensor:
    """``(P h)[i] = sum_j P[i, j] h[j]`` over the leading node axis, as one matrix product."""
    return (p @ h.reshape(h.shape[0], -1)).view(p.shape[0], *h.shape[1:])


class VirtualNodeAdjacency(nn.Module):
    r"""Builds the ``[N+n_v, N+n_v]`` adjacency of one of :data:`ADJACENCY_MODES`.

    Args:
        distance: ``[N, N]`` distance-kernel weights among sensors.
        n_virtual: number of virtual nodes appended after the sensors.
        mode: ``distance``, ``all_ones``, ``adaptive`` or ``semi``.
        embedding_dim: width d of :math:`E_1, E_2` (only ``adaptive`` and ``semi`` have them).
        prune_threshold: learned weights below :math:`\tau` become 0 (the distance kernel's own cut
            is 0.1).

    Raises:
        ValueError: an unknown mode, a non-square distance matrix, or a negative ``n_virtual``.
    """

    def __init__(self, distance: Tensor, n_virtual: int = 10, mode: str = "semi", embedding_dim: int = 10,
                 prune_threshold: float = 0.1):
        super().__init__()
        self.mode = check_mode(mode)
        check_sensor_graph(distance, n_virtual)
        self.num_real, self.n_virtual = distance.shape[0], n_virtual
        self.prune_threshold = prune_threshold
        total = self.num_real + n_virtual
        fixed = torch.ones(total, total)
        if mode in ("distance", "semi"):
            fixed[:self.num_real, :self.num_real] = distance
        # learned[i, j] is True where the entry comes from the embeddings
        learned = torch.zeros(total, total, dtype=torch.bool)
        if mode == "adaptive":
            learned[:] = True
        elif mode == "semi":
            learned[self.num_real:, :] = True
            learned[:, self.num_real:] = True
        self.register_buffer("fixed", fixed.float())
        self.register_buffer("learned", learned)
        if learned.any():
            scale = embedding_dim ** -0.5
            self.emb1 = nn.Parameter(torch.randn(total, embedding_dim) * scale)
            self.emb2 = nn.Parameter(torch.randn(total, embedding_dim) * scale)
        else:
            self.register_parameter("emb1", None)
            self.register_parameter("emb2", None)

    @property
    def num_nodes(self) -> int:
        """N + n_v."""
        return self.num_real + self.n_virtual

    def adaptive(self) -> Tensor:
        r"""The pruned :math:`\operatorname{ReLU}(E_1 E_2^\top - E_2 E_1^\top)`, ``[N+n_v, N+n_v]``."""
        if self.emb1 is None:
            raise ValueError(f"mode {self.mode!r} learns no adjacency")
        score = self.emb1 @ self.emb2.t()
        adapt = torch.relu(score - score.t())
        return adapt * (adapt >= self.prune_threshold)

    def forward(self) -> Tensor:
        """The adjacency, ``[N+n_v, N+n_v]``; differentiable in the learned blocks only."""
        if self.emb1 is None:
            return self.fixed
        return torch.where(self.learned, self.adaptive(), self.fixed)

    def supports(self) -> DenseSupports:
        """The two random-walk transition matrices of this adjacency."""
        return DenseSupports(*transition_matrices(self.forward()))

    def virtual_edge_weights(self) -> Tensor:
        """``[n_v, N]`` weight between each virtual node and each sensor, both directions summed
        (a learned edge is one-way, so at most one of the two is non-zero)."""
        adj = self.forward().detach()
        n = self.num_real
        return adj[n:, :n] + adj[:n, n:].t()

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, num_real={self.num_real}, n_virtual={self.n_virtual}"

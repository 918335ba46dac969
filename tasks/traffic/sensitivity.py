r"""Layer-wise sensitivity, the over-squashing measure of Cao et al. (2025), after Topping et al.

.. math::
    S^{(l)}(v, u) = \left\| \frac{\partial h_v^{(l)}}{\partial x_u} \right\|_F

where :math:`h_v^{(l)}` is sensor v's output of ST block l at the block's last time step (the
step nearest the forecast; all channels) and :math:`x_u` sensor u's whole input window. Averaging :math:`S^{(l)}(v, u)` over pairs at the same
hop distance on the road graph shows how fast influence decays with distance; virtual nodes
should keep far sensors from fading out.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from torch import Tensor

from graphcore.tasks.traffic.model import VirtualNodeSTGCN


def hop_distances(adjacency: np.ndarray) -> np.ndarray:
    """``[N, N]`` shortest-path hop counts on the undirected sensor graph; -1 where unreachable."""
    linked = (adjacency > 0) | (adjacency.T > 0)
    np.fill_diagonal(linked, False)
    hops = shortest_path(csr_matrix(linked), directed=False, unweighted=True)
    return np.where(np.isinf(hops), -1, hops).astype(np.int64)


def layerwise_sensitivity(net: VirtualNodeSTGCN, x: Tensor, targets: Sequence[int]) -> Tensor:
    """Jacobian norms :math:`S^{(l)}(v, u)` for every block l, target sensor v and sensor u.

    One backward pass per entry of :math:`h_v^{(l)}`, one after another: compiled graph kernels
    have no batching rule, so ``is_grads_batched`` (vmap) cannot run them. The network is put in
    eval mode (no dropout).

    Args:
        net: a trained network.
        x: one input window ``[T, N, C]``.
        targets: sensor indices v.

    Returns:
        ``[L, V, N]`` float tensor.
    """
    net.eval()
    x = x.detach().clone()[None].requires_grad_(True)
    _, hidden = net(x, return_hidden=True)
    out = torch.zeros(len(hidden), len(targets), x.shape[2])
    for layer, h in enumerate(hidden):
        for i, v in enumerate(targets):
            square = torch.zeros(x.shape[2])
            for value in h[v, 0, -1, :]:
                (grad,) = torch.autograd.grad(value, x, retain_graph=True)
                square += grad.square().sum(dim=(0, 1, 3))
            out[layer, i] = square.sqrt()
    return out


def sensitivity_by_hop(sensitivity: Tensor, hops: np.ndarray, targets: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Average :math:`S^{(l)}(v, u)` over pairs (v, u) at each hop distance (unreachable pairs dropped).

    Args:
        sensitivity: ``[L, V, N]`` from :func:`layerwise_sensitivity`.
        hops: ``[N, N]`` from :func:`hop_distances`.
        targets: the V sensor indices used.

    Returns:
        ``(distances [K], means [L, K])``, distances in increasing order starting at 0.
    """
    rows = hops[np.asarray(targets)]                      # [V, N]
    distances = np.unique(rows[rows >= 0])
    sens = sensitivity.numpy()
    means = np.stack([[sens[layer][rows == d].mean() for d in distances] for layer in range(sens.shape[0])])
    return distances, means

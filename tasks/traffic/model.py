r"""STGCN-style forecaster with virtual nodes (plain ``nn.Module``, no Lightning).

After Yu et al., "Spatio-Temporal Graph Convolutional Networks" (2018) and Cao et al., "Virtual
Nodes Improve Long-term Traffic Prediction" (2025). Each block is

.. math::
    H \to \mathrm{GLU}_t \to \mathrm{ReLU}(\mathrm{DiffConv}_{P_f, P_b}) \to \mathrm{GLU}_t
      \to \mathrm{LayerNorm} \to \mathrm{Dropout}

over ``N + n_v`` nodes; virtual nodes enter with zero features and are cut off before the output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tasks.traffic.adjacency import VirtualNodeAdjacency, transition_matrices


class TemporalGLU(nn.Module):
    r"""Gated temporal convolution, shared over nodes (STGCN's "temporal gated conv").

    .. math::
        \mathrm{GLU}(H) = (W_p * H + \mathrm{crop}(H)) \odot \sigma(W_q * H)

    The convolution over time is one matrix product over the ``k`` stacked time shifts.

    Shapes:
        ``[M, B, T, C_in] -> [M, B, T - k + 1, C_out]`` (node-major, channels last).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Linear(kernel_size * in_channels, 2 * out_channels)
        self.align = nn.Linear(in_channels, out_channels) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        steps = x.shape[2] - self.kernel_size + 1
        shifted = torch.cat([x[:, :, i:i + steps] for i in range(self.kernel_size)], dim=-1)
        p, q = self.conv(shifted).chunk(2, dim=-1)
        return (p + self.align(x[:, :, self.kernel_size - 1:])) * torch.sigmoid(q)


class DiffusionConv(nn.Module):
    r"""Bidirectional diffusion graph convolution (DCRNN, Graph WaveNet).

    .. math::
        H' = H \Theta_0 + \sum_{k=1}^{K} \left(P_f^k H \Theta_{f,k} + P_b^k H \Theta_{b,k}\right)

    Features are projected first, then diffused by Horner's rule
    (:math:`P Y_1 + P^2 Y_2 = P (Y_1 + P Y_2)`), so every product with a transition matrix runs
    on ``C_out`` channels, as one ``[M, M] x [M, B T C_out]`` matrix product (node-major layout).

    Shapes:
        ``x: [M, B, T, C_in]``, ``p_fwd, p_bwd: [M, M]`` ``-> [M, B, T, C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, steps: int):
        super().__init__()
        self.steps = steps
        self.proj = nn.Linear(in_channels, (1 + 2 * steps) * out_channels)

    def forward(self, x: Tensor, p_fwd: Tensor, p_bwd: Tensor) -> Tensor:
        self_term, *terms = self.proj(x).chunk(1 + 2 * self.steps, dim=-1)
        out = self_term
        for p, ys in ((p_fwd, terms[:self.steps]), (p_bwd, terms[self.steps:])):
            h = ys[-1]
            for y in reversed(ys[:-1]):
                h = y + self.propagate(p, h)
            out = out + self.propagate(p, h)
        return out

    @staticmethod
    def propagate(p: Tensor, h: Tensor) -> Tensor:
        """``(P h)[i] = sum_j P[i, j] h[j]`` over the leading node axis."""
        return (p @ h.reshape(h.shape[0], -1)).view(p.shape[0], *h.shape[1:])


class STBlock(nn.Module):
    """Temporal GLU, diffusion graph conv, temporal GLU, layer norm over channels, dropout.

    Shapes:
        ``[M, B, T, C_in] -> [M, B, T - 2(k - 1), C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, graph_channels: int, kernel_size: int,
                 diffusion_steps: int, dropout: float):
        super().__init__()
        self.temporal1 = TemporalGLU(in_channels, out_channels, kernel_size)
        self.graph = DiffusionConv(out_channels, graph_channels, diffusion_steps)
        self.temporal2 = TemporalGLU(graph_channels, out_channels, kernel_size)
        self.norm = nn.LayerNorm(out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, p_fwd: Tensor, p_bwd: Tensor) -> Tensor:
        h = self.temporal2(F.relu(self.graph(self.temporal1(x), p_fwd, p_bwd)))
        return self.dropout(self.norm(h))


class SeasonalBase(nn.Module):
    r"""Daily profile plus decaying anomaly: the forecast the network corrects.

    .. math::
        b_{t+h, v} = p_{s(t+h), v} + \phi_h \, (x_{t, v} - p_{s(t), v})

    where :math:`p` is a learnable ``[slots, N]`` profile (initialised with the training
    time-of-day means), :math:`s(\cdot)` the time-of-day slot, :math:`x_t` the last input reading
    and :math:`\phi_h` a learnable per-step decay of the current anomaly (initialised by least
    squares on training windows). :math:`\phi = 1` is persistence plus the profile's change,
    :math:`\phi = 0` the time-of-day mean. All values are in scaled units; a missing last
    reading (exactly 0 after scaling, see :class:`~tasks.traffic.data.TrafficDataModule`)
    contributes no anomaly.

    Args:
        profile: ``[slots, N]`` initial profile.
        decay: ``[H]`` initial :math:`\phi`.

    Shapes:
        ``x: [B, T, N, C]`` with scaled speed in channel 0 and time of day in channel 1
        ``-> [B, H, N]``.
    """

    def __init__(self, profile: Tensor, decay: Tensor):
        super().__init__()
        self.profile = nn.Parameter(profile.clone().float())
        self.decay = nn.Parameter(decay.clone().float())

    def forward(self, x: Tensor) -> Tensor:
        per_day, horizon = self.profile.shape[0], self.decay.shape[0]
        last = torch.round(x[:, -1, 0, 1] * per_day).long() % per_day          # [B] slot of the last input
        targets = (last[:, None] + 1 + torch.arange(horizon, device=x.device)) % per_day
        reading = x[:, -1, :, 0]
        # a missing reading arrives as exactly 0 (the training mean): no anomaly is known, so the
        # base falls back to the profile, as the decay fit (which skips missing readings) assumes
        anomaly = torch.where(reading == 0, torch.zeros_like(reading), reading - self.profile[last])  # [B, N]
        return self.profile[targets] + self.decay[None, :, None] * anomaly[:, None, :]


class VirtualNodeSTGCN(nn.Module):
    r"""Forecasts ``horizon`` steps for every sensor from ``input_len`` steps of features.

    ``n_virtual`` virtual nodes with all-zero input features are appended to the sensors; the
    adjacency over all ``N + n_v`` nodes comes from :class:`VirtualNodeAdjacency`; the output
    keeps the ``N`` sensor rows only, so virtual nodes never reach a loss.

    Args:
        distance: ``[N, N]`` distance-kernel adjacency among sensors.
        in_channels: features per sensor and step (speed, time of day, ...).
        input_len: input steps T.
        horizon: output steps H.
        n_virtual: virtual nodes n_v.
        adjacency_mode: ``distance``, ``all_ones``, ``adaptive`` or ``semi``.
        hidden_channels: channels of the temporal convolutions.
        graph_channels: channels of the graph convolution (STGCN's bottleneck).
        n_blocks: ST blocks; needs ``input_len > 2 n_blocks (kernel_size - 1)``.
        kernel_size: temporal kernel width.
        diffusion_steps: powers K of each transition matrix.
        embedding_dim: width of the adjacency embeddings.
        prune_threshold: cut for learned adjacency weights.
        dropout: dropout after each block.
        seasonal: ``[slots, N]`` initial daily profile; with it the network predicts a correction
            to :class:`SeasonalBase` (needs time of day in input channel 1).
        decay: ``[H]`` initial anomaly decay of :class:`SeasonalBase`.

    Shapes:
        ``x: [B, T, N, C_in] -> [B, H, N]``.
    """

    def __init__(self, distance: Tensor, in_channels: int, input_len: int = 12, horizon: int = 24,
                 n_virtual: int = 10, adjacency_mode: str = "semi", hidden_channels: int = 32,
                 graph_channels: int = 16, n_blocks: int = 2, kernel_size: int = 3, diffusion_steps: int = 2,
                 embedding_dim: int = 10, prune_threshold: float = 0.1, dropout: float = 0.1,
                 seasonal: Tensor | None = None, decay: Tensor | None = None):
        super().__init__()
        remaining = input_len - 2 * n_blocks * (kernel_size - 1)
        if remaining < 1:
            raise ValueError(
                f"{n_blocks} blocks with kernel_size {kernel_size} consume {input_len - remaining} of "
                f"the {input_len} input steps; use fewer blocks, a smaller kernel or longer inputs")
        self.adjacency = VirtualNodeAdjacency(distance, n_virtual, adjacency_mode, embedding_dim, prune_threshold)
        self.n_virtual, self.in_channels = n_virtual, in_channels
        channels = [in_channels] + [hidden_channels] * n_blocks
        self.blocks = nn.ModuleList(
            STBlock(channels[i], channels[i + 1], graph_channels, kernel_size, diffusion_steps, dropout)
            for i in range(n_blocks))
        self.base = SeasonalBase(seasonal, decay) if seasonal is not None else None
        self.head_temporal = TemporalGLU(hidden_channels, hidden_channels, remaining)
        self.head = nn.Sequential(nn.LayerNorm(hidden_channels), nn.Linear(hidden_channels, hidden_channels),
                                  nn.ReLU(), nn.Linear(hidden_channels, horizon))

    def with_virtual_nodes(self, x: Tensor) -> Tensor:
        """Append ``n_virtual`` zero-feature nodes, node-major: ``[B, T, N, C] -> [N + n_v, B, T, C]``."""
        b, t, n, c = x.shape
        if n != self.adjacency.num_real or c != self.in_channels:
            raise ValueError(f"expected input [B, T, {self.adjacency.num_real}, {self.in_channels}], "
                             f"got {list(x.shape)}")
        pad = x.new_zeros(self.n_virtual, b, t, c)
        return torch.cat([x.permute(2, 0, 1, 3), pad], dim=0)

    def forward(self, x: Tensor, return_hidden: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Predict ``[B, H, N]``; with ``return_hidden`` also each block's output ``[N + n_v, B, T_l, C]``."""
        p_fwd, p_bwd = transition_matrices(self.adjacency())
        h = self.with_virtual_nodes(x)
        hidden = []
        for block in self.blocks:
            h = block(h, p_fwd, p_bwd)
            hidden.append(h)
        h = self.head_temporal(h)[:, :, 0]                    # [N + n_v, B, C]
        out = self.head(h).permute(1, 2, 0)                   # [B, H, N + n_v]
        out = out[:, :, :self.adjacency.num_real]
        if self.base is not None:
            out = out + self.base(x)
        return (out, hidden) if return_hidden else out

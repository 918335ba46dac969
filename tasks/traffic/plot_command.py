"""``python -m tasks.traffic plot --ckpt_path RUN.ckpt``: the task's pictures from trained checkpoints.

Writes ``traffic_forecast.png`` (truth vs forecast for chosen sensors), ``traffic_error_vs_horizon.png``
(model(s) and floors), ``traffic_virtual_adjacency.png`` (learned virtual-node edges on the sensors'
map, when the model learns them) and ``traffic_sensitivity.png`` (layer-wise sensitivity by hop
distance). ``--compare_ckpt_path`` adds a second model (e.g. distance-only, no virtual nodes) to the
error and sensitivity figures.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from jsonargparse import CLI

from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.traffic.baselines import floor_errors
from graphcore.tasks.traffic.module import TrafficForecaster, forecast, load_trained
from graphcore.tasks.traffic.plots import plot_error_vs_horizon, plot_forecasts, plot_sensitivity, plot_virtual_adjacency
from graphcore.tasks.traffic.sensitivity import hop_distances, layerwise_sensitivity, sensitivity_by_hop


def describe(model: TrafficForecaster) -> str:
    """A short label such as ``semi, 10 VN``."""
    return f"{model.hparams.adjacency_mode}, {model.hparams.n_virtual} VN"


def sensitivity_curve(model: TrafficForecaster, window: torch.Tensor, targets: np.ndarray,
                      hops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean layer-wise sensitivity by hop distance of ``model`` on one input window."""
    return sensitivity_by_hop(layerwise_sensitivity(model.net, window, targets.tolist()), hops, targets)


def plot(*, ckpt_path: str, out_dir: str | None = None, compare_ckpt_path: str | None = None,
         sensors: list[int | str] | None = None, step: int = 12, n_targets: int = 12,
         data_path: str | None = None) -> list[Path]:
    """Draw the traffic task's figures for a trained checkpoint.

    Args:
        ckpt_path: checkpoint written by ``python -m tasks.traffic fit``.
        out_dir: folder for the PNGs (default: ``plots/`` beside the run's ``checkpoints/``).
        compare_ckpt_path: a second checkpoint drawn beside the first in the error and
            sensitivity figures.
        sensors: sensor ids for the forecast figure, e.g. ``[773869,767541]`` (default: the three
            whose test-range speed varies most).
        step: horizon step of the forecast figure (12 = 60 minutes at 5-minute data).
        n_targets: sensors v (drawn with seed 0) whose sensitivity is averaged.
        data_path: read this series instead of the one the checkpoint was trained on.

    Returns:
        The written files.
    """
    overrides = {"data_path": data_path} if data_path else {}
    model, data = load_trained(ckpt_path, **overrides)
    series, windows = data.series, data.windows
    out = Path(out_dir) if out_dir else Path(ckpt_path).resolve().parent.parent / "plots"
    if not 1 <= step <= windows.horizon:
        raise UsageError(f"step {step} is outside the model's horizon 1..{windows.horizon}")
    preds, errors = forecast(model, data)
    target_steps = windows.target_steps("test")
    truth = series.speed[target_steps]                                # [W, H, N]
    ids = list(series.sensor_ids)
    if sensors:
        sensors = [str(s) for s in sensors]
        unknown = [s for s in sensors if s not in ids]
        if unknown:
            raise UsageError(f"unknown sensor ids {unknown}; the series has ids such as {ids[:5]}")
        chosen = [ids.index(s) for s in sensors]
    else:
        chosen = np.argsort(truth[:, step - 1].std(axis=0))[::-1][:3].tolist()
    minutes = np.arange(1, windows.horizon + 1) * series.interval_minutes
    written = [plot_forecasts(series.timestamps[target_steps[:, step - 1]], truth[:, step - 1, chosen],
                              preds[:, step - 1, chosen].numpy(), [f"sensor {ids[i]}" for i in chosen],
                              step * series.interval_minutes, out / "traffic_forecast.png",
                              f"{series.quantity.replace('_', ' ')} ({series.unit})")]

    models = {describe(model): (model, errors)}
    if compare_ckpt_path:
        other, other_data = load_trained(compare_ckpt_path, **overrides)
        models[describe(other) + " (compare)"] = (other, forecast(other, other_data)[1])
    curves = {name: (minutes, e.compute()["mae"].numpy(), None) for name, (_, e) in models.items()}
    curves.update({name: (minutes, e.compute()["mae"].numpy(), None)
                   for name, e in floor_errors(series, windows, "test", data.seasonal_prior()).items()})
    written.append(plot_error_vs_horizon({"test split": curves}, out / "traffic_error_vs_horizon.png",
                                         f"masked MAE ({series.unit})"))

    adjacency = model.net.adjacency
    if adjacency.n_virtual and adjacency.emb1 is not None and series.lat is not None:
        written.append(plot_virtual_adjacency(series.lat, series.lon, adjacency.virtual_edge_weights().numpy(),
                                              out / "traffic_virtual_adjacency.png"))

    hops = hop_distances(series.adjacency)
    targets = np.random.default_rng(0).choice(series.num_nodes, size=min(n_targets, series.num_nodes), replace=False)
    window = data.dataset("test")[len(windows.starts("test")) // 2][0]
    written.append(plot_sensitivity({name: sensitivity_curve(m, window, targets, hops)
                                     for name, (m, _) in models.items()}, out / "traffic_sensitivity.png"))
    for path in written:
        print(path)
    return written


def run_plot_cli(args: Sequence[str]) -> None:
    """Parse ``args`` (``--help`` works) and run :func:`plot`."""
    CLI(plot, args=list(args), description=__doc__)

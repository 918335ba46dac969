"""Figures of the traffic task, written as PNG with matplotlib's Agg backend (arrays in, file out)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_forecasts(times: np.ndarray, truth: np.ndarray, pred: np.ndarray, labels: Sequence[str],
                   minutes_ahead: float, path: str | Path, ylabel: str = "speed (mph)") -> Path:
    """Truth and the forecast made ``minutes_ahead`` earlier, one panel per sensor.

    Args:
        times: ``[W]`` target timestamps.
        truth: ``[W, S]`` readings (missing entries are drawn as gaps).
        pred: ``[W, S]`` forecasts.
        labels: S panel titles.
        ylabel: what the readings are, with their unit.
    """
    fig, axes = plt.subplots(len(labels), 1, figsize=(11, 2.4 * len(labels)), sharex=True, squeeze=False)
    for i, (ax, label) in enumerate(zip(axes[:, 0], labels)):
        ax.plot(times, np.where(truth[:, i] == 0, np.nan, truth[:, i]), color="black", lw=1.0, label="truth")
        ax.plot(times, pred[:, i], color="tab:red", lw=1.0, label=f"forecast {minutes_ahead:g} min ahead")
        ax.set_ylabel(ylabel)
        ax.set_title(label, fontsize=9, loc="left")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    return _save(fig, path)


Curves = Mapping[str, tuple[np.ndarray, np.ndarray, "np.ndarray | None"]]


def plot_error_vs_horizon(panels: Mapping[str, Curves], path: str | Path, metric: str = "masked MAE (mph)") -> Path:
    """Error against minutes ahead: one panel per key, one line per configuration.

    Args:
        panels: ``panel title -> {line name -> (minutes [H], mean [H], std [H] or None)}``; the
            floors (``persistence``, ``time-of-day mean``) are drawn dashed.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.3), squeeze=False, sharey=True)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for name, (minutes, mean, std) in curves.items():
            dashed = name in ("persistence", "time-of-day mean")
            line, = ax.plot(minutes, mean, ls="--" if dashed else "-", lw=1.2, label=name)
            if std is not None:
                ax.fill_between(minutes, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("minutes ahead")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel(metric)
    return _save(fig, path)


def plot_virtual_adjacency(lat: np.ndarray, lon: np.ndarray, weights: np.ndarray, path: str | Path) -> Path:
    """Each virtual node's learned edge weights to the sensors, as colour on the sensors' map.

    Args:
        lat, lon: ``[N]`` sensor coordinates.
        weights: ``[n_v, N]`` non-negative weights (0 = no edge).
    """
    n_v = weights.shape[0]
    cols = min(n_v, 5)
    rows = int(np.ceil(n_v / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    vmax = float(weights.max()) or 1.0
    for k, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n_v:
            ax.axis("off")
            continue
        order = np.argsort(weights[k])
        points = ax.scatter(lon[order], lat[order], c=weights[k][order], cmap="viridis", vmin=0, vmax=vmax,
                            s=10 + 40 * weights[k][order] / vmax)
        ax.set_title(f"virtual node {k}: {int((weights[k] > 0).sum())} edges", fontsize=8)
    fig.colorbar(points, ax=axes.ravel().tolist(), shrink=0.6, label="learned weight")
    return _save(fig, path)


def plot_sensitivity(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    r"""Mean :math:`\|\partial h_v^{(l)}/\partial x_u\|` against hop distance, one panel per block.

    Args:
        curves: ``name -> (hop distances [K], means [L, K])``.
    """
    layers = max(means.shape[0] for _, means in curves.values())
    fig, axes = plt.subplots(1, layers, figsize=(5 * layers, 3.8), squeeze=False, sharey=True)
    for layer, ax in enumerate(axes[0]):
        for name, (hops, means) in curves.items():
            if layer < means.shape[0]:
                ax.semilogy(hops, means[layer], marker="o", ms=3, label=name)
        ax.set_title(f"after ST block {layer + 1}", fontsize=9)
        ax.set_xlabel("hop distance u → v")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("mean ‖∂h_v/∂x_u‖")
    axes[0, 0].legend(fontsize=8)
    return _save(fig, path)

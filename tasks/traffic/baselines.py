"""Naive floors measured on the same windows as the model: persistence and time-of-day mean.

A model that does not beat persistence at 15-60 minutes, and the time-of-day mean beyond, is not
learning anything (``shared/datasets/traffic/README.md``).
"""
from __future__ import annotations

import numpy as np
import torch

from datasets.traffic import TrafficSeries, WindowSplit, time_of_day
from tasks.traffic.metrics import MaskedHorizonErrors


def persistence_forecast(series: TrafficSeries, split: WindowSplit, stage: str) -> np.ndarray:
    """Repeat the last observed reading before each window's horizon: ``[W, H, N]``.

    Missing readings are filled forward from earlier steps only; a sensor never observed so far
    gets 0 (which the masked metrics then count as an error where the target is observed).
    """
    observed = series.mask
    last_seen = np.where(observed, np.arange(series.num_steps)[:, None], 0)
    np.maximum.accumulate(last_seen, axis=0, out=last_seen)
    seen_before = np.logical_or.accumulate(observed, axis=0)
    filled = np.where(seen_before, series.speed[last_seen, np.arange(series.num_nodes)], 0.0)
    last_input = split.starts(stage) + split.input_len - 1
    return np.repeat(filled[last_input][:, None, :], split.horizon, axis=1)


def slots_of_day(series: TrafficSeries) -> tuple[np.ndarray, int]:
    """``([T] slot of each step within its day, slots per day)``; 288 at 5 minutes."""
    per_day = int(round(24 * 60 / series.interval_minutes))
    return np.rint(time_of_day(series.timestamps) * per_day).astype(np.int64) % per_day, per_day


def time_of_day_profile(series: TrafficSeries, split: WindowSplit) -> np.ndarray:
    """Mean reading per (time-of-day slot, sensor) over the training input steps: ``[slots, N]``.

    Slots never observed in training fall back to the sensor's training mean.
    """
    slot, per_day = slots_of_day(series)
    train = slice(0, split.train_input_steps)
    values, seen = series.speed[train] * series.mask[train], series.mask[train].astype(np.float64)
    sums, counts = np.zeros((per_day, series.num_nodes)), np.zeros((per_day, series.num_nodes))
    np.add.at(sums, slot[train], values)
    np.add.at(counts, slot[train], seen)
    sensor_mean = sums.sum(axis=0) / np.maximum(counts.sum(axis=0), 1.0)
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), sensor_mean).astype(np.float32)


def time_of_day_mean(series: TrafficSeries, split: WindowSplit, stage: str) -> np.ndarray:
    """Forecast each target step by its slot's training mean: ``[W, H, N]``."""
    slot, _ = slots_of_day(series)
    return time_of_day_profile(series, split)[slot[split.target_steps(stage)]]


def anomaly_decay(series: TrafficSeries, split: WindowSplit, profile: np.ndarray) -> np.ndarray:
    r"""Least-squares :math:`\phi_h` of :math:`y_{t+h} - p_{t+h} \approx \phi_h (y_t - p_t)` over the
    observed entries of the training windows (:math:`p`: the time-of-day profile): ``[H]``."""
    slot, _ = slots_of_day(series)
    anomaly = np.where(series.mask, series.speed - profile[slot], 0.0)
    last = split.starts("train") + split.input_len - 1
    now, later = anomaly[last][:, None, :], anomaly[split.target_steps("train")]    # [W, 1, N], [W, H, N]
    both = series.mask[last][:, None, :] & series.mask[split.target_steps("train")]
    denominator = np.maximum((np.square(now) * both).sum(axis=(0, 2)), 1e-12)
    return ((now * later * both).sum(axis=(0, 2)) / denominator).astype(np.float32)


FLOORS = {"persistence": persistence_forecast, "time-of-day mean": time_of_day_mean}


def floor_errors(series: TrafficSeries, split: WindowSplit, stage: str = "test") -> dict[str, MaskedHorizonErrors]:
    """Masked errors of every floor in :data:`FLOORS` on the windows of ``stage``."""
    target = torch.from_numpy(series.speed[split.target_steps(stage)])
    out = {}
    for name, forecast in FLOORS.items():
        errors = MaskedHorizonErrors(split.horizon, series.missing_value)
        errors.update(torch.from_numpy(forecast(series, split, stage)), target)
        out[name] = errors
    return out

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


def time_of_day_mean(series: TrafficSeries, split: WindowSplit, stage: str) -> np.ndarray:
    """Mean reading per (time-of-day slot, sensor) over the training input steps: ``[W, H, N]``.

    Slots never observed in training fall back to the sensor's training mean.
    """
    slots_per_day = int(round(24 * 60 / series.interval_minutes))
    slot = np.rint(time_of_day(series.timestamps) * slots_per_day).astype(np.int64) % slots_per_day
    train = slice(0, split.train_input_steps)
    values, seen = series.speed[train] * series.mask[train], series.mask[train].astype(np.float64)
    sums, counts = np.zeros((slots_per_day, series.num_nodes)), np.zeros((slots_per_day, series.num_nodes))
    np.add.at(sums, slot[train], values)
    np.add.at(counts, slot[train], seen)
    sensor_mean = sums.sum(axis=0) / np.maximum(counts.sum(axis=0), 1.0)
    table = np.where(counts > 0, sums / np.maximum(counts, 1.0), sensor_mean)
    return table[slot[split.target_steps(stage)]].astype(np.float32)


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

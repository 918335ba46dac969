"""Naive floors measured on the same windows as the model, and the seasonal prior.

A model that does not beat persistence at 15-60 minutes, and the time-of-day mean beyond, is not
learning anything (``shared/datasets/traffic/README.md``). The seasonal prior is the strongest
floor here and the starting point of the network (:class:`~tasks.traffic.model.SeasonalBase`):
a daily median profile per day type (weekday, weekend), pooled over neighbouring time slots, plus
the current anomaly decaying per step, all fitted on the training split.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch

from graphcore.datasets.traffic import TrafficSeries, WindowSplit, day_of_week, time_of_day
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.traffic.metrics import MaskedHorizonErrors, masked_mae_loss

SMOOTHING_CANDIDATES = (1, 3, 5, 7, 9, 11, 15, 21, 31)
"""Widths (in slots) of the profile's pooling window that :func:`fit_seasonal_prior` tries."""
POOLED_READINGS = 1 << 24
"""Most readings :func:`daily_profile` pools at once (64 MB of float32): every slot of Los-loop in
one block, blocks of slots on months of data, so its memory stays bounded."""


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


def day_types(series: TrafficSeries, n_types: int) -> np.ndarray:
    """``[T]`` day type of each step: 0 for every day (``n_types=1``), or weekday 0 / weekend 1."""
    if n_types not in (1, 2):
        raise ValueError(f"n_types must be 1 (one profile) or 2 (weekday/weekend), got {n_types}")
    return (day_of_week(series.timestamps) >= 5).astype(np.int64) if n_types == 2 else np.zeros(series.num_steps, np.int64)


def nan_median(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """:func:`numpy.nanmedian` by one sort along ``axis``: NaN where a column has no number.

    ``numpy.nanmedian`` handles short axes through masked arrays, and called once per time slot
    it cost 0.2-0.5 s per profile on Los-loop (about 3 s of CPU per prior fit, which tries nine
    widths); this takes 0.02-0.12 s. Sorting moves NaN to the end, so the median of the ``k``
    numbers of a column sits at positions ``(k - 1) // 2`` and ``k // 2`` (their mean for even
    ``k``, as numpy's). On Los-loop the profiles equal numpy's bit for bit.
    """
    ordered = np.sort(values, axis=axis)
    count = np.expand_dims((~np.isnan(values)).sum(axis=axis), axis)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0) // 2, axis)
    high = np.take_along_axis(ordered, np.minimum(count // 2, max(values.shape[axis] - 1, 0)), axis)
    return np.squeeze(np.where(count > 0, (low + high) / 2, np.nan), axis).astype(values.dtype)


def daily_profile(series: TrafficSeries, split: WindowSplit, n_types: int = 1, smoothing: int = 1,
                  statistic: Literal["mean", "median"] = "mean") -> np.ndarray:
    """Mean or median reading per (day type, time-of-day slot, sensor) over the training input steps.

    Each slot pools the observed readings of the ``smoothing`` slots centred on it (wrapping at
    midnight) on every training day of its type; missing readings carry no weight. The median is
    what the masked MAE rewards: one congested afternoon among three training weekdays pulls the
    mean down, not the median. A (type, slot, sensor) without any reading falls back to the
    all-days profile, then to the sensor's training statistic, so a day type absent from training
    (a split without weekend) uses the all-days profile. The slots of a group are reduced together,
    one array operation over ``[slots, N, days x smoothing]`` per block of :data:`POOLED_READINGS`.

    Returns:
        ``[n_types, slots, N]`` float32.
    """
    if smoothing < 1 or smoothing % 2 == 0:
        raise UsageError(f"the smoothing width (model.profile_smoothing) must be a positive odd number of slots, "
                         f"got {smoothing}")
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    slot, per_day = slots_of_day(series)
    train = slice(0, split.train_input_steps)
    dates = series.timestamps[train].astype("datetime64[D]")
    day = (dates - dates[0]).astype(np.int64)
    readings = np.full((day[-1] + 1, per_day, series.num_nodes), np.nan, dtype=np.float32)   # [days, slots, N]
    readings[day, slot[train]] = np.where(series.mask[train], series.speed[train], np.nan)
    kind_of_day = np.zeros(len(readings), np.int64)
    kind_of_day[day] = day_types(series, n_types)[train]
    groups = [readings[kind_of_day == kind] for kind in range(n_types)] + [readings]         # types, then all days
    window = np.arange(-(smoothing // 2), smoothing // 2 + 1)
    columns = (np.arange(per_day)[:, None] + window) % per_day                               # [slots, smoothing]
    profile = np.full((n_types + 1, per_day, series.num_nodes), np.nan, dtype=np.float32)
    reduce = nan_median if statistic == "median" else np.nanmean
    with warnings.catch_warnings():                     # an all-missing (type, slot, sensor) is NaN, filled below
        warnings.simplefilter("ignore", RuntimeWarning)
        for g, values in enumerate(groups):
            if not len(values):                          # a day type absent from training
                continue
            block = max(1, POOLED_READINGS // (len(values) * smoothing * series.num_nodes))
            for first in range(0, per_day, block):
                slots = columns[first:first + block]
                pooled = values[:, slots].transpose(1, 3, 0, 2).reshape(len(slots), series.num_nodes, -1)
                profile[g, first:first + block] = reduce(pooled, axis=-1)
        sensor = reduce(readings.reshape(-1, series.num_nodes), axis=0)
    all_days = np.where(np.isnan(profile[-1]), np.nan_to_num(sensor), profile[-1])
    return np.where(np.isnan(profile[:-1]), all_days, profile[:-1]).astype(np.float32)


def profile_at_steps(series: TrafficSeries, profile: np.ndarray) -> np.ndarray:
    """``[T, N]`` the profile's value at every step of the series (its day type and slot)."""
    slot, _ = slots_of_day(series)
    return profile[day_types(series, profile.shape[0]), slot]


def time_of_day_mean(series: TrafficSeries, split: WindowSplit, stage: str) -> np.ndarray:
    """Forecast each target step by its slot's training mean over all days: ``[W, H, N]``."""
    return profile_at_steps(series, daily_profile(series, split))[split.target_steps(stage)]


def anomaly_decay(series: TrafficSeries, split: WindowSplit, profile: np.ndarray, iterations: int = 10) -> np.ndarray:
    r"""Per-step, per-sensor :math:`\phi_{h,v}` of :math:`y_{t+h,v} - p_{t+h,v} \approx \phi_{h,v} (y_{t,v} - p_{t,v})`
    over the observed entries of the training windows (:math:`p`: the profile of :func:`daily_profile`).

    Least squares, then ``iterations`` rounds of reweighting by the inverse absolute residual
    (IRLS), which moves the fit towards least absolute deviations, the masked MAE's own criterion;
    residuals below 1 % of the mean absolute anomaly count as that much, so exact fits stay finite.
    A sensor without observed pairs gets 0 (no anomaly is carried forward).

    Returns:
        ``[H, N]`` float32.
    """
    observed = series.mask
    anomaly = np.where(observed, series.speed - profile_at_steps(series, profile), 0.0)
    floor = 0.01 * max(float(np.abs(anomaly[observed]).mean()) if observed.any() else 0.0, 1e-12)
    last = split.starts("train") + split.input_len - 1
    now = anomaly[last]                                                              # [W, N]
    decay = np.zeros((split.horizon, series.num_nodes), dtype=np.float32)
    for h in range(split.horizon):                                                   # one step at a time: [W, N] memory
        weight = (observed[last] & observed[last + 1 + h]).astype(np.float64)
        later = anomaly[last + 1 + h]
        for _ in range(iterations + 1):
            denominator = (weight * now * now).sum(axis=0)
            decay[h] = np.where(denominator > 1e-12, (weight * now * later).sum(axis=0) / np.maximum(denominator, 1e-12), 0.0)
            weight = (weight > 0) / np.maximum(np.abs(later - decay[h] * now), floor)
    return decay


@dataclass(frozen=True)
class SeasonalPrior:
    """A fitted prior, in the data's units.

    Attributes:
        profile: ``[types, slots, N]`` daily profile (:func:`daily_profile`).
        decay: ``[H, N]`` anomaly decay (:func:`anomaly_decay`).
        bounds: ``[2, N]`` lowest and highest observed training reading of each sensor
            (``-inf``/``inf`` for a sensor never observed): forecasts are clipped to them.
        smoothing: the profile's pooling width in slots.
    """

    profile: np.ndarray
    decay: np.ndarray
    bounds: np.ndarray
    smoothing: int


def training_bounds(series: TrafficSeries, split: WindowSplit) -> np.ndarray:
    """``[2, N]`` lowest and highest observed reading of each sensor over the training input steps.

    A profile plus a large anomaly can forecast 88 mph on a road never seen above 70, or a
    negative speed; clipping the prior to what training saw removes that (Los-loop, 60 minutes:
    test MAE 4.039 to 4.025, validation 3.094 to 3.079)."""
    train = slice(0, split.train_input_steps)
    observed = series.mask[train]
    low = np.where(observed, series.speed[train], np.inf).min(axis=0)
    high = np.where(observed, series.speed[train], -np.inf).max(axis=0)
    seen = observed.any(axis=0)
    return np.stack([np.where(seen, low, -np.inf), np.where(seen, high, np.inf)]).astype(np.float32)


def seasonal_forecast(series: TrafficSeries, split: WindowSplit, stage: str, prior: SeasonalPrior) -> np.ndarray:
    """The prior's forecast ``[W, H, N]``: the target's profile plus the last reading's anomaly
    times :math:`\\phi` (no anomaly where the last reading is missing), clipped to the bounds."""
    at_steps = profile_at_steps(series, prior.profile)
    last = split.starts(stage) + split.input_len - 1
    anomaly = np.where(series.mask[last], series.speed[last] - at_steps[last], 0.0)   # [W, N]
    forecast = at_steps[split.target_steps(stage)] + prior.decay[None] * anomaly[:, None, :]
    return np.clip(forecast, prior.bounds[0], prior.bounds[1])


def fit_seasonal_prior(series: TrafficSeries, split: WindowSplit, n_types: int = 2, smoothing: int | None = None,
                       statistic: Literal["mean", "median"] = "median", robust: bool = True,
                       clip: bool = True) -> SeasonalPrior:
    """Fit the profile, the decay and the bounds on the training split.

    With ``smoothing=None`` the width is the one of :data:`SMOOTHING_CANDIDATES` (at most a day
    of slots: 24 at hourly data) whose prior has
    the lowest masked MAE on the validation windows (Los-loop: 15 slots, 75 minutes; each weekday
    slot sees only three training days). The defaults are the task's prior; the other settings
    exist for ``benchmarks/traffic_prior.py``, which measures each choice.

    Args:
        n_types: 1 profile for all days, or 2 (weekday, weekend).
        smoothing: pooling width in slots, or ``None`` to choose it on validation.
        statistic: ``median`` (what the masked MAE rewards) or ``mean``.
        robust: fit the decay for absolute error (IRLS) rather than by least squares.
        clip: clip forecasts to each sensor's training range.
    """
    per_day = slots_of_day(series)[1]
    candidates = tuple(w for w in SMOOTHING_CANDIDATES if w <= per_day) if smoothing is None else (smoothing,)
    target = torch.from_numpy(series.speed[split.target_steps("val")])
    bounds = training_bounds(series, split)
    if not clip:
        bounds = np.stack([np.full(series.num_nodes, -np.inf), np.full(series.num_nodes, np.inf)]).astype(np.float32)
    best, best_mae = None, np.inf
    for width in candidates:
        profile = daily_profile(series, split, n_types, width, statistic)
        decay = anomaly_decay(series, split, profile, iterations=10 if robust else 0)
        prior = SeasonalPrior(profile, decay, bounds, width)
        forecast = torch.from_numpy(seasonal_forecast(series, split, "val", prior))
        mae = float(masked_mae_loss(forecast, target, series.missing_value)[0])
        if best is None or mae < best_mae:
            best, best_mae = prior, mae
    return best


def seasonal_prior_forecast(series: TrafficSeries, split: WindowSplit, stage: str) -> np.ndarray:
    """The untrained prior (weekday/weekend median profile, smoothing chosen on validation): ``[W, H, N]``."""
    return seasonal_forecast(series, split, stage, fit_seasonal_prior(series, split))


FLOORS = {"persistence": persistence_forecast, "time-of-day mean": time_of_day_mean,
          "seasonal prior": seasonal_prior_forecast}


def floor_errors(series: TrafficSeries, split: WindowSplit, stage: str = "test",
                 prior: SeasonalPrior | None = None) -> dict[str, MaskedHorizonErrors]:
    """Masked errors of every floor in :data:`FLOORS` on the windows of ``stage``.

    Args:
        prior: the fitted default prior (:func:`fit_seasonal_prior` with its defaults, e.g.
            :meth:`TrafficDataModule.seasonal_prior() <tasks.traffic.data.TrafficDataModule.seasonal_prior>`)
            for the ``seasonal prior`` floor; ``None`` fits it here.
    """
    target = torch.from_numpy(series.speed[split.target_steps(stage)])
    forecasts = dict(FLOORS)
    if prior is not None:
        forecasts["seasonal prior"] = partial(seasonal_forecast, prior=prior)
    out = {}
    for name, forecast in forecasts.items():
        errors = MaskedHorizonErrors(split.horizon, series.missing_value)
        errors.update(torch.from_numpy(forecast(series, split, stage)), target)
        out[name] = errors
    return out

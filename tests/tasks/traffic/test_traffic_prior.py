"""The seasonal prior: median day-type profiles, the robust anomaly decay, the width chosen on
validation, and the model's base equal to the numpy forecast."""
import warnings

import numpy as np
import pytest
import torch

from graphcore.datasets.traffic import TrafficSeries, split_windows
from graphcore.tasks.traffic import baselines
from graphcore.tasks.traffic.baselines import (anomaly_decay, daily_profile, day_types, fit_seasonal_prior, floor_errors,
                                               nan_median, seasonal_forecast, slots_of_day, training_bounds)
from graphcore.tasks.traffic.model import SeasonalBase
from graphcore.tasks.traffic.module import TrafficForecaster

START = np.datetime64("2012-03-01T00:00:00")          # a Thursday


def series_of(speed: np.ndarray, minutes: int = 5) -> TrafficSeries:
    steps, nodes = speed.shape
    return TrafficSeries(speed=speed, timestamps=START + np.arange(steps) * np.timedelta64(minutes, "m"),
                         sensor_ids=np.array([str(i) for i in range(nodes)]), adjacency=np.eye(nodes, dtype=np.float32))


def hourly_days(values_per_day: list[np.ndarray]) -> TrafficSeries:
    """One reading per hour (24 slots a day), one sensor, the given days one after another."""
    return series_of(np.concatenate(values_per_day)[:, None], minutes=60)


def test_median_profile_ignores_one_congested_day_the_mean_does_not():
    days = [np.full(24, 60.0) for _ in range(9)]
    days[0][17] = 10.0                                         # one jam on Thursday at 17:00
    series = hourly_days(days)
    split = split_windows(series.num_steps, 2, 1, (0.9, 0.05, 0.05))
    assert split.train_input_steps > 24
    median = daily_profile(series, split, statistic="median")
    mean = daily_profile(series, split, statistic="mean")
    assert median[0, 17, 0] == 60.0 and mean[0, 17, 0] < 60.0


def test_weekday_and_weekend_profiles_are_separate_and_smoothing_pools_neighbouring_slots():
    # Thu, Fri, Sat, Sun, Mon at 50 on weekdays, 70 at weekends; slot 5 of weekdays is 20
    days = [np.full(24, 70.0 if d in (2, 3) else 50.0) for d in range(7)]
    for d in (0, 1, 4, 5, 6):
        days[d][5] = 20.0
    series = hourly_days(days)
    split = split_windows(series.num_steps, 2, 1, (0.8, 0.1, 0.1))
    profile = daily_profile(series, split, n_types=2, statistic="mean")
    assert profile.shape == (2, 24, 1)
    assert profile[0, 5, 0] == 20.0 and profile[0, 6, 0] == 50.0 and profile[1, 5, 0] == 70.0
    smooth = daily_profile(series, split, n_types=2, smoothing=3, statistic="mean")
    assert smooth[0, 6, 0] == pytest.approx(40.0) and smooth[0, 10, 0] == 50.0
    assert smooth[0, 0, 0] == 50.0 and smooth[1, 5, 0] == 70.0          # wraps at midnight; weekend untouched


def test_missing_readings_carry_no_weight_and_a_day_type_absent_from_training_falls_back():
    days = [np.full(24, 50.0) for _ in range(4)]                      # Thu..Sun, training = Thu + Fri only
    days[0][3] = 0.0                                                   # missing on Thursday
    days[1][3] = 44.0
    series = hourly_days(days)
    split = split_windows(series.num_steps, 2, 1, (0.5, 0.25, 0.25))
    assert split.train_input_steps <= 48
    profile = daily_profile(series, split, n_types=2, statistic="median")
    assert profile[0, 3, 0] == 44.0                                    # the zero is not a reading
    np.testing.assert_array_equal(profile[1], profile[0])             # no weekend in training: all-days profile
    with pytest.raises(ValueError, match="positive odd number"):
        daily_profile(series, split, smoothing=4)
    with pytest.raises(ValueError, match="'mean' or 'median'"):
        daily_profile(series, split, statistic="mode")


def test_anomaly_decay_recovers_a_geometric_decay_per_sensor():
    """Readings = a daily profile + an anomaly shrinking by r_v per step: φ_{h,v} must be r_v^h."""
    steps, rates = 600, np.array([0.97, 0.9, 0.8])
    series0 = series_of(np.ones((steps, 3)))
    slot, per_day = slots_of_day(series0)
    profile = 50 + 10 * np.sin(np.arange(per_day) / per_day * 2 * np.pi)[None, :, None] * np.ones((1, 1, 3))
    speed = profile[0, slot] + 5.0 * rates ** np.arange(steps)[:, None]
    series = series_of(speed)
    split = split_windows(steps, 12, 6)
    expected = rates[None, :] ** np.arange(1, 7)[:, None]
    np.testing.assert_allclose(anomaly_decay(series, split, profile.astype(np.float32)), expected, rtol=1e-4)


def test_robust_decay_is_not_dragged_by_rare_large_anomalies():
    """Anomalies persist fully (φ = 1) except in 5 % of windows where they flip sign: least
    squares shrinks φ a lot, the absolute-error fit stays near 1."""
    rng = np.random.default_rng(0)
    steps = 2000
    series0 = series_of(np.ones((steps, 1)))
    _, per_day = slots_of_day(series0)
    anomaly = np.repeat(rng.normal(0, 5, steps // 2), 2)               # pairs of equal steps
    flip = rng.random(steps // 2) < 0.05
    anomaly[1::2][flip] *= -1
    series = series_of(60 + anomaly[:, None])
    split = split_windows(steps, 1, 1, (0.8, 0.1, 0.1))
    profile = np.full((1, per_day, 1), 60.0, np.float32)
    # windows starting at even steps see the pair; odd ones straddle independent pairs
    least_squares = anomaly_decay(series, split, profile, iterations=0)[0, 0]
    robust = anomaly_decay(series, split, profile)[0, 0]
    assert least_squares < 0.5 and robust > least_squares + 0.1


def test_bounds_are_the_observed_training_range_and_the_base_clips_to_them():
    speed = np.array([[50.0, 0.0], [65.0, 0.0], [0.0, 0.0], [40.0, 0.0], [90.0, 30.0], [5.0, 30.0]])
    series = series_of(speed)
    split = split_windows(6, 1, 1, (0.6, 0.2, 0.2))                      # training inputs: steps 0..2 only
    bounds = training_bounds(series, split)
    np.testing.assert_array_equal(bounds, [[50.0, -np.inf], [65.0, np.inf]])   # 40 and 90 come later; sensor 1 unseen
    base = SeasonalBase(torch.zeros(1, 4, 2), torch.ones(2, 2), torch.from_numpy(bounds))
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, :, 0] = torch.tensor([100.0, -100.0])                       # anomaly carried forward at φ = 1
    torch.testing.assert_close(base(x)[0], torch.tensor([[65.0, -100.0], [65.0, -100.0]]))



def test_the_chosen_width_is_the_best_on_validation(los_loop):
    series, windows = los_loop.series, los_loop.windows
    target = series.speed[windows.target_steps("val")]

    def val_mae(prior):
        forecast = seasonal_forecast(series, windows, "val", prior)
        return np.abs(forecast - target)[target != 0].mean()

    chosen = fit_seasonal_prior(series, windows)
    others = [fit_seasonal_prior(series, windows, smoothing=w) for w in (1, 5, 31)]
    assert chosen.profile.shape == (2, 288, 207) and chosen.decay.shape == (24, 207)
    assert all(val_mae(chosen) <= val_mae(other) for other in others)


def test_model_base_is_the_prior_and_the_prior_beats_both_floors(los_loop):
    """The network's starting point equals the numpy forecast on every test window."""
    model = TrafficForecaster().build(los_loop)
    dataset = los_loop.dataset("test")
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    base = (model.net.base(x) * model.scale[1] + model.scale[0]).numpy()
    prior = los_loop.seasonal_prior()
    expected = seasonal_forecast(los_loop.series, los_loop.windows, "test", prior)
    np.testing.assert_allclose(base, expected, atol=1e-3)
    floors = floor_errors(los_loop.series, los_loop.windows, "test", prior)
    mae = {name: e.compute()["mae"][11].item() for name, e in floors.items()}
    assert mae["seasonal prior"] < 0.75 * mae["persistence"] and mae["seasonal prior"] < 0.8 * mae["time-of-day mean"]


def test_prior_settings_reach_the_fit(los_loop):
    """The ablation settings of benchmarks/traffic_prior.py: no clipping, least-squares decay, mean."""
    series, windows = los_loop.series, los_loop.windows
    plain = fit_seasonal_prior(series, windows, n_types=1, smoothing=3, statistic="mean", robust=False, clip=False)
    assert plain.smoothing == 3 and plain.profile.shape[0] == 1 and np.isinf(plain.bounds).all()
    np.testing.assert_array_equal(plain.profile, daily_profile(series, windows, 1, 3, "mean"))
    np.testing.assert_array_equal(plain.decay, anomaly_decay(series, windows, plain.profile, iterations=0))


def loop_daily_profile(series: TrafficSeries, split, n_types: int, smoothing: int, statistic: str) -> np.ndarray:
    """The profile as first written: numpy's nan-reductions slot by slot (the reference of the vectorised one)."""
    reduce = np.nanmedian if statistic == "median" else np.nanmean
    slot, per_day = slots_of_day(series)
    train = slice(0, split.train_input_steps)
    dates = series.timestamps[train].astype("datetime64[D]")
    day = (dates - dates[0]).astype(np.int64)
    readings = np.full((day[-1] + 1, per_day, series.num_nodes), np.nan, dtype=np.float32)
    readings[day, slot[train]] = np.where(series.mask[train], series.speed[train], np.nan)
    kind_of_day = np.zeros(len(readings), np.int64)
    kind_of_day[day] = day_types(series, n_types)[train]
    groups = [readings[kind_of_day == kind] for kind in range(n_types)] + [readings]
    window = np.arange(-(smoothing // 2), smoothing // 2 + 1)
    profile = np.full((n_types + 1, per_day, series.num_nodes), np.nan, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for s in range(per_day):
            for g, values in enumerate(groups):
                if len(values):
                    profile[g, s] = reduce(values[:, (s + window) % per_day].reshape(-1, series.num_nodes), axis=0)
        sensor = reduce(readings.reshape(-1, series.num_nodes), axis=0)
    all_days = np.where(np.isnan(profile[-1]), np.nan_to_num(sensor), profile[-1])
    return np.where(np.isnan(profile[:-1]), all_days, profile[:-1]).astype(np.float32)


@pytest.mark.parametrize("shape, axis", [((7, 5), 0), ((4, 6, 9), -1), ((3, 8, 2), 1), ((1, 4), 0)])
def test_nan_median_equals_numpy_with_even_odd_and_empty_columns(shape, axis):
    rng = np.random.default_rng(sum(shape))
    values = rng.normal(50, 10, shape).astype(np.float32)
    values[rng.random(shape) < 0.4] = np.nan
    np.moveaxis(values, axis, 0)[:, 0] = np.nan                         # one column without any number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(values, axis=axis)
    result = nan_median(values, axis=axis)
    assert result.dtype == np.float32 and result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("statistic", ["median", "mean"])
@pytest.mark.parametrize("n_types, smoothing, pooled", [(1, 1, None), (2, 3, None), (2, 7, None), (2, 7, 500)])
def test_vectorised_profile_equals_the_slot_by_slot_reference(statistic, n_types, smoothing, pooled, monkeypatch):
    """Random half-hourly readings over 9 days with 30 % missing, a sensor never observed and a
    slot missing on every training weekend: every fallback of the profile is exercised
    (``pooled``: a small POOLED_READINGS, so the slots are reduced in blocks of a few)."""
    if pooled is not None:
        monkeypatch.setattr(baselines, "POOLED_READINGS", pooled)
    rng = np.random.default_rng(n_types * 10 + smoothing)
    speed = rng.normal(50, 12, (9 * 48, 6)).clip(1, None)
    speed[rng.random(speed.shape) < 0.3] = 0.0
    speed[:, 4] = 0.0
    series = series_of(speed, minutes=30)
    weekend = day_types(series, 2) == 1
    slot, _ = slots_of_day(series)
    speed[weekend & (slot == 20)] = 0.0
    split = split_windows(series.num_steps, 4, 2, (0.8, 0.1, 0.1))
    profile = daily_profile(series, split, n_types, smoothing, statistic)
    expected = loop_daily_profile(series, split, n_types, smoothing, statistic)
    assert profile.shape == (n_types, 48, 6) and not np.isnan(profile).any()
    np.testing.assert_allclose(profile, expected, rtol=1e-6)


def test_datamodule_fits_the_prior_once_and_the_test_floor_reuses_it(los_loop):
    prior = los_loop.seasonal_prior()
    assert los_loop.seasonal_prior() is prior and los_loop.seasonal_prior(2, 15) is not prior
    reused = floor_errors(los_loop.series, los_loop.windows, "test", prior)["seasonal prior"].compute()
    refitted = floor_errors(los_loop.series, los_loop.windows, "test")["seasonal prior"].compute()
    for name in ("mae", "rmse"):
        torch.testing.assert_close(reused[name], refitted[name])

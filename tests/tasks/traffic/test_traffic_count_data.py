"""Count series (values/quantity/unit), the missing-value option, interval-aware defaults and
names, the seasonal prior at 15-minute and hourly data, and clear errors on bad input."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from graphcore.codegen.errors import GraphError
from graphcore.datasets.traffic import LOS_LOOP, SHARED_TRAFFIC, TrafficSeries, load_traffic, resolve_dataset, split_windows
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.traffic.baselines import fit_seasonal_prior, seasonal_forecast
from graphcore.tasks.traffic.data import TrafficDataModule, default_windows
from graphcore.tasks.traffic.metrics import MaskedHorizonErrors, horizon_report, masked_mae_loss

START = np.datetime64("2020-10-01T00:00:00")          # a Thursday


def count_archive(path: Path, minutes: int = 60, days: int = 14, nodes: int = 4, zeros: bool = True) -> Path:
    """A count series in the new archive layout: a daily cycle per node (half its hours 0 when
    ``zeros``), with ``values``, ``quantity`` and ``unit``."""
    per_day = 24 * 60 // minutes
    steps = days * per_day
    slot = np.arange(steps) % per_day
    base = 10 + 8 * np.sin(2 * np.pi * slot / per_day)
    values = np.rint(base[:, None] * (1 + np.arange(nodes))[None, :]).astype(np.float32)
    if zeros:
        values[slot < per_day // 2] = 0.0
    adj = (np.eye(nodes, k=1) + np.eye(nodes, k=-1)).astype(np.float32)
    np.savez(path, values=values, quantity=np.array("passenger_inflow"), unit=np.array("passengers per hour"),
             missing_value=np.float32(0.0), timestamps=START + np.arange(steps) * np.timedelta64(minutes, "m"),
             sensor_ids=np.array([f"s{i}" for i in range(nodes)]), adj=adj)
    return path


def test_archive_keys_values_quantity_unit_and_los_loop_keeps_speed(tmp_path):
    series = load_traffic(count_archive(tmp_path / "bus.npz"))
    assert (series.quantity, series.unit, series.is_count) == ("passenger_inflow", "passengers per hour", True)
    assert series.speed.shape == (14 * 24, 4) and series.interval_minutes == 60
    los = load_traffic(LOS_LOOP)
    assert (los.quantity, los.unit, los.is_count) == ("speed", "mph", False)


def test_zero_masked_counts_warn_with_the_share_of_zeros_and_none_masks_nothing(tmp_path):
    path = str(count_archive(tmp_path / "bus.npz"))
    with pytest.warns(UserWarning, match=r"bus: 672 of 1344 entries \(50.0 %\) are 0 and are treated as missing "
                                         r"\(passenger_inflow counts, missing_value=0\).*--data.missing_value none"):
        TrafficDataModule(data_path=path).setup()
    data = TrafficDataModule(data_path=path, missing_value="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.setup()
    assert data.series.missing_value is None and data.series.mask.all()
    x, y = data.dataset("train")[10]                 # targets from 10:00 to 15:00: zeros, then counts
    assert (y == 0).any() and (y != 0).any()
    # zeros are observations: they enter the loss and the metrics (MAPE skips them, where it is undefined)
    loss, count = masked_mae_loss(torch.ones_like(y)[None], y[None], None)
    assert count == y.numel() and loss == pytest.approx(float((1 - y).abs().mean()))
    errors = MaskedHorizonErrors(y.shape[0], None)
    errors.update(torch.ones_like(y)[None], y[None])
    assert errors.count.sum() == y.numel() and errors.ape_count.sum() == (y != 0).sum()
    mape = errors.compute()["mape"]                  # undefined where every target is 0 (10:00, 11:00)
    assert torch.isnan(mape[:2]).all() and torch.isfinite(mape[2:]).all()
    with pytest.raises(UsageError, match="data.missing_value must be a number, 'file' or 'none', got 'zero'"):
        TrafficDataModule(missing_value="zero")


@pytest.mark.parametrize("minutes, expected", [(5, (12, 24)), (15, (16, 16)), (60, (24, 6))])
def test_windows_default_to_the_interval(tmp_path, minutes, expected):
    assert default_windows(minutes) == expected
    data = TrafficDataModule(data_path=str(count_archive(tmp_path / "c.npz", minutes, days=10)), missing_value="none")
    assert (data.input_len, data.horizon) == expected
    x, y = data.dataset("val")[0]
    assert x.shape[0] == expected[0] and y.shape[0] == expected[1]
    # time of day follows the timestamps at any interval: step k of a day is k / steps-per-day
    per_day = 24 * 60 // minutes
    np.testing.assert_allclose(data.inputs[:per_day, 0, 1].numpy(), np.arange(per_day) / per_day, rtol=1e-6)


@pytest.mark.parametrize("minutes", [15, 60])
def test_seasonal_prior_recovers_a_daily_cycle_at_15_minutes_and_hourly(tmp_path, minutes):
    series = load_traffic(count_archive(tmp_path / "c.npz", minutes, days=14, zeros=False))
    series = TrafficSeries(**{**series.__dict__, "missing_value": None})
    split = split_windows(series.num_steps, *default_windows(minutes))
    prior = fit_seasonal_prior(series, split)
    assert prior.profile.shape == (2, 24 * 60 // minutes, 4) and prior.smoothing <= 24 * 60 // minutes
    forecast = seasonal_forecast(series, split, "test", prior)
    np.testing.assert_allclose(forecast, series.speed[split.target_steps("test")], atol=1e-4)


def test_horizons_are_reported_in_time():
    hourly = horizon_report(MaskedHorizonErrors(6), 60.0)
    assert list(hourly) == ["h3 (3 h)", "h6 (6 h)", "avg 1-6", "avg 4-6"]
    quarter = horizon_report(MaskedHorizonErrors(16), 15.0)
    assert list(quarter) == ["h3 (45 min)", "h6 (90 min)", "h12 (180 min)", "h16 (240 min)", "avg 1-16", "avg 9-16"]


def test_names_resolve_to_a_path_a_folder_or_the_bundled_set(tmp_path):
    assert resolve_dataset("los_loop") == LOS_LOOP
    folder = tmp_path / "bus"
    folder.mkdir()
    count_archive(folder / "bus.npz")
    assert resolve_dataset(str(folder)) == folder / "bus.npz"
    assert resolve_dataset(str(folder / "bus.npz")) == folder / "bus.npz"
    with pytest.raises(GraphError, match=r"no traffic data set 'nowhere': tried .*; known names: .*los_loop"):
        resolve_dataset("nowhere")
    with pytest.raises(UsageError, match="give data.name or data.data_path, not both"):
        TrafficDataModule(name="los_loop", data_path=str(LOS_LOOP))


def test_bad_input_gets_a_clear_error(tmp_path):
    short = count_archive(tmp_path / "short.npz", days=1)
    with pytest.raises(GraphError, match=r"input_len \(24\) \+ horizon \(6\) = 30 steps, but the series has only 24"):
        TrafficDataModule(data_path=str(short), missing_value="none").setup()
    with np.load(count_archive(tmp_path / "ok.npz")) as z:
        arrays = dict(z)
    np.savez(tmp_path / "adj.npz", **{**arrays, "adj": np.eye(3, dtype=np.float32)})
    with pytest.raises(GraphError, match="adjacency is 3x3 but the series has 4 sensors"):
        TrafficDataModule(data_path=str(tmp_path / "adj.npz")).setup()
    values = arrays["values"].copy()
    values[5, 2] = np.inf
    np.savez(tmp_path / "inf.npz", **{**arrays, "values": values})
    with pytest.raises(GraphError, match=r"1 NaN/inf entries \(first at step 5, sensor 's2'\)"):
        TrafficDataModule(data_path=str(tmp_path / "inf.npz")).setup()


@pytest.mark.skipif(not (SHARED_TRAFFIC / "montevideo_bus").is_dir(), reason="needs ../shared/datasets/traffic")
@pytest.mark.parametrize("name, shape, unit, missing", [
    ("montevideo_bus", (744, 675), "passengers per hour", None),
    ("scats_boroondara", (2976, 122), "vehicles per 15 min", 0.0),
    ("nyc_bike1", (4392, 128), "trips per hour", None)])
def test_the_month_long_sets_load_by_name_with_their_configs(name, shape, unit, missing):
    import yaml

    config = yaml.safe_load((Path(__file__).parents[3] / "tasks" / "traffic" / "configs" / f"{name}.yaml").read_text())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = TrafficDataModule(**config["data"])
        data.setup()
    assert data.series.speed.shape == shape and data.series.unit == unit and data.series.missing_value == missing
    assert bool(caught) == (missing == 0.0)          # only SCATS masks zeros, and says how many
    assert data.windows.horizon * data.series.interval_minutes >= 240

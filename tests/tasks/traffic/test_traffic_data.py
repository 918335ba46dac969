"""The datamodule's windows and scaler, and the floors, on the bundled Los-loop."""
import numpy as np
import pytest
import torch

from datasets.traffic import LOS_LOOP, TrafficSeries, split_windows
from tasks.traffic.baselines import anomaly_decay, floor_errors, slots_of_day
from tasks.traffic.data import TrafficDataModule


@pytest.fixture(scope="module")
def data() -> TrafficDataModule:
    dm = TrafficDataModule(day_of_week=True)
    dm.setup()
    return dm


def test_windows_line_up_with_the_series(data):
    series, windows = data.series, data.windows
    x, y = data.dataset("test")[5]
    start = windows.starts("test")[5]
    assert x.shape == (12, 207, data.in_channels) and data.in_channels == 9 and y.shape == (24, 207)
    np.testing.assert_array_equal(y.numpy(), series.speed[start + 12:start + 36])
    np.testing.assert_allclose(data.scaler.inverse(x[:, :, 0].numpy()), series.speed[start:start + 12], rtol=1e-5)
    # time of day of the first input step, and a one-hot Tuesday (test days are Tue/Wed)
    stamp = series.timestamps[start]
    assert x[0, 0, 1].item() == pytest.approx((stamp - stamp.astype("datetime64[D]")) / np.timedelta64(1, "D"))
    assert x[0, 0, 2:].sum() == 1 and x[0, 0, 2 + 1] == 1
    assert [len(data.dataset(s)) for s in ("train", "val", "test")] == [1387, 198, 396]


def test_scaler_never_sees_validation_or_test_steps(tmp_path, data):
    """Corrupting every step after the training inputs changes neither the scaler nor any
    training input."""
    with np.load(LOS_LOOP) as z:
        arrays = dict(z)
    cut = data.windows.train_input_steps
    arrays["speed"] = arrays["speed"].copy()
    arrays["speed"][cut:] *= 3.0
    np.savez(tmp_path / "changed.npz", **arrays)
    changed = TrafficDataModule(data_path=str(tmp_path / "changed.npz"), day_of_week=True)
    changed.setup()
    assert changed.scaler == data.scaler
    for i in (0, 700, 1386):
        torch.testing.assert_close(changed.dataset("train")[i][0], data.dataset("train")[i][0])
    assert not torch.equal(changed.dataset("val")[197][0], data.dataset("val")[197][0])


def test_missing_inputs_are_set_to_the_training_mean(tmp_path):
    with np.load(LOS_LOOP) as z:
        arrays = dict(z)
    arrays["speed"] = arrays["speed"].copy()
    arrays["speed"][100:110, 3] = 0.0
    np.savez(tmp_path / "gappy.npz", **arrays)
    dm = TrafficDataModule(data_path=str(tmp_path / "gappy.npz"))
    dm.setup()
    x, y = dm.dataset("train")[95]
    assert (x[5:, 3, 0] == 0).all() and (x[:5, 3, 0] != 0).all()
    assert (y[:3, 3] == 0).all()      # targets keep the missing marker for the masked metrics


def test_floors_reproduce_the_dataset_readme(data):
    floors = floor_errors(data.series, data.windows, "test")
    persistence = floors["persistence"].compute()["mae"]
    tod = floors["time-of-day mean"].compute()["mae"]
    # shared/datasets/traffic/README.md: horizon 3/12/24 persistence 3.56/5.76/8.23, time-of-day 5.43/5.39/5.34
    np.testing.assert_allclose(persistence[[2, 11, 23]].numpy(), [3.56, 5.76, 8.23], atol=0.006)
    np.testing.assert_allclose(tod[[2, 11, 23]].numpy(), [5.43, 5.39, 5.34], atol=0.006)


def test_anomaly_decay_recovers_a_geometric_decay():
    """Readings = a daily profile + an anomaly shrinking by r per step: φ_h must be r^h."""
    steps, nodes, r = 600, 3, 0.97
    stamps = np.datetime64("2012-03-01T00:00:00") + np.arange(steps) * np.timedelta64(300, "s")
    series0 = TrafficSeries(speed=np.ones((steps, nodes), np.float32), timestamps=stamps,
                            sensor_ids=np.array(["a", "b", "c"]), adjacency=np.eye(nodes, dtype=np.float32))
    slot, per_day = slots_of_day(series0)
    profile = 50 + 10 * np.sin(np.arange(per_day) / per_day * 2 * np.pi)[:, None] * np.ones(nodes)
    speed = profile[slot] + 5.0 * r ** np.arange(steps)[:, None]
    series = TrafficSeries(speed=speed.astype(np.float64), timestamps=stamps, sensor_ids=series0.sensor_ids,
                           adjacency=series0.adjacency)
    split = split_windows(steps, 12, 6)
    np.testing.assert_allclose(anomaly_decay(series, split, profile), r ** np.arange(1, 7), rtol=1e-5)

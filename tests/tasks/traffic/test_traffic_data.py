"""The datamodule's windows and scaler, and the floors, on the bundled Los-loop."""
import numpy as np
import pytest
import torch

from graphcore.datasets.traffic import LOS_LOOP
from graphcore.tasks.traffic.baselines import floor_errors
from graphcore.tasks.traffic.data import TrafficDataModule



def test_windows_line_up_with_the_series(los_loop):
    series, windows = los_loop.series, los_loop.windows
    x, y = los_loop.dataset("test")[5]
    start = windows.starts("test")[5]
    assert x.shape == (12, 207, los_loop.in_channels) and los_loop.in_channels == 3 and y.shape == (24, 207)
    np.testing.assert_array_equal(y.numpy(), series.speed[start + 12:start + 36])
    np.testing.assert_allclose(los_loop.scaler.inverse(x[:, :, 0].numpy()), series.speed[start:start + 12], rtol=1e-5)
    # time of day of the first input step, and Tuesday as day of week / 7 (test days are Tue/Wed)
    stamp = series.timestamps[start]
    assert x[0, 0, 1].item() == pytest.approx((stamp - stamp.astype("datetime64[D]")) / np.timedelta64(1, "D"))
    assert x[0, 0, 2].item() == pytest.approx(1 / 7)
    assert [len(los_loop.dataset(s)) for s in ("train", "val", "test")] == [1387, 198, 396]


def test_scaler_never_sees_validation_or_test_steps(tmp_path, los_loop):
    """Corrupting every step after the training inputs changes neither the scaler nor any
    training input."""
    with np.load(LOS_LOOP) as z:
        arrays = dict(z)
    cut = los_loop.windows.train_input_steps
    arrays["speed"] = arrays["speed"].copy()
    arrays["speed"][cut:] *= 3.0
    np.savez(tmp_path / "changed.npz", **arrays)
    changed = TrafficDataModule(data_path=str(tmp_path / "changed.npz"))
    changed.setup()
    assert changed.scaler == los_loop.scaler
    for i in (0, 700, 1386):
        torch.testing.assert_close(changed.dataset("train")[i][0], los_loop.dataset("train")[i][0])
    assert not torch.equal(changed.dataset("val")[197][0], los_loop.dataset("val")[197][0])


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


def test_floors_reproduce_the_dataset_readme(los_loop):
    floors = floor_errors(los_loop.series, los_loop.windows, "test")
    persistence = floors["persistence"].compute()["mae"]
    tod = floors["time-of-day mean"].compute()["mae"]
    # shared/datasets/traffic/README.md: horizon 3/12/24 persistence 3.56/5.76/8.23, time-of-day 5.43/5.39/5.34
    np.testing.assert_allclose(persistence[[2, 11, 23]].numpy(), [3.56, 5.76, 8.23], atol=0.006)
    np.testing.assert_allclose(tod[[2, 11, 23]].numpy(), [5.43, 5.39, 5.34], atol=0.006)

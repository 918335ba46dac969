"""``python -m tasks.traffic``: fit/test/plot through the CLI on the bundled Los-loop (tiny model)."""
from pathlib import Path

import numpy as np
import pytest

from datasets.traffic import LOS_LOOP
from tasks.traffic.cli import main
from tasks.traffic.module import TrafficForecaster, forecast, load_trained

TINY = ["--model.hidden_channels=8", "--model.graph_channels=4", "--model.n_virtual=2",
        "--data.batch_size=16", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_fast_dev_run_fits_and_tests(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--trainer.fast_dev_run=2", *TINY])
    out = capsys.readouterr().out
    assert "Test split, masked MAE / RMSE (mph)" in out
    row = next(line for line in out.splitlines() if line.startswith("| h12 (60 min)"))
    assert "5.76 / 10.87" in row           # persistence floor measured on the same windows


def test_help_lists_the_hyper_parameters(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model.adjacency_mode {distance,all_ones,adaptive,semi}" in out and "--data.horizon" in out


def test_unknown_adjacency_mode_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model.adjacency_mode=learned"])
    assert "learned" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown adjacency mode 'learned'"):
        TrafficForecaster(adjacency_mode="learned")


def test_seasonal_prior_without_time_of_day_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="seasonal_prior needs the time-of-day input channel"):
        main(["fit", "--trainer.fast_dev_run=1", "--data.time_of_day=false", *TINY])


@pytest.fixture
def small_los_loop(tmp_path) -> Path:
    """The first 400 steps of Los-loop's first 30 sensors, as an .npz in the same format."""
    with np.load(LOS_LOOP) as z:
        arrays = {k: z[k] for k in z.files}
    for key in ("speed", "timestamps"):
        arrays[key] = arrays[key][:400]
    arrays["speed"] = arrays["speed"][:, :30]
    for key in ("sensor_ids", "lat", "lon"):
        arrays[key] = arrays[key][:30]
    arrays["adj"] = arrays["adj"][:30, :30]
    np.savez(tmp_path / "small.npz", **arrays)
    return tmp_path / "small.npz"


def test_checkpoint_then_test_and_plot(tmp_path, monkeypatch, capsys, small_los_loop):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--test_after_fit=false",
          f"--data.data_path={small_los_loop}", *TINY])
    ckpt = Path(capsys.readouterr().out.split("checkpoint: ")[1].split()[0])
    assert ckpt.is_file() and (tmp_path / "lightning_logs/traffic/version_0/metrics.csv").is_file()

    main(["test", f"--ckpt_path={ckpt}", f"--data.data_path={small_los_loop}", *TINY])
    assert (tmp_path / "lightning_logs/traffic/version_1/test_horizons.csv").is_file()

    model, data = load_trained(ckpt)
    assert model.hparams.n_virtual == 2 and model.net.adjacency.n_virtual == 2
    preds, errors = forecast(model, data, "val")
    assert data.hparams.data_path == str(small_los_loop)        # the datamodule comes back from the checkpoint
    assert preds.shape == (37, 24, 30) and errors.summary(1, 24)["mae"] > 0

    main(["plot", f"--ckpt_path={ckpt}", "--n_targets=2", f"--out_dir={tmp_path / 'figs'}",
                    f"--compare_ckpt_path={ckpt}", "--sensors=[773869,767541]"])
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["traffic_error_vs_horizon.png", "traffic_forecast.png", "traffic_sensitivity.png",
                     "traffic_virtual_adjacency.png"]
    assert all((tmp_path / "figs" / n).stat().st_size > 10_000 for n in names)
    with pytest.raises(ValueError, match="unknown sensor ids"):
        main(["plot", f"--ckpt_path={ckpt}", "--sensors=[nope]"])

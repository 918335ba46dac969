"""``python -m tasks.traffic``: fit/test/plot through the CLI on the bundled Los-loop (tiny model)."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from graphcore.datasets.traffic import LOS_LOOP
from graphcore.tasks.traffic.cli import main
from graphcore.tasks.traffic.module import TrafficForecaster, forecast, load_trained

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


def user_error(capsys, args) -> str:
    """Run the CLI on bad input: exit code 2 and one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_seasonal_prior_without_time_of_day_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert "seasonal_prior needs the time-of-day input channel" in user_error(
        capsys, ["fit", "--trainer.fast_dev_run=1", "--data.time_of_day=false", *TINY])


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
    assert "unknown sensor ids ['nope']" in user_error(capsys, ["plot", f"--ckpt_path={ckpt}", "--sensors=[nope]"])


def test_last_checkpoint_is_the_final_model_and_predict_writes_it(tmp_path, monkeypatch, capsys, small_los_loop):
    monkeypatch.chdir(tmp_path)
    data = [f"--data.data_path={small_los_loop}", "--model.profile_smoothing=1", *TINY]
    # best = lowest epoch: the best checkpoint is epoch 0's, last.ckpt must still be epoch 1's
    main(["fit", "--trainer.max_epochs=2", "--trainer.limit_train_batches=2", "--test_after_fit=false",
          "--checkpoint.monitor=epoch", *data])
    out = capsys.readouterr().out
    folder = tmp_path / "lightning_logs/traffic/version_0/checkpoints"
    assert "best checkpoint: lightning_logs/traffic/version_0/checkpoints/epoch00-val_mae" in out
    assert "last checkpoint: lightning_logs/traffic/version_0/checkpoints/last.ckpt (final model, step 4)" in out
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (1, 4)

    main(["predict", f"--ckpt_path={folder / 'last.ckpt'}", *data])
    path = tmp_path / "lightning_logs/traffic/version_1/predictions.npz"
    assert f"predictions (73 rows): {path.relative_to(tmp_path)}" in capsys.readouterr().out
    model, loaded = load_trained(folder / "last.ckpt")
    expected, _ = forecast(model, loaded, "test")
    with np.load(path) as z:
        starts = loaded.windows.starts("test")
        assert z["window_start"].tolist() == starts.tolist()
        assert (z["target_time"] == loaded.series.timestamps[starts + 12]).all()
        assert z["sensor_ids"].tolist() == loaded.series.sensor_ids.tolist()
        np.testing.assert_allclose(z["forecast"], expected.numpy(), rtol=1e-5, atol=1e-4)


def test_bad_data_files_are_one_line_errors(tmp_path, monkeypatch, capsys, small_los_loop):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "junk.npz").write_bytes(b"\x93NUMPY garbage" * 20)
    (tmp_path / "ragged.csv").write_text("time,a,b\n2012-03-01 00:00,60,61\n2012-03-01 00:05,60,61,62\n")
    (tmp_path / "latin.csv").write_bytes("time,a,b\n2012-03-01 00:00,60,61\n# d\u00e9tecteur\n".encode("latin-1"))
    (tmp_path / "adj.csv").write_text("1,0\n0,1\n")
    fit = ["fit", "--trainer.fast_dev_run=1", *TINY]
    assert re.fullmatch(r"error: \S*empty.npz is empty \(0 bytes\): expected an .npz archive.*",
                        user_error(capsys, [*fit, "--data.data_path=empty.npz"]))
    assert re.fullmatch(r"error: \S*junk.npz is not an .npz archive \(280 bytes that are not a zip file\).*",
                        user_error(capsys, [*fit, "--data.data_path=junk.npz"]))
    csv_data = ["--data.adjacency_path=adj.csv"]
    assert re.fullmatch(r"error: \S*ragged.csv, line 3: 4 fields where the header has 3; .*",
                        user_error(capsys, [*fit, "--data.data_path=ragged.csv", *csv_data]))
    assert re.fullmatch(r"error: \S*latin.csv, line 3: byte 0xe9 at offset \d+ is not valid UTF-8; save .*",
                        user_error(capsys, [*fit, "--data.data_path=latin.csv", *csv_data]))
    # a validation message of the data layer, once the last line of a long traceback
    (tmp_path / "short.csv").write_text("time,a,b\n2012-03-01 00:00,60,61\n2012-03-01 00:05,62,63\n")
    assert "input_len (12) + horizon (24) = 36 steps, but the series has only 2" in user_error(
        capsys, [*fit, "--data.data_path=short.csv", *csv_data])


def test_checkpoint_of_another_task_is_rejected_by_plot(tmp_path, capsys):
    foreign = tmp_path / "rgnn.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"num_nodes": {"a": 3}, "num_relations": 2, "num_classes": 2,
                                                       "model": "rgcn", "hidden": 32}}, foreign)
    assert re.fullmatch(rf"error: {re.escape(str(foreign))} is not a traffic model checkpoint \(it has the "
                        r"hyper-parameters \['hidden', 'model', 'num_classes', 'num_nodes', 'num_relations'\]\); "
                        r"pass one written by `python -m tasks.traffic fit`",
                        user_error(capsys, ["plot", f"--ckpt_path={foreign}"]))

"""The shared prediction writer: columns in, one .csv or .npz file out (tasks/predictions.py)."""
import csv

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.predictions import PredictionWriter, concatenate, write_csv, write_npz


class Doubler(L.LightningModule):
    """Predicts 2x for each id, plus a [B, 2] and (with ``cube``) a [B, 2, 2] column."""

    def __init__(self, cube: bool = False):
        super().__init__()
        self.cube = cube

    def predict_step(self, batch, batch_idx):
        ids = batch
        out = {"id": ids, "name": [f"n{i}" for i in ids.tolist()], "pair": torch.stack([ids, -ids], 1).float()}
        if self.cube:
            out["cube"] = ids.float()[:, None, None].expand(-1, 2, 2)
        return out

    def prediction_metadata(self):
        return {"unit": np.asarray("mph")}


def predict(tmp_path, writer, cube=False):
    trainer = L.Trainer(default_root_dir=tmp_path, callbacks=[writer], logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.predict(Doubler(cube), DataLoader(torch.arange(5), batch_size=2), return_predictions=False)
    return writer.written


def test_csv_has_one_row_per_prediction_with_ids(tmp_path, capsys):
    path = predict(tmp_path, PredictionWriter())
    assert path == tmp_path / "predictions.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "name", "pair_0", "pair_1"]
    assert rows[1:] == [[str(i), f"n{i}", f"{float(i)}", f"{float(-i)}"] for i in range(5)]
    assert f"predictions (5 rows): {path}" in capsys.readouterr().out


def test_columns_of_three_dimensions_go_to_npz_with_the_metadata(tmp_path):
    path = predict(tmp_path, PredictionWriter(), cube=True)
    assert path == tmp_path / "predictions.npz"
    with np.load(path) as z:            # no pickles: strings are unicode arrays
        assert z["id"].tolist() == list(range(5)) and z["name"].tolist() == [f"n{i}" for i in range(5)]
        assert z["cube"].shape == (5, 2, 2) and z["cube"][3].tolist() == [[3.0, 3.0], [3.0, 3.0]]
        assert str(z["unit"]) == "mph"


def test_a_given_path_is_used_whatever_its_folder(tmp_path):
    path = predict(tmp_path, PredictionWriter(str(tmp_path / "out" / "p.npz")))
    assert path == tmp_path / "out" / "p.npz" and np.load(path)["pair"].shape == (5, 2)


def test_bad_paths_and_columns_are_user_errors(tmp_path):
    with pytest.raises(UsageError, match=r"'p.txt' must end in .csv or .npz"):
        PredictionWriter("p.txt")
    with pytest.raises(UsageError, match=r"column 'cube' is \[1, 2, 2\].*\.npz"):
        write_csv(tmp_path / "p.csv", {"cube": np.zeros((1, 2, 2))})
    with pytest.raises(ValueError, match="share the names"):
        write_npz(tmp_path / "p.npz", {"a": np.zeros(1)}, {"a": np.zeros(1)})


def test_concatenate_checks_rows_and_columns():
    joined = concatenate([{"a": torch.tensor([1, 2]), "b": ["x", "y"]}, {"a": torch.tensor([3]), "b": ["z"]}])
    assert joined["a"].tolist() == [1, 2, 3] and joined["b"].tolist() == ["x", "y", "z"]
    with pytest.raises(ValueError, match="different numbers of rows"):
        concatenate([{"a": torch.zeros(2), "b": torch.zeros(3)}])
    with pytest.raises(ValueError, match=r"columns \['b'\] in batch 1"):
        concatenate([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])

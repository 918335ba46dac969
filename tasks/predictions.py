r"""``predict`` writes a file: the one prediction writer of every task.

Lightning's ``predict`` only returns the outputs of ``predict_step`` to the caller; from the
command line they were computed and dropped. :class:`PredictionWriter` (a
:class:`~lightning.pytorch.callbacks.BasePredictionWriter`) collects them batch by batch and writes
one file at the end of the epoch, then prints where.

The contract with a task: ``predict_step`` returns a mapping from column name to per-row values
(tensors, arrays or lists, first dimension = rows of the batch), ids included, e.g.
``{"node": [B], "pred": [B], "prob": [B, C]}``. A module may also define
``prediction_metadata() -> dict[str, np.ndarray]`` for values that are the same for every row
(a traffic series' sensor ids); only ``.npz`` files keep them.

Formats, by the suffix of ``path``:

* ``.csv``: one row per prediction with a header; a ``[rows, C]`` column becomes ``name_0 ..
  name_{C-1}``. Needs every column to be 1-d or 2-d.
* ``.npz``: one array per column (any shape), plus the metadata.

Without ``path`` the file is ``predictions.csv`` (``predictions.npz`` when a column has more than
two dimensions) in the trainer's log directory (else its ``default_root_dir``).
"""
from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from graphcore.tasks.cli_errors import UsageError

FORMATS = (".csv", ".npz")


def to_numpy(values: Any) -> np.ndarray:
    """A batch column as an array: tensors leave the device, lists of strings stay strings."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def concatenate(batches: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Join per-batch columns into whole columns (rows in prediction order).

    Raises:
        ValueError: batches with different columns, or columns of one batch with different rows.
    """
    if not batches:
        return {}
    names = list(batches[0])
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for i, batch in enumerate(batches):
        if list(batch) != names:
            raise ValueError(f"predict_step returned columns {list(batch)} in batch {i}, {names} in batch 0")
        arrays = {name: to_numpy(batch[name]) for name in names}
        rows = {name: (len(a) if a.ndim else 1) for name, a in arrays.items()}
        if len(set(rows.values())) > 1:
            raise ValueError(f"predict_step returned columns with different numbers of rows in batch {i}: {rows}")
        for name, array in arrays.items():
            columns[name].append(array.reshape(1) if array.ndim == 0 else array)
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def write_csv(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    """One row per prediction; ``[rows, C]`` columns are spread over ``name_0 .. name_{C-1}``.

    Raises:
        UsageError: a column with more than two dimensions (write ``.npz`` instead).
    """
    header: list[str] = []
    flat: list[np.ndarray] = []
    for name, array in columns.items():
        if array.ndim > 2:
            raise UsageError(f"{path}: column {name!r} is {list(array.shape)}, which a CSV row cannot hold; "
                             "write the predictions to a .npz file instead")
        if array.ndim == 2:
            header += [f"{name}_{j}" for j in range(array.shape[1])]
            flat += [array[:, j] for j in range(array.shape[1])]
        else:
            header.append(name)
            flat.append(array)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(zip(*(column.tolist() for column in flat)))


def write_npz(path: Path, columns: Mapping[str, np.ndarray], metadata: Mapping[str, np.ndarray]) -> None:
    """One array per column and per metadata entry (strings as unicode arrays, no pickles)."""
    clash = sorted(set(columns) & set(metadata))
    if clash:
        raise ValueError(f"prediction columns and metadata share the names {clash}")
    arrays = {name: (a.astype(str) if a.dtype == object else a) for name, a in {**columns, **metadata}.items()}
    with open(path, "wb") as f:      # a file object: np.savez would append .npz to another suffix
        np.savez(f, **arrays)


class PredictionWriter(BasePredictionWriter):
    """Collect ``predict_step`` outputs and write them to one ``.csv`` or ``.npz`` file.

    Args:
        path: output file (``.csv`` or ``.npz``); ``None`` writes ``predictions.csv`` (or ``.npz``
            for columns of three or more dimensions) into the run's log directory.

    Raises:
        UsageError: a ``path`` with another suffix.
    """

    def __init__(self, path: str | None = None):
        super().__init__(write_interval="batch")
        if path is not None and Path(path).suffix.lower() not in FORMATS:
            raise UsageError(f"predictions path {path!r} must end in .csv or .npz")
        self.path = path
        self.written: Path | None = None
        self._batches: list[Mapping[str, Any]] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batches = []

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        if not isinstance(prediction, Mapping):
            raise TypeError(f"{type(pl_module).__name__}.predict_step must return a mapping of column name to "
                            f"values for PredictionWriter, got {type(prediction).__name__}")
        self._batches.append(prediction)

    def output_path(self, trainer: L.Trainer, columns: Mapping[str, np.ndarray]) -> Path:
        """``path``, or the default file in the run's log directory."""
        if self.path is not None:
            return Path(self.path)
        suffix = ".npz" if any(a.ndim > 2 for a in columns.values()) else ".csv"
        return Path(trainer.log_dir or trainer.default_root_dir) / f"predictions{suffix}"

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        columns = concatenate(self._batches)
        self._batches = []
        if not trainer.is_global_zero:
            return
        path = self.output_path(trainer, columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            write_csv(path, columns)
        else:
            metadata = getattr(pl_module, "prediction_metadata", dict)()
            write_npz(path, columns, {k: np.asarray(v) for k, v in metadata.items()})
        rows = len(next(iter(columns.values()))) if columns else 0
        self.written = path
        print(f"predictions ({rows} rows): {path}")


def add_prediction_arguments(parser: Any) -> None:
    """Add :class:`PredictionWriter` to a LightningCLI parser as ``--predictions.path``."""
    parser.add_lightning_class_args(PredictionWriter, "predictions")


__all__ = ["PredictionWriter", "add_prediction_arguments", "concatenate", "write_csv", "write_npz"]

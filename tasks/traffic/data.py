"""LightningDataModule: sliding windows over a traffic series, split 70/10/20 in time order."""
from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from graphcore.datasets.traffic import (LOS_LOOP, TrafficSeries, WindowSplit, ZScore, day_of_week, load_traffic,
                                        resolve_dataset, split_windows, time_of_day)
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.traffic.baselines import SeasonalPrior, fit_seasonal_prior


def default_windows(interval_minutes: float) -> tuple[int, int]:
    """``(input_len, horizon)`` in steps for a sampling interval, when the config names none.

    * up to 5 minutes: 12 -> 24 (1 h -> 2 h), the field's protocol on METR-LA and Los-loop;
    * up to 15 minutes: 16 -> 16 (4 h -> 4 h);
    * coarser (hourly): 24 -> 6 (one day -> 6 h), so the input holds a whole daily cycle.
    """
    if interval_minutes <= 5:
        return 12, 24
    if interval_minutes <= 15:
        return 16, 16
    return 24, 6


def zero_share_warning(series: TrafficSeries) -> str | None:
    """The warning for count data whose zeros are masked as missing, or ``None``.

    In bus boardings or bike trips 0 is a real count; masking it drops observations from the
    loss and the metrics, and fills the inputs with the training mean."""
    if not series.is_count or series.missing_value != 0.0:
        return None
    zeros = int((series.speed == 0).sum())
    if zeros == 0:
        return None
    return (f"{series.name}: {zeros} of {series.speed.size} entries ({100 * zeros / series.speed.size:.1f} %) are 0 "
            f"and are treated as missing ({series.quantity} counts, missing_value=0); if 0 is a real count, "
            "pass --data.missing_value none (the data set's config in tasks/traffic/configs/ says which)")


class WindowDataset(Dataset):
    """Windows ``(x [T_in, N, C], y [H, N])`` starting at the given steps.

    ``x`` holds model inputs (scaled speed and covariates); ``y`` the raw readings, missing
    entries included, so metrics are computed in the data's units. With ``with_start`` each item
    also carries the window's first step, the id ``predict`` writes beside its forecast.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, starts: np.ndarray, input_len: int, horizon: int,
                 with_start: bool = False):
        self.inputs, self.targets, self.starts = inputs, targets, starts
        self.input_len, self.horizon = input_len, horizon
        self.with_start = with_start

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        s = int(self.starts[index])
        end = s + self.input_len
        item = (self.inputs[s:end], self.targets[end:end + self.horizon])
        return (*item, torch.tensor(s)) if self.with_start else item


class TrafficDataModule(L.LightningDataModule):
    """Traffic windows for ``python -m tasks.traffic``; defaults read the bundled Los-loop.

    Inputs per sensor and step: the z-scored speed (missing readings set to 0, the training
    mean), then the time of day in [0, 1) and the day of week / 7 in [0, 1) (Monday = 0; the
    BasicTS convention). The z-score is fitted on the steps that training inputs read, never on
    validation or test steps.

    Args:
        name: a data set by name or path (:func:`datasets.traffic.resolve_dataset`: bundled,
            then ``../shared/datasets/traffic/<name>``), e.g. ``montevideo_bus``.
        data_path: ``.npz``, ``.h5`` or ``.csv`` series (see :func:`datasets.traffic.load_traffic`);
            ``None`` (and no ``name``) reads the bundled Los-loop.
        adjacency_path: the graph of an ``.h5`` (``adj_mx.pkl``) or ``.csv`` series.
        adjacency_key: matrix of an ``.npz`` to use (Los-loop: ``adj``, symmetric, or ``adj_dcrnn``).
        input_len: input steps per window; ``None``: :func:`default_windows` of the interval.
        horizon: predicted steps per window; ``None``: :func:`default_windows` of the interval.
        missing_value: ``file`` (the archive's, 0.0), a number, or ``none``: nothing is
            missing, for counts where 0 is real (Montevideo bus, NYC bike). Count data masked
            at 0 gets a warning with the share of zeros.
        split: train/val/test fractions of the windows, in time order.
        time_of_day: add the time-of-day channel.
        day_of_week: add the day-of-week channel (after time of day): the seasonal prior needs it
            to tell weekdays from weekends.
        batch_size: windows per batch.
        num_workers: DataLoader workers.
    """

    def __init__(self, data_path: str | None = None, adjacency_path: str | None = None,
                 adjacency_key: str = "adj", input_len: int | None = None, horizon: int | None = None,
                 split: tuple[float, float, float] = (0.7, 0.1, 0.2), time_of_day: bool = True,
                 day_of_week: bool = True, batch_size: int = 32, num_workers: int = 0, name: str | None = None,
                 missing_value: float | Literal["file", "none"] = "file"):
        super().__init__()
        if name is not None and data_path is not None:
            raise UsageError(f"give data.name or data.data_path, not both (got {name!r} and {data_path!r})")
        if isinstance(missing_value, str) and missing_value not in ("file", "none"):
            raise UsageError(f"data.missing_value must be a number, 'file' or 'none', got {missing_value!r}")
        self.save_hyperparameters()
        self.series: TrafficSeries | None = None
        self.windows: WindowSplit | None = None
        self.scaler: ZScore | None = None
        self.inputs: Tensor | None = None
        self.targets: Tensor | None = None
        self._priors: dict[tuple[int, int | None], SeasonalPrior] = {}

    def setup(self, stage: str | None = None) -> None:
        """Load, split and scale once; later calls are no-ops."""
        if self.series is not None:
            return
        hp = self.hparams
        path = resolve_dataset(hp.name) if hp.name is not None else (hp.data_path or LOS_LOOP)
        series = load_traffic(path, hp.adjacency_path, hp.adjacency_key)
        if hp.missing_value != "file":
            series = replace(series, missing_value=None if hp.missing_value == "none" else float(hp.missing_value))
        message = zero_share_warning(series)
        if message is not None:
            warnings.warn(message, stacklevel=2)
        input_len, horizon = default_windows(series.interval_minutes)
        windows = split_windows(series.num_steps, hp.input_len or input_len, hp.horizon or horizon, tuple(hp.split))
        train = slice(0, windows.train_input_steps)
        scaler = ZScore.fit(series.speed[train], series.mask[train])
        features = [np.where(series.mask, scaler.transform(series.speed), 0.0)[..., None]]
        steps = np.ones((1, series.num_nodes, 1), dtype=np.float32)
        if hp.time_of_day:
            features.append(time_of_day(series.timestamps)[:, None, None] * steps)
        if hp.day_of_week:
            features.append((day_of_week(series.timestamps) / 7.0)[:, None, None] * steps)
        self.series, self.windows, self.scaler = series, windows, scaler
        self.inputs = torch.from_numpy(np.concatenate(features, axis=-1).astype(np.float32))
        self.targets = torch.from_numpy(series.speed)

    def seasonal_prior(self, n_types: int = 2, smoothing: int | None = None) -> SeasonalPrior:
        """:func:`~tasks.traffic.baselines.fit_seasonal_prior` on the training split, fitted once per
        ``(n_types, smoothing)``: the model's base (built in ``configure_model``) and the test
        floor of the same settings share one fit, which tries every smoothing width on validation."""
        self.setup()
        key = (n_types, smoothing)
        if key not in self._priors:
            self._priors[key] = fit_seasonal_prior(self.series, self.windows, n_types, smoothing)
        return self._priors[key]

    @property
    def input_len(self) -> int:
        """Input steps per window (after :meth:`setup`: the configured or the interval's default)."""
        self.setup()
        return self.windows.input_len

    @property
    def horizon(self) -> int:
        """Predicted steps per window (after :meth:`setup`)."""
        self.setup()
        return self.windows.horizon

    @property
    def in_channels(self) -> int:
        """Input features per sensor and step."""
        return 1 + int(self.hparams.time_of_day) + int(self.hparams.day_of_week)

    def dataset(self, stage: str, with_start: bool = False) -> WindowDataset:
        """The windows of ``train``, ``val`` or ``test`` (with their first step: ``with_start``)."""
        self.setup()
        return WindowDataset(self.inputs, self.targets, self.windows.starts(stage),
                             self.windows.input_len, self.windows.horizon, with_start)

    def _loader(self, stage: str, shuffle: bool = False, with_start: bool = False) -> DataLoader:
        return DataLoader(self.dataset(stage, with_start), batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """The test windows, each with its first step (``predict`` writes it as the window's id)."""
        return self._loader("test", with_start=True)

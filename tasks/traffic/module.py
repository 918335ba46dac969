"""LightningModule: trains :class:`VirtualNodeSTGCN` with the masked MAE in the data's units."""
from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.traffic.adjacency import check_mode
from graphcore.tasks.traffic.baselines import floor_errors
from graphcore.tasks.traffic.data import TrafficDataModule
from graphcore.tasks.traffic.metrics import MaskedHorizonErrors, horizon_report, masked_mae_loss
from graphcore.tasks.traffic.model import VirtualNodeSTGCN
from graphcore.tasks.traffic.report import markdown_table, write_horizon_csv


class TrafficForecaster(L.LightningModule):
    """Virtual-node STGCN forecaster; the network is built from the data in ``configure_model``.

    The graph, the number of sensors and the scaler come from :class:`TrafficDataModule`, so
    they are not hyper-parameters; the scaler is a buffer and travels in checkpoints.

    Args:
        adjacency_mode: ``distance``, ``all_ones``, ``adaptive`` or ``semi`` (see
            :mod:`tasks.traffic.adjacency`).
        n_virtual: virtual nodes with zero input.
        hidden_channels: channels of the temporal convolutions.
        graph_channels: channels of the graph convolution.
        n_blocks: ST blocks.
        kernel_size: temporal kernel width.
        diffusion_steps: powers of each transition matrix.
        embedding_dim: width of the adjacency embeddings.
        prune_threshold: learned adjacency weights below it become 0.
        dropout: dropout after each block.
        lr: Adam learning rate (cosine-annealed over ``max_epochs``).
        weight_decay: Adam weight decay of the network's weights. The adjacency embeddings
            :math:`E_1, E_2` get none: their weights are pruned below ``prune_threshold`` and a
            pruned edge has no gradient, so decay is a ratchet. With it, when the data gradient
            is near 0 (the network then predicts a near-zero correction to the prior), Adam's
            normalised step shrank them at the learning rate: on scats_boroondara, semi with 10
            virtual nodes, the live sensor/virtual edges fell from 42 % to 5 % in 4 epochs, and to
            none after 10 (docs/results/traffic_ablation_scats_boroondara.json).
        seasonal_prior: the network predicts a correction to a fixed statistical forecast: a
            median daily profile (weekday and weekend profiles when ``data.day_of_week=true``)
            plus the current anomaly decaying per step and sensor, clipped to each sensor's
            training range (:class:`~tasks.traffic.model.SeasonalBase`, fitted on the training
            split). On Los-loop the prior alone has a 60-minute test MAE of 4.05 mph and the
            default model 4.03 (3 seeds); without the prior the network is worse than the
            time-of-day mean at long horizons (README, Traffic). Needs ``data.time_of_day=true``.
        profile_smoothing: width in time slots (odd) of the window the profile pools; ``None``
            chooses it on the validation windows (:func:`~tasks.traffic.baselines.fit_seasonal_prior`).
        spatial: how the graph convolutions run: ``compiled`` (the sensor/virtual-node
            HeteroGraph through :func:`graphcore.compile`), ``eager`` (the same graphcore ops as
            PyTorch) or ``dense`` (the ``[N+n_v]²`` reference; see ``benchmarks/traffic_scale.py``
            for what each costs against N).
    """

    def __init__(self, adjacency_mode: Literal["distance", "all_ones", "adaptive", "semi"] = "semi",
                 n_virtual: int = 10, hidden_channels: int = 32, graph_channels: int = 16, n_blocks: int = 2,
                 kernel_size: int = 3, diffusion_steps: int = 2, embedding_dim: int = 10,
                 prune_threshold: float = 0.1, dropout: float = 0.1, lr: float = 3e-3, weight_decay: float = 1e-4,
                 seasonal_prior: bool = True, profile_smoothing: int | None = None,
                 spatial: Literal["compiled", "eager", "dense"] = "compiled"):
        super().__init__()
        check_mode(adjacency_mode)
        self.save_hyperparameters()
        self.net: VirtualNodeSTGCN | None = None
        self.errors = nn.ModuleDict()
        self.null_value = 0.0

    def configure_model(self) -> None:
        """Build the network from the trainer's datamodule (before any checkpoint is restored)."""
        if self.net is None:
            self.build(self.trainer.datamodule)

    def build(self, data: TrafficDataModule) -> "TrafficForecaster":
        """Create the network, the scaler buffer and the metrics for ``data``'s graph."""
        data.setup()
        hp, dhp = self.hparams, data.hparams
        seasonal = decay = bounds = None
        if hp.seasonal_prior:
            if not dhp.time_of_day:
                raise UsageError("seasonal_prior needs the time-of-day input channel: set data.time_of_day=true "
                                 "or model.seasonal_prior=false")
            prior = data.seasonal_prior(2 if dhp.day_of_week else 1, hp.profile_smoothing)
            seasonal = torch.from_numpy(data.scaler.transform(prior.profile))
            decay = torch.from_numpy(prior.decay)
            bounds = torch.from_numpy(data.scaler.transform(prior.bounds))
        self.net = VirtualNodeSTGCN(
            torch.from_numpy(data.series.adjacency), data.in_channels, data.input_len, data.horizon,
            hp.n_virtual, hp.adjacency_mode, hp.hidden_channels, hp.graph_channels, hp.n_blocks,
            hp.kernel_size, hp.diffusion_steps, hp.embedding_dim, hp.prune_threshold, hp.dropout,
            seasonal, decay, bounds, hp.spatial)
        self.register_buffer("scale", torch.tensor([data.scaler.mean, data.scaler.std]))
        self.null_value = data.series.missing_value
        self.errors = nn.ModuleDict({s: MaskedHorizonErrors(data.horizon, self.null_value) for s in ("val", "test")})
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Forecast in the data's units: ``[B, T, N, C] -> [B, H, N]``."""
        return self.net(x) * self.scale[1] + self.scale[0]

    def _common_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        pred = self(x)
        loss, count = masked_mae_loss(pred, y, self.null_value)
        if stage == "train":
            if count:
                self.log("train/mae", loss, prog_bar=True, batch_size=x.shape[0])
        else:
            self.errors[stage].update(pred, y)
        return loss

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._common_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._common_step(batch, "test")

    def predict_step(self, batch, batch_idx) -> dict[str, Any]:
        """Forecasts of the batch's windows: ``window_start`` (first input step, the window's id),
        ``target_time`` (time of its first forecast step) and ``forecast`` ``[B, H, N]`` in the data's units."""
        x, _, start = batch
        data = self.trainer.datamodule
        first_target = start.cpu().numpy() + data.input_len
        return {"window_start": start, "target_time": data.series.timestamps[first_target], "forecast": self(x)}

    def prediction_metadata(self) -> dict[str, np.ndarray]:
        """Per-file values of the predictions: the sensor id of each forecast column and the step."""
        series = self.trainer.datamodule.series
        return {"sensor_ids": series.sensor_ids.astype(str),
                "interval_minutes": np.asarray(series.interval_minutes)}

    def on_validation_epoch_end(self) -> None:
        errors = self.errors["val"]
        overall = errors.summary(1, errors.horizon)
        self.log_dict({"val/mae": overall["mae"], "val/rmse": overall["rmse"]}, prog_bar=True)
        if errors.horizon >= 12:
            self.log("val/mae_60min", errors.summary(12, 12)["mae"])
        errors.reset()

    def on_test_epoch_end(self) -> None:
        """Log the table rows, print them beside the floors, and save per-horizon CSV."""
        errors = self.errors["test"]
        data = self.trainer.datamodule
        interval = data.series.interval_minutes if isinstance(data, TrafficDataModule) else 5.0
        columns = {"model": errors}
        if isinstance(data, TrafficDataModule):
            columns.update(floor_errors(data.series, data.windows, "test", data.seasonal_prior()))
        reports = {name: horizon_report(e, interval) for name, e in columns.items()}
        for row, values in reports["model"].items():
            key = row.split(" (")[0].replace(" ", "_")
            self.log_dict({f"test/{m}_{key}": v for m, v in values.items()})
        if self.trainer.is_global_zero:
            rows = [[row] + [f"{reports[name][row]['mae']:.2f} / {reports[name][row]['rmse']:.2f}"
                             for name in reports] for row in reports["model"]]
            unit = data.series.unit if isinstance(data, TrafficDataModule) else "mph"
            print(f"\nTest split, masked MAE / RMSE ({unit}):\n" + markdown_table(["horizon", *reports], rows))
            if self.trainer.log_dir:
                path = write_horizon_csv(Path(self.trainer.log_dir) / "test_horizons.csv", columns, interval)
                print(f"per-horizon errors: {path}")
        errors.reset()

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The network's weights with ``weight_decay``, and the adjacency embeddings without (see
        the class doc: decay and pruning together switch learned edges off for good)."""
        embeddings = [p for name, p in self.named_parameters() if name.split(".")[-1] in ("emb1", "emb2")]
        ids = {id(p) for p in embeddings}
        weights = [p for p in self.parameters() if id(p) not in ids]
        groups = [{"params": weights, "weight_decay": self.hparams.weight_decay}]
        return groups + ([{"params": embeddings, "weight_decay": 0.0}] if embeddings else [])

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=hp.lr)
        epochs = self.trainer.max_epochs if self.trainer is not None else None
        if not epochs or epochs < 1:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)}


def load_trained(ckpt_path: str | Path, **data_overrides) -> tuple[TrafficForecaster, TrafficDataModule]:
    """Rebuild a trained model and its datamodule from a checkpoint, outside a Trainer.

    Args:
        ckpt_path: a checkpoint written by ``python -m tasks.traffic fit``.
        **data_overrides: replace saved datamodule arguments (e.g. ``data_path``).

    Returns:
        ``(model in eval mode, set-up datamodule)``.

    Raises:
        UsageError: no such file, a file that is not a checkpoint, or the checkpoint of another
            model (e.g. an rgnn run).
    """
    ckpt = read_traffic_checkpoint(ckpt_path)

    def public(hparams: dict) -> dict:  # drop LightningCLI's bookkeeping keys such as "_instantiator"
        return {k: v for k, v in hparams.items() if not k.startswith("_")}

    data = TrafficDataModule(**{**public(ckpt.get("datamodule_hyper_parameters", {})), **data_overrides})
    model = TrafficForecaster(**public(ckpt["hyper_parameters"])).build(data)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), data


def read_traffic_checkpoint(ckpt_path: str | Path) -> dict:
    """Load a checkpoint and check that ``python -m tasks.traffic fit`` wrote it.

    Raises:
        UsageError: no such file, not a torch checkpoint, or hyper-parameters that are not a
            :class:`TrafficForecaster`'s (the message names the foreign ones).
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}; pass a .ckpt written by `python -m tasks.traffic fit` "
                         "(lightning_logs/traffic/version_N/checkpoints/)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as err:
        raise UsageError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    known = set(inspect.signature(TrafficForecaster.__init__).parameters) - {"self"}
    data_known = set(inspect.signature(TrafficDataModule.__init__).parameters) - {"self"}
    foreign = sorted(k for k in (hparams or {}) if not k.startswith("_") and k not in known)
    foreign += sorted(k for k in ckpt.get("datamodule_hyper_parameters", {}) if not k.startswith("_")
                      and k not in data_known) if isinstance(ckpt, dict) else []
    if hparams is None or "state_dict" not in ckpt or foreign:
        detail = f" (it has the hyper-parameters {foreign[:6]})" if foreign else ""
        raise UsageError(f"{path} is not a traffic model checkpoint{detail}; pass one written by "
                         "`python -m tasks.traffic fit`")
    return ckpt


@torch.no_grad()
def forecast(model: TrafficForecaster, data: TrafficDataModule, stage: str = "test",
             batch_size: int = 64) -> tuple[Tensor, MaskedHorizonErrors]:
    """Forecasts for every window of ``stage`` and their masked errors, outside a Trainer.

    Returns:
        ``(predictions [W, H, N] in the data's units, accumulated errors)``.
    """
    model.eval()
    dataset = data.dataset(stage)
    errors = MaskedHorizonErrors(dataset.horizon, data.series.missing_value)
    preds = []
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        pred = model(x)
        errors.update(pred, y)
        preds.append(pred)
    return torch.cat(preds), errors

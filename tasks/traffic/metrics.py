r"""Masked MAE / RMSE / MAPE per horizon, with missing targets (== ``null_value``) ignored.

Errors are pooled over every observed entry of every batch before dividing, so a batch with no
observed target adds nothing (it never counts as zero error), and RMSE is the root of the pooled
mean square, not a mean of batch RMSEs:

.. math::
    \mathrm{MAE}_h = \frac{\sum_{b,n} m_{bhn} |\hat y_{bhn} - y_{bhn}|}{\sum_{b,n} m_{bhn}},\qquad
    m_{bhn} = [y_{bhn} \ne \text{null}]
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric


def masked_mae_loss(pred: Tensor, target: Tensor, null_value: float = 0.0) -> tuple[Tensor, int]:
    """Mean absolute error over observed targets, and how many there were.

    With no observed target the loss is a zero that still has a graph (so an optimiser step is a
    no-op) and the count is 0, which callers use to skip logging it.

    Shapes:
        ``pred, target: [B, H, N]``.
    """
    mask = target != null_value
    count = int(mask.sum())
    if count == 0:
        return (pred * 0.0).sum(), 0
    return (pred - target).abs()[mask].mean(), count


class MaskedHorizonErrors(Metric):
    """Accumulates masked absolute, squared and percentage errors per horizon step.

    Args:
        horizon: number of output steps H.
        null_value: targets equal to it are missing.

    Example:
        >>> m = MaskedHorizonErrors(horizon=2)
        >>> m.update(torch.tensor([[[1.0, 5.0], [2.0, 2.0]]]), torch.tensor([[[2.0, 0.0], [4.0, 2.0]]]))
        >>> m.compute()["mae"].tolist()
        [1.0, 1.0]
    """

    full_state_update = False

    def __init__(self, horizon: int, null_value: float = 0.0):
        super().__init__()
        self.horizon, self.null_value = horizon, null_value
        for name in ("abs_sum", "sq_sum", "ape_sum", "count"):
            self.add_state(name, default=torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch; ``pred, target: [B, H, N]`` in the data's units (de-normalised)."""
        if pred.shape != target.shape or pred.ndim != 3 or pred.shape[1] != self.horizon:
            raise ValueError(f"expected pred and target [B, {self.horizon}, N], got {list(pred.shape)} "
                             f"and {list(target.shape)}")
        mask = (target != self.null_value).double()
        err = (pred.double() - target.double()) * mask
        self.abs_sum += err.abs().sum(dim=(0, 2))
        self.sq_sum += err.square().sum(dim=(0, 2))
        denom = torch.where(mask.bool(), target.double().abs(), torch.ones_like(err))
        self.ape_sum += (err.abs() / denom).sum(dim=(0, 2))
        self.count += mask.sum(dim=(0, 2))

    def compute(self) -> dict[str, Tensor]:
        """Per-horizon ``mae``, ``rmse``, ``mape`` (percent), each ``[H]``; NaN where nothing was observed."""
        count = torch.where(self.count > 0, self.count, torch.full_like(self.count, math.nan))
        return {"mae": self.abs_sum / count, "rmse": (self.sq_sum / count).sqrt(),
                "mape": 100.0 * self.ape_sum / count}

    def summary(self, first: int, last: int) -> dict[str, float]:
        """Errors pooled over horizon steps ``first..last`` (1-based, inclusive)."""
        if not 1 <= first <= last <= self.horizon:
            raise ValueError(f"horizon range {first}..{last} is outside 1..{self.horizon}")
        part = slice(first - 1, last)
        count = float(self.count[part].sum())
        if count == 0:
            return {"mae": math.nan, "rmse": math.nan, "mape": math.nan}
        return {"mae": float(self.abs_sum[part].sum()) / count,
                "rmse": math.sqrt(float(self.sq_sum[part].sum()) / count),
                "mape": 100.0 * float(self.ape_sum[part].sum()) / count}


def horizon_report(errors: MaskedHorizonErrors, interval_minutes: float = 5.0) -> dict[str, dict[str, float]]:
    """The rows of the field's table: single steps (3, 6, 12, 18, 24 where present), all-step
    average, and the long-term average of steps 13..H when H > 12.

    Returns:
        ``{row label: {"mae", "rmse", "mape"}}``, e.g. ``"h12 (60 min)"``, ``"avg 1-24"``.
    """
    horizon = errors.horizon
    rows = {}
    for h in (3, 6, 12, 18, 24):
        if h <= horizon:
            rows[f"h{h} ({h * interval_minutes:g} min)"] = errors.summary(h, h)
    rows[f"avg 1-{horizon}"] = errors.summary(1, horizon)
    if horizon > 12:
        rows[f"avg 13-{horizon}"] = errors.summary(13, horizon)
    return rows

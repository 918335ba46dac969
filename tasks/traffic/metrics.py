r"""Masked MAE / RMSE / MAPE per horizon, with missing targets (== ``null_value``) ignored.

With ``null_value=None`` nothing is missing (count data, where 0 is a real count); MAPE then
skips targets equal to 0, where it is undefined (PM-DMNet's ``mape_thresh = 0``).

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


def observed(target: Tensor, null_value: float | None) -> Tensor:
    """Bool mask of the targets that are not missing (all of them for ``null_value=None``)."""
    if null_value is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != null_value


def masked_mae_loss(pred: Tensor, target: Tensor, null_value: float | None = 0.0) -> tuple[Tensor, int]:
    """Mean absolute error over observed targets, and how many there were.

    With no observed target the loss is a zero that still has a graph (so an optimiser step is a
    no-op) and the count is 0, which callers use to skip logging it.

    Shapes:
        ``pred, target: [B, H, N]``.
    """
    mask = observed(target, null_value)
    count = int(mask.sum())
    if count == 0:
        return (pred * 0.0).sum(), 0
    # a masked sum, not pred[mask]: boolean indexing gathers a copy and scatters its gradient back
    return torch.where(mask, (pred - target).abs(), 0.0).sum() / count, count


class MaskedHorizonErrors(Metric):
    """Accumulates masked absolute, squared and percentage errors per horizon step.

    Args:
        horizon: number of output steps H.
        null_value: targets equal to it are missing; ``None``: none is.

    Example:
        >>> m = MaskedHorizonErrors(horizon=2)
        >>> m.update(torch.tensor([[[1.0, 5.0], [2.0, 2.0]]]), torch.tensor([[[2.0, 0.0], [4.0, 2.0]]]))
        >>> m.compute()["mae"].tolist()
        [1.0, 1.0]
    """

    full_state_update = False

    def __init__(self, horizon: int, null_value: float | None = 0.0):
        super().__init__()
        self.horizon, self.null_value = horizon, null_value
        for name in ("abs_sum", "sq_sum", "ape_sum", "count", "ape_count"):
            self.add_state(name, default=torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch; ``pred, target: [B, H, N]`` in the data's units (de-normalised)."""
        if pred.shape != target.shape or pred.ndim != 3 or pred.shape[1] != self.horizon:
            raise ValueError(f"expected pred and target [B, {self.horizon}, N], got {list(pred.shape)} "
                             f"and {list(target.shape)}")
        mask = observed(target, self.null_value).double()
        err = (pred.double() - target.double()) * mask
        self.abs_sum += err.abs().sum(dim=(0, 2))
        self.sq_sum += err.square().sum(dim=(0, 2))
        ape = mask.bool() & (target != 0)
        denom = torch.where(ape, target.double().abs(), torch.ones_like(err))
        self.ape_sum += torch.where(ape, err.abs() / denom, torch.zeros_like(err)).sum(dim=(0, 2))
        self.ape_count += ape.sum(dim=(0, 2))
        self.count += mask.sum(dim=(0, 2))

    def compute(self) -> dict[str, Tensor]:
        """Per-horizon ``mae``, ``rmse``, ``mape`` (percent), each ``[H]``; NaN where nothing was observed."""
        count = torch.where(self.count > 0, self.count, torch.full_like(self.count, math.nan))
        ape_count = torch.where(self.ape_count > 0, self.ape_count, torch.full_like(self.count, math.nan))
        return {"mae": self.abs_sum / count, "rmse": (self.sq_sum / count).sqrt(),
                "mape": 100.0 * self.ape_sum / ape_count}

    def summary(self, first: int, last: int) -> dict[str, float]:
        """Errors pooled over horizon steps ``first..last`` (1-based, inclusive)."""
        if not 1 <= first <= last <= self.horizon:
            raise ValueError(f"horizon range {first}..{last} is outside 1..{self.horizon}")
        part = slice(first - 1, last)
        count, ape_count = float(self.count[part].sum()), float(self.ape_count[part].sum())
        if count == 0:
            return {"mae": math.nan, "rmse": math.nan, "mape": math.nan}
        return {"mae": float(self.abs_sum[part].sum()) / count,
                "rmse": math.sqrt(float(self.sq_sum[part].sum()) / count),
                "mape": 100.0 * float(self.ape_sum[part].sum()) / ape_count if ape_count else math.nan}


def step_label(step: int, interval_minutes: float) -> str:
    """``h12 (60 min)`` at 5-minute data, ``h6 (6 h)`` at hourly: a horizon step and its lead time."""
    minutes = step * interval_minutes
    return f"h{step} ({minutes:g} min)" if interval_minutes < 60 else f"h{step} ({minutes / 60:g} h)"


def long_range(horizon: int) -> tuple[int, int] | None:
    """The long-horizon half, steps ``H/2 + 1 .. H`` (13-24 of the field's 24 steps), when H >= 4."""
    return (horizon // 2 + 1, horizon) if horizon >= 4 else None


def horizon_report(errors: MaskedHorizonErrors, interval_minutes: float = 5.0) -> dict[str, dict[str, float]]:
    """The rows of the field's table: single steps (3, 6, 12, 18, 24 where present, and the last),
    labelled with their lead time, the all-step average, and the long-horizon average of the
    second half of the steps (:func:`long_range`).

    Returns:
        ``{row label: {"mae", "rmse", "mape"}}``, e.g. ``"h12 (60 min)"``, ``"avg 1-24"``, ``"avg 13-24"``.
    """
    horizon = errors.horizon
    rows = {}
    for h in sorted({h for h in (3, 6, 12, 18, 24) if h <= horizon} | {horizon}):
        rows[step_label(h, interval_minutes)] = errors.summary(h, h)
    rows[f"avg 1-{horizon}"] = errors.summary(1, horizon)
    far = long_range(horizon)
    if far is not None:
        rows[f"avg {far[0]}-{far[1]}"] = errors.summary(*far)
    return rows

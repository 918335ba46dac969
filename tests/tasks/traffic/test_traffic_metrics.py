"""Masked metrics: zeros are missing, pooling is over observed entries, empty batches add nothing."""
import math

import pytest
import torch

from graphcore.tasks.traffic.metrics import MaskedHorizonErrors, horizon_report, masked_mae_loss


def test_zeros_in_the_target_are_ignored():
    pred = torch.tensor([[[10.0, 99.0, 30.0]]])
    target = torch.tensor([[[12.0, 0.0, 27.0]]])
    errors = MaskedHorizonErrors(horizon=1)
    errors.update(pred, target)
    values = errors.compute()
    assert values["mae"].item() == pytest.approx(2.5)
    assert values["rmse"].item() == pytest.approx(math.sqrt((4 + 9) / 2))
    assert values["mape"].item() == pytest.approx(100 * (2 / 12 + 3 / 27) / 2)
    loss, count = masked_mae_loss(pred, target)
    assert loss.item() == pytest.approx(2.5) and count == 2


def test_fully_missing_batch_does_not_count_as_zero_error():
    errors = MaskedHorizonErrors(horizon=2)
    errors.update(torch.full((1, 2, 3), 5.0), torch.full((1, 2, 3), 7.0))
    errors.update(torch.full((4, 2, 3), 5.0), torch.zeros(4, 2, 3))  # nothing observed
    assert errors.compute()["mae"].tolist() == [2.0, 2.0]
    empty = MaskedHorizonErrors(horizon=2)
    empty.update(torch.ones(1, 2, 3), torch.zeros(1, 2, 3))
    assert torch.isnan(empty.compute()["mae"]).all()
    assert math.isnan(empty.summary(1, 2)["mae"])
    pred = torch.ones(1, 2, 3, requires_grad=True)
    loss, count = masked_mae_loss(pred, torch.zeros(1, 2, 3))
    loss.backward()
    assert count == 0 and loss.item() == 0.0 and (pred.grad == 0).all()


def test_rmse_pools_squares_over_batches_and_horizons():
    errors = MaskedHorizonErrors(horizon=2)
    errors.update(torch.tensor([[[1.0], [1.0]]]), torch.tensor([[[2.0], [4.0]]]))   # errors 1, 3
    errors.update(torch.tensor([[[1.0], [1.0]]]), torch.tensor([[[6.0], [1.5]]]))   # errors 5, 0.5
    per_step = errors.compute()
    torch.testing.assert_close(per_step["rmse"], torch.tensor([math.sqrt(26 / 2), math.sqrt(9.25 / 2)], dtype=torch.float64))
    overall = errors.summary(1, 2)
    assert overall["rmse"] == pytest.approx(math.sqrt((1 + 9 + 25 + 0.25) / 4))
    assert overall["mae"] == pytest.approx((1 + 3 + 5 + 0.5) / 4)


def test_horizon_report_rows_and_bad_input():
    errors = MaskedHorizonErrors(horizon=24)
    target = torch.arange(1, 25, dtype=torch.float32).reshape(1, 24, 1)
    errors.update(torch.zeros_like(target), target)        # |error| at step h = h
    rows = horizon_report(errors)
    assert list(rows) == ["h3 (15 min)", "h6 (30 min)", "h12 (60 min)", "h18 (90 min)", "h24 (120 min)",
                          "avg 1-24", "avg 13-24"]
    assert rows["h12 (60 min)"]["mae"] == pytest.approx(12)
    assert rows["avg 13-24"]["mae"] == pytest.approx(18.5)
    with pytest.raises(ValueError, match=r"expected pred and target \[B, 24, N\]"):
        errors.update(torch.zeros(1, 12, 1), torch.zeros(1, 12, 1))
    with pytest.raises(ValueError, match="outside 1..24"):
        errors.summary(0, 30)


@pytest.mark.parametrize("null_value", [0.0, None])
def test_masked_loss_and_its_gradient_equal_the_mean_over_observed_entries(null_value):
    torch.manual_seed(0)
    target = torch.rand(4, 6, 9) * 60
    target[torch.rand(target.shape) < 0.3] = 0.0
    pred = (torch.rand(4, 6, 9) * 60).requires_grad_()
    loss, count = masked_mae_loss(pred, target, null_value)
    loss.backward()
    reference = pred.detach().clone().requires_grad_()
    mask = target != 0 if null_value == 0.0 else torch.ones_like(target, dtype=torch.bool)
    expected = (reference - target).abs()[mask].mean()
    expected.backward()
    assert count == int(mask.sum())
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(pred.grad, reference.grad)

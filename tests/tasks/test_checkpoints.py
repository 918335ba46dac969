"""``last.ckpt`` holds the final model, whatever epoch was best (tasks/checkpoints.py)."""
import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from graphcore.tasks.checkpoints import LastIsFinalCheckpoint, checkpoint_defaults, checkpoint_summary


class EarlyBest(L.LightningModule):
    """A linear model whose validation score is best (lowest) in epoch 0 and worse every epoch after."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        self.log("val/score", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    x = torch.randn(16, 3)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def fit(tmp_path, callback, **trainer_args) -> tuple[L.Trainer, EarlyBest]:
    model = EarlyBest()
    trainer = L.Trainer(default_root_dir=tmp_path, callbacks=[callback], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, **trainer_args)
    trainer.fit(model, loader(), loader())
    return trainer, model


def assert_holds_final_model(path, trainer, model):
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["global_step"] == trainer.global_step
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ckpt["state_dict"][name], value, rtol=0, atol=0)


@pytest.mark.parametrize("save_last", [True, "link"])
def test_last_is_the_final_model_when_the_best_is_early(tmp_path, save_last):
    callback = LastIsFinalCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min", save_last=save_last)
    trainer, model = fit(tmp_path, callback, max_epochs=3)
    assert callback.best_model_path.endswith("epoch=0-step=4.ckpt")
    assert torch.load(callback.last_model_path, weights_only=False)["epoch"] == 2
    assert_holds_final_model(tmp_path / "last.ckpt", trainer, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0-step=4.ckpt", "last.ckpt"]


def test_last_is_written_when_max_steps_stops_between_validations(tmp_path):
    callback = LastIsFinalCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min", save_last=True)
    trainer, model = fit(tmp_path, callback, max_steps=6)            # 4 batches per epoch: stops mid-epoch 1
    assert trainer.global_step == 6
    assert_holds_final_model(tmp_path / "last.ckpt", trainer, model)


def test_without_a_monitor_only_last_is_kept(tmp_path):
    callback = LastIsFinalCheckpoint(dirpath=tmp_path, **checkpoint_defaults(None))
    trainer, model = fit(tmp_path, callback, max_epochs=2)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert_holds_final_model(tmp_path / "last.ckpt", trainer, model)
    assert checkpoint_summary(trainer) == [f"last checkpoint: {tmp_path / 'last.ckpt'} (final model, step 8)"]


def test_summary_names_the_best_and_the_last_file(tmp_path):
    callback = LastIsFinalCheckpoint(dirpath=tmp_path, **checkpoint_defaults("val/score", "min", "e{epoch}"))
    trainer, _ = fit(tmp_path, callback, max_epochs=2)
    assert checkpoint_summary(trainer) == [f"best checkpoint: {tmp_path / 'e0.ckpt'} (val/score 0.0000)",
                                           f"last checkpoint: {tmp_path / 'last.ckpt'} (final model, step 8)"]

r"""The checkpoint callback of every task: best model by a validation metric, and a true ``last.ckpt``.

Why a subclass: from Lightning 2.6, :class:`~lightning.pytorch.callbacks.ModelCheckpoint` writes
``last.ckpt`` at the end of an epoch only when a top-k checkpoint was written at the same step
(``on_validation_end``/``on_train_epoch_end`` test ``_last_global_step_saved ==
trainer.global_step``), and ``on_train_end`` adds one only when no checkpoint at all has been
saved (``not self._last_checkpoint_saved``). With a monitored metric whose best comes early,
``last.ckpt`` therefore holds the last *improvement* (epoch 2 of 50 in rgnn), not the final model;
``save_last="link"`` links to that same stale file. :class:`LastIsFinalCheckpoint` refreshes
``last.ckpt`` after every epoch it did not write, and at the end of training, so it is always the
newest state (and a run killed mid-way keeps its latest epoch).

:func:`add_checkpoint_arguments` puts the callback under ``--checkpoint.*`` of a LightningCLI with
the task's defaults; :func:`checkpoint_summary` is the lines ``fit`` prints at the end.
"""
from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn


class LastIsFinalCheckpoint(ModelCheckpoint):
    """:class:`~lightning.pytorch.callbacks.ModelCheckpoint` whose ``last.ckpt`` is the newest state.

    Same arguments as ``ModelCheckpoint``; with ``save_last`` set, ``last.ckpt`` is rewritten at
    the end of every epoch (and of training) whose state no checkpoint holds yet.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._last_step_in_last: int | None = None   # global step that last.ckpt holds

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        stale_link = self.save_last == "link" and self._last_global_step_saved != trainer.global_step
        if stale_link:    # the newest top-k file is older than this step: write a file, not a link
            self.save_last = True
        try:
            super()._save_last_checkpoint(trainer, monitor_candidates)
        finally:
            if stale_link:
                self.save_last = "link"
        self._last_step_in_last = trainer.global_step

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if (not self.save_last or trainer.fast_dev_run or trainer.sanity_checking
                or trainer.state.fn != TrainerFn.FITTING or trainer.global_step == 0
                or self._last_step_in_last == trainer.global_step):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._refresh_last(trainer)      # e.g. max_steps stopped training between validations


def checkpoint_defaults(monitor: str | None, mode: str = "min", filename: str | None = None) -> dict[str, Any]:
    """``--checkpoint.*`` defaults: keep the best model by ``monitor`` and a ``last.ckpt``.

    ``monitor=None`` keeps only ``last.ckpt`` (``save_top_k=0``): a task without a selection
    metric has nothing to call best.
    """
    if monitor is None:
        return {"save_last": True, "save_top_k": 0}
    defaults: dict[str, Any] = {"monitor": monitor, "mode": mode, "save_last": True}
    if filename:
        defaults.update(filename=filename, auto_insert_metric_name=False)
    return defaults


def add_checkpoint_arguments(parser: Any, defaults: dict[str, Any]) -> None:
    """Add :class:`LastIsFinalCheckpoint` to a LightningCLI parser as ``--checkpoint.*``."""
    parser.add_lightning_class_args(LastIsFinalCheckpoint, "checkpoint")
    parser.set_defaults({f"checkpoint.{k}": v for k, v in defaults.items()})


def checkpoint_summary(trainer: L.Trainer) -> list[str]:
    """Lines naming the file with the best model (and its score) and the file with the last one."""
    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint):
        return []
    lines = []
    if callback.best_model_path and callback.monitor:
        score = callback.best_model_score
        lines.append(f"best checkpoint: {callback.best_model_path} ({callback.monitor} {float(score):.4f})")
    if callback.last_model_path:
        lines.append(f"last checkpoint: {callback.last_model_path} (final model, step {trainer.global_step})")
    return lines


__all__ = ["LastIsFinalCheckpoint", "add_checkpoint_arguments", "checkpoint_defaults", "checkpoint_summary"]

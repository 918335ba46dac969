"""``python -m tasks.traffic fit|validate|test|predict`` (LightningCLI) and ``... plot``.

``fit`` with no arguments trains the semi-adaptive, 10-virtual-node model on the bundled
Los-loop, then evaluates its best checkpoint on the test split beside the persistence and
time-of-day floors (``--test_after_fit false`` skips that). ``predict --ckpt_path RUN.ckpt``
writes the test windows' forecasts to ``predictions.npz`` (``--predictions.path`` elsewhere).
User errors print one line and exit with code 2 (:mod:`tasks.cli_errors`; ``--debug`` shows
the traceback).
"""
from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from jsonargparse import lazy_instance

from graphcore.tasks.checkpoints import add_checkpoint_arguments, checkpoint_defaults, checkpoint_summary
from graphcore.tasks.cli_errors import guarded
from graphcore.tasks.predictions import add_prediction_arguments
from graphcore.tasks.traffic.data import TrafficDataModule
from graphcore.tasks.traffic.module import TrafficForecaster

TRAINER_DEFAULTS = {
    "max_epochs": 12,
    "gradient_clip_val": 5.0,
    "logger": lazy_instance(CSVLogger, save_dir="lightning_logs", name="traffic"),
}
CHECKPOINT_DEFAULTS = checkpoint_defaults("val/mae", "min", "epoch{epoch:02d}-val_mae{val/mae:.3f}")


class TrafficCLI(LightningCLI):
    """LightningCLI with a test of the best checkpoint after ``fit``."""

    def add_arguments_to_parser(self, parser) -> None:
        add_checkpoint_arguments(parser, CHECKPOINT_DEFAULTS)
        add_prediction_arguments(parser)
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, evaluate the best checkpoint on the test split (fit only)")

    def after_fit(self) -> None:
        trainer = self.trainer
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        if best:
            horizon = self.datamodule.horizon
            print(f"\nbest validation masked MAE (mean of {horizon} steps): "
                  f"{float(callback.best_model_score):.3f} {self.datamodule.series.unit}")
        for line in checkpoint_summary(trainer):
            print(line)
        if self.config.fit.test_after_fit:
            trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        if best:
            print(f"pictures: python -m tasks.traffic plot --ckpt_path {best}")


@guarded
def main(args: Sequence[str]) -> None:
    """Entry point under the CLI error policy; ``args`` defaults to ``sys.argv[1:]``."""
    if args[:1] == ["plot"]:
        from graphcore.tasks.traffic.plot_command import run_plot_cli
        run_plot_cli(args[1:])
        return
    TrafficCLI(TrafficForecaster, TrafficDataModule, args=args, trainer_defaults=TRAINER_DEFAULTS,
               seed_everything_default=0, save_config_kwargs={"overwrite": True},
               parser_kwargs={"description": __doc__})

"""``python -m tasks.rgnn fit|validate|test|predict`` (LightningCLI).

``fit --data aifb --model rgcn`` trains the R-GCN on the bundled AIFB graph, saves a
checkpoint, then prints the test accuracy of the final model. ``--data NAME`` and
``--model NAME`` are shorthands for ``--data.name NAME`` and ``--model.model NAME``; a
per-dataset configuration is ``--config tasks/rgnn/configs/<data>_<model>.yaml``. ``fit`` keeps
the checkpoint with the best validation accuracy and ``last.ckpt``, the final model, and prints
both paths; ``predict --ckpt_path RUN.ckpt`` writes the test nodes' class probabilities to
``predictions.csv`` (``--predictions.path`` elsewhere). User errors print one line and exit with
code 2 (:mod:`tasks.cli_errors`; ``--debug`` shows the traceback).
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import lazy_instance
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from graphcore.tasks.checkpoints import add_checkpoint_arguments, checkpoint_defaults, checkpoint_summary
from graphcore.tasks.cli_errors import run_cli
from graphcore.tasks.predictions import add_prediction_arguments
from graphcore.tasks.rgnn.data import RGNNDataModule
from graphcore.tasks.rgnn.module import RGNNClassifier

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SHORTHANDS = {"--data": "--data.name", "--model": "--model.model"}
LINKED = ("num_nodes", "num_relations", "num_classes", "in_features")  # the graph's schema, data -> model
TRAINER_DEFAULTS = {
    "max_epochs": 50,
    "log_every_n_steps": 1,
    "logger": lazy_instance(CSVLogger, save_dir="lightning_logs", name="rgnn"),
}
CHECKPOINT_DEFAULTS = checkpoint_defaults("val/acc", "max", "epoch{epoch:02d}-val_acc{val/acc:.3f}")


def expand_shorthands(args: Sequence[str]) -> list[str]:
    """Rewrite ``--data aifb`` / ``--model=rgat`` into ``--data.name aifb`` / ``--model.model=rgat``.

    A value that is a configuration (a ``.yaml``/``.yml``/``.json`` path or an inline ``{...}``)
    is left alone, so ``--data config.yaml`` keeps LightningCLI's meaning.
    """
    def is_config(value: str) -> bool:
        return value.lstrip().startswith("{") or value.endswith((".yaml", ".yml", ".json"))

    out, i = [], 0
    while i < len(args):
        flag, sep, value = args[i].partition("=")
        if flag in SHORTHANDS and sep and not is_config(value):
            out.append(f"{SHORTHANDS[flag]}={value}")
        elif flag in SHORTHANDS and not sep and i + 1 < len(args) and not is_config(args[i + 1]):
            out += [SHORTHANDS[flag], args[i + 1]]
            i += 1
        else:
            out.append(args[i])
        i += 1
    return out


class RGNNCLI(LightningCLI):
    """LightningCLI that links the graph's schema into the model and tests after ``fit``."""

    def add_arguments_to_parser(self, parser) -> None:
        for name in LINKED:
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")
        add_checkpoint_arguments(parser, CHECKPOINT_DEFAULTS)
        add_prediction_arguments(parser)
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, print the test accuracy of the final model (fit only)")

    def after_fit(self) -> None:
        for line in checkpoint_summary(self.trainer):
            print(line)
        if self.config.fit.test_after_fit:
            self.trainer.test(self.model, datamodule=self.datamodule)


def main(args: Sequence[str] | None = None, **kwargs) -> RGNNCLI:
    """Entry point under the CLI error policy; ``args`` defaults to ``sys.argv[1:]``, ``kwargs``
    go to :class:`RGNNCLI`."""
    kwargs = {"trainer_defaults": TRAINER_DEFAULTS, "seed_everything_default": 0,
              "save_config_kwargs": {"overwrite": True}, "parser_kwargs": {"description": __doc__}, **kwargs}

    def build(argv: list[str]) -> RGNNCLI:
        with warnings.catch_warnings():  # the rewritten sys.argv is passed as args on purpose
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended",
                                    category=UserWarning)
            return RGNNCLI(RGNNClassifier, RGNNDataModule, args=expand_shorthands(argv), **kwargs)

    return run_cli(build, sys.argv[1:] if args is None else args)

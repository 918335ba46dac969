"""``python -m tasks.rgnn fit|validate|test|predict`` (LightningCLI).

``fit --data aifb --model rgcn`` trains the R-GCN on the bundled AIFB graph, saves a
checkpoint, then prints the test accuracy of the final model. ``--data NAME`` and
``--model NAME`` are shorthands for ``--data.name NAME`` and ``--model.model NAME``; a
per-dataset configuration is ``--config tasks/rgnn/configs/<data>_<model>.yaml``.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import lazy_instance
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from tasks.rgnn.data import RGNNDataModule
from tasks.rgnn.module import RGNNClassifier

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SHORTHANDS = {"--data": "--data.name", "--model": "--model.model"}
LINKED = ("num_nodes", "num_relations", "num_classes", "in_features")  # the graph's schema, data -> model
TRAINER_DEFAULTS = {
    "max_epochs": 50,
    "log_every_n_steps": 1,
    "logger": lazy_instance(CSVLogger, save_dir="lightning_logs", name="rgnn"),
}
CHECKPOINT_DEFAULTS = {"save_last": True, "monitor": "val/acc", "mode": "max",
                       "filename": "epoch{epoch:02d}-val_acc{val/acc:.3f}", "auto_insert_metric_name": False}


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
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, print the test accuracy of the final model (fit only)")

    def after_fit(self) -> None:
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.last_model_path:
            print(f"checkpoint: {callback.last_model_path}")
        if self.config.fit.test_after_fit:
            self.trainer.test(self.model, datamodule=self.datamodule)


def main(args: Sequence[str] | None = None, **kwargs) -> RGNNCLI:
    """Entry point; ``args`` defaults to ``sys.argv[1:]``, ``kwargs`` go to :class:`RGNNCLI`."""
    args = expand_shorthands(sys.argv[1:] if args is None else args)
    kwargs = {"trainer_defaults": TRAINER_DEFAULTS, "seed_everything_default": 0,
              "save_config_kwargs": {"overwrite": True}, "parser_kwargs": {"description": __doc__}, **kwargs}
    with warnings.catch_warnings():  # the rewritten sys.argv is passed as args on purpose
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
        return RGNNCLI(RGNNClassifier, RGNNDataModule, args=args, **kwargs)

r"""LightningModule: a classifier on MBAT document vectors.

A small MLP :math:`\hat y = W_2\,\mathrm{GELU}(W_1 x + b_1) + b_2` on unit vectors
:math:`x \in \mathbb R^D`, trained with cross-entropy; ``hidden=0`` gives a linear probe.
"""
from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from graphcore.tasks.cli_errors import UsageError


class VectorClassifier(L.LightningModule):
    """Classify document vectors.

    Args:
        in_dim: vector dimension :math:`D` (linked to the datamodule's ``dim`` by the CLI).
        num_classes: number of labels (linked to the datamodule's ``num_classes``).
        hidden: hidden width; 0 for a linear probe.
        dropout: dropout before the output layer.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    def __init__(self, in_dim: int = 4096, num_classes: int = 25, hidden: int = 256, dropout: float = 0.1,
                 lr: float = 3e-3, weight_decay: float = 1e-4):
        super().__init__()
        if in_dim < 1 or num_classes < 2 or hidden < 0:
            raise UsageError(f"VectorClassifier: need in_dim >= 1, num_classes >= 2, hidden >= 0; got {in_dim}, {num_classes}, {hidden}")
        self.save_hyperparameters()
        self.net = (nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
                    if hidden else nn.Linear(in_dim, num_classes))
        self.acc = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes, average="micro") for s in ("train", "val", "test")})

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, C]`` for vectors ``[B, D]``."""
        return self.net(x)

    def _common_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        acc = self.acc[f"{stage}_acc"]
        acc(logits, y)
        self.log(f"{stage}_loss", loss, prog_bar=stage != "train", batch_size=len(y))
        self.log(f"{stage}_acc", acc, prog_bar=True, on_epoch=True, on_step=False, batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._common_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._common_step(batch, "test")

    def predict_step(self, batch, batch_idx) -> dict:
        """One row per test record: its ``id``, true ``label`` and predicted class ``pred`` (as
        label strings), and the class probabilities ``prob`` ``[B, C]``."""
        x, y, rows = batch
        data = self.trainer.datamodule
        prob = self(x).softmax(-1)
        return {"id": [data.test_ids[i] for i in rows.tolist()], "label": [data.classes[i] for i in y.tolist()],
                "pred": [data.classes[i] for i in prob.argmax(-1).tolist()], "prob": prob}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

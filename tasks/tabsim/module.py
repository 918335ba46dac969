r"""The LightningModule of table similarity: losses, calibration on validation, metrics.

Losses: ``head="bce"`` trains the monotone head with binary cross-entropy on its logit;
``head="contrastive"`` trains the embedding distance :math:`d` with the paper's loss

.. math::
    \mathcal{L} = y\, d^2 + (1 - y) \max(0, m - d)^2 .

After every validation epoch of ``fit`` the calibration (Platt scaling) is fitted on the
validation logits and the threshold with the best validation macro-F1 is stored in the model, so
the checkpoint carries both (``validate`` reports the checkpoint's own calibration); ``test`` reports accuracy, macro-F1 and ranking metrics at that threshold.
The fitted :class:`~tasks.tabsim.encode.TableEncoder` travels in the checkpoint too.
"""
from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from graphcore.tasks.tabsim.data import PairBatch
from graphcore.tasks.tabsim.encode import TableEncoder
from graphcore.tasks.tabsim.metrics import best_threshold, binary_metrics, ranking_metrics
from graphcore.tasks.tabsim.model import TabSimNet


class TabSimModule(L.LightningModule):
    """Siamese table similarity (see :mod:`tasks.tabsim.model`).

    Args:
        vocab_size: word ids (linked to the data module's by the CLI).
        n_buckets: character n-gram hash buckets (linked).
        dim: embedding width.
        heads: attention heads of the content encoder.
        layers: axial attention blocks.
        max_rows: the content encoder's row cap (linked).
        max_cols: the content encoder's column cap (linked).
        head: ``"bce"`` (monotone MLP over similarity features) or ``"contrastive"`` (distance).
        use_lexical: give the ``"bce"`` head the TF-IDF/Jaccard pair features too.
        margin: margin :math:`m` of the contrastive loss (embeddings are unit vectors, so ``d <= 2``).
        lr: AdamW learning rate of the embedder.
        head_lr: AdamW learning rate of the Siamese head (a few parameters that must move far:
            the head starts as an equal-weight vote of its features), without weight decay.
        weight_decay: AdamW weight decay of the embedder.
        dropout: dropout on cell and caption vectors during training.
        use_learned: give the ``"bce"`` head the learned embedding cosines (``False``: ablation).
    """

    def __init__(self, vocab_size: int = 3000, n_buckets: int = 2048, dim: int = 32, heads: int = 2,
                 layers: int = 1, max_rows: int = 100, max_cols: int = 32,
                 head: Literal["bce", "contrastive"] = "bce", use_lexical: bool = True, margin: float = 1.0,
                 lr: float = 1e-4, head_lr: float = 0.1, weight_decay: float = 1e-2, dropout: float = 0.1,
                 use_learned: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.net = TabSimNet(vocab_size, n_buckets, dim, heads, layers, max_rows, max_cols, head, use_lexical,
                             dropout, use_learned)
        self.encoder: TableEncoder | None = None
        self._outputs: list[tuple[Tensor, Tensor, list[str]]] = []

    def attach(self, encoder: TableEncoder) -> None:
        """Use ``encoder`` (and save it in checkpoints); it must fit the network's sizes.

        Raises:
            ValueError: the encoder has more word ids or positions, or other n-gram buckets.
        """
        hp = self.hparams
        if (encoder.vocab_size > hp.vocab_size or encoder.n_buckets != hp.n_buckets
                or encoder.max_rows > hp.max_rows or encoder.max_cols > hp.max_cols):
            raise ValueError(
                f"TabSimModule: the encoder (vocab {encoder.vocab_size}, buckets {encoder.n_buckets}, cap "
                f"{encoder.max_rows}x{encoder.max_cols}) does not fit the model (vocab {hp.vocab_size}, buckets "
                f"{hp.n_buckets}, cap {hp.max_rows}x{hp.max_cols}); give data and model the same sizes")
        self.encoder = encoder

    def _datamodule(self) -> L.LightningDataModule | None:
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def setup(self, stage: str) -> None:
        datamodule = self._datamodule()
        if getattr(datamodule, "encoder", None) is not None:
            self.attach(datamodule.encoder)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """BCE on logits, or the contrastive loss on distances ``-logits``."""
        if self.hparams.head == "bce":
            return F.binary_cross_entropy_with_logits(logits, labels)
        d = -logits
        return (labels * d.square() + (1 - labels) * F.relu(self.hparams.margin - d).square()).mean()

    def _common_step(self, batch: PairBatch, stage: str) -> Tensor:
        logits = self.net(batch.tables, batch.a, batch.b, batch.lexical)
        loss = self.loss(logits, batch.labels)
        self.log(f"{stage}_loss", loss, batch_size=len(batch.a), prog_bar=stage != "test")
        if stage != "train":
            self._outputs.append((logits.detach(), batch.labels, batch.queries))
        return loss

    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "val")

    def test_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "test")

    def predict_step(self, batch: PairBatch, batch_idx: int) -> dict[str, Any]:
        """The batch's pairs (``pair_id``, ``table_a``, ``table_b``), their calibrated ``score`` in
        [0, 1] and the verdict ``similar`` (score >= the threshold chosen on validation)."""
        scores = self.net.calibration(self.net(batch.tables, batch.a, batch.b, batch.lexical))
        return {"pair_id": batch.pair_ids, "table_a": batch.queries, "table_b": batch.candidates, "score": scores,
                "similar": (scores >= self.net.calibration.threshold).long()}

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def _epoch_metrics(self, stage: str) -> None:
        logits = torch.cat([o[0] for o in self._outputs]).float().cpu()
        labels = torch.cat([o[1] for o in self._outputs]).cpu()
        queries = [q for o in self._outputs for q in o[2]]
        self._outputs = []
        calib = self.net.calibration
        refit = stage == "val" and self.trainer.state.fn == TrainerFn.FITTING
        if refit:       # `validate` and `test` evaluate the checkpoint as saved, calibration included
            calib.fit(logits, labels)
        scores = calib(logits).numpy()
        if refit:
            calib.threshold.fill_(best_threshold(scores, labels.numpy()))
        metrics = binary_metrics(scores, labels.numpy(), float(calib.threshold))
        ranking = ranking_metrics(scores, labels.numpy(), queries)
        if ranking["n_queries"]:
            metrics.update({k: v for k, v in ranking.items() if k != "n_queries"})
        for k, v in metrics.items():
            self.log(f"{stage}_{k}", float(v), prog_bar=stage == "val" and k in ("macro_f1", "map"))

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        head = [p for n, p in self.net.named_parameters() if not n.startswith("embedder.")]
        return torch.optim.AdamW([{"params": self.net.embedder.parameters(), "lr": hp.lr},
                                  {"params": head, "lr": hp.head_lr, "weight_decay": 0.0}],
                                 weight_decay=hp.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.encoder is not None:
            checkpoint["tabsim_encoder"] = self.encoder.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the encoder, and make the data module (if any) encode with it."""
        if "tabsim_encoder" in checkpoint:
            self.encoder = TableEncoder.from_state(checkpoint["tabsim_encoder"])
            datamodule = self._datamodule()
            if hasattr(datamodule, "use_encoder"):
                datamodule.use_encoder(self.encoder)


"""LightningModule: entity classification (full graph or sampled batches) with a cross-entropy on the target nodes."""
from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

import graphcore
from graphcore.graph import HeteroGraph
from graphcore.sampling import SampledGraph
from graphcore.tasks.rgnn.data import STAGES, GraphBatch
from graphcore.tasks.rgnn.model import RGNN, ModelName


class RGNNClassifier(L.LightningModule):
    """Trains :class:`~tasks.rgnn.model.RGNN` on the labelled target nodes of one graph.

    Every step runs the network over its batch (the whole graph, or a sampled batch) and scores
    only the split's target nodes: cross-entropy on the training nodes, accuracy (torchmetrics)
    on every split. A whole-graph batch with a ``chunk_size`` (mini-batch training's default
    evaluation) runs layer by layer, :meth:`~tasks.rgnn.model.RGNN.layerwise`: the same logits.
    The graph's schema (``num_nodes``, ``num_relations``, ``num_classes``, ``in_features``)
    comes from :class:`~tasks.rgnn.data.RGNNDataModule` (linked by the CLI) and is saved with
    the other hyper-parameters, so ``load_from_checkpoint`` rebuilds the network alone.
    The defaults are the R-GCN on AIFB chosen on validation (``configs/aifb_rgcn.yaml``).

    Args:
        num_nodes: nodes per type, in the graph's order.
        num_relations: relations, inverse ones included.
        num_classes: classes of the target nodes.
        in_features: feature width of the node types that have features.
        model: ``rgcn``, ``rgat`` or ``hgt``.
        hidden: width of the embeddings and hidden layers.
        num_layers: relational layers; the last one outputs the classes.
        num_bases: ``rgcn`` basis decomposition (None: one full matrix per relation).
        aggr: ``rgcn`` neighbourhood normalisation, ``mean`` per relation or ``sum``.
        self_loop: ``rgcn`` root weight.
        heads: attention heads of the hidden ``rgat``/``hgt`` layers.
        dropout: dropout after each hidden layer.
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty on all parameters.
        compile: run the relational layers through :func:`graphcore.compile` (same parameters
            and ``state_dict``; code it cannot compile falls back to eager with a warning).
        attention: ``rgat`` attention normalisation, ``all`` incoming edges or within each ``relation``.
        sparse_embeddings: sparse gradients for the featureless types' embeddings, trained by
            ``SparseAdam`` (no weight decay) while the rest uses Adam: on a large graph a
            mini-batch step then touches only the batch's embedding rows, not the whole table.
    """

    def __init__(self, num_nodes: dict[str, int], num_relations: int, num_classes: int,
                 in_features: dict[str, int] | None = None, model: ModelName = "rgcn", hidden: int = 32,
                 num_layers: int = 2, num_bases: int | None = None, aggr: Literal["sum", "mean"] = "mean",
                 self_loop: bool = True, heads: int = 1, dropout: float = 0.0, lr: float = 0.01,
                 weight_decay: float = 5e-4, compile: bool = False, sparse_embeddings: bool = False,
                 attention: Literal["all", "relation"] = "all"):
        super().__init__()
        self.save_hyperparameters()
        self.net = RGNN(num_nodes, num_relations, num_classes, in_features=in_features, model=model, hidden=hidden,
                        num_layers=num_layers, num_bases=num_bases, aggr=aggr, self_loop=self_loop, heads=heads,
                        dropout=dropout, sparse_embeddings=sparse_embeddings, attention=attention)
        if compile:
            self.net.stack = graphcore.compile(self.net.stack, fallback="eager")
        for stage in STAGES:  # attributes, not a ModuleDict: "train" would shadow nn.Module.train
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))

    def forward(self, g: HeteroGraph) -> Tensor:
        """``[N, num_classes]`` logits of every node of ``g``."""
        return self.net(g)

    def logits(self, batch: GraphBatch) -> Tensor:
        """``[B, num_classes]`` logits of the batch's target nodes: layer-wise when the batch says
        so, on hop-trimmed graphs for the seeds of a sampled batch (:meth:`RGNN.seed_logits`)."""
        if batch.chunk_size is not None:
            return self.net.layerwise(batch.graph, batch.index, batch.chunk_size)
        g = batch.graph
        if isinstance(g, SampledGraph) and (g.num_hops or 0) >= len(self.net.stack.layers) and \
                torch.equal(batch.index, g.seed_index):
            return self.net.seed_logits(g)
        return self(batch.graph).index_select(0, batch.index)

    def _common_step(self, batch: GraphBatch, stage: str) -> Tensor:
        logits = self.logits(batch)
        loss = F.cross_entropy(logits, batch.y)
        accuracy = getattr(self, f"{stage}_acc")
        accuracy(logits, batch.y)
        n = len(batch)
        self.log(f"{stage}/loss", loss, batch_size=n, prog_bar=stage == "train")
        self.log(f"{stage}/acc", accuracy, batch_size=n, prog_bar=stage != "test")
        return loss

    def training_step(self, batch: GraphBatch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: GraphBatch, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: GraphBatch, batch_idx: int) -> None:
        self._common_step(batch, "test")

    def predict_step(self, batch: GraphBatch, batch_idx: int) -> dict[str, Tensor]:
        """The batch's target nodes: ``node`` (id within the target node type, as in the
        dataset's splits), predicted class ``pred`` and class probabilities ``prob`` ``[B, C]``."""
        logits = self.logits(batch)
        return {"node": batch.node, "pred": logits.argmax(-1), "prob": logits.softmax(-1)}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if not hp.sparse_embeddings:
            return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        sparse = {id(m.weight) for m in self.net.input.inputs if isinstance(m, torch.nn.Embedding)}
        params = list(self.parameters())
        return DenseSparseAdam([p for p in params if id(p) not in sparse], [p for p in params if id(p) in sparse],
                               lr=hp.lr, weight_decay=hp.weight_decay)


class DenseSparseAdam(torch.optim.Optimizer):
    """Adam for the dense parameters and ``SparseAdam`` for the sparse-gradient embeddings, as one
    optimiser (Lightning's automatic optimisation takes one)."""

    def __init__(self, dense: list[torch.nn.Parameter], sparse: list[torch.nn.Parameter], *, lr: float,
                 weight_decay: float):
        self.dense = torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay)
        self.sparse = torch.optim.SparseAdam(sparse, lr=lr) if sparse else None
        super().__init__(dense + sparse, {"lr": lr})
        self.param_groups = self.dense.param_groups + (self.sparse.param_groups if self.sparse else [])

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.dense.step()
        if self.sparse is not None:
            self.sparse.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.dense.zero_grad(set_to_none)
        if self.sparse is not None:
            self.sparse.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict() if self.sparse else None}

    def load_state_dict(self, state_dict: dict) -> None:
        self.dense.load_state_dict(state_dict["dense"])
        if self.sparse is not None:
            self.sparse.load_state_dict(state_dict["sparse"])

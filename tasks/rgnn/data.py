"""LightningDataModule for full-graph entity classification on a heterogeneous graph.

The whole graph is one batch: every epoch runs the model over all nodes and reads out the
target nodes of the stage's split. Inverse relations are added (``add_reverse_edges``), as
R-GCN, DGL and PyG's ``ToUndirected`` do, so messages flow both ways along each relation.

**Validation split.** AIFB and MUTAG publish only train and test. When a dataset has no
``valid_idx``, a *stratified* validation split of ``valid_fraction`` of the training nodes
(per class, rounded, at least one node for every class with two or more) is carved out of
train with a fixed ``split_seed``; those nodes are then not trained on. With
``valid_fraction=0`` the model trains on the whole training split and "validation" reports
accuracy on the training nodes (the R-GCN paper's final protocol: tune on a 20 % split, then
retrain on all of train for a fixed number of epochs). The test split is never used to choose
anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from graphcore.datasets.hetero import HeteroDataset, load
from graphcore.graph import HeteroGraph
from graphcore.tasks.cli_errors import UsageError

STAGES = ("train", "val", "test")


@dataclass
class GraphBatch:
    """The whole graph plus the labelled target nodes of one split.

    Attributes:
        graph: the graph (inverse relations included); node features in ``graph.x``.
        index: ``[B]`` *global* ids of the split's target nodes.
        y: ``[B]`` their class ids.
    """

    graph: HeteroGraph
    index: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.index.numel())


def stratified_split(idx: Tensor, labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split ``idx`` into (kept, held-out) with ``fraction`` of every class held out.

    Each class with ``n >= 2`` nodes gives ``max(1, round(fraction * n))`` nodes (and keeps at
    least one); the choice depends only on ``seed``. Both parts come back sorted.
    """
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"valid_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return idx.sort().values, idx.new_zeros(0)
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in labels[idx].unique().tolist():
        members = idx[labels[idx] == c]
        if members.numel() < 2:
            continue
        n = min(max(1, round(fraction * members.numel())), members.numel() - 1)
        held.append(members[torch.randperm(members.numel(), generator=gen)[:n]])
    held_out = torch.cat(held).sort().values
    kept = idx[~torch.isin(idx, held_out)].sort().values
    return kept, held_out


class RGNNDataModule(L.LightningDataModule):
    """A node-classification heterograph from :func:`datasets.hetero.load`, one batch per step.

    Args:
        name: bundled name (``aifb``, ``mutag``), a name in ``shared/datasets/hetero``
            (``heco_acm``, ``heco_dblp``), or a path to a ``.npz`` file / OGB folder.
        reverse_edges: add one inverse relation per relation.
        valid_fraction: share of the training nodes held out (stratified) for validation when
            the dataset has no validation split; ``0`` validates on the training nodes.
        split_seed: seed of that held-out split (fixed, independent of the training seed).
    """

    def __init__(self, name: str = "aifb", reverse_edges: bool = True, valid_fraction: float = 0.2,
                 split_seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self._graph_on: dict[torch.device, HeteroGraph] = {}

    @cached_property
    def dataset(self) -> HeteroDataset:
        """The loaded dataset, checked to be a node-classification task."""
        data = load(self.hparams.name)
        if data.labels is None or data.train_idx is None or data.test_idx is None:
            raise UsageError(f"dataset '{data.name}' has no node labels or no train/test split (is it a "
                             "link-prediction graph such as fb15k237?); use a node-classification dataset "
                             "such as aifb, mutag, heco_acm or heco_dblp")
        return data

    @cached_property
    def graph(self) -> HeteroGraph:
        """The graph the model runs on (inverse relations added when ``reverse_edges``)."""
        graph = self.dataset.graph
        return graph.add_reverse_edges() if self.hparams.reverse_edges else graph

    @cached_property
    def splits(self) -> dict[str, Tensor]:
        """Local target-type ids per stage (``train``, ``val``, ``test``); see the module doc."""
        data = self.dataset
        if data.valid_idx is not None:
            return {"train": data.train_idx, "val": data.valid_idx, "test": data.test_idx}
        train, val = stratified_split(data.train_idx, data.labels, self.hparams.valid_fraction,
                                      self.hparams.split_seed)
        return {"train": train, "val": val if val.numel() else train, "test": data.test_idx}

    def setup(self, stage: str | None = None) -> None:
        """Load the graph and make the splits once, so that bad input fails before training."""
        self.splits  # noqa: B018 (cached property)

    # ------------------------------------------------------------------ what the model needs
    @property
    def num_nodes(self) -> dict[str, int]:
        return self.graph.num_nodes_dict

    @property
    def num_relations(self) -> int:
        return self.graph.num_relations

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def in_features(self) -> dict[str, int]:
        """Input feature width of every node type that has features (others get embeddings)."""
        return {t: int(x.shape[1]) for t, x in self.graph.x.items()}

    # ------------------------------------------------------------------ loaders
    def batch(self, stage: str) -> GraphBatch:
        """The whole graph with the target nodes of ``stage`` (``train``, ``val`` or ``test``)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        local = self.splits[stage]
        offset = self.graph.node_offset(self.dataset.target)
        return GraphBatch(self.graph, local + offset, self.dataset.labels[local])

    def _loader(self, stage: str) -> DataLoader:
        return DataLoader([self.batch(stage)], batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def transfer_batch_to_device(self, batch: GraphBatch, device: torch.device, dataloader_idx: int) -> GraphBatch:
        """Move a batch, copying the graph once per device (its cached layouts travel with it)."""
        if batch.graph.device == device:
            return batch
        if device not in self._graph_on:
            self._graph_on[device] = batch.graph.to(device)
        return GraphBatch(self._graph_on[device], batch.index.to(device), batch.y.to(device))

"""LightningDataModule for entity classification on a heterogeneous graph, full-graph or mini-batch.

**Full graph** (the default, ``batch_size=None``): the whole graph is one batch; every epoch
runs the model over all nodes and reads out the target nodes of the stage's split.

**Mini-batch** (``batch_size=B``): the split's target nodes are cut into batches of ``B`` seeds
and each batch is the seeds' sampled neighbourhood (:class:`graphcore.sampling.NeighborLoader`,
``num_neighbors`` in-edges per relation and hop, without replacement), a
:class:`~graphcore.sampling.SampledGraph` of the full graph's schema, so a compiled model
builds one plan for all batches. Training batches are shuffled every epoch. Validation, test
and prediction are by default **layer-wise with full neighbourhoods**: one batch of the whole
graph that the model evaluates one layer at a time, ``eval_chunk_size`` destination nodes at a
time with all their in-edges (:meth:`~tasks.rgnn.model.RGNN.layerwise`, PyG's ``inference()``),
so the metrics are the exact full-graph ones without one multi-layer forward of the whole
graph. With ``eval_num_neighbors`` they are *sampled* instead, with that documented fan-out,
from fixed batches, each batch seeded from its seeds, so evaluation is repeatable. Under DDP Lightning
gives every rank its share of the seeds (a ``DistributedSampler`` over the loader's seed
positions); ``num_workers`` sampling processes per rank build the batches. Inverse relations are added (``add_reverse_edges``), as
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
from graphcore.sampling import NeighborLoader, SampledGraph
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.rgnn.ogb import OGB_NAMES, load_ogb_node_dataset

STAGES = ("train", "val", "test")


@dataclass
class GraphBatch:
    """A graph (the whole graph, or a sampled batch of it) plus its labelled target nodes.

    Attributes:
        graph: the graph (inverse relations included); node features in ``graph.x``.
        index: ``[B]`` *global* ids of the target nodes in ``graph``.
        y: ``[B]`` their class ids.
        node: ``[B]`` their ids within the target type of the *full* graph (the dataset's ids).
        chunk_size: when set, evaluate ``graph`` layer by layer in chunks of this many destination
            nodes (:meth:`~tasks.rgnn.model.RGNN.layerwise`) instead of one forward.
    """

    graph: HeteroGraph
    index: Tensor
    y: Tensor
    node: Tensor
    chunk_size: int | None = None

    def __len__(self) -> int:
        return int(self.index.numel())

    def to(self, device: torch.device, graph: HeteroGraph | None = None) -> GraphBatch:
        """The batch on ``device`` (with ``graph`` when the caller already moved it)."""
        return GraphBatch(graph if graph is not None else self.graph.to(device), self.index.to(device),
                          self.y.to(device), self.node.to(device), self.chunk_size)


class AttachLabels:
    """``NeighborLoader`` transform: a sampled graph becomes a :class:`GraphBatch` of its seeds
    (a class, not a closure, so loader workers can pickle it)."""

    def __init__(self, labels: Tensor):
        self.labels = labels

    def __call__(self, graph: SampledGraph) -> GraphBatch:
        seeds = graph.n_id[graph.input_type][:graph.batch_size]
        return GraphBatch(graph, graph.seed_index, self.labels[seeds], seeds)


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
    """A node-classification heterograph, as one full-graph batch or as sampled mini-batches.

    Args:
        name: bundled name (``aifb``, ``mutag``), a name in ``shared/datasets/hetero``
            (``heco_acm``, ``heco_dblp``), a synthetic name (``mag_like:1.0``), ``ogbn-mag``
            (with ``root``: read by ``ogb``'s own loader), or a path to a ``.npz`` file / OGB folder.
        root: folder of a downloaded OGB dataset (``ogbn-mag``: the folder holding ``ogbn_mag/``).
        reverse_edges: add one inverse relation per relation.
        valid_fraction: share of the training nodes held out (stratified) for validation when
            the dataset has no validation split; ``0`` validates on the training nodes.
        split_seed: seed of that held-out split (fixed, independent of the training seed).
        random_features: give the target node type random ``N(0, 1)`` features of this width
            when it has none (synthetic graphs); ``0`` leaves the dataset as it is.
        batch_size: seeds per mini-batch; ``None`` trains on the full graph.
        num_neighbors: mini-batch fan-out per hop (all relations), one entry per layer.
        eval_num_neighbors: mini-batch only: sample validation, test and prediction batches with
            this fan-out per hop; ``None`` (default) evaluates layer-wise with full
            neighbourhoods, the exact full-graph metrics.
        eval_chunk_size: layer-wise evaluation: destination nodes per chunk (memory vs. speed).
        num_workers: sampling worker processes per rank (mini-batch only).
    """

    def __init__(self, name: str = "aifb", root: str | None = None, reverse_edges: bool = True,
                 valid_fraction: float = 0.2, split_seed: int = 0, random_features: int = 0,
                 batch_size: int | None = None, num_neighbors: list[int] = [10, 10],  # noqa: B006 (CLI default)
                 eval_num_neighbors: list[int] | None = None, eval_chunk_size: int = 8192, num_workers: int = 0):
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch_size must be >= 1 (or null for full-graph training), got {batch_size}")
        if num_workers < 0:
            raise UsageError(f"num_workers must be >= 0, got {num_workers}")
        if eval_chunk_size < 1:
            raise UsageError(f"eval_chunk_size must be >= 1, got {eval_chunk_size}")
        for option, fanout in (("num_neighbors", num_neighbors), ("eval_num_neighbors", eval_num_neighbors or [])):
            bad = [k for k in fanout if k < -1]
            if bad:
                raise UsageError(f"{option}: fan-out {bad[0]} is not allowed; use a count >= 0, or -1 for all in-edges")
        self.save_hyperparameters()
        self._graph_on: dict[torch.device, HeteroGraph] = {}

    @property
    def minibatch(self) -> bool:
        return self.hparams.batch_size is not None

    @cached_property
    def dataset(self) -> HeteroDataset:
        """The loaded dataset, checked to be a node-classification task."""
        name = self.hparams.name
        if name in OGB_NAMES:
            data = load_ogb_node_dataset(name, self.hparams.root)
        else:
            data = load(name)
        width = self.hparams.random_features
        if width > 0 and data.target not in data.graph.x:
            generator = torch.Generator().manual_seed(self.hparams.split_seed)
            x = torch.randn(data.graph.num_nodes(data.target), width, generator=generator)
            data.graph = HeteroGraph(data.graph.num_nodes_dict, data.graph.edge_index_dict, {**data.graph.x, data.target: x},
                                     data.graph.edge_data or None)
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
    def batch(self, stage: str, chunk_size: int | None = None) -> GraphBatch:
        """The whole graph with the target nodes of ``stage`` (``train``, ``val`` or ``test``),
        evaluated layer-wise in chunks of ``chunk_size`` nodes when given."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        local = self.splits[stage]
        offset = self.graph.node_offset(self.dataset.target)
        return GraphBatch(self.graph, local + offset, self.dataset.labels[local], local, chunk_size)

    def sampled_loader(self, stage: str) -> NeighborLoader:
        """Mini-batches of the target nodes of ``stage``: shuffled with the training fan-out for
        ``train``, fixed with the evaluation fan-out otherwise (see the module doc)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        train = stage == "train"
        hp = self.hparams
        fanout = hp.num_neighbors if train or hp.eval_num_neighbors is None else hp.eval_num_neighbors
        workers = hp.num_workers
        return NeighborLoader(self.graph, list(fanout), input_nodes=(self.dataset.target, self.splits[stage]),
                              batch_size=hp.batch_size, shuffle=train, seed=None if train else hp.split_seed,
                              num_workers=workers, persistent_workers=workers > 0,
                              transform=AttachLabels(self.dataset.labels))

    def _loader(self, stage: str) -> DataLoader:
        if self.minibatch and (stage == "train" or self.hparams.eval_num_neighbors is not None):
            return self.sampled_loader(stage)
        chunk = self.hparams.eval_chunk_size if self.minibatch else None  # mini-batch evaluation: layer-wise
        return DataLoader([self.batch(stage, chunk)], batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def transfer_batch_to_device(self, batch: GraphBatch, device: torch.device, dataloader_idx: int) -> GraphBatch:
        """Move a batch: the full graph is copied once per device (its cached layouts travel with
        it), a sampled batch every time."""
        if batch.graph.device == device:
            return batch
        if isinstance(batch.graph, SampledGraph):
            return batch.to(device)
        if device not in self._graph_on:
            self._graph_on[device] = batch.graph.to(device)
        return batch.to(device, self._graph_on[device])

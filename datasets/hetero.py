"""Heterogeneous node-classification datasets in graphcore's ``.npz`` format or OGB's layout.

AIFB and MUTAG (the R-GCN entity-classification graphs, as DGL builds them) are bundled, so
``load("aifb")`` works on a fresh install. Any other file of the format loads from a path;
the larger graphs of ``shared/datasets/hetero`` (``heco_dblp``, ``fb15k237``,
``hector_mag_0.1``, ...) load by name when that folder sits beside the repository.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from graphcore.codegen.errors import GraphError
from graphcore.datasets import DATA_DIR
from graphcore.datasets.synthetic import parse_name, synthetic_graph
from graphcore.graph import HeteroGraph
from graphcore.io import from_ogb, graph_from_npz

BUNDLED = ("aifb", "mutag")
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "hetero"


@dataclass
class HeteroDataset:
    """A graph with its node-classification task.

    Attributes:
        name: dataset name (file stem).
        graph: the graph, forward relations only as stored (call ``add_reverse_edges()``).
        target: the labelled node type.
        labels: ``[N_target]`` class ids, ``-1`` where unlabelled; None for unlabelled graphs.
        train_idx, valid_idx, test_idx: local ids in ``target`` (``valid_idx`` may be None).
        splits: further published splits ``{name: {"train": ..., "valid": ..., "test": ...}}``.
        meta: the file's metadata (provenance, class names, statistics).
    """

    name: str
    graph: HeteroGraph
    target: str | None = None
    labels: Tensor | None = None
    train_idx: Tensor | None = None
    valid_idx: Tensor | None = None
    test_idx: Tensor | None = None
    splits: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            raise GraphError(f"dataset '{self.name}' has no labels")
        return int(self.labels.max()) + 1


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Find a dataset file: a bundled name, a name in ``shared/datasets/hetero``, or a path."""
    text = str(name_or_path)
    candidates = [Path(text)]
    if not text.endswith(".npz") and os.sep not in text:
        candidates = [DATA_DIR / f"{text}.npz", SHARED_DIR / f"{text}.npz", Path(text)]
    for path in candidates:
        if path.is_file() or (path.is_dir() and (path / "raw").is_dir()):
            return path
    raise GraphError(f"dataset '{text}' not found: looked for {[str(c) for c in candidates]}. Bundled: "
                     f"{list(BUNDLED)}; pass a path to a .npz file or an OGB dataset folder")


def _tensor(z, key: str) -> Tensor | None:
    return torch.from_numpy(z[key].astype(np.int64)) if key in z.files else None


def load(name_or_path: str | os.PathLike) -> HeteroDataset:
    """Load a dataset by bundled name (``"aifb"``, ``"mutag"``), shared name, synthetic name, or path.

    A path may be a ``.npz`` file of graphcore's format or an OGB heterograph folder
    (``raw/`` + ``split/``), read with ``ogb``'s own readers. A synthetic name is
    ``<schema>[:<scale>]`` of :mod:`datasets.synthetic` (``"mag_like:0.1"``: ogbn-mag's schema and
    a tenth of its counts).
    """
    synthetic = parse_name(str(name_or_path))
    if synthetic is not None:
        return load_synthetic(*synthetic)
    path = resolve(name_or_path)
    if path.is_dir():
        return load_ogb(path)
    with np.load(path, allow_pickle=False) as z:
        graph = graph_from_npz(z, str(path))
        meta = json.loads(str(z["meta_json"])) if "meta_json" in z.files else {}
        target = str(z["target_ntype"]) if "target_ntype" in z.files else None
        labels = _tensor(z, f"labels__{target}") if target else None
        splits: dict[str, dict[str, Tensor]] = {}
        for key in z.files:
            if key.startswith("split__"):
                _, split, part = key.split("__")
                splits.setdefault(split, {})[part.removesuffix("_idx")] = _tensor(z, key)
        return HeteroDataset(name=path.stem, graph=graph, target=target, labels=labels,
                             train_idx=_tensor(z, "train_idx"), valid_idx=_tensor(z, "valid_idx"),
                             test_idx=_tensor(z, "test_idx"), splits=splits, meta=meta)


def load_synthetic(schema: str = "mag_like", scale: float = 1.0, seed: int = 0) -> HeteroDataset:
    """A synthetic graph (:func:`datasets.synthetic.synthetic_graph`) with random labels on its
    target type and a random 80/10/10 split, all reproducible from ``seed``."""
    graph, spec = synthetic_graph(schema, scale, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    n = graph.num_nodes(spec.target)
    labels = torch.randint(spec.num_classes, (n,), generator=generator)
    order = torch.randperm(n, generator=generator)
    n_train, n_valid = int(0.8 * n), int(0.1 * n)
    return HeteroDataset(name=f"{schema}:{scale:g}", graph=graph, target=spec.target, labels=labels,
                         train_idx=order[:n_train], valid_idx=order[n_train:n_train + n_valid],
                         test_idx=order[n_train + n_valid:],
                         meta={"synthetic": {"schema": schema, "scale": scale, "seed": seed}})


def load_ogb(root: str | os.PathLike, split: str | None = None) -> HeteroDataset:
    """Load an OGB heterograph folder (``raw/``, optional ``split/<name>/``) with ogb's readers.

    Labels come from ``raw/node-label``; the split is ``split`` or the first one found.
    """
    from ogb.io.read_graph_raw import read_node_label_hetero, read_nodesplitidx_split_hetero

    root = Path(root)
    graph = from_ogb(root)
    labels = read_node_label_hetero(str(root / "raw"))
    target = next(iter(labels))
    y = torch.from_numpy(labels[target].reshape(-1).astype(np.int64))
    splits = {}
    split_root = root / "split"
    for folder in sorted(p for p in split_root.iterdir() if p.is_dir()) if split_root.is_dir() else []:
        parts = read_nodesplitidx_split_hetero(str(folder))  # (train, valid, test) dicts
        splits[folder.name] = {k: torch.from_numpy(v[target].astype(np.int64))
                               for k, v in zip(("train", "valid", "test"), parts)}
    chosen = splits.get(split) if split else next(iter(splits.values()), None)
    if split and chosen is None:
        raise GraphError(f"{root}: no split '{split}'; found {list(splits)}")
    chosen = chosen or {}
    return HeteroDataset(name=root.name, graph=graph, target=target, labels=y, train_idx=chosen.get("train"),
                         valid_idx=chosen.get("valid"), test_idx=chosen.get("test"), splits=splits)

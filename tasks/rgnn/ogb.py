"""Downloaded OGB node-property datasets (``ogbn-mag``) read with ``ogb``'s own loader.

``ogb.nodeproppred.NodePropPredDataset`` reads (and caches, under ``processed/``) the unpacked
dataset below ``root``; it downloads only when asked, and here there is no network, so a
missing folder is a clear error instead. For ogbn-mag that gives the 128-d word2vec features
of the papers (the other three types have none: the model learns embeddings for them), the
paper venue labels (349 classes) and the official *time* split (train up to 2017, validation
2018, test 2019).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from graphcore.datasets.hetero import HeteroDataset
from graphcore.graph import HeteroGraph
from graphcore.tasks.cli_errors import UsageError

OGB_NAMES = ("ogbn-mag",)


def load_ogb_node_dataset(name: str, root: str | None) -> HeteroDataset:
    """``name`` (``ogbn-mag``) from ``root``, the folder that holds ``ogbn_mag/`` as OGB unpacks it."""
    if root is None:
        raise UsageError(f"--data {name} needs --data.root DIR, the folder holding the downloaded "
                         f"{name.replace('-', '_')}/ (no download is attempted)")
    folder = Path(root) / name.replace("-", "_")
    if not (folder / "raw").is_dir() and not (folder / "processed").is_dir():
        raise UsageError(f"{folder} has no raw/ or processed/ folder: download {name} from OGB and unpack it in {root}")
    from ogb.nodeproppred import NodePropPredDataset

    dataset = NodePropPredDataset(name=name, root=str(root))
    graph, labels = dataset[0]
    counts = {t: int(n) for t, n in graph["num_nodes_dict"].items()}
    edges = {tuple(r): torch.from_numpy(np.ascontiguousarray(e)).long() for r, e in graph["edge_index_dict"].items()}
    x = {t: torch.from_numpy(np.ascontiguousarray(f)).float() for t, f in (graph.get("node_feat_dict") or {}).items()}
    target = next(iter(labels))
    split = dataset.get_idx_split()
    part = {k: torch.from_numpy(np.asarray(v[target])).long() for k, v in split.items()}
    return HeteroDataset(name=name, graph=HeteroGraph(counts, edges, x or None), target=target,
                         labels=torch.from_numpy(labels[target].reshape(-1)).long(), train_idx=part["train"],
                         valid_idx=part["valid"], test_idx=part["test"], meta={"source": f"ogb {name}", "root": str(root)})

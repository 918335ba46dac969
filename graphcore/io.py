"""Readers for graph files: graphcore's ``.npz`` format and OGB's heterogeneous raw layout.

The ``.npz`` format (``format_version 1``) is documented in ``datasets/README.md``: one
compressed archive per graph, readable by numpy alone (``allow_pickle=False``).
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from graphcore.codegen.errors import GraphError
from graphcore.graph import HeteroGraph


def _csr_features(z: np.lib.npyio.NpzFile, ntype: str) -> Tensor:
    prefix = f"featcsr__{ntype}__"
    shape = tuple(int(s) for s in z[prefix + "shape"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.from_numpy(z[prefix + "indptr"].astype(np.int64)),
                                       torch.from_numpy(z[prefix + "indices"].astype(np.int64)),
                                       torch.from_numpy(z[prefix + "data"]), size=shape, check_invariants=True)


def graph_from_npz(z: np.lib.npyio.NpzFile, source: str = "<npz>") -> HeteroGraph:
    """Build the graph (and dense or CSR node features) from an open ``.npz`` archive."""
    num_nodes = {k.split("__", 1)[1]: int(z[k]) for k in z.files if k.startswith("num_nodes__")}
    if not num_nodes:
        raise GraphError(f"{source}: no 'num_nodes__<type>' keys; is this a graphcore/hetero .npz file?")
    edges = {}
    for key in z.files:
        if key.startswith("edge_index__"):
            parts = key.split("__")[1:]
            if len(parts) != 3:
                raise GraphError(f"{source}: key '{key}' is not edge_index__<src>__<rel>__<dst>")
            edges[tuple(parts)] = torch.from_numpy(z[key].astype(np.int64, copy=False))
    x = {}
    for ntype in num_nodes:
        if f"feat__{ntype}" in z.files:
            x[ntype] = torch.from_numpy(z[f"feat__{ntype}"])
        elif f"featcsr__{ntype}__indptr" in z.files:
            x[ntype] = _csr_features(z, ntype)
    edge_data: dict[str, dict] = {}
    for key in z.files:
        if key.startswith("edata__"):
            parts = key.split("__")[1:]
            if len(parts) != 4:
                raise GraphError(f"{source}: key '{key}' is not edata__<name>__<src>__<rel>__<dst>")
            edge_data.setdefault(parts[0], {})[tuple(parts[1:])] = torch.from_numpy(z[key])
    return HeteroGraph(num_nodes, edges, x or None, edge_data or None)


def load_npz(path: str | os.PathLike) -> HeteroGraph:
    """Read a graph in graphcore's ``.npz`` format (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"no such graph file: {path}")
    with np.load(path, allow_pickle=False) as z:
        return graph_from_npz(z, str(path))


def from_ogb(root: str | os.PathLike, *, quiet: bool = True) -> HeteroGraph:
    """Read a heterogeneous graph in OGB's on-disk layout with ``ogb``'s own reader.

    Args:
        root: the dataset folder (holding ``raw/``) or its ``raw/`` folder itself, as
            ``ogbn-mag`` unpacks (``<root>/ogbn_mag/raw``).
        quiet: hide the reader's progress prints.
    """
    from ogb.io.read_graph_raw import read_csv_heterograph_raw

    raw = Path(root)
    if (raw / "raw").is_dir():
        raw = raw / "raw"
    if not (raw / "num-node-dict.csv.gz").is_file():
        raise GraphError(f"{raw} is not an OGB heterograph raw folder (no num-node-dict.csv.gz)")
    with contextlib.ExitStack() as stack:
        if quiet:  # ogb prints "Loading necessary files..." and a tqdm bar
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        graph = read_csv_heterograph_raw(str(raw))[0]
    num_nodes = {nt: int(n) for nt, n in sorted(graph["num_nodes_dict"].items())}
    edges = {tuple(r): torch.from_numpy(e.astype(np.int64)) for r, e in graph["edge_index_dict"].items()}
    x = {nt: torch.from_numpy(f) for nt, f in (graph.get("node_feat_dict") or {}).items() if f is not None}
    return HeteroGraph(num_nodes, edges, x or None)


def save_npz(graph: HeteroGraph, path: str | os.PathLike) -> Path:
    """Write ``graph`` (node counts, edge indices, dense features, edge data) in graphcore's ``.npz`` format.

    The inverse of :func:`load_npz` for what a :class:`HeteroGraph` holds; names must be
    key-safe (no ``__``). Sparse features are densified.
    """
    arrays: dict[str, np.ndarray] = {}
    for ntype in graph.node_types:
        if "__" in ntype:
            raise GraphError(f"node type '{ntype}' contains '__', which the .npz keys use as a separator")
        arrays[f"num_nodes__{ntype}"] = np.asarray(graph.num_nodes(ntype), dtype=np.int64)
    for relation in graph.relations:
        if any("__" in part for part in relation):
            raise GraphError(f"relation {relation} contains '__', which the .npz keys use as a separator")
        arrays["edge_index__" + "__".join(relation)] = graph.edge_index(relation).cpu().numpy()
    for ntype, x in graph.x.items():
        arrays[f"feat__{ntype}"] = (x.to_dense() if x.is_sparse_csr else x).cpu().numpy()
    for name, field in graph.edge_data.items():
        if "__" in name:
            raise GraphError(f"edge data name '{name}' contains '__', which the .npz keys use as a separator")
        for relation, values in field.items():
            arrays[f"edata__{name}__" + "__".join(relation)] = values.detach().cpu().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path

r"""Nearest-neighbour search over document vectors: exact top-k and a faiss index.

Vectors are unit-normalised, so cosine similarity is the inner product and exact search
is one matrix product per query block:

.. math::
    \operatorname{topk}_j\; q^\top x_j, \qquad X \in \mathbb R^{N \times D}.

:class:`FaissIndex` wraps ``faiss.IndexHNSWFlat`` (inner-product metric) for corpora where
:math:`O(ND)` per query is too slow; it is optional (``pip install faiss-cpu``).
Vectors are saved as ``.npy`` with their ids in a sidecar ``.ids.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from graphcore.codegen.errors import GraphcoreError
from graphcore.datasets.json_corpora import strict_loads
from graphcore.tasks.mbat.vsa import normalise


class VectorFileError(GraphcoreError, ValueError):
    """A vector file (or its ids sidecar) that is empty, truncated or not what ``encode`` writes."""


class ExactIndex:
    """Exact cosine top-k by blocked matrix products.

    Args:
        vectors: ``[N, D]`` corpus vectors (normalised here).
        ids: optional ``N`` ids returned alongside indices.
        block: query rows per matrix product.
    """

    def __init__(self, vectors: Tensor, ids: Sequence[str] | None = None, block: int = 1024):
        if vectors.ndim != 2:
            raise ValueError(f"ExactIndex: vectors must be [N, D], got shape {tuple(vectors.shape)}")
        if ids is not None and len(ids) != len(vectors):
            raise ValueError(f"ExactIndex: {len(ids)} ids for {len(vectors)} vectors")
        self.vectors = normalise(vectors)
        self.ids = list(ids) if ids is not None else None
        self.block = block

    def search(self, queries: Tensor, k: int = 10, exclude_self: bool = False) -> tuple[Tensor, Tensor]:
        """Top-``k`` cosine scores and indices ``[Q, k]`` for queries ``[Q, D]``.

        Args:
            exclude_self: queries are the corpus itself in order; row ``i`` never returns ``i``
                (leave-one-out).
        """
        if queries.ndim == 1:
            queries = queries.unsqueeze(0)
        if queries.shape[-1] != self.vectors.shape[1]:
            raise ValueError(f"ExactIndex: queries are {queries.shape[-1]}-dimensional, the index {self.vectors.shape[1]}")
        if exclude_self and len(queries) != len(self.vectors):
            raise ValueError("exclude_self needs the corpus itself as queries (same number of rows)")
        n = len(self.vectors)
        k = min(k, n - int(exclude_self))
        if k < 1:
            raise ValueError(f"ExactIndex: nothing to return (k={k}, corpus of {n})")
        q = normalise(queries.to(self.vectors.dtype))
        scores, index = [], []
        for start in range(0, len(q), self.block):
            sims = q[start : start + self.block] @ self.vectors.T
            if exclude_self:
                rows = torch.arange(sims.shape[0], device=sims.device)
                sims[rows, rows + start] = -float("inf")
            s, i = sims.topk(k, dim=1)
            scores.append(s)
            index.append(i)
        return torch.cat(scores), torch.cat(index)


class FaissIndex:
    """Approximate inner-product search with ``faiss.IndexHNSWFlat`` (graph index, no training).

    Args:
        vectors: ``[N, D]`` corpus vectors (normalised here, stored as float32).
        m: HNSW neighbours per node.
        ef_search: search breadth (recall/speed dial).
    """

    def __init__(self, vectors: Tensor, m: int = 32, ef_search: int = 128):
        try:
            import faiss
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("FaissIndex needs faiss: pip install faiss-cpu") from e
        x = np.ascontiguousarray(normalise(vectors).detach().cpu().numpy().astype(np.float32))
        self.index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efSearch = ef_search
        self.index.add(x)

    def search(self, queries: Tensor, k: int = 10) -> tuple[Tensor, Tensor]:
        """Approximate top-``k`` scores and indices ``[Q, k]``."""
        if queries.ndim == 1:
            queries = queries.unsqueeze(0)
        q = np.ascontiguousarray(normalise(queries).detach().cpu().numpy().astype(np.float32))
        scores, index = self.index.search(q, k)
        return torch.from_numpy(scores), torch.from_numpy(index)


def precision_at_k(neighbours: Tensor, labels: Sequence, k: int, rows: np.ndarray | None = None) -> float:
    """Mean fraction of the first ``k`` neighbours sharing the query's label.

    Args:
        neighbours: ``[Q, >=k]`` indices into ``labels``; query ``i`` is corpus row ``i``.
        labels: one label per corpus row (lists and dicts compare by canonical JSON).
        rows: boolean ``[Q]`` mask of the queries to average over (default: all), e.g. those whose
            label occurs at least twice in leave-one-out evaluation.
    """
    if neighbours.shape[1] < k:
        raise ValueError(f"precision_at_k: need at least {k} neighbours per query, got {neighbours.shape[1]}")
    lab = np.asarray([hash_label(l) for l in labels])
    hits = lab[neighbours[:, :k].cpu().numpy()] == lab[: len(neighbours), None]
    return float(hits[rows].mean() if rows is not None else hits.mean())


def hash_label(label) -> str:
    """A comparable form of a label (lists and dicts via canonical JSON)."""
    return label if isinstance(label, str) else json.dumps(label, sort_keys=True)


def save_vectors(path: str | Path, vectors: Tensor | np.ndarray, ids: Sequence[str]) -> None:
    """Write ``vectors`` to ``path`` (``.npy``) and ``ids`` to ``<path>.ids.json``."""
    path = Path(path)
    arr = vectors.detach().cpu().numpy() if isinstance(vectors, Tensor) else vectors
    if len(ids) != len(arr):
        raise ValueError(f"save_vectors: {len(ids)} ids for {len(arr)} vectors")
    np.save(path, arr)
    ids_path(path).write_text(json.dumps(list(ids)))


def ids_path(path: str | Path) -> Path:
    """The sidecar file holding the ids of a vector file."""
    path = Path(path)
    return path.with_name(path.name + ".ids.json")


def load_vectors(path: str | Path) -> tuple[Tensor, list[str]]:
    """Inverse of :func:`save_vectors` (ids default to row numbers when the sidecar is missing).

    Raises:
        FileNotFoundError: no such file.
        VectorFileError: an empty, truncated or foreign file (never unpickled: ``allow_pickle=False``),
            not a 2-D float array, or an ids sidecar that does not match.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"vector file {path} does not exist; create it with `python -m tasks.mbat encode`")
    arr = _read_npy(path)
    side = ids_path(path)
    ids = strict_loads(side.read_text(encoding="utf-8"), str(side)) if side.exists() else [str(i) for i in range(len(arr))]
    if not isinstance(ids, list) or len(ids) != len(arr):
        n = len(ids) if isinstance(ids, list) else type(ids).__name__
        raise VectorFileError(f"{side} lists {n} ids for {len(arr)} vectors in {path}; re-run encode")
    return torch.from_numpy(arr), [str(i) for i in ids]


def _read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, checked by its magic bytes first: numpy's own messages for a
    foreign file ("contains pickled data") point the wrong way."""
    redo = "re-run `python -m tasks.mbat encode` to write it"
    if path.is_dir():
        raise VectorFileError(f"vector file {path} is a directory; give the .npy written by encode")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic:
        raise VectorFileError(f"vector file {path} is empty; {redo}")
    if magic.startswith(b"PK"):
        raise VectorFileError(f"vector file {path} is a zip/.npz archive; give the .npy written by encode")
    if magic != b"\x93NUMPY":
        raise VectorFileError(f"vector file {path} is not a .npy file (no .npy header); {redo}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (EOFError, ValueError, OSError) as e:
        raise VectorFileError(f"vector file {path} is truncated or damaged ({str(e).splitlines()[0]}); {redo}") from None
    if arr.ndim != 2 or arr.dtype.kind != "f" or not len(arr):
        raise VectorFileError(f"vector file {path} holds a {arr.dtype} array of shape {arr.shape}, not [N, D] float "
                              f"vectors; {redo}")
    return arr

r"""Read fields back out of document vectors: path unbinding, item memories, clean-up.

For a path :math:`p` with role :math:`R_p = \prod_j R_{p_j}`,

.. math::
    R_p^\top \operatorname{enc}(d) = w_p\, v(x_p) + \text{noise}, \qquad
    \hat x = \arg\max_{c \in \mathcal C(p)} \cos\big(R_p^\top \operatorname{enc}(d),\, v(c)\big),

the noise being the other leaves, each scrambled by :math:`R_p^\top R_{p'}` (nearly
orthogonal to every code). The candidates :math:`\mathcal C(p)` come from an
:class:`ItemMemory`: the strings and atoms seen at the same path pattern (array positions
wildcarded) in a corpus. Numbers are read back without a memory by decoding the soft
number code over a grid (:meth:`tasks.mbat.codes.NumberCode.decode`) and undoing the key's
scale. Membership (:func:`contains`) is the same cosine against one given value.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Iterable

import torch
from torch import Tensor

from tasks.mbat.encoder import Atom, JsonEncoder, Leaf, walk
from tasks.mbat.paths import Path, format_path, parse_path, pattern
from tasks.mbat.vsa import cosine_matrix, normalise

_ATOM_VALUES = {"true": True, "false": False, "null": None, "{}": {}, "[]": []}


def _python(value: Any) -> Any:
    """A leaf value as the JSON value it stands for (atoms back to ``True``, ``None``, ``{}``...)."""
    return _ATOM_VALUES[str(value)] if isinstance(value, Atom) else value


@dataclass
class QueryResult:
    """The value read back at ``path``, its clean-up score, and the runner-up candidates."""

    path: str
    value: Any
    score: float
    candidates: list[tuple[Any, float]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.path} = {json.dumps(self.value, ensure_ascii=False)}  (cos {self.score:.3f})"


class ItemMemory:
    """Codebooks of the string and atom values seen at each path pattern of a corpus.

    Args:
        encoder: the encoder whose leaf codes the memory compares against.
        max_values: values kept per pattern (the first seen).
    """

    def __init__(self, encoder: JsonEncoder, max_values: int = 100_000):
        self.encoder, self.max_values = encoder, max_values
        self.values: dict[str, dict[str, str | Atom]] = {}
        self._codes: dict[str, Tensor] = {}

    def add(self, doc: Any) -> None:
        """Record every string/atom leaf of ``doc`` under its path pattern."""
        for leaf in walk(doc, self.encoder.config.max_depth):
            if isinstance(leaf.value, float):
                continue
            book = self.values.setdefault(pattern(leaf.path), {})
            if len(book) < self.max_values:
                book.setdefault(("!" if isinstance(leaf.value, Atom) else "$") + leaf.value, leaf.value)
            self._codes.pop(pattern(leaf.path), None)

    def fit(self, docs: Iterable[Any]) -> "ItemMemory":
        """:meth:`add` every document; returns ``self``."""
        for doc in docs:
            self.add(doc)
        return self

    def candidates(self, path: Path) -> tuple[list[str | Atom], Tensor] | None:
        """Values seen at ``path``'s pattern and their codes ``[M, D]``; ``None`` if none were seen."""
        key = pattern(path)
        book = self.values.get(key)
        if not book:
            return None
        values = list(book.values())
        codes = self._codes.get(key)
        if codes is None:
            codes = self._codes[key] = normalise(self.encoder._leaf_rows([Leaf(path, v, 1.0) for v in values]))
        return values, codes

    def save(self, path: str | FsPath) -> None:
        """Write the memory as gzipped JSON (``{pattern: [[kind, value], ...]}``)."""
        data = {k: [[key[0], str(v)] for key, v in book.items()] for k, book in self.values.items()}
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | FsPath, encoder: JsonEncoder) -> "ItemMemory":
        """Inverse of :meth:`save`."""
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        memory = cls(encoder)
        for k, items in data.items():
            memory.values[k] = {kind + v: (Atom(v) if kind == "!" else v) for kind, v in items}
        return memory


def _as_path(path: str | Path) -> Path:
    return parse_path(path) if isinstance(path, str) else tuple(path)


def query(encoder: JsonEncoder, vec: Tensor, path: str | Path, memory: ItemMemory | None = None,
          top: int = 5) -> QueryResult:
    """Read the value at ``path`` back from a document vector ``vec`` ``[D]``.

    Strings and atoms are cleaned up against ``memory``; numbers are decoded from their soft
    code when the encoder has a fitted scale for the path. When both apply the higher cosine wins.

    Raises:
        ValueError: a malformed path, a vector of the wrong size, or a path for which neither an
            item memory nor a number scale exists.
    """
    p = _as_path(path)
    if vec.ndim != 1 or vec.shape[0] != encoder.dim:
        raise ValueError(f"query: need one {encoder.dim}-dimensional vector, got shape {tuple(vec.shape)}")
    y = encoder.role(p).apply_transpose(vec.to(encoder.device, encoder.dtype))
    results: list[QueryResult] = []
    found = memory.candidates(p) if memory is not None else None
    if found is not None:
        values, codes = found
        sims = cosine_matrix(y.unsqueeze(0), codes)[0]
        k = min(top, len(values))
        s, i = sims.topk(k)
        cands = [(_python(values[j]), float(v)) for v, j in zip(s.tolist(), i.tolist())]
        results.append(QueryResult(format_path(p), cands[0][0], cands[0][1], cands))
    scale = encoder.scaler.scales.get(format_path(p)) or encoder.scaler.scales.get(pattern(p))
    if scale is not None:
        z, score = encoder.numbers.decode(y.unsqueeze(0))
        value = float(scale.inverse(z.double().cpu().numpy())[0])
        results.append(QueryResult(format_path(p), value, float(score[0]), [(value, float(score[0]))]))
    if not results:
        raise ValueError(
            f"query: nothing to compare {format_path(p)} with: no item memory holds values for {pattern(p)} and the "
            "encoder has no number scale for it; pass an ItemMemory fitted on the corpus (ItemMemory(enc).fit(docs))"
        )
    return max(results, key=lambda r: r.score)


def contains(encoder: JsonEncoder, vec: Tensor, path: str | Path, value: Any, any_position: int = 0) -> float:
    """Cosine between the unbound field at ``path`` and ``value``'s code (membership score).

    Args:
        any_position: if > 0, ``path`` names an array and the best score over its first
            ``any_position`` positions is returned ("is ``value`` anywhere in the array?").
    """
    p = _as_path(path)
    paths = [p + (i,) for i in range(any_position)] if any_position > 0 else [p]
    code = encoder.leaf_code(paths[0], value).unsqueeze(0)
    ys = torch.stack([encoder.role(q).apply_transpose(vec.to(encoder.device, encoder.dtype)) for q in paths])
    return float(cosine_matrix(ys, code).max())


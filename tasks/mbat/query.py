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

**Not found.** The clean-up always has a best candidate, even for a path the document lacks
(``latlng[99]``, ``capital[0]`` of a record without a capital). Whether the best is a real
answer is decided against the clean-up memory's own noise floor: the document vector is
unbound by ``null_draws`` random signed permutations that no path produces, each is cleaned
up against the *same* candidates (or number grid), and the best cosines of those draws form
a null sample :math:`m_1..m_k`. The answer counts as found when

.. math::
    s > \tau = \bar m + z\, \operatorname{sd}(m), \qquad z = 3 \text{ by default},

so the threshold grows with the number of candidates (the maximum of more noise is larger)
and shrinks with :math:`D`; both :math:`s` and :math:`\tau` are reported. On the countries
corpus at :math:`D = 4096` (fitted defaults; ``latlng[99]``, ``latlng[2]``, ``capital[3]``,
``borders[30]``, ``tld[7]`` and ``capital[0]`` of records without a capital as absent paths;
names, coordinates, area, capitals, borders and flags as present ones) :math:`z = 3` reports
2 % of the absent paths as found and finds 83 % of the present ones: what it misses are flags
such as ``independent`` or ``status``, whose value is the same in most records, so IDF gives
them little weight and their score sits near the noise floor.
"""
from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Iterable

import torch
from torch import Tensor

from graphcore.codegen.errors import GraphcoreError
from graphcore.tasks.mbat.encoder import Atom, JsonEncoder, Leaf, walk
from graphcore.tasks.mbat.orthogonal import SignedPermutation
from graphcore.tasks.mbat.paths import Path, format_path, parse_path, pattern
from graphcore.tasks.mbat.vsa import cosine_matrix, normalise

NULL_DRAWS = 64
"""Random unbindings per query that estimate the clean-up's noise floor."""
NULL_Z = 3.0
"""Standard deviations above the null mean a clean-up score must reach to count as found."""


class QueryError(GraphcoreError, ValueError):
    """A query that cannot be answered as asked (wrong vector size, nothing to compare the path with)."""

_ATOM_VALUES = {"true": True, "false": False, "null": None, "{}": {}, "[]": []}


def _python(value: Any) -> Any:
    """A leaf value as the JSON value it stands for (atoms back to ``True``, ``None``, ``{}``...)."""
    return _ATOM_VALUES[str(value)] if isinstance(value, Atom) else value


@dataclass
class QueryResult:
    """The value read back at ``path``, its clean-up score, the runner-up candidates, and
    whether the score clears the not-found ``threshold`` (see the module docstring)."""

    path: str
    value: Any
    score: float
    candidates: list[tuple[Any, float]] = field(default_factory=list)
    threshold: float = -1.0
    found: bool = True

    def __str__(self) -> str:
        best = json.dumps(self.value, ensure_ascii=False)
        if not self.found:
            return f"{self.path}: not found  (best {best} cos {self.score:.3f} < threshold {self.threshold:.3f})"
        return f"{self.path} = {best}  (cos {self.score:.3f}, threshold {self.threshold:.3f})"


def null_unbind(encoder: JsonEncoder, vec: Tensor, draws: int = NULL_DRAWS) -> Tensor:
    """``vec`` ``[D]`` scrambled by ``draws`` random signed permutations no JSON path produces: ``[draws, D]``."""
    index, sign = _null_maps(encoder.dim, encoder.seed, encoder.dtype, str(encoder.device), draws)
    return vec[index] * sign


@functools.lru_cache(maxsize=8)
def _null_maps(dim: int, seed: int, dtype: torch.dtype, device: str, draws: int) -> tuple[Tensor, Tensor]:
    # keyed by everything the maps depend on, so the memo is a pure function's; stacked for one gather
    maps = [SignedPermutation.random(dim, seed, "query-null", str(i), dtype=dtype, device=device) for i in range(draws)]
    return torch.stack([m.index for m in maps]), torch.stack([m.sign for m in maps])


def noise_threshold(null_best: Tensor, z: float = NULL_Z) -> float:
    r""":math:`\bar m + z\,\operatorname{sd}(m)` of the best clean-up cosines ``[k]`` of null unbindings."""
    return float(null_best.mean() + z * null_best.std())


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
          top: int = 5, null_draws: int = NULL_DRAWS, z: float = NULL_Z) -> QueryResult:
    """Read the value at ``path`` back from a document vector ``vec`` ``[D]``.

    Strings and atoms are cleaned up against ``memory``; numbers are decoded from their soft
    code when the encoder has a fitted scale for the path. When both apply, the one further above
    its threshold wins. The result says whether its score clears the noise threshold (module docstring); a path
    the document lacks comes back with ``found=False``.

    Raises:
        PathError: a malformed path.
        QueryError: a vector of the wrong size, ``top < 1``, or a path for which neither an item
            memory nor a number scale exists.
    """
    p = _as_path(path)
    if vec.ndim != 1 or vec.shape[0] != encoder.dim:
        raise QueryError(f"query: need one {encoder.dim}-dimensional vector, got shape {tuple(vec.shape)}")
    if top < 1 or null_draws < 2:
        raise QueryError(f"query: need top >= 1 and null_draws >= 2, got top={top}, null_draws={null_draws}")
    v = vec.to(encoder.device, encoder.dtype)
    y = encoder.role(p).apply_transpose(v)
    nulls = null_unbind(encoder, v, null_draws)
    results: list[QueryResult] = []
    found = memory.candidates(p) if memory is not None else None
    if found is not None:
        values, codes = found
        sims = cosine_matrix(y.unsqueeze(0), codes)[0]
        k = min(top, len(values))
        s, i = sims.topk(k)
        cands = [(_python(values[j]), float(v)) for v, j in zip(s.tolist(), i.tolist())]
        tau = noise_threshold(cosine_matrix(nulls, codes).max(dim=1).values, z)
        results.append(QueryResult(format_path(p), cands[0][0], cands[0][1], cands, tau, cands[0][1] > tau))
    scale = encoder.scaler.scales.get(format_path(p)) or encoder.scaler.scales.get(pattern(p))
    if scale is not None:
        zs, score = encoder.numbers.decode(torch.cat([y.unsqueeze(0), nulls]))
        value = float(scale.inverse(zs[:1].double().cpu().numpy())[0])
        tau = noise_threshold(score[1:], z)
        s0 = float(score[0])
        results.append(QueryResult(format_path(p), value, s0, [(value, s0)], tau, s0 > tau))
    if not results:
        raise QueryError(
            f"query: nothing to compare {format_path(p)} with: no item memory holds values for {pattern(p)} and the "
            "encoder has no number scale for it; pass an ItemMemory fitted on the corpus (ItemMemory(enc).fit(docs))"
        )
    return max(results, key=lambda r: (r.found, r.score - r.threshold))


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


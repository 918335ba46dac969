r"""JSON -> vector with MBAT binding.

Every key is a role :math:`R_k` (a random orthogonal matrix named by the key) and every
array position :math:`i` the power :math:`S^{i+1}` of one sequence matrix :math:`S`, so a
leaf value :math:`x` at path :math:`p = (k_1, \dots, k_m)` contributes
:math:`R_{k_1} R_{k_2} \cdots R_{k_m} v(x)`, and the document is

.. math::
    \operatorname{enc}(d) = \operatorname{normalise}\Big(\sum_{(p, x) \in \text{leaves}(d)}
    w_p\, R_p\, v(x)\Big), \qquad R_p = \prod_{j} R_{p_j}.

Because the :math:`R` do not commute, ``{"a":{"b":x}}`` and ``{"b":{"a":x}}`` get nearly
orthogonal vectors. Because binding is linear, the flat sum over leaves equals the nested
definition (object = sum of key-bound children, array = sum of position-bound elements).
With ``weighting="sqrt"`` every container's children are scaled by :math:`1/\sqrt n`, so
each container has unit expected norm and a top-level key with a long array counts no
more than a key with one number. ``array_mode="bag"`` binds every element with the same
:math:`S` (order-free sets). Leaf codes :math:`v(x)` are in :mod:`tasks.mbat.codes`.

**Structure term** (``structure=True``). Value terms alone make two documents of one schema
with different values unrelated, so in a many-schema collection a key-path TF-IDF finds
same-schema documents that the value sum misses. The encoder therefore adds the bag of the
document's structure tokens (:mod:`tasks.mbat.structure`: key paths, leaf types, array
length classes), bound by a role :math:`R_\sigma` of its own:

.. math::
    \operatorname{enc}(d) = \operatorname{normalise}\Big(u(d) + \beta\, R_\sigma
    \frac{\sum_{t \in T(d)} \mathrm{idf}_t\, c_t}{\mathrm{idf}_\max \sqrt{|T(d)|}}\Big),

:math:`u(d)` being the value sum above. :math:`R_\sigma` is drawn under a name no key can
take, so :math:`R_p^\top R_\sigma` scrambles the structure term like any other leaf and path
unbinding keeps working. With ``structure_weight=None`` the balance :math:`\beta` is set by
:meth:`JsonEncoder.fit` (see :func:`structure_balance`).

**Normalisation policy.** Keys: Unicode NFC, stripped, case kept. String values: NFC,
case-folded, whitespace collapsed (see :func:`tasks.mbat.codes.normalise_string`).
Numbers: ints and floats alike, scaled per key (:class:`~tasks.mbat.codes.NumberScaler`);
``true``, ``false``, ``null``, ``{}`` and ``[]`` are fixed atoms. After :meth:`JsonEncoder.fit`,
string tokens and atoms are weighted by their inverse document frequency. Input must be JSON:
NaN/Infinity, non-string keys, cycles, other Python types and nesting deeper than
``max_depth`` raise :class:`JsonInputError` naming the path.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path as FsPath
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from graphcore.codegen.errors import GraphcoreError
from graphcore.tasks.mbat.codes import (NumberCode, NumberScaler, SparseCodebook, TokenIdf, normalise_key, soft_string_weights,
                              string_tokens)
from graphcore.tasks.mbat.orthogonal import FAMILIES, OrthogonalMap, SignedPermutation, random_orthogonal
from graphcore.tasks.mbat.paths import Path, format_path, pattern
from graphcore.tasks.mbat.structure import leaf_type, structure_tokens


class Atom(str):
    """A fixed leaf (``true``, ``false``, ``null``, ``{}``, ``[]``), told apart from strings by type."""


_ATOMS = {True: Atom("true"), False: Atom("false"), None: Atom("null")}
EMPTY_OBJECT, EMPTY_ARRAY = Atom("{}"), Atom("[]")


class JsonInputError(GraphcoreError, ValueError):
    """The input is not a JSON document the encoder accepts; the message names the path."""


class EncoderConfigError(GraphcoreError, ValueError):
    """Encoder settings that cannot work together (e.g. a dimension the orthogonal family lacks)."""


DEFAULT_STRUCTURE_WEIGHT = 0.0
r"""Balance :math:`\beta` before :meth:`JsonEncoder.fit` chooses one: an encoder never fitted has no path
frequencies to weight the structure term with, so it has none and encodes as before the term existed."""


def structure_balance(mean_cos: float) -> float:
    r"""The balance :math:`\beta` that :meth:`JsonEncoder.fit` picks from the corpus.

    ``mean_cos`` is the mean cosine between the IDF-weighted structure bags of pairs of corpus
    documents. When every document has the same structure (one schema) it is near 1, the
    structure term says nothing about which documents are alike, and :math:`\beta \to 0`; in
    a collection of many schemas it is small and the structure term weighs as much as the
    values: :math:`\beta = 1 - \overline{\cos}`.
    """
    return float(min(1.0, max(0.0, 1.0 - mean_cos)))


@dataclass(frozen=True)
class Leaf:
    """One leaf of a document: its path, value (``str``, ``float`` or :class:`Atom`) and weight."""

    path: Path
    value: Any
    weight: float


def walk(doc: Any, max_depth: int = 64, weighting: str = "sqrt") -> list[Leaf]:
    """Validate ``doc`` and list its leaves with container weights.

    Raises:
        JsonInputError: non-string key, NaN/Infinity, a cycle, an unsupported type, or depth
            beyond ``max_depth``; the message names the JSON path.
    """
    out: list[Leaf] = []
    active: set[int] = set()
    sqrt = weighting == "sqrt"

    def visit(node: Any, path: Path, weight: float) -> None:
        if isinstance(node, str):
            out.append(Leaf(path, node, weight))
        elif isinstance(node, bool) or node is None:
            out.append(Leaf(path, _ATOMS[node], weight))
        elif isinstance(node, (int, float)):
            try:
                x = float(node)
            except OverflowError:
                raise JsonInputError(f"number at {format_path(path)} is too large for a float") from None
            if not math.isfinite(x):
                raise JsonInputError(f"{node!r} at {format_path(path)} is not a JSON number (no NaN/Infinity in JSON); use null")
            out.append(Leaf(path, x, weight))
        elif isinstance(node, (dict, list, tuple)):
            if not node:
                out.append(Leaf(path, EMPTY_OBJECT if isinstance(node, dict) else EMPTY_ARRAY, weight))
                return
            if len(path) >= max_depth:
                raise JsonInputError(f"nesting deeper than max_depth={max_depth} at {format_path(path)}; raise max_depth or flatten the input")
            if id(node) in active:
                raise JsonInputError(f"cycle: the container at {format_path(path)} contains itself; JSON is a tree")
            active.add(id(node))
            w = weight / math.sqrt(len(node)) if sqrt else weight
            if isinstance(node, dict):
                for k, v in node.items():
                    if not isinstance(k, str):
                        raise JsonInputError(
                            f"key {k!r} ({type(k).__name__}) at {format_path(path)} is not a string; JSON object keys must be strings"
                        )
                    visit(v, path + (normalise_key(k),), w)
            else:
                for i, v in enumerate(node):
                    visit(v, path + (i,), w)
            active.discard(id(node))
        else:
            raise JsonInputError(f"{type(node).__name__} at {format_path(path)} is not a JSON type (object, array, string, number, bool, null)")

    if weighting not in ("sqrt", "none"):
        raise ValueError(f"weighting must be 'sqrt' or 'none', got {weighting!r}")
    visit(doc, (), 1.0)
    return out


@dataclass
class EncoderConfig:
    """Hyper-parameters of :class:`JsonEncoder` (all JSON-serialisable)."""

    dim: int = 4096
    seed: int = 0
    family: str = "perm"
    array_mode: str = "position"
    weighting: str = "sqrt"
    sparsity: int = 16
    ngram: int = 3
    string_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    number_code: str = "fpe"
    number_bandwidth: float = 0.5
    number_weight: float = 1.0
    idf: bool = True
    max_depth: int = 64
    structure: bool = True
    structure_weight: float | None = None
    structure_arrays: bool = True
    structure_idf: bool = True


class JsonEncoder:
    r"""Encode JSON documents as :math:`D`-dimensional unit vectors (see the module docstring).

    Args:
        dim: :math:`D`.
        seed: global seed; with the same seed and config, vectors are identical in any process.
        family: orthogonal family for roles: ``perm`` (default, :math:`O(D)`), ``hadamard``,
            ``householder`` or ``dense``.
        array_mode: ``position`` (:math:`S^{i+1}` per position) or ``bag`` (:math:`S` for all).
        weighting: ``sqrt`` (containers scaled to unit expected norm) or ``none`` (plain sum).
        sparsity: non-zeros per token code.
        ngram: character n-gram length for soft strings (0: none).
        string_weights: weights of the exact / word / n-gram bags.
        number_code: ``fpe`` or ``level``.
        number_bandwidth: kernel width in scaled units (see :class:`~tasks.mbat.codes.NumberCode`).
        number_weight: extra weight of numeric leaves relative to the others.
        idf: let :meth:`fit` weight string tokens and atoms by their inverse document frequency
            (:class:`~tasks.mbat.codes.TokenIdf`), as TF-IDF does.
        max_depth: deepest nesting accepted.
        structure: add the structure term (key paths, leaf types, array length classes; see the
            module docstring) in its own role.
        structure_weight: its balance :math:`\beta`; ``None``: chosen by :meth:`fit`
            (:func:`structure_balance`), :data:`DEFAULT_STRUCTURE_WEIGHT` until then.
        structure_arrays: include the leaf-type and array-length tokens, not only key paths.
        structure_idf: let :meth:`fit` weight structure tokens by inverse document frequency
            (rare paths count more, paths found in every document little).
        scaler: fitted number scales (from :meth:`fit` or :meth:`load`); ``None``: identity scales.
        token_idf: fitted token frequencies (from :meth:`fit` or :meth:`load`); ``None``: uniform.
        dtype: float32 or float64.
        device: where vectors are computed.
    """

    def __init__(self, dim: int = 4096, seed: int = 0, family: str = "perm", array_mode: str = "position",
                 weighting: str = "sqrt", sparsity: int = 16, ngram: int = 3,
                 string_weights: tuple[float, float, float] = (1.0, 1.0, 1.0), number_code: str = "fpe",
                 number_bandwidth: float = 0.5, number_weight: float = 1.0, idf: bool = True, max_depth: int = 64,
                 structure: bool = True, structure_weight: float | None = None, structure_arrays: bool = True,
                 structure_idf: bool = True, scaler: NumberScaler | None = None, token_idf: TokenIdf | None = None,
                 structure_idf_table: TokenIdf | None = None, structure_beta: float | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        _check_config(dim, family, array_mode, weighting, dtype, structure_weight)
        self.config = EncoderConfig(dim, seed, family, array_mode, weighting, sparsity, ngram,
                                    tuple(string_weights), number_code, number_bandwidth, number_weight, idf, max_depth,
                                    structure, structure_weight, structure_arrays, structure_idf)
        self.structure_idf = structure_idf_table or TokenIdf()
        self.structure_beta = (structure_weight if structure_weight is not None else
                               structure_beta if structure_beta is not None else DEFAULT_STRUCTURE_WEIGHT)
        r"""The balance :math:`\beta` in use (the config's, else the one :meth:`fit` chose)."""
        self._patterns: dict[Path, str] = {}
        self.dim, self.seed, self.dtype, self.device = dim, seed, dtype, torch.device(device)
        self.scaler = scaler or NumberScaler()
        self.token_idf = token_idf or TokenIdf()
        self.codebook = SparseCodebook(dim, seed, sparsity)
        self.numbers = NumberCode(dim, seed, number_code, number_bandwidth, dtype=dtype, device=self.device)
        self.sparse_scatter = family == "perm"
        """Scatter token codes straight through signed permutations (:meth:`_scatter_tokens`) instead of
        binding dense leaf rows; both give the same vectors."""
        self._keys: dict[str, OrthogonalMap] = {}
        self._paths: dict[Path, OrthogonalMap] = {}
        self._strings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._strings_generation = self.codebook.generation
        self._sequence = random_orthogonal(family, dim, seed, "sequence", dtype=dtype, device=self.device)
        self._powers: list[OrthogonalMap] = [self._sequence]
        self._structure_role = random_orthogonal(family, dim, seed, "structure", dtype=dtype, device=self.device)

    # ----------------------------------------------------------------- roles
    def key_role(self, key: str) -> OrthogonalMap:
        """:math:`R_k` for an object key (after key normalisation)."""
        role = self._keys.get(key)
        if role is None:
            role = self._keys[key] = random_orthogonal(self.config.family, self.dim, self.seed, "key", key,
                                                       dtype=self.dtype, device=self.device)
        return role

    def position_role(self, i: int) -> OrthogonalMap:
        """:math:`S^{i+1}` for array position ``i`` (``S`` in bag mode)."""
        if self.config.array_mode == "bag":
            return self._sequence
        while len(self._powers) <= i:
            self._powers.append(self._sequence.compose(self._powers[-1]))
        return self._powers[i]

    def role(self, path: Path) -> OrthogonalMap:
        """:math:`R_p = \\prod_j R_{p_j}` for a whole path (cached; ``()`` is the identity)."""
        role = self._paths.get(path)
        if role is None:
            if not path:
                role = self._sequence.power(0) if self.config.family != "perm" else SignedPermutation(
                    torch.arange(self.dim, device=self.device), torch.ones(self.dim, dtype=self.dtype, device=self.device))
            else:
                head = path[0]
                first = self.position_role(head) if isinstance(head, int) else self.key_role(head)
                role = first if len(path) == 1 else first.compose(self.role(path[1:]))
            if len(self._paths) >= 8192:
                self._paths.clear()
            self._paths[path] = role
        return role

    # ----------------------------------------------------------------- leaves
    def _string(self, s: str) -> tuple[np.ndarray, np.ndarray]:
        if self._strings_generation != self.codebook.generation or len(self._strings) >= 200_000:
            self._strings.clear()
            self._strings_generation = self.codebook.generation
        hit = self._strings.get(s)
        if hit is None:
            tokens, counts, bag = string_tokens(s, self.config.ngram)
            weights = soft_string_weights(counts, bag, self.token_idf.weights(tokens), self.token_idf.max,
                                          self.config.string_weights)
            ids = self.codebook.ids(tokens)
            if self._strings_generation != self.codebook.generation:  # the codebook was cleared meanwhile
                self._strings.clear()
                self._strings_generation = self.codebook.generation
            hit = self._strings[s] = (ids, weights)
        return hit

    def _atom(self, atom: Atom) -> tuple[np.ndarray, np.ndarray]:
        token = ["!" + atom]
        return self.codebook.ids(token), self.token_idf.weights(token) / self.token_idf.max

    def _scaled(self, path: Path, x: float) -> float:
        return float(self.scaler.lookup(format_path(path), pattern(path)).forward(np.float64(x)))

    def leaf_code(self, path: Path, value: Any) -> Tensor:
        """The unbound code :math:`v(x)` ``[D]`` of a leaf value as it would appear at ``path``."""
        return self._leaf_rows([Leaf(path, _leaf_value(value, path), 1.0)])[0]

    def _split(self, leaves: list[Leaf]) -> tuple[list[int], list[float], list[int], np.ndarray, np.ndarray, np.ndarray]:
        """Numeric leaves (indices, scaled values) and the sparse token entries of all others.

        Returns ``(num_leaf, num_z, tok_leaf, pos, val)``-style arrays: ``tok_leaf [T]`` is the leaf of
        each token, ``pos [T, s]`` and ``val [T, s]`` its code's positions and weighted values.
        """
        tok_leaf, tok_ids, tok_w, num_leaf, num_z = [], [], [], [], []
        for i, leaf in enumerate(leaves):
            v = leaf.value
            if isinstance(v, float):
                num_leaf.append(i)
                num_z.append(self._scaled(leaf.path, v))
            else:
                ids, w = self._atom(v) if isinstance(v, Atom) else self._string(v)
                tok_leaf.append(np.full(len(ids), i, dtype=np.int64))
                tok_ids.append(ids)
                tok_w.append(w)
        if not tok_ids:
            s = self.codebook.sparsity
            return num_leaf, num_z, np.zeros(0, np.int64), np.zeros((0, s), np.int64), np.zeros((0, s), np.float32)
        pos, sign = self.codebook.entries(np.concatenate(tok_ids))
        w = np.concatenate(tok_w) / math.sqrt(self.codebook.sparsity)
        return num_leaf, num_z, np.concatenate(tok_leaf), pos, sign * w[:, None]

    def _number_rows(self, num_z: list[float]) -> Tensor:
        z = torch.tensor(num_z, dtype=self.dtype, device=self.device)
        return self.numbers.encode(z) * self.config.number_weight

    def _leaf_rows(self, leaves: list[Leaf]) -> Tensor:
        """Unbound, unweighted leaf codes ``[L, D]``."""
        rows = torch.zeros(len(leaves), self.dim, dtype=self.dtype, device=self.device)
        num_leaf, num_z, tok_leaf, pos, val = self._split(leaves)
        if len(tok_leaf):
            flat = (tok_leaf * self.dim)[:, None] + pos
            rows.view(-1).index_add_(0, torch.from_numpy(flat.ravel()).to(self.device),
                                     torch.from_numpy(val.ravel()).to(self.device, self.dtype))
        if num_leaf:
            rows[torch.tensor(num_leaf, device=self.device)] = self._number_rows(num_z)
        return rows

    def _bind_rows(self, out: Tensor, rows: Tensor, paths: list[Path], doc_of: list[int], weights: list[float]) -> None:
        """``out[doc] += w R_path row`` for dense rows, one :meth:`OrthogonalMap.apply` per distinct path."""
        groups: dict[Path, list[int]] = {}
        for i, path in enumerate(paths):
            groups.setdefault(path, []).append(i)
        doc_t = torch.tensor(doc_of, device=self.device)
        w_t = torch.tensor(weights, dtype=self.dtype, device=self.device).unsqueeze(-1)
        for path, idx in groups.items():
            ix = torch.tensor(idx, device=self.device)
            out.index_add_(0, doc_t[ix], self.role(path).apply(rows[ix] * w_t[ix]))

    def _scatter_tokens(self, out: Tensor, leaves: list[Leaf], doc_of: list[int], tok_leaf: np.ndarray,
                        pos: np.ndarray, val: np.ndarray) -> None:
        r"""Signed-permutation fast path: scatter token entries straight into ``out``.

        A code entry :math:`v e_p` bound by :math:`(R x)_i = \sigma_i x_{\pi(i)}` lands at
        :math:`q = \pi^{-1}(p)` with value :math:`\sigma_q v`; no dense leaf row is formed.
        """
        path_ids: dict[Path, int] = {}
        leaf_pid = np.fromiter((path_ids.setdefault(l.path, len(path_ids)) for l in leaves), np.int64, len(leaves))
        order = np.argsort(leaf_pid[tok_leaf], kind="stable")
        tok_leaf, pos, val = tok_leaf[order], pos[order], val[order]
        bounds = np.searchsorted(leaf_pid[tok_leaf], np.arange(len(path_ids) + 1))
        weights = np.fromiter((l.weight for l in leaves), np.float32, len(leaves))
        row_base = np.asarray(doc_of, dtype=np.int64)[tok_leaf] * self.dim
        pos_t = torch.from_numpy(pos).to(self.device)
        val_t = torch.from_numpy(val * weights[tok_leaf][:, None]).to(self.device, self.dtype)
        base_t = torch.from_numpy(row_base).to(self.device).unsqueeze(-1)
        flats, vals = [], []
        for path, pid in path_ids.items():
            a, b = bounds[pid], bounds[pid + 1]
            if a == b:
                continue
            dest, sign = self.role(path).scatter_form()
            p = pos_t[a:b]
            flats.append((base_t[a:b] + dest[p]).ravel())
            vals.append((val_t[a:b] * sign[p]).ravel())
        out.view(-1).index_add_(0, torch.cat(flats), torch.cat(vals))

    # ----------------------------------------------------------------- documents
    def leaves(self, doc: Any) -> list[Leaf]:
        """Validated leaves of ``doc`` (see :func:`walk`)."""
        return walk(doc, self.config.max_depth, self.config.weighting)

    def encode_batch(self, docs: list[Any]) -> Tensor:
        """Unit vectors ``[B, D]`` for a list of documents."""
        leaves: list[Leaf] = []
        doc_of: list[int] = []
        structures: list[set[str]] = []
        for b, doc in enumerate(docs):
            ls = self.leaves(doc)
            leaves.extend(ls)
            doc_of.extend([b] * len(ls))
            if self.config.structure:
                structures.append(self.structure_of(ls))
        out = torch.zeros(len(docs), self.dim, dtype=self.dtype, device=self.device)
        if not leaves:
            return out
        if not self.sparse_scatter:
            self._bind_rows(out, self._leaf_rows(leaves), [l.path for l in leaves], doc_of, [l.weight for l in leaves])
        else:
            num_leaf, num_z, tok_leaf, pos, val = self._split(leaves)
            if len(tok_leaf):
                self._scatter_tokens(out, leaves, doc_of, tok_leaf, pos, val)
            if num_leaf:
                self._bind_rows(out, self._number_rows(num_z), [leaves[i].path for i in num_leaf],
                                [doc_of[i] for i in num_leaf], [leaves[i].weight for i in num_leaf])
        if structures and self.structure_beta > 0:
            out += self.structure_beta * self._structure_role.apply(self.structure_bags(structures))
        return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def structure_of(self, leaves: list[Leaf]) -> set[str]:
        """Structure tokens (:func:`tasks.mbat.structure.structure_tokens`) of one document's leaves."""
        if len(self._patterns) >= 200_000:
            self._patterns.clear()
        return structure_tokens(((l.path, leaf_type(l.value, isinstance(l.value, Atom))) for l in leaves),
                                self.config.structure_arrays, self._patterns)

    def structure_bags(self, structures: list[set[str]]) -> Tensor:
        r"""Unbound structure bags ``[B, D]``: :math:`\sum_t \mathrm{idf}_t c_t / (\mathrm{idf}_\max \sqrt{|T|})`."""
        bags = torch.zeros(len(structures), self.dim, dtype=self.dtype, device=self.device)
        rows, ids, weights = [], [], []
        idf = self.structure_idf
        for b, tokens in enumerate(structures):
            if not tokens:
                continue
            toks = sorted(tokens)
            rows.append(np.full(len(toks), b, dtype=np.int64))
            ids.append(self.codebook.ids(["s" + t for t in toks]))
            weights.append(idf.weights(toks) / (idf.max * math.sqrt(len(toks))))
        if not rows:
            return bags
        pos, sign = self.codebook.entries(np.concatenate(ids))
        val = sign * (np.concatenate(weights) / math.sqrt(self.codebook.sparsity))[:, None]
        flat = (np.concatenate(rows) * self.dim)[:, None] + pos
        bags.view(-1).index_add_(0, torch.from_numpy(flat.ravel()).to(self.device),
                                 torch.from_numpy(val.ravel()).to(self.device, self.dtype))
        return bags

    def encode(self, doc: Any) -> Tensor:
        """Unit vector ``[D]`` for one document."""
        return self.encode_batch([doc])[0]

    def iter_encode(self, docs: Iterable[Any], batch_size: int = 256, progress: bool = True,
                    total: int | None = None) -> Iterator[Tensor]:
        """Stream batches ``[b, D]`` from an iterable of documents (never holds more than a batch)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batch: list[Any] = []
        bar = tqdm(total=total, unit="doc", desc="encode", disable=not progress)
        for doc in docs:
            batch.append(doc)
            if len(batch) == batch_size:
                yield self.encode_batch(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            yield self.encode_batch(batch)
            bar.update(len(batch))
        bar.close()

    def fit(self, docs: Iterable[Any], progress: bool = False, balance_sample: int = 512) -> "JsonEncoder":
        r"""Fit on a corpus, streamed; returns ``self``.

        Fits per-key number scales, (with ``idf``) token frequencies, (with ``structure``)
        structure-token frequencies and, unless ``structure_weight`` was given, the structure
        balance :math:`\beta` (:func:`structure_balance`, from the first ``balance_sample``
        documents).

        Raises:
            JsonInputError: no documents, every document empty (``{}``, ``[]``), or a document
                that is not JSON.
        """
        scaler = NumberScaler(self.scaler.min_count, self.scaler.log_ratio)
        structures: list[set[str]] = []
        sample: list[set[str]] = []
        n_docs = n_empty = 0

        def token_sets() -> Iterator[set[str]]:
            nonlocal n_docs, n_empty
            for doc in tqdm(docs, desc="fit", unit="doc", disable=not progress):
                tokens: set[str] = set()
                leaves = walk(doc, self.config.max_depth, self.config.weighting)
                n_docs += 1
                n_empty += len(leaves) == 1 and leaves[0].value in (EMPTY_OBJECT, EMPTY_ARRAY)
                if self.config.structure:
                    structure = self.structure_of(leaves)
                    structures.append(structure)
                    if len(sample) < balance_sample:
                        sample.append(structure)
                for leaf in leaves:
                    if isinstance(leaf.value, float):
                        exact, wild = format_path(leaf.path), pattern(leaf.path)
                        scaler.observe(exact, leaf.value)
                        if wild != exact:
                            scaler.observe(wild, leaf.value)
                    elif isinstance(leaf.value, Atom):
                        tokens.add("!" + leaf.value)
                    elif self.config.idf:
                        tokens.update(string_tokens(leaf.value, self.config.ngram)[0])
                yield tokens

        token_idf = TokenIdf.fit(token_sets())
        if n_docs == 0:
            raise JsonInputError("fit: got zero documents; pass a non-empty corpus (an iterable of JSON values)")
        if n_empty == n_docs:
            raise JsonInputError(f"fit: all {n_docs} documents are empty ({{}} or []): there is nothing to encode; "
                                 "check the corpus and its mask")
        self.token_idf = token_idf if self.config.idf else TokenIdf()
        self.scaler = scaler.finish()
        if self.config.structure:
            self.structure_idf = TokenIdf.fit(iter(structures)) if self.config.structure_idf else TokenIdf()
            if self.config.structure_weight is None:
                self.structure_beta = structure_balance(self._mean_structure_cosine(sample))
        self._strings.clear()
        return self

    def _mean_structure_cosine(self, structures: list[set[str]]) -> float:
        """Mean cosine between the structure bags of distinct documents (1.0 for fewer than two)."""
        if len(structures) < 2:
            return 1.0
        bags = self.structure_bags(structures)
        bags = bags / bags.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        total = bags.sum(0)
        n = len(structures)
        return float((total @ total - (bags * bags).sum()) / (n * (n - 1)))

    # ----------------------------------------------------------------- persistence
    def state(self) -> dict:
        """JSON-serialisable state: the config, dtype and fitted scales."""
        cfg = asdict(self.config)
        cfg["string_weights"] = list(cfg["string_weights"])
        return {"config": cfg, "dtype": str(self.dtype).removeprefix("torch."), "scaler": self.scaler.state(),
                "token_idf": self.token_idf.state(), "structure_idf": self.structure_idf.state(),
                "structure_beta": self.structure_beta}

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str = "cpu") -> "JsonEncoder":
        """Inverse of :meth:`state`."""
        cfg, extra = dict(state["config"]), {}
        if "structure_idf" in state:
            extra = {"structure_idf_table": TokenIdf.from_state(state["structure_idf"]),
                     "structure_beta": state["structure_beta"]}
        else:  # written before the structure term existed: encode as then
            cfg["structure"] = False
        return cls(**cfg, **extra, scaler=NumberScaler.from_state(state["scaler"]),
                   token_idf=TokenIdf.from_state(state["token_idf"]),
                   dtype=getattr(torch, state["dtype"]), device=device)

    def save(self, path: str | FsPath) -> None:
        """Write :meth:`state` as JSON."""
        FsPath(path).write_text(json.dumps(self.state(), indent=1))

    @classmethod
    def load(cls, path: str | FsPath, device: torch.device | str = "cpu") -> "JsonEncoder":
        """Read an encoder written by :meth:`save`."""
        return cls.from_state(json.loads(FsPath(path).read_text()), device)

    def __repr__(self) -> str:
        c = self.config
        structure = f", structure={self.structure_beta:.2f}" if c.structure else ""
        return (f"JsonEncoder(dim={c.dim}, family={c.family!r}, array_mode={c.array_mode!r}, "
                f"number_code={c.number_code!r}{structure})")


def _check_config(dim: int, family: str, array_mode: str, weighting: str, dtype: torch.dtype,
                  structure_weight: float | None) -> None:
    """Reject settings that cannot work, before any role is drawn."""
    if family not in FAMILIES:
        raise EncoderConfigError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 2:
        raise EncoderConfigError(f"dim must be an integer >= 2, got {dim!r}")
    if family == "hadamard" and dim & (dim - 1):
        lower = 1 << (dim.bit_length() - 1)
        raise EncoderConfigError(f"family 'hadamard' needs D = 2^k, got D={dim}; use D={lower} or {2 * lower}, "
                                 "or family 'perm'")
    if family == "dense" and dim > 8192:
        raise EncoderConfigError(f"family 'dense' stores a D x D matrix per key; D={dim} is too large (at most 8192): "
                                 "use family 'perm' or 'hadamard'")
    if array_mode not in ("position", "bag"):
        raise EncoderConfigError(f"array_mode must be 'position' or 'bag', got {array_mode!r}")
    if weighting not in ("sqrt", "none"):
        raise EncoderConfigError(f"weighting must be 'sqrt' or 'none', got {weighting!r}")
    if dtype not in (torch.float32, torch.float64):
        raise EncoderConfigError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if structure_weight is not None and not structure_weight >= 0:
        raise EncoderConfigError(f"structure_weight must be >= 0 or None (chosen by fit), got {structure_weight}")


def _leaf_value(value: Any, path: Path) -> Any:
    """A user-supplied scalar as :func:`walk` would list it (containers other than ``{}``/``[]`` are rejected)."""
    leaves = walk(value)
    if len(leaves) != 1 or leaves[0].path != ():
        raise JsonInputError(f"leaf_code at {format_path(path)}: need a scalar value, got a container {value!r}")
    return leaves[0].value

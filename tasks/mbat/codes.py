r"""Item codes for JSON leaves: "soft" strings, "soft" numbers and fixed atoms.

**Atoms and tokens** get sparse hashed codes: a token :math:`t` is the vector with
:math:`s` entries :math:`\pm 1/\sqrt{s}` at positions and signs read from
:func:`tasks.mbat.seeding.stable_digest` of the token. Two distinct codes have an inner
product with mean 0 and variance :math:`1/D`, exactly as dense random vectors, but a bag
of :math:`n` tokens costs :math:`ns` additions instead of :math:`nD`.

**Soft strings** (:func:`string_tokens`): a string is normalised (Unicode NFC, case-folded,
runs of whitespace collapsed to one space, stripped) and coded as

.. math::
    v(s) = \frac{\alpha\, \hat e_\text{exact}(s) + \beta\, \hat e_\text{words}(s)
    + \gamma\, \hat e_\text{ngrams}(s)}{\sqrt{\alpha^2+\beta^2+\gamma^2}},

three bags: the whole string (exact identity), its words (``\w+``) and the character
n-grams of each alphabetic word padded with ``#`` (identifiers and numbers such as
``6vm3`` get no n-grams: their spelling carries no similarity). Each bag has unit norm
when its tokens are rare; tokens are weighted by :math:`\mathrm{idf}_t/\mathrm{idf}_\max`
(:class:`TokenIdf`, :func:`soft_string_weights`). Strings that share words or spellings
therefore get similar vectors ("gin-gonic/gin" vs "gin-gonic/gin/render").

**Soft numbers** (:class:`NumberCode`): a value is first scaled per key
(:class:`NumberScaler`: :math:`z = (f(x) - \text{median}) / \text{scale}` with
:math:`f = \log_{10}` for positive heavy-tailed keys), then coded so that
:math:`\langle v(z), v(z')\rangle \approx k(z - z')`:

* ``fpe`` (fractional power / random Fourier features):
  :math:`v_j(z) = \sqrt{2/D}\cos(\omega_j z + b_j)`, :math:`\omega_j \sim \mathcal N(0, h^{-2})`,
  giving the Gaussian kernel :math:`k(\Delta) = e^{-\Delta^2 / 2h^2}`;
* ``level`` (thermometer chain): random bipolar vectors at levels spaced :math:`h` apart,
  each coordinate switching from one level's vector to the next at a random threshold,
  giving :math:`k(\Delta) = \max(0, 1 - |\Delta|/h)`; :math:`z` is clamped to
  :math:`[-z_\max, z_\max]`.

Both are decoded by scanning a grid of candidate values (:meth:`NumberCode.decode`).
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from graphcore.tasks.mbat.seeding import generator, stable_digest

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


def normalise_string(s: str) -> str:
    """NFC, case-folded, whitespace runs collapsed to one space, stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", s).casefold()).strip()


def normalise_key(k: str) -> str:
    """NFC and stripped; case is kept (JSON keys are identifiers: ``Name`` and ``name`` differ)."""
    return unicodedata.normalize("NFC", k).strip()


BAGS = ("exact", "words", "ngrams")


def string_tokens(s: str, ngram: int = 3) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tokens of a soft string, their counts and the bag each belongs to.

    Args:
        s: the raw string value (normalised here).
        ngram: character n-gram length (0 disables n-grams).

    Returns:
        ``(tokens, counts, bag)``: distinct tokens (prefixed ``=`` exact, ``w`` word, ``g`` n-gram),
        their counts in the string, and the bag index (0 exact, 1 words, 2 n-grams).
    """
    norm = normalise_string(s)
    words = _WORD.findall(norm)
    counts: dict[str, int] = {"=" + norm: 1}
    bag = [0]
    for w in words:
        t = "w" + w
        if t not in counts:
            bag.append(1)
        counts[t] = counts.get(t, 0) + 1
    if ngram:
        for w in words:
            if not w.isalpha():
                continue
            p = f"#{w}#"
            for i in range(max(1, len(p) - ngram + 1)):
                t = "g" + p[i : i + ngram]
                if t not in counts:
                    bag.append(2)
                counts[t] = counts.get(t, 0) + 1
    return list(counts), np.fromiter(counts.values(), dtype=np.float32, count=len(counts)), np.asarray(bag, dtype=np.int64)


def soft_string_weights(counts: np.ndarray, bag: np.ndarray, idf: np.ndarray, idf_max: float,
                        alphas: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    r"""Token weights of a soft string: bags of unit norm when every token is rare.

    .. math::
        w_t = \frac{\alpha_{b(t)}}{\sqrt{\sum_{b\,\text{present}} \alpha_b^2}}\;
        \frac{c_t\, \mathrm{idf}_t}{\mathrm{idf}_\max \sqrt{\sum_{u \in b(t)} c_u^2}}

    so a string of rare tokens has norm :math:`\approx 1` and one of tokens found in every
    document (``"Go"``, ``"https"``) shrinks towards :math:`1/\mathrm{idf}_\max`; with all
    :math:`\mathrm{idf} = \mathrm{idf}_\max` (no corpus fitted) this is plain bag normalisation.
    """
    a = np.asarray(alphas, dtype=np.float32)
    sq = np.bincount(bag, weights=counts * counts, minlength=3)
    present = sq > 0
    scale = a / np.sqrt(np.where(present, sq, 1.0)) / math.sqrt(float((a[present] ** 2).sum()) or 1.0)
    return (counts * idf / idf_max * scale[bag]).astype(np.float32)


class TokenIdf:
    r"""Smoothed inverse document frequency of tokens, fitted on a corpus.

    :math:`\mathrm{idf}_t = \ln\frac{1 + N}{1 + \mathrm{df}_t} + 1` (scikit-learn's smooth
    form). Only tokens seen in two or more documents are stored; any other token counts
    as :math:`\mathrm{df} = 1`. Unfitted (:math:`N = 0`) every token has the same weight.
    """

    def __init__(self, n_docs: int = 0, df: dict[str, int] | None = None):
        self.n_docs = n_docs
        self.df = df or {}
        self.max = math.log((1 + n_docs) / 2) + 1 if n_docs else 1.0

    @classmethod
    def fit(cls, token_sets: Iterable[set[str]]) -> "TokenIdf":
        """Document frequencies from one set of tokens per document."""
        counts: Counter = Counter()
        n = 0
        for tokens in token_sets:
            counts.update(tokens)
            n += 1
        return cls(n, {t: c for t, c in counts.items() if c >= 2})

    def weights(self, tokens: list[str]) -> np.ndarray:
        r"""Idf of each token (all equal to :attr:`max` when unfitted)."""
        if not self.n_docs:
            return np.full(len(tokens), self.max, dtype=np.float32)
        df = np.fromiter((self.df.get(t, 1) for t in tokens), dtype=np.float64, count=len(tokens))
        return (np.log((1 + self.n_docs) / (1 + df)) + 1).astype(np.float32)

    def state(self) -> dict:
        """JSON-serialisable state."""
        return {"n_docs": self.n_docs, "df": self.df}

    @classmethod
    def from_state(cls, state: dict) -> "TokenIdf":
        """Inverse of :meth:`state`."""
        return cls(state["n_docs"], state["df"])


class SparseCodebook:
    r"""Item memory of sparse hashed codes, one per token, assigned ids on first sight.

    Codes depend only on ``(seed, token)``, never on the order tokens were seen, so the
    cache may be cleared at any time (it is, whenever it holds ``max_tokens``).

    Args:
        dim: vector dimension :math:`D`.
        seed: global seed.
        sparsity: non-zeros per code :math:`s` (at most 64).
        max_tokens: cache size before it is cleared.
    """

    def __init__(self, dim: int, seed: int, sparsity: int = 16, max_tokens: int = 1 << 20):
        if not 1 <= sparsity <= 64 or sparsity > dim:
            raise ValueError(f"code sparsity must be in [1, min(64, D)], got {sparsity} for D={dim}")
        self.dim, self.seed, self.sparsity, self.max_tokens = dim, seed, sparsity, max_tokens
        self.clear()

    def clear(self) -> None:
        """Forget every cached code (codes are recomputed identically on demand); bumps :attr:`generation`."""
        self.generation = getattr(self, "generation", -1) + 1
        self._ids: dict[str, int] = {}
        self._pos = np.empty((1024, self.sparsity), dtype=np.int64)
        self._sign = np.empty((1024, self.sparsity), dtype=np.float32)

    def codes(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[n, s]`` and signs ``[n, s]`` of the tokens' codes (entries are ``sign / sqrt(s)``)."""
        s = self.sparsity
        width = 4 * s + 8
        raw = np.frombuffer(b"".join(stable_digest(self.seed, "token", t, size=width) for t in tokens),
                            dtype=np.uint8).reshape(len(tokens), width)
        pos = (raw[:, : 4 * s].copy().view(np.uint32) % self.dim).astype(np.int64)
        bits = np.unpackbits(raw[:, 4 * s :], axis=1, bitorder="little")[:, :s]
        return pos, bits.astype(np.float32) * 2 - 1

    def ids(self, tokens: list[str]) -> np.ndarray:
        """Cache ids of ``tokens`` (valid until the next :meth:`clear`)."""
        if len(self._ids) + len(tokens) > self.max_tokens:
            self.clear()
        table = self._ids
        new = [t for t in dict.fromkeys(tokens) if t not in table]
        if new:
            start = len(table)
            need = start + len(new)
            if need > len(self._pos):
                size = max(need, 2 * len(self._pos))
                self._pos = np.concatenate([self._pos, np.empty((size - len(self._pos), self.sparsity), np.int64)])
                self._sign = np.concatenate([self._sign, np.empty((size - len(self._sign), self.sparsity), np.float32)])
            self._pos[start:need], self._sign[start:need] = self.codes(new)
            table.update(zip(new, range(start, need)))
        return np.fromiter((table[t] for t in tokens), dtype=np.int64, count=len(tokens))

    def entries(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and signs ``[n, s]`` for cache ids."""
        return self._pos[ids], self._sign[ids]

    def dense(self, tokens: list[str], weights: list[float], dtype=torch.float32, device="cpu") -> Tensor:
        """The weighted bag :math:`\\sum_t w_t\\, c_t` as a dense ``[D]`` vector."""
        pos, sign = self.entries(self.ids(tokens))
        vals = sign * (np.asarray(weights, dtype=np.float32)[:, None] / math.sqrt(self.sparsity))
        out = torch.zeros(self.dim, dtype=dtype, device=device)
        out.index_add_(0, torch.from_numpy(pos.ravel()).to(device), torch.from_numpy(vals.ravel()).to(device, dtype))
        return out


@dataclass
class KeyScale:
    """How one key's numbers map to :math:`z`: optional symmetric log, then centre and scale.

    The symmetric log :math:`\\operatorname{sign}(x)\\log_{10}(1 + |x|)` keeps zeros and negative
    sentinels (``"area": -1``) finite.
    """

    log: bool = False
    centre: float = 0.0
    scale: float = 1.0
    count: int = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Raw values -> :math:`z`."""
        t = np.sign(x) * np.log10(1 + np.abs(x)) if self.log else x
        return (t - self.centre) / self.scale

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """:math:`z` -> raw values."""
        t = np.asarray(z) * self.scale + self.centre
        return np.sign(t) * (10.0 ** np.abs(t) - 1) if self.log else t


@dataclass
class NumberScaler:
    r"""Per-key number scales fitted on a corpus.

    A value at path ``latlng[0]`` uses the scale fitted for exactly ``latlng[0]`` when that
    key had at least ``min_count`` values, else the one for the pattern ``latlng[*]``, else
    the identity. A key is put on a symmetric log scale when the 95th/5th percentile
    ratio of its non-zero magnitudes exceeds ``log_ratio`` (heavy tails: areas, populations). Centre = median;
    scale = IQR / 1.349 (the standard deviation of a normal), falling back to the standard
    deviation, then to 1.
    """

    min_count: int = 5
    log_ratio: float = 100.0
    max_values: int = 100_000
    scales: dict[str, KeyScale] = field(default_factory=dict)
    _values: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def observe(self, key: str, value: float) -> None:
        """Record one value for ``key`` (the first ``max_values`` per key are kept)."""
        vals = self._values.setdefault(key, [])
        if len(vals) < self.max_values:
            vals.append(value)

    def finish(self) -> "NumberScaler":
        """Turn the observed values into :class:`KeyScale` entries."""
        for key, vals in self._values.items():
            if len(vals) < self.min_count:
                continue
            x = np.asarray(vals, dtype=np.float64)
            mags = np.abs(x[x != 0])
            lo, hi = np.percentile(mags, [5, 95]) if len(mags) else (1.0, 1.0)
            log = bool(hi / max(lo, 1e-300) > self.log_ratio)
            t = np.sign(x) * np.log10(1 + np.abs(x)) if log else x
            q1, med, q3 = np.percentile(t, [25, 50, 75])
            scale = (q3 - q1) / 1.349
            if not scale > 0:
                scale = float(t.std()) or 1.0
            self.scales[key] = KeyScale(log, float(med), float(scale), len(vals))
        self._values.clear()
        return self

    def lookup(self, exact: str, wildcard: str) -> KeyScale:
        """The scale for a path given its exact and ``[*]`` forms."""
        return self.scales.get(exact) or self.scales.get(wildcard) or KeyScale()

    def state(self) -> dict:
        """JSON-serialisable state."""
        return {"min_count": self.min_count, "log_ratio": self.log_ratio,
                "scales": {k: vars(v) for k, v in self.scales.items()}}

    @classmethod
    def from_state(cls, state: dict) -> "NumberScaler":
        """Inverse of :meth:`state`."""
        scaler = cls(min_count=state["min_count"], log_ratio=state["log_ratio"])
        scaler.scales = {k: KeyScale(**v) for k, v in state["scales"].items()}
        return scaler


NUMBER_CODES = ("fpe", "level")


class NumberCode:
    r"""Soft number code :math:`z \mapsto v(z) \in \mathbb R^D` (``fpe`` or ``level``, see module doc).

    Args:
        dim: :math:`D`.
        seed: global seed.
        kind: ``"fpe"`` or ``"level"``.
        bandwidth: kernel width :math:`h` in scaled units.
        z_max: range of the level chain and of the decoding grid, :math:`[-z_\max, z_\max]`.
    """

    def __init__(self, dim: int, seed: int, kind: str = "fpe", bandwidth: float = 0.5, z_max: float = 8.0,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        if kind not in NUMBER_CODES:
            raise ValueError(f"unknown number code {kind!r}; choose one of {', '.join(NUMBER_CODES)}")
        if not bandwidth > 0 or not z_max > 0:
            raise ValueError(f"number code: bandwidth and z_max must be > 0, got {bandwidth} and {z_max}")
        self.dim, self.kind, self.bandwidth, self.z_max = dim, kind, bandwidth, z_max
        self._grids: dict[int, tuple[Tensor, Tensor]] = {}
        g = generator(seed, "number", kind)
        if kind == "fpe":
            self.freq = (torch.randn(dim, generator=g, dtype=torch.float64) / bandwidth).to(device, dtype)
            self.phase = (torch.rand(dim, generator=g, dtype=torch.float64) * 2 * math.pi).to(device, dtype)
        else:
            levels = int(math.ceil(2 * z_max / bandwidth)) + 2
            self.levels = (torch.randint(0, 2, (levels, dim), generator=g).to(torch.float64) * 2 - 1).div(math.sqrt(dim)).to(device, dtype)
            self.threshold = torch.rand(dim, generator=g, dtype=torch.float64).to(device, dtype)

    def encode(self, z: Tensor) -> Tensor:
        """Codes ``[n, D]`` for scaled values ``z`` ``[n]`` (unit norm up to :math:`O(1/\\sqrt D)`)."""
        if self.kind == "fpe":
            return torch.cos(z.unsqueeze(-1) * self.freq + self.phase) * math.sqrt(2.0 / self.dim)
        t = (z.clamp(-self.z_max, self.z_max) + self.z_max) / self.bandwidth
        k = t.floor().long().clamp_max(self.levels.shape[0] - 2)
        frac = (t - k).unsqueeze(-1)
        return torch.where(self.threshold < frac, self.levels[k + 1], self.levels[k])

    def grid(self, steps: int = 4001) -> Tensor:
        """Candidate :math:`z` values for decoding."""
        return torch.linspace(-self.z_max, self.z_max, steps, dtype=self._dtype(), device=self._device())

    def decode(self, y: Tensor, steps: int = 4001) -> tuple[Tensor, Tensor]:
        """Best :math:`z` for each row of ``y`` ``[n, D]`` and its cosine similarity ``[n]``."""
        if steps not in self._grids:
            zs = self.grid(steps)
            codes = self.encode(zs)
            self._grids[steps] = (zs, codes / codes.norm(dim=-1, keepdim=True))
        zs, codes = self._grids[steps]
        sims = (y @ codes.T) / y.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        best = sims.argmax(dim=-1)
        return zs[best], sims.gather(-1, best.unsqueeze(-1)).squeeze(-1)

    def _dtype(self) -> torch.dtype:
        return self.freq.dtype if self.kind == "fpe" else self.levels.dtype

    def _device(self) -> torch.device:
        return self.freq.device if self.kind == "fpe" else self.levels.device

r"""Lexical baselines for JSON similarity: key-path TF-IDF and MinHash over the same tokens.

A user comparing JSON embeddings first tries a few lines of scikit-learn, so the benchmark
(``benchmarks/mbat_eval.py``) measures that against :class:`~tasks.mbat.encoder.JsonEncoder`
in the same run. A document becomes the tokens

* ``a.b.c``: the key path of every leaf (array positions dropped), and
* ``a.b.c=<value>``: the path with the whole normalised value (strings NFC and case-folded,
  numbers as ``%g``, atoms as ``true`` / ``null`` / ``{}``...);

:func:`keypath_tfidf_gram` is TF-IDF over them (sublinear tf :math:`1 + \ln \mathrm{tf}`,
smooth idf, :math:`\ell_2` rows, cosine); :func:`minhash_gram` estimates the Jaccard
similarity of the token *sets* with :math:`k` min-wise hashes,
:math:`\hat J(A, B) = \frac1k \sum_i [\min h_i(A) = \min h_i(B)]`.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from graphcore.tasks.mbat.codes import normalise_string
from graphcore.tasks.mbat.encoder import walk

def keypath_tokens(doc: Any) -> list[str]:
    """``path`` and ``path=value`` tokens of every leaf of ``doc`` (see the module docstring)."""
    out = []
    for leaf in walk(doc):
        key = ".".join(s for s in leaf.path if isinstance(s, str))
        v = leaf.value
        out.append(key)
        out.append(f"{key}={v:g}" if isinstance(v, float) else f"{key}={normalise_string(str(v))}")
    return out


def keypath_tfidf_gram(docs: Sequence[Any]) -> Tensor:
    """Cosine matrix ``[N, N]`` of sublinear TF-IDF vectors over :func:`keypath_tokens`."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not docs:
        raise ValueError("keypath_tfidf_gram: no documents")
    tfidf = TfidfVectorizer(analyzer=keypath_tokens, sublinear_tf=True, dtype=np.float32).fit_transform(docs)
    return torch.from_numpy((tfidf @ tfidf.T).toarray())


def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


def minhash_signatures(docs: Sequence[Any], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signatures ``[N, num_perm]`` of the token sets of ``docs``.

    Hash :math:`h_i(t) = \\lfloor ((a_i\\, g(t) + b_i) \\bmod 2^{64}) / 2^{32} \\rfloor`
    (multiply-add-shift, a universal family) with :math:`g` a 64-bit BLAKE2b of the token and
    odd :math:`a_i`, and :math:`b_i` drawn from ``seed``.
    """
    if num_perm < 1:
        raise ValueError(f"minhash_signatures: num_perm must be >= 1, got {num_perm}")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, np.iinfo(np.uint64).max, num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, num_perm, dtype=np.uint64, endpoint=True)
    sig = np.full((len(docs), num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2^64 is the point
        for i, doc in enumerate(docs):
            tokens = set(keypath_tokens(doc))
            if tokens:
                g = np.fromiter((_token_hash(t) for t in tokens), np.uint64, len(tokens))
                sig[i] = ((g[:, None] * a + b) >> np.uint64(32)).min(axis=0)
    return sig


def minhash_gram(docs: Sequence[Any], num_perm: int = 128, seed: int = 0, block: int = 64) -> Tensor:
    """Estimated Jaccard similarity matrix ``[N, N]`` of the documents' token sets."""
    sig = minhash_signatures(docs, num_perm, seed)
    out = np.empty((len(sig), len(sig)), dtype=np.float32)
    for start in range(0, len(sig), block):
        out[start : start + block] = (sig[start : start + block, None, :] == sig[None, :, :]).mean(axis=-1)
    return torch.from_numpy(out)

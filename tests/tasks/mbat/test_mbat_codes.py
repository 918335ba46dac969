"""Leaf codes: string normalisation and tokens, sparse codebook, idf, number scales and codes."""
import math

import numpy as np
import pytest
import torch

from graphcore.tasks.mbat.codes import (KeyScale, NumberCode, NumberScaler, SparseCodebook, TokenIdf, normalise_key,
                              normalise_string, soft_string_weights, string_tokens)
from graphcore.tasks.mbat.paths import format_path, parse_path, pattern
from graphcore.tasks.mbat.seeding import stable_digest, stable_seed


def test_normalisation_policy():
    assert normalise_string("  Hello\t\n  WORLD ") == "hello world"
    assert normalise_string("Cafe\u0301") == normalise_string("Café") == "café"
    assert normalise_string("STRASSE") == normalise_string("straße")  # case-folding, not lower()
    assert normalise_key(" Name ") == "Name"


def test_string_tokens_and_weights():
    tokens, counts, bag = string_tokens("Gin gin v1", ngram=3)
    assert tokens[0] == "=gin gin v1" and bag[0] == 0
    assert tokens[1:3] == ["wgin", "wv1"] and counts[1] == 2
    grams = [t for t, b in zip(tokens, bag) if b == 2]
    assert grams == ["g#gi", "ggin", "gin#"]  # "v1" is not alphabetic: no n-grams
    idf = np.full(len(tokens), 2.0, np.float32)
    w = soft_string_weights(counts, bag, idf, 2.0)
    # each bag has unit norm, the three together unit norm
    for b in range(3):
        assert float(np.sqrt((w[bag == b] ** 2).sum())) == pytest.approx(3**-0.5, rel=1e-5)
    half = soft_string_weights(counts, bag, idf / 2, 2.0)
    np.testing.assert_allclose(half, w / 2, rtol=1e-6)


def test_sparse_codes_are_stable_and_nearly_orthogonal():
    book = SparseCodebook(1024, seed=3, sparsity=16)
    pos, sign = book.codes(["alpha", "beta"])
    pos2, sign2 = SparseCodebook(1024, seed=3).codes(["alpha", "beta"])
    assert np.array_equal(pos, pos2) and np.array_equal(sign, sign2)
    assert set(np.unique(sign)) <= {-1.0, 1.0} and pos.max() < 1024
    tokens = [f"t{i}" for i in range(300)]
    vecs = torch.stack([book.dense([t], [1.0]) for t in tokens])
    gram = vecs @ vecs.T
    assert gram.diagonal().mean() == pytest.approx(1.0, abs=0.02)
    off = gram[~torch.eye(300, dtype=torch.bool)]
    assert off.mean().abs() < 0.01 and off.std() == pytest.approx(1024**-0.5, rel=0.3)
    # ids survive clearing: codes depend on the token only
    first = book.ids(["x", "y"])
    book.clear()
    assert book.generation == 1
    np.testing.assert_array_equal(book.entries(book.ids(["y"]))[0], book.codes(["y"])[0])
    assert len(first) == 2
    with pytest.raises(ValueError, match="code sparsity"):
        SparseCodebook(1024, 0, sparsity=100)


def test_token_idf():
    idf = TokenIdf.fit([{"a", "b"}, {"a"}, {"a", "c"}, {"a", "b"}])
    assert idf.df == {"a": 4, "b": 2}  # tokens seen once are not stored
    w = idf.weights(["a", "b", "c", "never"])
    assert w[0] == pytest.approx(math.log(5 / 5) + 1)
    assert w[1] == pytest.approx(math.log(5 / 3) + 1)
    assert w[2] == w[3] == pytest.approx(idf.max)
    again = TokenIdf.from_state(idf.state())
    np.testing.assert_array_equal(again.weights(["a", "b"]), w[:2])
    assert (TokenIdf().weights(["a", "b"]) == 1.0).all()


def test_number_scaler_fit_lookup_and_inverse():
    sc = NumberScaler(min_count=3)
    for v in [10.0, 20.0, 30.0, 40.0, 50.0]:
        sc.observe("a[0]", v)
        sc.observe("a[*]", v)
    for v in [1.0, 2.0]:
        sc.observe("rare", v)
    sc.finish()
    assert "rare" not in sc.scales
    s = sc.lookup("a[0]", "a[*]")
    assert not s.log and s.centre == 30.0 and s.scale == pytest.approx(20 / 1.349)
    assert sc.lookup("a[5]", "a[*]") is sc.scales["a[*]"]
    assert sc.lookup("b", "b") == KeyScale()
    x = np.array([-1.0, 0.0, 3.5, 1e6])
    log = KeyScale(log=True, centre=2.0, scale=1.5)
    np.testing.assert_allclose(log.inverse(log.forward(x)), x, rtol=1e-9, atol=1e-9)
    again = NumberScaler.from_state(sc.state())
    assert again.scales == sc.scales


@pytest.mark.parametrize("kind", ["fpe", "level"])
def test_number_code_kernel_and_decode(kind):
    code = NumberCode(4096, 0, kind, bandwidth=0.5, dtype=torch.float64)
    z = torch.tensor([0.0, 0.1, 0.3, 1.0, 3.0], dtype=torch.float64)
    v = code.encode(z)
    assert v.norm(dim=1).sub(1).abs().max() < 0.05
    sims = (v[0] @ v.T) / (v[0].norm() * v.norm(dim=1))
    assert all(a > b for a, b in zip(sims[:4].tolist(), sims[1:4].tolist()))
    expected = math.exp(-0.3**2 / (2 * 0.25)) if kind == "fpe" else 1 - 0.3 / 0.5
    assert float(sims[2]) == pytest.approx(expected, abs=0.05)
    assert abs(float(sims[4])) < 0.1
    noisy = v + 0.5 * torch.randn_like(v) / 64
    zhat, score = code.decode(noisy)
    torch.testing.assert_close(zhat, z, atol=0.02, rtol=0)
    assert (score > 0.5).all()
    with pytest.raises(ValueError, match="unknown number code 'spline'"):
        NumberCode(64, 0, "spline")


def test_stable_seed_is_not_pythons_hash():
    assert stable_seed(0, "latlng") == stable_seed(0, "latlng")
    assert stable_seed(0, "ab", "c") != stable_seed(0, "a", "bc")
    assert stable_digest(1, "x", size=4) != stable_digest(2, "x", size=4)
    assert stable_digest(0, "key", "name").hex() == "a327afc23f7ae96e"  # pinned: vectors must not change across versions


def test_paths_round_trip_and_errors():
    for path in [("a", "b", 2, "c"), ("x.y", 0), (), (0,), ("é", "s p")]:
        assert parse_path(format_path(path)) == path
    assert format_path(("affected", 0, "package")) == "affected[0].package"
    assert pattern(("latlng", 1)) == "latlng[*]"
    with pytest.raises(ValueError, match=r"cannot parse path 'a\.\.b' at character 1"):
        parse_path("a..b")
    with pytest.raises(ValueError, match=r"'\[\*\]' is a pattern"):
        parse_path("a[*]")

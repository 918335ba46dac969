"""Key-path TF-IDF and MinHash baselines: tokens, cosines, Jaccard estimates."""
import pytest
import torch

from graphcore.tasks.mbat.baselines import keypath_tfidf_gram, keypath_tokens, minhash_gram, minhash_signatures


def test_keypath_tokens():
    doc = {"a": {"b": "Hello  World"}, "c": [1.5, True, None], "d": {}}
    assert keypath_tokens(doc) == ["a.b", "a.b=hello world", "c", "c=1.5", "c", "c=true", "c", "c=null", "d", "d={}"]


def test_tfidf_gram_cosines():
    docs = [{"a": "x", "b": "y"}, {"a": "x", "b": "y"}, {"q": "z"}, {"a": "x", "b": "other"}]
    g = keypath_tfidf_gram(docs)
    assert g.shape == (4, 4)
    assert g[0, 1] == pytest.approx(1.0, abs=1e-5) and g[0, 2] == pytest.approx(0.0, abs=1e-6)
    assert 0.2 < g[0, 3] < 0.95  # shares the paths and one value
    with pytest.raises(ValueError, match="no documents"):
        keypath_tfidf_gram([])


def test_minhash_estimates_jaccard():
    a = {f"k{i}": "v" for i in range(60)}
    b = {f"k{i}": "v" for i in range(30, 90)}  # 30 shared keys of 90: tokens Jaccard 60/180 = 1/3
    g = minhash_gram([a, b, a], num_perm=512)
    assert g[0, 2] == 1.0
    assert g[0, 1] == pytest.approx(1 / 3, abs=0.06)
    assert minhash_signatures([a], num_perm=8, seed=1).shape == (1, 8)
    with pytest.raises(ValueError, match="num_perm must be >= 1"):
        minhash_signatures([a], num_perm=0)

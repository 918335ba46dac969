"""Exact and faiss search, leave-one-out precision, vector files."""
import numpy as np
import pytest
import torch

from graphcore.tasks.mbat.index import ExactIndex, FaissIndex, load_vectors, precision_at_k, save_vectors


def test_exact_topk_matches_brute_force():
    x = torch.randn(50, 32)
    q = torch.randn(7, 32)
    s, i = ExactIndex(x, block=3).search(q, k=4)
    sims = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
    ref_s, ref_i = sims.topk(4, dim=1)
    torch.testing.assert_close(s, ref_s)
    assert torch.equal(i, ref_i)


def test_exclude_self_and_precision():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    s, i = ExactIndex(x).search(x, k=2, exclude_self=True)
    assert i[:, 0].tolist() == [1, 0, 3, 2]
    assert (i != torch.arange(4).unsqueeze(1)).all()
    assert precision_at_k(i, ["a", "a", "b", "b"], 1) == 1.0
    assert precision_at_k(i, ["a", "a", "b", "b"], 2) == 0.5
    assert precision_at_k(i, [["x"], ["x"], ["y"], ["z"]], 1) == 0.5
    assert precision_at_k(i, ["a", "a", "b", "c"], 1, rows=np.array([True, True, False, False])) == 1.0
    with pytest.raises(ValueError, match="at least 3 neighbours"):
        precision_at_k(i, ["a"] * 4, 3)


def test_exact_index_errors():
    with pytest.raises(ValueError, match=r"must be \[N, D\]"):
        ExactIndex(torch.zeros(3))
    with pytest.raises(ValueError, match="2 ids for 3 vectors"):
        ExactIndex(torch.zeros(3, 4), ids=["a", "b"])
    with pytest.raises(ValueError, match="queries are 5-dimensional"):
        ExactIndex(torch.zeros(3, 4)).search(torch.zeros(5))
    with pytest.raises(ValueError, match="exclude_self needs the corpus"):
        ExactIndex(torch.zeros(3, 4)).search(torch.zeros(2, 4), exclude_self=True)


def test_faiss_hnsw_recall_against_exact():
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(20, 64, generator=g)
    x = centres.repeat_interleave(50, 0) + 0.3 * torch.randn(1000, 64, generator=g)
    q = x[::10]
    _, exact = ExactIndex(x).search(q, k=10)
    _, approx = FaissIndex(x).search(q, k=10)
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(exact, approx)])
    assert overlap > 0.9


def test_vector_file_round_trip(tmp_path):
    x = torch.randn(4, 8)
    save_vectors(tmp_path / "v.npy", x, ["a", "b", "c", "d"])
    y, ids = load_vectors(tmp_path / "v.npy")
    torch.testing.assert_close(y, x)
    assert ids == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="3 ids for 4 vectors"):
        save_vectors(tmp_path / "w.npy", x, ["a", "b", "c"])
    with pytest.raises(FileNotFoundError, match="tasks.mbat encode"):
        load_vectors(tmp_path / "missing.npy")

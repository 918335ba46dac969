"""The counting sort behind the layouts equals torch's stable sort, natively and on fallback,
and layouts built with it equal the torch.unique / torch.sort definitions on a graph large
enough to take the native path."""
import pytest
import torch

from graphcore import grouping
from graphcore.grouping import group_by, runs
from graphcore.testing import random_heterograph

N = 1 << 17  # above grouping._MIN_NATIVE_ROWS: the native path


@pytest.mark.parametrize("num_keys", [1, 7, 1000, N, 3 * N])
def test_group_by_is_torchs_stable_sort(num_keys):
    keys = torch.randint(0, num_keys, (N,), generator=torch.Generator().manual_seed(num_keys))
    assert grouping._native() is not None, "g++ is part of the test environment"
    assert torch.equal(group_by(keys, num_keys), torch.sort(keys, stable=True).indices)


@pytest.mark.parametrize("n", [grouping._MIN_NATIVE_ROWS, 2000, 12000])
def test_a_sampled_batchs_keys_take_the_native_path(n, monkeypatch):
    """Batch graphs are small (12,000 edges for hector_mag_0.1 at fan-out [10, 10]): the counting
    sort serves them too, and equals torch's sort there."""
    native, calls = grouping._native(), []
    monkeypatch.setattr(grouping, "_native", lambda: calls.append(n) or native)
    keys = torch.randint(0, 5 * n, (n,), generator=torch.Generator().manual_seed(n))
    assert torch.equal(group_by(keys, 5 * n), torch.sort(keys, stable=True).indices)
    assert calls == [n]


def test_huge_key_range_falls_back_to_sort():
    keys = torch.randint(0, 1 << 40, (N,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(group_by(keys, 1 << 40), torch.sort(keys, stable=True).indices)


def test_without_a_compiler_the_order_is_the_same(monkeypatch):
    keys = torch.randint(0, 50, (N,), generator=torch.Generator().manual_seed(1))
    expected = group_by(keys, 50)
    monkeypatch.setattr(grouping, "_native", lambda: None)
    assert torch.equal(group_by(keys, 50), expected)


def test_keys_out_of_range_are_refused():
    keys = torch.zeros(N, dtype=torch.int64)
    keys[123] = 10
    with pytest.raises(ValueError, match=r"keys must lie in \[0, 10\)"):
        group_by(keys, 10)


def test_runs():
    values, starts, inverse = runs(torch.tensor([2, 2, 5, 7, 7, 7]))
    assert values.tolist() == [2, 5, 7] and starts.tolist() == [0, 2, 3, 6] and inverse.tolist() == [0, 0, 1, 2, 2, 2]
    values, starts, inverse = runs(torch.zeros(0, dtype=torch.int64))
    assert values.numel() == 0 and starts.tolist() == [0] and inverse.numel() == 0


@pytest.mark.parametrize("n", [0, 5, 3000])
@pytest.mark.parametrize("ordered", [False, True])
def test_runs_natively_equal_torch_unique(n, ordered, monkeypatch):
    """Native (n >= 512) and torch runs: torch.unique's values, inverse and first positions."""
    gen = torch.Generator().manual_seed(n)
    keys = torch.randint(0, max(n // 3, 1), (n,), generator=gen)
    order = torch.sort(keys, stable=True).indices if ordered else None
    if not ordered:
        keys = torch.sort(keys).values
    results = [runs(keys, order)]
    monkeypatch.setattr(grouping, "_native", lambda: None)
    results.append(runs(keys, order))
    unique, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    for values, starts, inv in results:
        assert torch.equal(values, unique) and torch.equal(inv, inverse)
        assert torch.equal(starts, torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]))


def test_layouts_of_a_large_graph_equal_their_definitions():
    schema = [("a", "r0", "b"), ("b", "r1", "a"), ("a", "r2", "a"), ("b", "r3", "b")]
    g = random_heterograph({"a": 3000, "b": 2000}, schema, [60000, 50000, 0, 40000], seed=3)
    L = g.layout
    assert g.num_edges() >= grouping._MIN_NATIVE_ROWS
    key = L.etype * g.num_nodes() + L.dst
    assert torch.all(key[1:] >= key[:-1])
    src_in = torch.cat([g.edge_index(r)[0] + g.node_offset(r[0]) for r in g.relations])
    assert torch.equal(src_in[L.edge_perm], L.src)
    assert torch.equal(L.csr_perm, torch.sort(L.dst, stable=True).indices)
    for name, pairs, node in (("usrc_inv", L.unique_src, L.src), ("udst_inv", L.unique_dst, L.dst)):
        unique, inverse = torch.unique(torch.stack([L.etype, node]), dim=1, return_inverse=True)
        assert torch.equal(pairs.etype, unique[0]) and torch.equal(pairs.node, unique[1])
        assert torch.equal(pairs.inverse, inverse)
        ptr, rows = L.group_csr(name, pairs.num_pairs)
        assert torch.equal(rows, torch.sort(inverse, stable=True).indices)
        assert torch.equal(ptr, torch.cat([torch.zeros(1, dtype=torch.int64),
                                           torch.bincount(inverse, minlength=pairs.num_pairs).cumsum(0)]))

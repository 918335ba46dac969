"""The counting sort behind the layouts equals torch's stable sort, natively and on fallback,
and layouts built with it equal the torch.unique / torch.sort definitions on a graph large
enough to take the native path."""
import pytest
import torch

from graphcore import grouping
from graphcore.codegen.errors import GraphError
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


def _large_graph(seed: int = 3):
    schema = [("a", "r0", "b"), ("b", "r1", "a"), ("a", "r2", "a"), ("b", "r3", "b"), ("c", "r4", "a")]
    return random_heterograph({"a": 3000, "b": 2000, "c": 1}, schema, [60000, 50000, 0, 40000, 700], seed=seed)


def test_native_relation_passes_equal_the_torch_fallback(monkeypatch):
    """Canonical order, both pair maps and their groupings, natively and with torch only."""
    native = _large_graph().layout
    monkeypatch.setattr(grouping, "_native", lambda: None)
    fallback = _large_graph().layout
    for name in ("src", "dst", "etype", "edge_perm", "rel_ptr", "csr_perm", "dst_ptr"):
        assert torch.equal(getattr(native, name), getattr(fallback, name)), name
    for pairs, index_name in (("unique_src", "usrc_inv"), ("unique_dst", "udst_inv")):
        ours, theirs = getattr(native, pairs), getattr(fallback, pairs)
        for field in ("node", "etype", "inverse", "rel_ptr", "count"):
            assert torch.equal(getattr(ours, field), getattr(theirs, field)), (pairs, field)
        for a, b in zip(native.group_csr(index_name, ours.num_pairs), fallback.group_csr(index_name, theirs.num_pairs)):
            assert torch.equal(a, b), index_name


def test_pair_counts_come_without_building_the_pair_maps():
    """The planner's row counts must not build unique_src (an E-row inverse and grouping)."""
    layout = _large_graph().layout
    rows = layout.rows("usrc"), layout.rows("udst")
    assert "unique_src" not in layout.__dict__ and "unique_dst" not in layout.__dict__
    assert rows == (layout.unique_src.num_pairs, layout.unique_dst.num_pairs)
    assert "etype" not in layout.__dict__  # built on first use only
    assert torch.equal(layout.etype, torch.sort(layout.etype).values)


@pytest.mark.parametrize("end", [0, 1])
def test_an_edge_id_changed_after_construction_is_refused_not_read_out_of_bounds(end):
    g = _large_graph()
    g.edge_index(("b", "r3", "b"))[end, 5] = 2000   # "b" has ids 0..1999
    with pytest.raises(GraphError, match=r"\('b', 'r3', 'b'\) has a node id outside"):
        g.layout.src


def test_pair_keys_out_of_range_are_refused():
    rel_ptr = torch.tensor([0, 600, 1200])
    keys = torch.cat([torch.randint(0, 10, (600,)), torch.randint(10, 20, (600,))])
    keys[900] = 25
    with pytest.raises(grouping.RelationRangeError, match="relation 1"):
        grouping.relation_pairs(rel_ptr, keys, [0, 10], [10, 10], with_order=True)
    keys[900] = 15
    node, etype, starts, inverse, order = grouping.relation_pairs(rel_ptr, keys, [0, 10], [10, 10], with_order=True)
    assert torch.equal(node[inverse], keys) and torch.equal(etype[inverse], torch.arange(1200) // 600)
    assert torch.equal(order, torch.sort(inverse, stable=True).indices)


@pytest.mark.parametrize("num_keys", [1, 1000, (1 << 20) // 2])
def test_group_by_on_two_threads_is_torchs_stable_sort(num_keys):
    """Above grouping._MIN_PARALLEL_ROWS with 2 threads: per-thread histograms, still stable."""
    keys = torch.randint(0, num_keys, (grouping._MIN_PARALLEL_ROWS + 12345,), generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(group_by(keys, num_keys), torch.sort(keys, stable=True).indices)
        keys[-7] = num_keys
        with pytest.raises(ValueError, match="keys must lie in"):
            group_by(keys, num_keys)
    finally:
        torch.set_num_threads(threads)

import torch

from graphcore.testing import edge_case_graphs


def test_canonical_order_sorted_by_etype_then_dst():
    g = edge_case_graphs()["mixed"]
    L = g.layout
    key = L.etype * g.num_nodes() + L.dst
    assert torch.all(key[1:] >= key[:-1])
    assert L.rel_ptr.tolist()[-1] == g.num_edges()
    for r, relation in enumerate(g.relations):
        index = g.edge_index(relation)
        lo, hi = L.rel_ptr[r].item(), L.rel_ptr[r + 1].item()
        src_off = g.node_offset(relation[0])
        dst_off = g.node_offset(relation[2])
        got = sorted(zip((L.src[lo:hi] - src_off).tolist(), (L.dst[lo:hi] - dst_off).tolist()))
        assert got == sorted(zip(index[0].tolist(), index[1].tolist()))


def test_edge_perm_maps_back_to_input_order():
    g = edge_case_graphs()["mixed"]
    L = g.layout
    src_in = torch.cat([g.edge_index(r)[0] + g.node_offset(r[0]) for r in g.relations])
    assert torch.equal(src_in[L.edge_perm], L.src)


def test_csr_by_destination():
    g = edge_case_graphs()["mixed"]
    L = g.layout
    for v in range(g.num_nodes()):
        edges = L.csr_perm[L.dst_ptr[v]:L.dst_ptr[v + 1]]
        assert torch.all(L.dst[edges] == v)
        assert len(edges) == int((L.dst == v).sum())
    assert (L.in_degree == 0).any(), "edge-case graph must have a node without in-edges"


def test_compact_map_equals_torch_unique():
    for g in edge_case_graphs().values():
        L = g.layout
        for pairs, node in ((L.unique_src, L.src), (L.unique_dst, L.dst)):
            unique, inverse = torch.unique(torch.stack([L.etype, node]), dim=1, return_inverse=True)
            assert torch.equal(pairs.etype, unique[0]) and torch.equal(pairs.node, unique[1])
            assert torch.equal(pairs.inverse, inverse)
            assert pairs.rel_ptr[-1] == pairs.num_pairs
        assert L.unique_src.num_pairs < g.num_edges()  # duplicates make pairs repeat


def test_node_types_and_relation_ends():
    g = edge_case_graphs()["mixed"]
    L = g.layout
    assert L.node_offsets.tolist() == [0, 7, 12, 16]
    assert L.node_type.tolist() == [0] * 7 + [1] * 5 + [2] * 4
    assert L.rel_src_type.tolist() == [0, 1, 0, 1, 2] and L.rel_dst_type.tolist() == [1, 0, 0, 2, 1]


def test_layout_is_cached():
    g = edge_case_graphs()["mixed"]
    assert g.layout is g.layout and g.layout.unique_src is g.layout.unique_src


def test_layout_implements_the_compilers_graph_layout_protocol_completely():
    """Every name codegen declares (domains, index maps, segment pointers, graph constants) is
    answered by the layout, with the right length: a new name in codegen fails here first."""
    from graphcore.codegen.ir.layout import GraphLayout
    from graphcore.codegen.ir.values import GRAPH_CONSTANTS, INDEX_MAPS, ROW_TYPES, Domain

    g = edge_case_graphs()["mixed"]
    L = g.layout
    assert isinstance(L, GraphLayout)
    rows = {d: L.rows(d) for d in Domain if d != Domain.SCALAR}
    assert rows == {d: L.rows(str(d)) for d in rows}
    assert rows[Domain.NODE] == g.num_nodes() and rows[Domain.EDGE] == g.num_edges()
    for name, m in INDEX_MAPS.items():
        index = L.index(name)
        assert index.dtype == torch.int64 and index.numel() == rows[m.target], name
        assert index.numel() == 0 or int(index.max()) < rows[m.source], name
        ptr, members = L.group_csr(name, rows[m.source])
        assert ptr.numel() == rows[m.source] + 1 and members.numel() == rows[m.target]
    for domain, (types, ptr_name) in ROW_TYPES.items():
        ptr = L.ptr(ptr_name)
        assert ptr.numel() == rows[types] + 1 and int(ptr[-1]) == rows[domain], ptr_name
    for name, (domain, _) in GRAPH_CONSTANTS.items():
        assert L.constant(name).dtype == torch.float64 and L.constant(name).numel() == rows[domain], name


def test_group_csr_equals_a_stable_sort_for_every_index_map():
    """Sorted index vectors (udst_inv, etype) skip the sort; the groups are the same either way."""
    from graphcore.codegen.ir.values import INDEX_MAPS
    from graphcore.layouts import segment_ptr

    for g in edge_case_graphs().values():
        L = g.layout
        for name, m in INDEX_MAPS.items():
            index = L.index(name)
            groups = L.rows(m.source)
            ptr, members = L.group_csr(name, groups)
            order = torch.sort(index, stable=True).indices
            assert torch.equal(members, order), name
            assert torch.equal(ptr, segment_ptr(index[order], groups)), name


def test_ordered_index_maps_are_non_decreasing_and_need_no_member_list():
    """The layout contract behind IndexMap.ordered: the printers walk such groups without a
    member list, so a map marked ordered that is not would reduce the wrong rows."""
    from graphcore.codegen.ir.values import INDEX_MAPS
    from graphcore.testing import random_heterograph

    graphs = list(edge_case_graphs().values())
    graphs.append(random_heterograph({"a": 300, "b": 200}, [("a", "r0", "b"), ("b", "r1", "a"), ("a", "r2", "a")],
                                     [6000, 5000, 700], seed=5))  # native layout passes
    ordered = [name for name, m in INDEX_MAPS.items() if m.ordered]
    assert {"udst_inv", "etype"} <= set(ordered)
    for g in graphs:
        for name in ordered:
            fresh = type(g.layout)(g)  # no cached groupings
            index = fresh.index(name)
            assert bool((index[1:] >= index[:-1]).all()), name
            groups = fresh.rows(INDEX_MAPS[name].source)
            ptr = fresh.group_ptr(name, groups)
            assert fresh._group_csr[(name, groups)][1] is None, f"{name}: member list built for group_ptr"
            full_ptr, members = fresh.group_csr(name, groups)
            assert torch.equal(ptr, full_ptr) and torch.equal(members, torch.arange(index.numel())), name


def test_compiled_kernels_ask_for_no_member_list_of_an_ordered_map():
    import graphcore as gc
    from graphcore.codegen.ir.values import INDEX_MAPS
    from graphcore.testing import random_heterograph
    from benchmarks.rgnn_layers import build

    g = random_heterograph({"a": 300, "b": 200}, [("a", "r0", "b"), ("b", "r1", "a")], [3000, 2000], seed=2)
    module, _ = build("rgcn", "graphcore", g, 8, 1)
    compiled = gc.compile(module, backend="cpu")
    x = torch.randn(g.num_nodes(), 8, requires_grad=True)
    out = compiled(g, x)
    (out.sum() if isinstance(out, torch.Tensor) else sum(v.sum() for v in out.values())).backward()
    runner = next(iter(compiled._graphcore_plans.values()))
    indices = [i for e in (runner.forward, runner.backward) for i in e.abi.indices]
    assert ("group_ptr", "udst_inv") in indices  # R-GCN aggregates first, grouped by pair
    assert not [name for kind, name in indices if kind == "group_perm" and INDEX_MAPS[name].ordered]

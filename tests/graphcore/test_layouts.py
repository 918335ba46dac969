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

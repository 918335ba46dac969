"""Where a graphcore layer borrows PyG's parameter names, its defaults equal PyG's, or loading a
PyG state_dict warns about the one that differs."""
import inspect
import warnings

import pytest
import torch
from torch_geometric.nn import HGTConv, RGATConv, RGCNConv

import graphcore as gc
from graphcore.testing import edge_case_graphs


def defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


@pytest.mark.parametrize("ours, theirs, differ", [
    (gc.nn.RGCN, RGCNConv, {"aggr"}),
    (gc.nn.RGAT, RGATConv, set()),
    (gc.nn.HGT, HGTConv, set()),
])
def test_shared_defaults_equal_pyg(ours, theirs, differ):
    mine, pyg = defaults(ours.__init__), defaults(theirs.__init__)
    pyg.setdefault("aggr", "mean" if theirs is RGCNConv else None)  # RGCNConv takes aggr through **kwargs
    shared = set(mine) & set(pyg)
    assert shared - differ, "no shared parameter compared"
    assert {k for k in shared if mine[k] != pyg[k]} == differ


def test_loading_a_pyg_rgcn_state_dict_warns_about_aggr():
    g = edge_case_graphs()["mixed"]
    pyg = RGCNConv(6, 4, g.num_relations)  # aggr="mean" by default
    ours = gc.nn.RGCN(6, 4, g.num_relations)  # aggr="sum"
    with pytest.warns(UserWarning, match=r"RGCN\(aggr='sum'\); PyG's RGCNConv defaults to aggr='mean'"):
        ours.load_state_dict(pyg.state_dict())
    L = g.layout
    x = torch.randn(g.num_nodes(), 6)
    assert not torch.allclose(ours(g, x), pyg(x, torch.stack([L.src, L.dst]), L.etype))
    matching = gc.nn.RGCN(6, 4, g.num_relations, aggr="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        matching.load_state_dict(pyg.state_dict())  # PyG's default: no warning, same outputs
        ours.load_state_dict(gc.nn.RGCN(6, 4, g.num_relations).state_dict())  # our own state_dict: no warning
    torch.testing.assert_close(matching(g, x), pyg(x, torch.stack([L.src, L.dst]), L.etype))


@pytest.mark.parametrize("ours, theirs", [
    (lambda: gc.nn.RGAT(4, 2, 3), lambda: RGATConv(4, 2, 3)),
    (lambda: gc.nn.HGT(4, 4, 1, 1), lambda: HGTConv(4, 4, (["a"], [("a", "r", "a")]))),
])
def test_other_layers_refuse_pyg_state_dicts_instead_of_loading_them_wrongly(ours, theirs):
    with pytest.raises(RuntimeError, match="Missing key"):
        ours().load_state_dict(theirs().state_dict())

"""graphcore.nn layers equal PyG's, forward and gradients (inputs and every weight), in fp64."""
import pytest
import torch
from torch_geometric.nn import HGTConv, RGATConv, RGCNConv

import graphcore as gc
from graphcore.testing import copy_pyg_hgt, copy_pyg_rgat, copy_pyg_rgcn, edge_case_graphs

GRAPHS = edge_case_graphs()
close = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


def homogeneous_inputs(g):
    L = g.layout
    return torch.stack([L.src, L.dst]), L.etype


def backward_both(out_ours, out_pyg):
    probe = torch.randn_like(out_pyg)
    (out_ours * probe).sum().backward()
    (out_pyg * probe).sum().backward()


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("aggr", ["add", "mean"])
@pytest.mark.parametrize("num_bases", [None, 2])
def test_rgcn_equals_pyg(graph, aggr, num_bases):
    g = GRAPHS[graph]
    edge_index, edge_type = homogeneous_inputs(g)
    pyg = RGCNConv(6, 4, g.num_relations, num_bases=num_bases, aggr=aggr)
    torch.nn.init.normal_(pyg.bias)
    ours = gc.nn.RGCN(6, 4, g.num_relations, num_bases=num_bases, aggr="sum" if aggr == "add" else "mean")
    copy_pyg_rgcn(ours, pyg)
    x1 = torch.randn(g.num_nodes(), 6, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    out_ours, out_pyg = ours(g, x1), pyg(x2, edge_index, edge_type)
    torch.testing.assert_close(out_ours, out_pyg, **close)
    backward_both(out_ours, out_pyg)
    torch.testing.assert_close(x1.grad, x2.grad, **close)
    for name in ("weight", "comp", "root", "bias"):
        if getattr(pyg, name) is not None:
            torch.testing.assert_close(getattr(ours, name).grad, getattr(pyg, name).grad, **close)


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("heads", [1, 3])
def test_rgat_equals_pyg(graph, heads):
    g = GRAPHS[graph]
    edge_index, edge_type = homogeneous_inputs(g)
    pyg = RGATConv(5, 2, g.num_relations, heads=heads)
    torch.nn.init.normal_(pyg.bias)
    ours = gc.nn.RGAT(5, 2, g.num_relations, heads=heads)
    copy_pyg_rgat(ours, pyg)
    x1 = torch.randn(g.num_nodes(), 5, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    out_ours, out_pyg = ours(g, x1), pyg(x2, edge_index, edge_type)
    torch.testing.assert_close(out_ours, out_pyg, **close)
    backward_both(out_ours, out_pyg)
    torch.testing.assert_close(x1.grad, x2.grad, **close)
    torch.testing.assert_close(ours.weight.grad, pyg.weight.grad, **close)
    # PyG shares k/q across relations: its gradient is the sum of ours over relations
    torch.testing.assert_close(ours.att_src.grad.sum(0), pyg.k.grad, **close)
    torch.testing.assert_close(ours.att_dst.grad.sum(0), pyg.q.grad, **close)
    torch.testing.assert_close(ours.bias.grad, pyg.bias.grad, **close)


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("heads, d_in, d_out", [(1, 4, 4), (2, 6, 6), (2, 5, 4)])
def test_hgt_equals_pyg(graph, heads, d_in, d_out):
    g = GRAPHS[graph]
    metadata = (list(g.node_types), list(g.relations))
    pyg = HGTConv(d_in, d_out, metadata, heads=heads)
    with torch.no_grad():
        for p in pyg.p_rel.values():
            p.normal_()
        for p in pyg.skip.values():
            p.normal_()
    ours = gc.nn.HGT(d_in, d_out, g.num_node_types, g.num_relations, heads=heads)
    copy_pyg_hgt(ours, pyg, g)
    x1 = torch.randn(g.num_nodes(), d_in, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    out_pyg = pyg(g.unstack(x2), gc.to_pyg(g).edge_index_dict)
    out_ours = g.unstack(ours(g, x1))
    dst_types = [t for t in g.node_types if out_pyg.get(t) is not None]
    for t in dst_types:
        torch.testing.assert_close(out_ours[t], out_pyg[t], **close)
    probe = {t: torch.randn_like(out_pyg[t]) for t in dst_types}
    sum((out_ours[t] * probe[t]).sum() for t in dst_types).backward()
    sum((out_pyg[t] * probe[t]).sum() for t in dst_types).backward()
    torch.testing.assert_close(x1.grad, x2.grad, **close)
    F, H, R = d_out, heads, g.num_relations
    D = F // H
    torch.testing.assert_close(ours.att_rel.grad, pyg.k_rel.weight.grad.view(H, R, D, D).transpose(0, 1), **close)
    torch.testing.assert_close(ours.msg_rel.grad, pyg.v_rel.weight.grad.view(H, R, D, D).transpose(0, 1), **close)
    for t, ntype in enumerate(g.node_types):
        kqv = pyg.kqv_lin.lins[ntype]
        weight_grad = torch.cat([ours.k_weight.grad[t], ours.q_weight.grad[t], ours.v_weight.grad[t]], 1)
        torch.testing.assert_close(weight_grad, kqv.weight.grad.t(), **close)
        bias_grad = torch.cat([ours.k_bias.grad[t], ours.q_bias.grad[t], ours.v_bias.grad[t]])
        torch.testing.assert_close(bias_grad, kqv.bias.grad, **close)
        if ntype in dst_types:
            out = pyg.out_lin.lins[ntype]
            torch.testing.assert_close(ours.out_weight.grad[t], out.weight.grad.t(), **close)
            torch.testing.assert_close(ours.out_bias.grad[t], out.bias.grad, **close)
            if d_in == d_out:
                torch.testing.assert_close(ours.skip.grad[t], pyg.skip[ntype].grad, **close)
    for r, relation in enumerate(g.relations):
        torch.testing.assert_close(ours.prior.grad[r].view(1, H), pyg.p_rel["__".join(relation)].grad, **close)


def test_reprs():
    assert repr(gc.nn.RGCN(4, 8, 3)) == "RGCN(4, 8, num_relations=3, aggr='sum')"
    assert repr(gc.nn.RGAT(4, 8, 3, heads=2)) == "RGAT(4, 8, num_relations=3, heads=2)"
    assert repr(gc.nn.HGT(4, 8, 2, 3, heads=2)) == "HGT(4, 8, num_node_types=2, num_relations=3, heads=2)"


def test_bad_configurations():
    with pytest.raises(ValueError, match="divisible by heads"):
        gc.nn.HGT(4, 6, 2, 3, heads=4)
    with pytest.raises(ValueError, match="aggr must be 'sum' or 'mean'"):
        gc.nn.RGCN(4, 6, 2, aggr="max")

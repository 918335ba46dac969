"""A PyG model (Linear -> RGCNConv -> ReLU -> dropout -> HGTConv) compiled whole by graphcore.compile:
equal to PyG in fp64, forward and gradients, and trained by an optimizer exactly like its eager twin."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import HGTConv, RGCNConv

import graphcore as gc
from graphcore.testing import edge_case_graphs

close = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


class Net(torch.nn.Module):
    """What a PyG user writes for a HeteroData: a shared input projection and an R-GCN over the
    homogeneous view, then an HGT layer over the typed dicts."""

    def __init__(self, metadata, num_relations: int, d_in: int = 5, hidden: int = 6, d_out: int = 4):
        super().__init__()
        self.lin = torch.nn.Linear(d_in, hidden)
        self.conv1 = RGCNConv(hidden, hidden, num_relations)
        self.conv2 = HGTConv(hidden, d_out, metadata, heads=2)

    def forward(self, x_dict, edge_index_dict, edge_index, edge_type):
        x = self.lin(torch.cat(list(x_dict.values())))
        x = F.dropout(self.conv1(x, edge_index, edge_type).relu(), p=0.5, training=self.training)
        h_dict = dict(zip(x_dict, x.split([v.size(0) for v in x_dict.values()])))
        return self.conv2(h_dict, edge_index_dict)


def inputs(g):
    data = gc.to_pyg(g)
    homo = data.to_homogeneous()
    x_dict = {t: torch.randn(g.num_nodes(t), 5) for t in g.node_types}
    return x_dict, data.edge_index_dict, homo.edge_index, homo.edge_type


def loss_of(out):
    return sum((v ** 2).sum() for v in out.values())


def test_two_layer_pyg_model_equals_pyg_forward_and_gradients():
    g = edge_case_graphs()["mixed"]
    net = Net((list(g.node_types), list(g.relations)), g.num_relations).eval()
    compiled = gc.compile(net, backend="cpu")
    args = inputs(g)
    for x in args[0].values():
        x.requires_grad_()
    out, ref = compiled(*args), net(*args)
    assert list(out) == list(ref)
    for t in ref:
        torch.testing.assert_close(out[t], ref[t], **close)
    leaves = [*args[0].values(), *net.parameters()]
    ours = torch.autograd.grad(loss_of(out), leaves, allow_unused=True)
    theirs = torch.autograd.grad(loss_of(ref), leaves, allow_unused=True)
    assert [a is None for a in ours] == [b is None for b in theirs]  # HGT's skip is unused when sizes differ
    for a, b in zip(ours, theirs):
        if a is not None:
            torch.testing.assert_close(a, b, **close)
    text = compiled.explain()
    assert "1 compiled regions, 0 graph breaks" in text and "lin.weight.T" in text  # Linear fused, not a break


def test_optimizer_steps_on_the_compiled_model_train_the_pyg_parameters_like_eager():
    g = edge_case_graphs()["dense"]
    net = Net((list(g.node_types), list(g.relations)), g.num_relations).eval()
    twin, initial = copy.deepcopy(net), copy.deepcopy(net.state_dict())
    compiled = gc.compile(net, backend="cpu")
    opt, opt_twin = torch.optim.Adam(compiled.parameters(), lr=0.05), torch.optim.Adam(twin.parameters(), lr=0.05)
    args = inputs(g)
    for _ in range(3):
        for model, optimizer in ((compiled, opt), (twin, opt_twin)):
            optimizer.zero_grad()
            loss_of(model(*args)).backward()
            optimizer.step()
    for (name, p), q in zip(net.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(p, q, **close, msg=name)
    assert not torch.equal(net.conv2.k_rel.weight, initial["conv2.k_rel.weight"])  # it did train

"""The spatial layer on graphcore equals the dense reference: forward and every gradient, for the
four adjacency modes and 0, 1 and 10 virtual nodes; compiled equals eager."""
import pytest
import torch

from graphcore.compile import CompiledMixin
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.traffic.adjacency import ADJACENCY_MODES, VirtualNodeAdjacency
from graphcore.tasks.traffic.model import VirtualNodeSTGCN
from graphcore.tasks.traffic.spatial import RELATIONS, GraphSpatial

N = 9


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


def road_graph() -> torch.Tensor:
    """A directed, weighted sensor graph with self loops, a sensor without out-edges (row 8) and
    one without in-edges (column 0): both directions have a node of zero degree."""
    gen = torch.Generator().manual_seed(3)
    d = (torch.rand(N, N, generator=gen) < 0.3) * (0.1 + 0.9 * torch.rand(N, N, generator=gen))
    d.fill_diagonal_(1.0)
    d[8, :] = 0.0
    d[:, 0] = 0.0
    return d


def net(mode: str, n_virtual: int, spatial: str) -> VirtualNodeSTGCN:
    torch.manual_seed(0)
    return VirtualNodeSTGCN(road_graph(), in_channels=2, input_len=6, horizon=3, n_virtual=n_virtual,
                            adjacency_mode=mode, hidden_channels=6, graph_channels=4, n_blocks=1, kernel_size=2,
                            diffusion_steps=2, embedding_dim=4, prune_threshold=0.1, dropout=0.0, spatial=spatial).double()


def like(reference: VirtualNodeSTGCN, mode: str, n_virtual: int, spatial: str) -> VirtualNodeSTGCN:
    """A network of another ``spatial`` kind with ``reference``'s parameters."""
    other = net(mode, n_virtual, spatial)
    other.load_state_dict(reference.state_dict())   # the dense state loads: its extra buffers follow from the graph
    return other


def outputs_and_grads(model: VirtualNodeSTGCN, x: torch.Tensor, probe: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = model(x)
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad((out * probe).sum(), [x, *params])
    return out, dict(zip(("input", *names), grads))


@pytest.mark.parametrize("n_virtual", [0, 1, 10])
@pytest.mark.parametrize("mode", ADJACENCY_MODES)
def test_graph_layer_equals_dense_and_compiled_equals_eager(mode, n_virtual):
    dense = net(mode, n_virtual, "dense")
    if dense.adjacency.emb1 is not None:    # the learned blocks have edges both above and below the cut
        adapt = dense.adjacency.adaptive()
        raw = torch.relu(dense.adjacency.emb1 @ dense.adjacency.emb2.t() - dense.adjacency.emb2 @ dense.adjacency.emb1.t())
        assert (adapt > 0).any() and ((raw > 0) & (adapt == 0)).any()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, N, 2, generator=gen)
    probe = torch.randn(2, 3, N, generator=gen)
    reference, reference_grads = outputs_and_grads(dense, x, probe)
    results = {}
    for spatial in ("eager", "compiled"):
        results[spatial] = outputs_and_grads(like(dense, mode, n_virtual, spatial), x, probe)
        out, grads = results[spatial]
        torch.testing.assert_close(out, reference, rtol=1e-9, atol=1e-11)
        assert grads.keys() == reference_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, reference_grads[name], rtol=1e-9, atol=1e-11, msg=f"{spatial}: {name}")
    (eager, eager_grads), (compiled, compiled_grads) = results["eager"], results["compiled"]
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-13)
    for name, grad in compiled_grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-12, atol=1e-13, msg=name)
    if dense.adjacency.emb1 is not None:
        assert compiled_grads["adjacency.emb1"].abs().sum() > 0


def test_the_graph_holds_two_node_types_and_only_the_road_edges_in_semi_mode():
    distance = road_graph()
    spatial = GraphSpatial(distance, n_virtual=3, mode="semi")
    forward, backward = spatial.supports().graphs
    assert backward.num_nodes_dict == {"sensor": N, "virtual": 3} and backward.relations == RELATIONS
    assert backward.num_edges(RELATIONS[0]) == int((distance != 0).sum())
    assert [backward.num_edges(r) for r in RELATIONS[1:]] == [N * 3, 3 * N, 3 * 3]
    # the forward graph is the reversed one, with the same schema (one compiled plan serves both)
    road = backward.edge_index(RELATIONS[0])
    assert torch.equal(forward.edge_index(RELATIONS[0]), road.flip(0))
    torch.testing.assert_close(forward.edge_data["weight"][RELATIONS[1]], backward.edge_data["weight"][RELATIONS[2]])
    assert isinstance(spatial.diffusion, CompiledMixin)


def test_virtual_edge_weights_equal_the_dense_reference():
    torch.manual_seed(0)
    dense = VirtualNodeAdjacency(road_graph(), 4, "semi", prune_threshold=0.0)
    graph = GraphSpatial(road_graph(), 4, "semi", prune_threshold=0.0)
    graph.load_state_dict(dense.state_dict())
    torch.testing.assert_close(graph.virtual_edge_weights(), dense.virtual_edge_weights())


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="must be square"):
        GraphSpatial(torch.ones(3, 4), 2)
    with pytest.raises(UsageError, match="n_virtual must be >= 0"):
        GraphSpatial(road_graph(), -1)
    with pytest.raises(UsageError, match="execution must be 'compiled' or 'eager'"):
        GraphSpatial(road_graph(), 2, execution="gpu")
    with pytest.raises(UsageError, match="spatial must be one of compiled, eager, dense"):
        net("semi", 2, "sparse")

"""Adjacency modes, the semi-adaptive block structure, and the two transition matrices."""
import pytest
import torch

from graphcore.tasks.traffic.adjacency import ADJACENCY_MODES, VirtualNodeAdjacency, check_mode, transition_matrices

N, NV = 6, 3


def distance() -> torch.Tensor:
    d = torch.zeros(N, N)
    for i in range(N - 1):  # a directed chain with self loops
        d[i, i + 1] = 0.5
    return d + torch.eye(N)


@pytest.mark.parametrize("mode", ADJACENCY_MODES)
def test_every_mode_gives_a_square_matrix_over_real_and_virtual_nodes(mode):
    adj = VirtualNodeAdjacency(distance(), NV, mode)()
    assert adj.shape == (N + NV, N + NV)
    assert (adj >= 0).all()


def test_fixed_modes():
    adj = VirtualNodeAdjacency(distance(), NV, "distance")()
    torch.testing.assert_close(adj[:N, :N], distance())
    assert (adj[N:, :] == 1).all() and (adj[:, N:] == 1).all()
    assert (VirtualNodeAdjacency(distance(), NV, "all_ones")() == 1).all()
    assert not list(VirtualNodeAdjacency(distance(), NV, "distance").parameters())


def test_semi_keeps_distance_among_sensors_and_learns_every_block_touching_a_virtual_node():
    module = VirtualNodeAdjacency(distance(), NV, "semi", prune_threshold=0.0)
    adj = module()
    torch.testing.assert_close(adj[:N, :N], distance())
    learned = module.adaptive()
    torch.testing.assert_close(adj[N:, :], learned[N:, :])
    torch.testing.assert_close(adj[:, N:], learned[:, N:])
    # ReLU(M - Mᵀ) makes every learned edge one-way
    assert ((learned > 0) & (learned.t() > 0)).sum() == 0


def test_semi_gradient_flows_only_through_blocks_touching_virtual_nodes():
    module = VirtualNodeAdjacency(distance(), NV, "semi", prune_threshold=0.0)
    module()[:N, :N].sum().backward()
    assert module.emb1.grad is None or module.emb1.grad.abs().sum() == 0
    module.zero_grad()
    module()[:N, N:].sum().backward()
    assert module.emb1.grad.abs().sum() > 0 and module.emb2.grad.abs().sum() > 0


def test_semi_without_virtual_nodes_equals_distance():
    torch.testing.assert_close(VirtualNodeAdjacency(distance(), 0, "semi")(), distance())


def test_adaptive_is_learned_everywhere_and_pruned():
    module = VirtualNodeAdjacency(distance(), NV, "adaptive", prune_threshold=0.2)
    adj = module()
    raw = module.emb1 @ module.emb2.t()
    expected = torch.relu(raw - raw.t())
    expected[expected < 0.2] = 0
    torch.testing.assert_close(adj, expected)
    adj.sum().backward()
    assert module.emb1.grad.abs().sum() > 0


def test_virtual_edge_weights_sum_both_directions():
    module = VirtualNodeAdjacency(distance(), NV, "semi", prune_threshold=0.0)
    adj = module().detach()
    weights = module.virtual_edge_weights()
    assert weights.shape == (NV, N)
    torch.testing.assert_close(weights, adj[N:, :N] + adj[:N, N:].t())


def test_transition_matrices_normalise_rows_in_both_directions():
    adj = torch.tensor([[0.0, 2.0, 2.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    p_fwd, p_bwd = transition_matrices(adj)
    torch.testing.assert_close(p_fwd, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    # backward: node 2 averages its predecessors 0 (weight 2) and 1 (weight 1)
    torch.testing.assert_close(p_bwd, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2 / 3, 1 / 3, 0.0]]))


def test_unknown_mode_and_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="unknown adjacency mode 'learned'; choose one of distance"):
        check_mode("learned")
    with pytest.raises(ValueError, match="unknown adjacency mode"):
        VirtualNodeAdjacency(distance(), NV, "learned")
    with pytest.raises(ValueError, match="must be square"):
        VirtualNodeAdjacency(torch.ones(3, 4), NV, "semi")
    with pytest.raises(ValueError, match="n_virtual must be >= 0"):
        VirtualNodeAdjacency(distance(), -1, "semi")

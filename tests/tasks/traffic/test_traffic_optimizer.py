"""The optimizer leaves the learned adjacency alone when the data does not move it."""
import lightning as L
import pytest
import torch

from graphcore.tasks.traffic.module import TrafficForecaster


@pytest.mark.parametrize("mode", ["semi", "adaptive"])
def test_adjacency_embeddings_get_no_weight_decay(los_loop, mode):
    """With a zero data gradient, decay alone would shrink E1, E2 below the prune threshold, and a
    pruned edge never comes back (no gradient): they must stay put while the weights decay."""
    model = TrafficForecaster(adjacency_mode=mode, n_virtual=2, hidden_channels=8, graph_channels=4,
                              weight_decay=0.1, spatial="eager").build(los_loop)
    adjacency = model.net.adjacency
    alive_before = (adjacency.edge_weights()[adjacency.learned_edges] > 0).sum()
    embeddings = [adjacency.emb1.detach().clone(), adjacency.emb2.detach().clone()]
    weight = model.net.head[-1].weight
    weight_before = weight.detach().clone()
    model.trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    optimizer = model.configure_optimizers()["optimizer"]
    x, _ = los_loop.dataset("train")[0]
    for _ in range(20):
        optimizer.zero_grad()
        (0.0 * model.net(x[None]).sum()).backward()
        optimizer.step()
    torch.testing.assert_close(adjacency.emb1.detach(), embeddings[0], rtol=0, atol=0)
    torch.testing.assert_close(adjacency.emb2.detach(), embeddings[1], rtol=0, atol=0)
    assert (adjacency.edge_weights()[adjacency.learned_edges] > 0).sum() == alive_before > 0
    assert weight.detach().norm() < 0.99 * weight_before.norm()


def test_every_parameter_is_in_exactly_one_group(los_loop):
    model = TrafficForecaster(adjacency_mode="semi", n_virtual=2, hidden_channels=8, graph_channels=4).build(los_loop)
    grouped = [id(p) for group in model.parameter_groups() for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    decay = {group["weight_decay"] for group in model.parameter_groups()}
    assert decay == {model.hparams.weight_decay, 0.0}
    distance = TrafficForecaster(adjacency_mode="distance", n_virtual=0).build(los_loop)
    assert len(distance.parameter_groups()) == 1

"""RGNNDataModule: inverse relations, the stratified validation split, whole-graph batches."""
import pytest
import torch

from graphcore.codegen.errors import GraphError
from graphcore.tasks.rgnn.data import RGNNDataModule, stratified_split


def test_stratified_split_is_disjoint_per_class_and_seeded():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    idx = torch.arange(labels.numel())
    kept, held = stratified_split(idx, labels, 0.2, seed=0)
    assert set(kept.tolist()).isdisjoint(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == idx.tolist()
    # round(0.2 * n) per class, at least 1 where n >= 2, none from the single-node class
    assert torch.bincount(labels[held], minlength=4).tolist() == [2, 1, 0, 1]
    again, _ = stratified_split(idx, labels, 0.2, seed=0)
    assert torch.equal(kept, again)
    assert any(not torch.equal(stratified_split(idx, labels, 0.2, seed=s)[1], held) for s in range(1, 5))


def test_stratified_split_zero_and_bad_fraction():
    idx, labels = torch.tensor([3, 1, 2]), torch.tensor([0, 0, 1, 1])
    kept, held = stratified_split(idx, labels, 0.0, seed=0)
    assert kept.tolist() == [1, 2, 3] and held.numel() == 0
    with pytest.raises(ValueError, match=r"valid_fraction must be in \[0, 1\), got 1.5"):
        stratified_split(idx, labels, 1.5, seed=0)


def test_aifb_graph_splits_and_batches():
    data = RGNNDataModule("aifb")
    data.setup("fit")
    # the published AIFB statistics, with inverse relations
    assert data.graph.num_edges() == 48810 and data.num_relations == 104
    assert data.num_classes == 4 and data.in_features == {}
    splits = data.splits
    assert len(splits["train"]) + len(splits["val"]) == 140 and len(splits["val"]) == 28
    assert set(splits["train"].tolist()).isdisjoint(splits["val"].tolist())
    assert set(splits["test"].tolist()).isdisjoint(splits["train"].tolist() + splits["val"].tolist())
    batch = next(iter(data.train_dataloader()))
    offset = data.graph.node_offset("Personen")
    assert torch.equal(batch.index, splits["train"] + offset)
    assert torch.equal(batch.y, data.dataset.labels[splits["train"]])
    assert batch.graph is data.graph  # one graph, layouts cached across steps


def test_valid_fraction_zero_validates_on_train():
    data = RGNNDataModule("aifb", valid_fraction=0.0)
    assert torch.equal(data.splits["val"], data.splits["train"]) and len(data.splits["train"]) == 140


def test_without_reverse_edges():
    assert RGNNDataModule("aifb", reverse_edges=False).graph.num_edges() == 24405


def test_bad_dataset_and_stage():
    with pytest.raises(GraphError, match="dataset 'no_such_graph' not found"):
        RGNNDataModule("no_such_graph").setup()
    with pytest.raises(ValueError, match="unknown stage 'dev'"):
        RGNNDataModule("aifb").batch("dev")
    with pytest.raises(ValueError, match="valid_fraction must be in"):
        RGNNDataModule("aifb", valid_fraction=1.0).setup()


def test_graph_without_labels_is_rejected(tmp_path):
    import numpy as np

    path = tmp_path / "unlabelled.npz"
    np.savez_compressed(path, num_nodes__a=np.int64(3), edge_index__a__r__a=np.array([[0, 1], [1, 2]]))
    with pytest.raises(ValueError, match="dataset 'unlabelled' has no node labels"):
        RGNNDataModule(str(path)).setup()

import pytest
import torch

from graphcore.datasets import hetero


@pytest.mark.parametrize("name, nodes, edges, classes, train, test", [
    ("aifb", 7262, 24405, 4, 140, 36),
    ("mutag", 27163, 74050, 2, 272, 68),
])
def test_bundled_datasets_have_published_statistics(name, nodes, edges, classes, train, test):
    ds = hetero.load(name)
    assert ds.graph.num_nodes() == nodes and ds.graph.num_edges() == edges
    assert ds.graph.add_reverse_edges().num_edges() == 2 * edges
    assert ds.num_classes == classes and len(ds.train_idx) == train and len(ds.test_idx) == test
    assert ds.valid_idx is None
    labelled = ds.labels[torch.cat([ds.train_idx, ds.test_idx])]
    assert (labelled >= 0).all()
    assert not set(ds.train_idx.tolist()) & set(ds.test_idx.tolist())


def test_load_by_path(tmp_path):
    from graphcore.datasets import DATA_DIR
    ds = hetero.load(DATA_DIR / "aifb.npz")
    assert ds.name == "aifb" and ds.target == "Personen"


def test_unknown_dataset_names_the_places_it_looked():
    with pytest.raises(ValueError, match="dataset 'nope' not found.*Bundled: \\['aifb', 'mutag'\\]"):
        hetero.load("nope")


def test_not_a_graph_file(tmp_path):
    import numpy as np
    path = tmp_path / "bad.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(ValueError, match="no 'num_nodes__<type>' keys"):
        hetero.load(path)

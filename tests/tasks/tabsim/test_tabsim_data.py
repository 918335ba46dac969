"""Tests of the data module: splits by scheme, batches of pairs, and size checks between data and model."""
import pytest
import torch

from graphcore.tasks.tabsim.data import TabSimDataModule, split_pairs
from graphcore.tasks.tabsim.module import TabSimModule


@pytest.fixture(scope="module")
def datamodule():
    dm = TabSimDataModule(split="grouped", fold=2, vocab_size=300, n_buckets=64, batch_size=16)
    dm.setup("fit")
    return dm


def test_grouped_parts_are_disjoint_by_query(datamodule):
    parts = {k: set(v.tolist()) for k, v in datamodule.parts.items()}
    assert sum(map(len, parts.values())) == len(datamodule.pairs) == 1391
    queries = {k: {datamodule.pairs[i].table_a for i in v} for k, v in parts.items()}
    assert not queries["fit"] & queries["val"] and not queries["fit"] & queries["test"]
    assert not queries["val"] & queries["test"]


def test_pair_batch_contents(datamodule):
    batch = next(iter(datamodule.val_dataloader()))
    idx = datamodule.parts["val"][:16]
    assert batch.labels.tolist() == [float(datamodule.pairs[i].similar) for i in idx]
    assert batch.queries == [datamodule.pairs[i].table_a for i in idx]
    n_tables = sum(c.mask.shape[0] for c in batch.tables)
    assert n_tables == len({t for i in idx for t in datamodule.pair_index[i]})
    assert int(batch.a.max()) < n_tables and int(batch.b.max()) < n_tables
    assert batch.lexical.shape == (16, 3) and ((batch.lexical >= 0) & (batch.lexical <= 1 + 1e-6)).all()
    module = TabSimModule(vocab_size=300, n_buckets=64, dim=16)
    loss = module.loss(module.net(batch.tables, batch.a, batch.b, batch.lexical), batch.labels)
    assert torch.isfinite(loss) and loss > 0


def test_published_splits_through_the_data_module():
    dm = TabSimDataModule(split="tabsim", vocab_size=300, n_buckets=64)
    dm.setup()
    assert len(dm.parts["test"]) == 348 and len(dm.parts["fit"]) + len(dm.parts["val"]) == 1043
    with pytest.raises(ValueError, match=r"split 'strubert' has folds 0..4, got fold=5"):
        split_pairs(dm.pairs, "strubert", 5)
    with pytest.raises(ValueError, match="unknown split 'random'"):
        split_pairs(dm.pairs, "random", 0)


def test_model_rejects_an_encoder_of_other_sizes(datamodule):
    with pytest.raises(ValueError, match=r"does not fit the model .*buckets 2048"):
        TabSimModule(vocab_size=300).attach(datamodule.encoder)
    module = TabSimModule(vocab_size=300, n_buckets=64)
    module.attach(datamodule.encoder)
    assert module.encoder is datamodule.encoder

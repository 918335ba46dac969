r"""LightningDataModule: a labelled JSONL corpus encoded to MBAT vectors.

The corpus (default: the bundled ``countries`` records, label ``subregion`` with
``region``/``subregion`` masked) is streamed once to fit the encoder's number scales and
token frequencies (unsupervised: labels are never encoded), then encoded in batches.
Classes with fewer than ``min_count`` examples are dropped; the rest are split at random
(seeded) into train/val/test.
"""
from __future__ import annotations

from collections import Counter

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from graphcore.datasets.json_corpora import MASKS, corpus_path, iter_records
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.mbat.encoder import JsonEncoder
from graphcore.tasks.mbat.index import hash_label


class JsonVectorDataModule(L.LightningDataModule):
    """Encoded JSON documents and integer labels.

    Args:
        corpus: ``countries`` or ``go_vulndb_osv``, or a path to any wrapped-format JSONL file.
        label: the ``labels`` field to predict.
        mask: record fields deleted before encoding (default: the corpus's mask, see
            :data:`datasets.json_corpora.MASKS`).
        dim: vector dimension.
        seed: encoder and split seed.
        family: orthogonal family of the encoder.
        min_count: drop classes with fewer examples.
        val_fraction: share of examples for validation.
        test_fraction: share for testing.
        batch_size: loader batch size.
        limit: read at most this many records (for quick runs).
    """

    def __init__(self, corpus: str = "countries", label: str = "subregion", mask: list[str] | None = None,
                 dim: int = 4096, seed: int = 0, family: str = "perm", min_count: int = 2,
                 val_fraction: float = 0.2, test_fraction: float = 0.2, batch_size: int = 32,
                 limit: int | None = None):
        super().__init__()
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise UsageError(f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}")
        self.save_hyperparameters()
        self.path = corpus_path(corpus) if corpus in MASKS else corpus
        self.mask = list(mask) if mask is not None else list(MASKS.get(corpus, ()))
        labels = [r.labels.get(label) for r in iter_records(self.path, limit=limit)]
        if all(l is None for l in labels):
            raise UsageError(f"corpus {self.path} has no label {label!r} in its records' 'labels'")
        counts = Counter(hash_label(l) for l in labels if l is not None)
        self.classes = sorted(c for c, n in counts.items() if n >= min_count)
        if len(self.classes) < 2:
            raise UsageError(f"label {label!r}: fewer than 2 classes with >= {min_count} examples")
        self.num_classes = len(self.classes)
        self.dim = dim

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        hp = self.hparams
        index = {c: i for i, c in enumerate(self.classes)}
        encoder = JsonEncoder(dim=hp.dim, seed=hp.seed, family=hp.family)
        encoder.fit(r.record for r in iter_records(self.path, self.mask, hp.limit))
        vecs, ys, ids = [], [], []
        records = iter_records(self.path, self.mask, hp.limit)
        for batch in _batched(records, 256):
            keep = [r for r in batch if hash_label(r.labels.get(hp.label)) in index]
            if keep:
                vecs.append(encoder.encode_batch([r.record for r in keep]))
                ys.extend(index[hash_label(r.labels[hp.label])] for r in keep)
                ids.extend(r.id for r in keep)
        x, y = torch.cat(vecs), torch.tensor(ys)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(hp.seed))
        n_val, n_test = int(len(y) * hp.val_fraction), int(len(y) * hp.test_fraction)
        parts = perm[:n_val], perm[n_val : n_val + n_test], perm[n_val + n_test :]
        self.val_set, self.test_set, self.train_set = (TensorDataset(x[p], y[p]) for p in parts)
        self.test_ids = [ids[i] for i in parts[1].tolist()]  # record ids of the test rows, in order

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.hparams.batch_size)

    def predict_dataloader(self) -> DataLoader:
        """The test split, in :attr:`test_ids` order, with each row's position for its id."""
        x, y = self.test_set.tensors
        return DataLoader(TensorDataset(x, y, torch.arange(len(y))), batch_size=self.hparams.batch_size)


def _batched(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

"""Pairs of encoded tables in batches, and the LightningDataModule over the PMC corpus.

The encoder (vocabulary, n-gram hashing, TF-IDF statistics) is fitted on the text of every table
in the table file, without labels, as the unsupervised lexical baselines are; the pairs are
split by :mod:`datasets.tables` (grouped by query table by default).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from graphcore.datasets.tables import (BUNDLED_PAIRS, BUNDLED_TABLES, Table, TablePair, grouped_kfold, holdout, load_pairs,
                             load_tables, strubert_folds, tabsim_split)
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.tabsim.encode import EncodedTable, TableBatch, TableEncoder, collate_chunks, size_order
from graphcore.tasks.tabsim.lexical import LexicalModel


@dataclass
class PairBatch:
    """Pairs ``(a[i], b[i])`` indexing the tables of one :class:`TableBatch`.

    Attributes:
        tables: the distinct tables of the batch, sorted by size and split into chunks of
            similar size (see :func:`~tasks.tabsim.encode.collate_chunks`).
        a, b: ``[P]`` indices into the concatenation of ``tables``.
        lexical: ``[P, 3]`` lexical features (:data:`tasks.tabsim.lexical.FEATURES`).
        labels: ``[P]`` 1.0 for similar pairs (0 when unknown).
        queries: the query table id of each pair (for ranking metrics).
        candidates: the other table id of each pair (``""`` when unknown).
        pair_ids: ``[P]`` the pairs' ``pair_id`` in the pair file (-1 when unknown); with the
            table ids, what ``predict`` writes beside each score.
    """

    tables: list[TableBatch]
    a: Tensor
    b: Tensor
    lexical: Tensor
    labels: Tensor
    queries: list[str]
    candidates: list[str] = field(default_factory=list)
    pair_ids: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def to(self, device: torch.device | str) -> PairBatch:
        """A copy with every tensor on ``device``."""
        return PairBatch([t.to(device) for t in self.tables], self.a.to(device), self.b.to(device), self.lexical.to(device),
                         self.labels.to(device), self.queries, self.candidates, self.pair_ids.to(device))


def make_pair_batch(encoded: Sequence[EncodedTable], pairs: Sequence[tuple[int, int]],
                    labels: Sequence[int] | None = None, queries: Sequence[str] | None = None,
                    candidates: Sequence[str] | None = None, pair_ids: Sequence[int] | None = None) -> PairBatch:
    """Batch ``pairs`` of indices into ``encoded``.

    Tables are collated once each, in an order that depends only on the set of tables, so
    ``(a, b)`` and ``(b, a)`` see the same batch and score identically.
    """
    distinct = size_order(encoded, (i for pair in pairs for i in pair))
    pos = {t: k for k, t in enumerate(distinct)}
    lexical = [LexicalModel.features(encoded[i].profile, encoded[j].profile) for i, j in pairs]
    return PairBatch(
        tables=collate_chunks([encoded[i] for i in distinct]),
        a=torch.tensor([pos[i] for i, _ in pairs], dtype=torch.long),
        b=torch.tensor([pos[j] for _, j in pairs], dtype=torch.long),
        lexical=torch.tensor(lexical, dtype=torch.float32).view(len(pairs), -1),
        labels=torch.tensor(labels if labels is not None else [0] * len(pairs), dtype=torch.float32),
        queries=list(queries) if queries is not None else [""] * len(pairs),
        candidates=list(candidates) if candidates is not None else [""] * len(pairs),
        pair_ids=torch.tensor(pair_ids if pair_ids is not None else [-1] * len(pairs), dtype=torch.long))


def split_pairs(pairs: Sequence[TablePair], split: str, fold: int, n_folds: int = 5,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` pair indices of fold ``fold`` under ``split`` ("grouped", "strubert", "tabsim").

    Raises:
        UsageError: unknown split, or ``fold`` out of range for it (a ``ValueError``).
    """
    schemes = {"grouped": lambda: grouped_kfold(pairs, n_folds, seed), "strubert": lambda: strubert_folds(pairs),
               "tabsim": lambda: tabsim_split(pairs)}
    if split not in schemes:
        raise UsageError(f"unknown split {split!r}; use one of {sorted(schemes)}")
    folds = schemes[split]()
    if not 0 <= fold < len(folds):
        raise UsageError(f"split {split!r} has folds 0..{len(folds) - 1}, got fold={fold}")
    return folds[fold]


class TabSimDataModule(L.LightningDataModule):
    """Scored table pairs for ``fit``/``validate``/``test``.

    Args:
        tables: JSONL table file (default: the bundled PMC corpus).
        pairs: JSONL pair file (default: the bundled PMC pairs).
        split: ``"grouped"`` (k folds by query table), ``"strubert"`` or ``"tabsim"`` (published,
            leaky) splits.
        fold: which fold is the test part.
        n_folds: folds of the grouped split.
        val_fraction: part of the training pairs held out for validation (grouped by query
            table for the grouped split, random over pairs for the published ones, as StruBERT did).
        seed: seed of the grouped folds and of the validation hold-out.
        batch_size: pairs per batch.
        vocab_size: word ids kept (padding and unknown included).
        n_buckets: character n-gram hash buckets.
        max_rows: rows the content encoder reads (larger tables warn and are cut).
        max_cols: columns the content encoder reads.
    """

    def __init__(self, tables: str | None = None, pairs: str | None = None,
                 split: Literal["grouped", "strubert", "tabsim"] = "grouped", fold: int = 0, n_folds: int = 5,
                 val_fraction: float = 0.2, seed: int = 0, batch_size: int = 64, vocab_size: int = 3000,
                 n_buckets: int = 2048, max_rows: int = 100, max_cols: int = 32):
        super().__init__()
        self.save_hyperparameters()
        self.encoder: TableEncoder | None = None
        self.tables: list[Table] = []
        self.pairs: list[TablePair] = []
        self.pair_index: list[tuple[int, int]] = []
        self.encoded: list[EncodedTable] = []
        self.parts: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.encoder is not None:
            return
        hp = self.hparams
        if not (hp.tables and hp.pairs) and not (BUNDLED_TABLES.is_file() and BUNDLED_PAIRS.is_file()):
            raise UsageError("the bundled PMC corpus is not installed (research use only: it ships in the "
                             "repository, not in the wheel); pass your own JSONL files with --data.tables "
                             "TABLES.jsonl --data.pairs PAIRS.jsonl")
        tables = load_tables(Path(hp.tables) if hp.tables else BUNDLED_TABLES)
        self.pairs = load_pairs(Path(hp.pairs) if hp.pairs else BUNDLED_PAIRS, tables)
        self.tables = list(tables.values())
        self.encoder = TableEncoder.fit(self.tables, vocab_size=hp.vocab_size, n_buckets=hp.n_buckets,
                                        max_rows=hp.max_rows, max_cols=hp.max_cols)
        ids = {tid: i for i, tid in enumerate(tables)}
        self.pair_index = [(ids[p.table_a], ids[p.table_b]) for p in self.pairs]
        self.encoded = [self.encoder.encode(t) for t in self.tables]
        train, test = split_pairs(self.pairs, hp.split, hp.fold, hp.n_folds, hp.seed)
        fit, val = holdout(train, self.pairs, hp.val_fraction, hp.seed, grouped=hp.split == "grouped")
        self.parts = {"fit": fit, "val": val, "test": test}

    def use_encoder(self, encoder: TableEncoder) -> None:
        """Encode the tables with ``encoder`` (a trained model's) instead of the one fitted here.

        A checkpoint's word ids must be the ones it was trained with: when a model is tested on
        another table file, or with other sizes, the fitted encoder would differ silently.
        """
        if self.encoder is None or encoder.state_dict() != self.encoder.state_dict():
            self.encoder = encoder
            self.encoded = [encoder.encode(t) for t in self.tables]

    def collate(self, indices: Sequence[int]) -> PairBatch:
        """Batch the pairs with these indices (into the pair file)."""
        pairs = [self.pairs[i] for i in indices]
        return make_pair_batch(self.encoded, [self.pair_index[i] for i in indices], [p.similar for p in pairs],
                               [p.table_a for p in pairs], [p.table_b for p in pairs], [p.pair_id for p in pairs])

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.parts[part].tolist(), batch_size=self.hparams.batch_size, shuffle=shuffle,
                          collate_fn=self.collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("fit", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def transfer_batch_to_device(self, batch: PairBatch, device: torch.device, dataloader_idx: int) -> PairBatch:
        return batch.to(device)

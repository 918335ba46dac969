"""Tests of tasks.tabsim.encode: ids, size cap, structure features, padding into batches."""
import math

import pytest
import torch

from graphcore.datasets.tables import Table
from graphcore.tasks.tabsim.encode import (PAD, UNK, TableBatch, TableEncoder, TableSizeWarning, collate_chunks, is_numeric,
                                 size_order, structure_features)


@pytest.fixture(scope="module")
def encoder():
    tables = [Table("Primers used in this study", [["Gene", "Primer"]], [["IL6", "ACGT"], ["TNF", "1.5"]]),
              Table("Primers for qPCR", [["Gene", "Sequence"]], [["GAPDH", "ACGT"]])]
    return TableEncoder.fit(tables, vocab_size=6, min_count=2, n_buckets=64, max_rows=3, max_cols=2)


def test_vocabulary_keeps_frequent_words_and_maps_unknown(encoder):
    assert encoder.vocab == ["acgt", "gene", "primers"]  # the words of both tables, most frequent first
    assert encoder.vocab_size == 5
    enc = encoder.encode(Table("primers zebra", [["gene"]], [["acgt"]]))
    assert enc.caption_words.tolist() == [4, UNK]
    assert PAD not in enc.caption_words.tolist()
    # "<zebra>" has 5 trigrams, "<primers>" 7
    assert len(enc.caption_ngrams) == 12 and 0 <= int(enc.caption_ngrams.min()) and int(enc.caption_ngrams.max()) < 64


def test_size_cap_warns_and_keeps_whole_table_for_structure(encoder):
    big = Table("big", [["a", "b", "c"]], [["1", "2", "3"]] * 4)
    with pytest.warns(TableSizeWarning, match=r"is 5x3, above the size cap 3x2.*first 3 rows and 2 columns"):
        enc = encoder.encode(big)
    assert (enc.rows, enc.cols) == (3, 2) and len(enc.cell_words) == 6
    assert enc.structure[0] == pytest.approx(math.log1p(5)) and enc.structure[1] == pytest.approx(math.log1p(3))


def test_structure_features_by_hand():
    t = Table("c", [["Group", "n"]], [["A", "12 (3.5)"], ["B", ""]])
    log_rows, log_cols, header, numeric, empty, log_len = structure_features(t)
    assert (log_rows, log_cols, header) == (math.log1p(3), math.log1p(2), 1.0)
    assert numeric == pytest.approx(1 / 5) and empty == pytest.approx(1 / 6)
    assert log_len == pytest.approx(math.log1p((5 + 1 + 1 + 8 + 1) / 5))
    assert [is_numeric(c) for c in ("<0.001", "45%", "1.2 ± 0.3", "p53", "n", "")] == [True, True, True, False,
                                                                                         False, False]


def test_collate_pads_with_masks_and_places_cells(encoder):
    small = encoder.encode(Table("x", [["gene"]], []))
    wide = encoder.encode(Table("y", [["gene", "primers"]], [["acgt", ""]]))
    batch = TableBatch.collate([small, wide])
    assert batch.mask.tolist() == [[[True, False], [False, False]], [[True, True], [True, True]]]
    assert batch.header.tolist() == [[[True, False], [False, False]], [[True, True], [False, False]]]
    # cell 0 of table 0 at flat 0; table 1's cells at 4..7
    assert batch.cell_index.tolist() == [0, 4, 5, 6, 7]
    assert batch.cell_offsets.tolist() == [0, 1, 2, 3, 4]
    assert batch.cell_words.tolist() == [encoder.index["gene"], encoder.index["gene"], encoder.index["primers"],
                                         encoder.index["acgt"]]
    assert batch.structure.shape == (2, 6)
    with pytest.raises(ValueError, match="at least one table"):
        TableBatch.collate([])


def test_collate_chunks_budget_and_deterministic_order(encoder):
    tables = [encoder.encode(Table("t", [["a"] * c], [["1"] * c] * (r - 1))) for r, c in
              [(3, 2), (1, 1), (2, 2), (1, 1), (3, 1)]]
    order = size_order(tables, [4, 0, 3, 1, 2, 0])
    assert order == [1, 3, 2, 4, 0]  # by (rows, cols, index), duplicates dropped
    chunks = collate_chunks([tables[i] for i in order], max_cells=6)
    assert [tuple(c.mask.shape) for c in chunks] == [(2, 1, 1), (1, 2, 2), (1, 3, 1), (1, 3, 2)]
    assert all(c.mask.numel() <= 6 for c in chunks)


def test_encoder_state_round_trip(encoder):
    again = TableEncoder.from_state(encoder.state_dict())
    t = Table("Primers used", [["Gene"]], [["ACGT 1.5"]])
    a, b = encoder.encode(t), again.encode(t)
    assert torch.equal(a.caption_ngrams, b.caption_ngrams) and torch.equal(a.cell_words[1], b.cell_words[1])
    assert a.profile == b.profile
    with pytest.raises(ValueError, match="must all be >= 1"):
        TableEncoder([], encoder.lexical, max_rows=0)

r"""Turn :class:`~datasets.tables.Table` objects into the integer tensors the model reads.

Every text (the caption, each cell) becomes two bags of ids: its words, looked up in a vocabulary
fitted on a corpus (unknown words map to ``1``, padding is ``0``), and its hashed character
n-grams (``"<word>"`` boundary-marked, hashed with CRC-32 into ``n_buckets``), which cover words
the vocabulary has never seen. A table's grid is capped at ``max_rows`` x ``max_cols`` for the
content encoder; a larger table is cut with a :class:`TableSizeWarning` naming it, while its
structure and lexical features still use the whole table.

:class:`TableBatch` pads a list of encoded tables into one batch with masks.
"""
from __future__ import annotations

import math
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from graphcore.datasets.tables import Table
from graphcore.tasks.tabsim.lexical import LexicalModel, Profile, cell_words, words

PAD, UNK = 0, 1
_NUMERIC = re.compile(r"^[\s<>≤≥=~±+\-−–.,:;/%()\[\]*†‡§xX×eE\d]*\d[\s<>≤≥=~±+\-−–.,:;/%()\[\]*†‡§xX×eE\d]*$")

#: names of the structure features, in order (see :func:`structure_features`).
STRUCTURE = ("log_rows", "log_cols", "header_rows", "numeric_ratio", "empty_ratio", "log_cell_chars")


class TableSizeWarning(UserWarning):
    """A table was larger than the content encoder's size cap and was cut to fit."""


def is_numeric(cell: str) -> bool:
    """True for cells made of numbers and their punctuation: ``"12.5 (3.1)"``, ``"<0.001"``, ``"45%"``."""
    return bool(_NUMERIC.match(cell))


def structure_features(table: Table) -> list[float]:
    """Shape, header depth, numeric-cell ratio, empty-cell ratio, mean cell length (log scale).

    Computed on the whole table, whatever the size cap; names in :data:`STRUCTURE`.
    """
    cells = [c for row in table.grid() for c in row]
    filled = [c for c in cells if c]
    return [
        math.log1p(table.n_rows),
        math.log1p(table.n_cols),
        float(len(table.header_rows)),
        sum(map(is_numeric, filled)) / max(1, len(filled)),
        1.0 - len(filled) / max(1, len(cells)),
        math.log1p(sum(map(len, filled)) / max(1, len(filled))),
    ]


@dataclass(frozen=True)
class EncodedTable:
    """One table as ids and features; cells are row-major over the capped ``rows x cols`` grid."""

    caption_words: Tensor
    caption_ngrams: Tensor
    cell_words: tuple[Tensor, ...]
    cell_ngrams: tuple[Tensor, ...]
    rows: int
    cols: int
    header_rows: int
    numeric: Tensor
    structure: Tensor
    profile: Profile


class TableEncoder:
    """A fitted word vocabulary, an n-gram hasher, a size cap and the lexical statistics.

    Args:
        vocab: words in id order, starting at id 2 (``0`` = padding, ``1`` = unknown).
        lexical: document frequencies for the TF-IDF/Jaccard pair features.
        n_buckets: hash buckets of character n-grams.
        ngram: n-gram length.
        max_rows: rows kept by the content encoder (header included).
        max_cols: columns kept by the content encoder.
    """

    def __init__(self, vocab: Sequence[str], lexical: LexicalModel, n_buckets: int = 2048, ngram: int = 3,
                 max_rows: int = 100, max_cols: int = 32):
        if n_buckets < 1 or ngram < 1 or max_rows < 1 or max_cols < 1:
            raise ValueError(f"TableEncoder: n_buckets ({n_buckets}), ngram ({ngram}), max_rows ({max_rows}) "
                             f"and max_cols ({max_cols}) must all be >= 1")
        self.vocab = list(vocab)
        self.index = {w: i + 2 for i, w in enumerate(self.vocab)}
        self.lexical = lexical
        self.n_buckets, self.ngram = n_buckets, ngram
        self.max_rows, self.max_cols = max_rows, max_cols

    @classmethod
    def fit(cls, tables: Iterable[Table], vocab_size: int = 4000, min_count: int = 2, **kwargs) -> TableEncoder:
        """Keep the ``vocab_size - 2`` words found in the most tables (at least ``min_count``).

        Extra keyword arguments go to the constructor. The lexical statistics are fitted on the
        same tables.
        """
        tables = list(tables)
        counts: Counter[str] = Counter()
        for t in tables:
            counts.update(set(words(t.caption)) | set(cell_words(t)))
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked[: max(0, vocab_size - 2)], LexicalModel.fit(tables), **kwargs)

    @property
    def vocab_size(self) -> int:
        """Number of word ids, padding and unknown included."""
        return len(self.vocab) + 2

    def _ids(self, text: str) -> tuple[Tensor, Tensor]:
        toks = words(text)
        word_ids = [self.index.get(w, UNK) for w in toks]
        grams = []
        for w in toks:
            marked = f"<{w}>"
            grams.extend(zlib.crc32(marked[i:i + self.ngram].encode()) % self.n_buckets
                         for i in range(max(1, len(marked) - self.ngram + 1)))
        return torch.tensor(word_ids, dtype=torch.long), torch.tensor(grams, dtype=torch.long)

    def encode(self, table: Table) -> EncodedTable:
        """Encode one table, warning with :class:`TableSizeWarning` if it exceeds the size cap."""
        if table.n_rows > self.max_rows or table.n_cols > self.max_cols:
            warnings.warn(f"table {table.table_id or '(unnamed)'} is {table.n_rows}x{table.n_cols}, above the "
                          f"size cap {self.max_rows}x{self.max_cols}: the content encoder reads only the first "
                          f"{min(table.n_rows, self.max_rows)} rows and {min(table.n_cols, self.max_cols)} columns "
                          "(caption, structure and lexical features use the whole table). Raise "
                          "max_rows/max_cols to keep all of it.", TableSizeWarning, stacklevel=2)
        grid = [row[: self.max_cols] for row in table.grid()[: self.max_rows]]
        cells = [self._ids(c) for row in grid for c in row]
        cap_words, cap_grams = self._ids(table.caption)
        return EncodedTable(
            caption_words=cap_words, caption_ngrams=cap_grams,
            cell_words=tuple(c[0] for c in cells), cell_ngrams=tuple(c[1] for c in cells),
            rows=len(grid), cols=len(grid[0]), header_rows=min(len(table.header_rows), len(grid)),
            numeric=torch.tensor([is_numeric(c) for row in grid for c in row], dtype=torch.bool),
            structure=torch.tensor(structure_features(table), dtype=torch.float32),
            profile=self.lexical.profile(table))

    def state_dict(self) -> dict:
        """A picklable state, restored by :meth:`from_state`."""
        return {"vocab": self.vocab, "lexical": self.lexical.state_dict(), "n_buckets": self.n_buckets,
                "ngram": self.ngram, "max_rows": self.max_rows, "max_cols": self.max_cols}

    @classmethod
    def from_state(cls, state: dict) -> TableEncoder:
        """Rebuild from :meth:`state_dict`."""
        state = dict(state)
        return cls(state.pop("vocab"), LexicalModel.from_state(state.pop("lexical")), **state)


def _bags(bags: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Concatenate id bags into ``(ids, offsets)`` for :class:`torch.nn.EmbeddingBag`."""
    lengths = torch.tensor([len(b) for b in bags], dtype=torch.long)
    offsets = torch.zeros(len(bags), dtype=torch.long)
    if len(bags) > 1:
        offsets[1:] = torch.cumsum(lengths[:-1], 0)
    ids = torch.cat(list(bags)) if bags else torch.zeros(0, dtype=torch.long)
    return ids, offsets


@dataclass
class TableBatch:
    """``T`` encoded tables padded to a common ``R x C`` grid.

    Attributes:
        caption_words, caption_offsets, caption_ngrams, caption_ngram_offsets: caption bags, ``T`` each.
        cell_words, cell_offsets, cell_ngrams, cell_ngram_offsets: bags of the ``N`` real cells.
        cell_index: ``[N]`` position of each real cell in the flattened ``[T * R * C]`` grid.
        mask: ``[T, R, C]`` True for real cells.
        header: ``[T, R, C]`` True for header cells.
        numeric: ``[T, R, C]`` True for numeric cells.
        structure: ``[T, S]`` structure features.
    """

    caption_words: Tensor
    caption_offsets: Tensor
    caption_ngrams: Tensor
    caption_ngram_offsets: Tensor
    cell_words: Tensor
    cell_offsets: Tensor
    cell_ngrams: Tensor
    cell_ngram_offsets: Tensor
    cell_index: Tensor
    mask: Tensor
    header: Tensor
    numeric: Tensor
    structure: Tensor

    @classmethod
    def collate(cls, tables: Sequence[EncodedTable]) -> TableBatch:
        """Pad ``tables`` into one batch."""
        if not tables:
            raise ValueError("TableBatch.collate needs at least one table")
        n, rows, cols = len(tables), max(t.rows for t in tables), max(t.cols for t in tables)
        mask = torch.zeros(n, rows, cols, dtype=torch.bool)
        header = torch.zeros_like(mask)
        numeric = torch.zeros_like(mask)
        index = []
        for i, t in enumerate(tables):
            mask[i, : t.rows, : t.cols] = True
            header[i, : t.header_rows, : t.cols] = True
            numeric[i, : t.rows, : t.cols] = t.numeric.view(t.rows, t.cols)
            r = torch.arange(t.rows).repeat_interleave(t.cols)
            c = torch.arange(t.cols).repeat(t.rows)
            index.append((i * rows + r) * cols + c)
        cap_w, cap_wo = _bags([t.caption_words for t in tables])
        cap_g, cap_go = _bags([t.caption_ngrams for t in tables])
        cell_w, cell_wo = _bags([b for t in tables for b in t.cell_words])
        cell_g, cell_go = _bags([b for t in tables for b in t.cell_ngrams])
        return cls(cap_w, cap_wo, cap_g, cap_go, cell_w, cell_wo, cell_g, cell_go, torch.cat(index),
                   mask, header, numeric, torch.stack([t.structure for t in tables]))

    def to(self, device: torch.device | str) -> TableBatch:
        """A copy with every tensor on ``device``."""
        return TableBatch(**{k: v.to(device) for k, v in vars(self).items()})


def size_order(tables: Sequence[EncodedTable], indices: Iterable[int]) -> list[int]:
    """``indices`` sorted by grid size (rows, columns), then index: a deterministic order."""
    return sorted(set(indices), key=lambda i: (tables[i].rows, tables[i].cols, i))


def collate_chunks(tables: Sequence[EncodedTable], max_cells: int = 4096) -> list[TableBatch]:
    """Collate tables (sorted by :func:`size_order`) into batches of at most ``max_cells`` padded cells.

    Padding every table to the largest grid of a batch wastes most of the work (grids range
    from 2x1 to 96x23); consecutive tables of similar size padded together waste little. A table
    larger than ``max_cells`` gets a batch of its own.
    """
    chunks: list[list[EncodedTable]] = [[]]
    rows = cols = 0
    for t in tables:
        r, c = max(rows, t.rows), max(cols, t.cols)
        if chunks[-1] and (len(chunks[-1]) + 1) * r * c > max_cells:
            chunks.append([])
            r, c = t.rows, t.cols
        chunks[-1].append(t)
        rows, cols = r, c
    return [TableBatch.collate(chunk) for chunk in chunks]

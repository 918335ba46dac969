r"""Lexical similarity of tables: word tokens, TF-IDF cosine and token Jaccard.

These are the baselines the learned model is measured against, and also three of the pair
features its Siamese head reads (see :class:`tasks.tabsim.model.MonotoneHead`). Every feature is
symmetric and maximal for identical tables.

.. math::
    \mathrm{idf}_f(w) = \log\frac{1 + N}{1 + \mathrm{df}_f(w)} + 1, \qquad
    \cos(a, b) = \frac{\sum_w t_a(w)\, t_b(w)}{\lVert t_a \rVert \lVert t_b \rVert}, \qquad
    J(a, b) = \frac{|W_a \cap W_b|}{|W_a \cup W_b|}

with :math:`t(w) = (1 + \log \mathrm{tf}(w))\,\mathrm{idf}_f(w)` (sublinear term frequency), the
document frequencies :math:`\mathrm{df}_f` counted separately for each field :math:`f` (caption,
cells) over :math:`N` tables, and :math:`W` a token set (caption and cells).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from graphcore.datasets.tables import Table

_WORD = re.compile(r"[^\W_]+")

#: names of the features returned by :meth:`LexicalModel.features`, in order.
FEATURES = ("tfidf_caption", "tfidf_cells", "jaccard")


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: ``"IL-6 (pg/ml)"`` -> ``["il", "6", "pg", "ml"]``."""
    return _WORD.findall(text.lower())


def cell_words(table: Table) -> list[str]:
    """The words of every cell, header included, row by row."""
    return [w for row in table.rows for cell in row for w in words(cell)]


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard index of two sets; 0 when both are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    """Dot product of two L2-normalised sparse vectors (0 if either is empty).

    Summed over the shared words in sorted order, so ``cosine(a, b) == cosine(b, a)`` exactly.
    """
    return sum(a[k] * b[k] for k in sorted(a.keys() & b.keys()))


@dataclass(frozen=True)
class Profile:
    """What the lexical features need of one table: two TF-IDF vectors and a token set."""

    caption: dict[str, float]
    cells: dict[str, float]
    tokens: frozenset[str]


class LexicalModel:
    """Document frequencies over a corpus, and the TF-IDF/Jaccard features they give.

    Args:
        df_caption: number of tables whose caption holds each word.
        df_cells: number of tables whose cells hold each word.
        n_tables: number of tables counted.
    """

    def __init__(self, df_caption: dict[str, int], df_cells: dict[str, int], n_tables: int):
        self.df_caption = dict(df_caption)
        self.df_cells = dict(df_cells)
        self.n_tables = int(n_tables)

    @classmethod
    def fit(cls, tables: Iterable[Table]) -> LexicalModel:
        """Count document frequencies over the captions and the cell texts of ``tables``."""
        df_caption: Counter[str] = Counter()
        df_cells: Counter[str] = Counter()
        n = 0
        for t in tables:
            df_caption.update(set(words(t.caption)))
            df_cells.update(set(cell_words(t)))
            n += 1
        return cls(df_caption, df_cells, n)

    def tfidf(self, tokens: Sequence[str], df: dict[str, int]) -> dict[str, float]:
        """L2-normalised TF-IDF vector of a token list (empty dict for no tokens).

        Words absent from ``df`` get the largest IDF.
        """
        n = self.n_tables
        vec = {w: (1.0 + math.log(c)) * (math.log((1 + n) / (1 + df.get(w, 0))) + 1.0)
               for w, c in Counter(tokens).items()}
        norm = math.sqrt(sum(v * v for v in vec.values()))
        return {w: v / norm for w, v in vec.items()} if norm else {}

    def profile(self, table: Table) -> Profile:
        """TF-IDF of the caption, TF-IDF of the cells, and the set of all tokens."""
        cap, cells = words(table.caption), cell_words(table)
        return Profile(self.tfidf(cap, self.df_caption), self.tfidf(cells, self.df_cells),
                       frozenset(cap) | frozenset(cells))

    @staticmethod
    def features(a: Profile, b: Profile) -> tuple[float, float, float]:
        """Caption TF-IDF cosine, cells TF-IDF cosine and token Jaccard (see :data:`FEATURES`)."""
        return cosine(a.caption, b.caption), cosine(a.cells, b.cells), jaccard(a.tokens, b.tokens)

    def state_dict(self) -> dict:
        """A JSON-able state, restored by :meth:`from_state`."""
        return {"df_caption": self.df_caption, "df_cells": self.df_cells, "n_tables": self.n_tables}

    @classmethod
    def from_state(cls, state: dict) -> LexicalModel:
        """Rebuild from :meth:`state_dict`."""
        return cls(state["df_caption"], state["df_cells"], state["n_tables"])

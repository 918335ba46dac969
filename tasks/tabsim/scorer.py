"""A trained model ready to use: score table pairs, embed a corpus once, search it.

:class:`Scorer` wraps a :class:`~tasks.tabsim.module.TabSimModule` checkpoint (plain or gzip
-compressed) and its :class:`~tasks.tabsim.encode.TableEncoder`. Embeddings are computed once per
table; scoring a pair then costs only the Siamese head and the lexical features.
"""
from __future__ import annotations

import gzip
import io
import pickle
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from graphcore.datasets.tables import Table
from graphcore.tasks.cli_errors import UsageError
from graphcore.tasks.tabsim.encode import EncodedTable, collate_chunks, size_order
from graphcore.tasks.tabsim.lexical import LexicalModel
from graphcore.tasks.tabsim.model import TableEmbedding
from graphcore.tasks.tabsim.module import TabSimModule

#: a small model trained on the bundled PMC corpus (``python benchmarks/tabsim_eval.py --export``).
PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "pmc_tabsim.ckpt.gz"


@dataclass(frozen=True)
class Hit:
    """One search result: position in the corpus, embedding distance, calibrated score."""

    index: int
    distance: float
    score: float


class Scorer:
    """Calibrated similarity of tables with a trained model.

    Args:
        module: a trained module with an attached encoder.

    Raises:
        UsageError: the module carries no encoder (it was never fitted; a ``ValueError``).
    """

    def __init__(self, module: TabSimModule):
        if module.encoder is None:
            raise UsageError("this TabSimModule has no TableEncoder: load a checkpoint written by "
                             "`python -m tasks.tabsim fit`, or attach() the data module's encoder")
        self.module = module.eval().cpu()
        self.net = self.module.net
        self.encoder = module.encoder

    @classmethod
    def load(cls, path: str | Path = PRETRAINED) -> Scorer:
        """Load a checkpoint (``.ckpt`` or ``.ckpt.gz``).

        Raises:
            UsageError: no file at ``path``, or a file that is not a TabSim checkpoint.
        """
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"no model checkpoint at {path}. Train one with `python -m tasks.tabsim fit` and pass "
                             "its checkpoint (lightning_logs/version_N/checkpoints/last.ckpt) with --ckpt")
        try:
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            module = TabSimModule.load_from_checkpoint(io.BytesIO(data), map_location="cpu", weights_only=False)
        except (OSError, EOFError, zlib.error, pickle.UnpicklingError, RuntimeError, KeyError, TypeError) as err:
            raise UsageError(f"{path} is not a TabSim checkpoint ({type(err).__name__}: {' '.join(str(err).split())}); "
                             "pass one written by `python -m tasks.tabsim fit`") from None
        return cls(module)

    @property
    def threshold(self) -> float:
        """The decision threshold chosen on validation (score >= threshold means similar)."""
        return float(self.net.calibration.threshold)

    def encode(self, tables: Sequence[Table]) -> list[EncodedTable]:
        """Encode tables (warns for tables above the size cap)."""
        return [self.encoder.encode(t) for t in tables]

    @torch.no_grad()
    def embed(self, encoded: Sequence[EncodedTable], batch_tables: int = 256, progress: bool = False) -> TableEmbedding:
        """Embeddings of ``encoded``, in input order, computed in batches of similar-size tables."""
        order = size_order(encoded, range(len(encoded)))
        parts = []
        for start in tqdm(range(0, len(order), batch_tables), desc="embedding tables", unit="batch",
                          disable=not progress):
            chunk = [encoded[i] for i in order[start:start + batch_tables]]
            parts.append(self.net.embed(collate_chunks(chunk)))
        emb = TableEmbedding(*(torch.cat(field) for field in zip(*parts)))
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return TableEmbedding(*(field[inverse] for field in emb))

    @torch.no_grad()
    def score_embedded(self, encoded: Sequence[EncodedTable], emb: TableEmbedding,
                       pairs: Sequence[tuple[int, int]]) -> np.ndarray:
        """Calibrated scores of ``pairs`` (indices into ``encoded``/``emb``), embeddings precomputed."""
        if not pairs:
            return np.zeros(0)
        a = torch.tensor([i for i, _ in pairs])
        b = torch.tensor([j for _, j in pairs])
        lexical = torch.tensor([LexicalModel.features(encoded[i].profile, encoded[j].profile) for i, j in pairs],
                               dtype=torch.float32)
        logits = self.net.pair_logits(TableEmbedding(*(f[a] for f in emb)), TableEmbedding(*(f[b] for f in emb)),
                                      lexical)
        return self.net.calibration(logits).numpy().astype(np.float64)

    def score(self, a: Table, b: Table) -> float:
        """Calibrated similarity in [0, 1]; symmetric, and largest for identical tables."""
        encoded = self.encode([a, b])
        emb = [self.embed([e]) for e in encoded]  # one at a time: no padding shared between a and b
        both = TableEmbedding(*(torch.cat(f) for f in zip(*emb)))
        return float(self.score_embedded(encoded, both, [(0, 1)])[0])

    def search(self, corpus: Sequence[EncodedTable], corpus_emb: TableEmbedding, query: Table, k: int = 5,
               shortlist: int = 50) -> list[Hit]:
        """The ``k`` best corpus tables for ``query``: shortlist by embedding distance, rank by score.

        The ``shortlist`` corpus tables nearest to the query's joint embedding (Euclidean
        distance, an index lookup) are scored by the Siamese head, and the ``k`` with the highest
        calibrated score are returned, best first. ``shortlist=k`` ranks by distance alone.

        Raises:
            ValueError: ``k < 1``, ``shortlist < k`` or an empty corpus.
        """
        if k < 1 or shortlist < k or not corpus:
            raise ValueError(f"search needs 1 <= k <= shortlist and a non-empty corpus (k={k}, shortlist={shortlist}, "
                             f"corpus of {len(corpus)})")
        q_enc = self.encode([query])[0]
        q_emb = self.embed([q_enc])
        dist = torch.cdist(q_emb.joint, corpus_emb.joint)[0]
        near = torch.topk(dist, min(shortlist, len(corpus)), largest=False)
        idx = near.indices.tolist()
        both = [*corpus, q_enc]
        emb = TableEmbedding(*(torch.cat([c, q]) for c, q in zip(corpus_emb, q_emb)))
        scores = self.score_embedded(both, emb, [(len(corpus), i) for i in idx])
        hits = [Hit(i, float(d), float(s)) for i, d, s in zip(idx, near.values.tolist(), scores)]
        if shortlist > k:
            hits.sort(key=lambda h: (-h.score, h.distance))
        return hits[:k]

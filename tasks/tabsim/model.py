r"""The TabSim Siamese network as plain ``nn.Module`` s (after Habibi et al., 2020, "TabSim").

One :class:`TableEmbedder` embeds each table of a pair (shared weights):

* caption encoder: a bag of word embeddings plus hashed character n-gram embeddings (both
  trained from scratch), then an MLP;
* content encoder: each cell is a bag of the same embeddings; the cells form a ``[R, C]`` grid
  with row/column position, header and numeric-cell embeddings added; axial self-attention
  runs along columns (over rows) and along rows (over columns), with masks for padding; a masked
  attention pooling gives the table vector;
* structure features (:data:`~tasks.tabsim.encode.STRUCTURE`).

Two Siamese heads read a pair of embeddings:

* ``"bce"`` (:class:`MonotoneHead`): similarity features (:func:`pair_features`: cosines of the
  learned caption, content and joint embeddings, differences of the structure features, and,
  with ``use_lexical``, the TF-IDF/Jaccard features of :mod:`tasks.tabsim.lexical`), each
  symmetric and maximal for identical inputs, go through a linear map and an MLP whose weights
  are non-negative and whose activations are increasing, so the output is non-decreasing in
  every feature. Hence :math:`s(a, b) = s(b, a)` and :math:`s(a, a) \ge s(a, b)` by
  construction. Trained with binary cross-entropy.
* ``"contrastive"`` (the paper's): the logit is :math:`-d` with
  :math:`d = \lVert \hat z_a - \hat z_b \rVert` on the L2-normalised joint embeddings, trained
  with :math:`y d^2 + (1 - y) \max(0, m - d)^2`.

:class:`Calibration` maps the logit to a score in [0, 1] (Platt scaling fitted on validation)
and holds the decision threshold chosen on validation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphcore.tasks.tabsim.encode import STRUCTURE, TableBatch
from graphcore.tasks.tabsim.lexical import FEATURES as LEXICAL_FEATURES


class TextBag(nn.Module):
    """Mean word embedding plus mean character n-gram embedding of each text: ``[N, d]``."""

    def __init__(self, vocab_size: int, n_buckets: int, dim: int):
        super().__init__()
        self.words = nn.EmbeddingBag(vocab_size, dim, mode="mean")
        self.ngrams = nn.EmbeddingBag(n_buckets, dim, mode="mean")
        nn.init.normal_(self.words.weight, std=dim ** -0.5)
        nn.init.normal_(self.ngrams.weight, std=dim ** -0.5)

    def forward(self, words: Tensor, offsets: Tensor, ngrams: Tensor, ngram_offsets: Tensor) -> Tensor:
        return self.words(words, offsets) + self.ngrams(ngrams, ngram_offsets)


def _masked_softmax(scores: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax over ``dim`` ignoring masked-out entries; all-masked slices give zeros, not NaN."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask


class AxialAttention(nn.Module):
    r"""Multi-head self-attention along one axis of a ``[T, R, C, d]`` grid.

    ``axis=1`` attends over rows (cells of one column), ``axis=2`` over columns (cells of one
    row): :math:`\mathrm{softmax}(QK^\top/\sqrt{d_h} + \mathrm{mask})V`.
    """

    def __init__(self, dim: int, heads: int, axis: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"AxialAttention: dim {dim} is not divisible by heads {heads}")
        self.heads, self.axis = heads, axis
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.axis == 1:
            x, mask = x.transpose(1, 2), mask.transpose(1, 2)
        t, a, n, d = x.shape
        q, k, v = self.qkv(x).view(t, a, n, 3, self.heads, d // self.heads).unbind(3)
        scores = torch.einsum("tanhe,tamhe->tahnm", q, k) / math.sqrt(d // self.heads)
        attn = _masked_softmax(scores, mask[:, :, None, None, :], dim=-1)
        y = self.out(torch.einsum("tahnm,tamhe->tanhe", attn, v).reshape(t, a, n, d)) * mask[..., None]
        return y.transpose(1, 2) if self.axis == 1 else y


class AxialBlock(nn.Module):
    """Pre-norm residual block: attention over rows, over columns, then a feed-forward layer."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.over_rows = AxialAttention(dim, heads, axis=1)
        self.over_cols = AxialAttention(dim, heads, axis=2)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.over_rows(self.norms[0](x), mask)
        x = x + self.over_cols(self.norms[1](x), mask)
        return (x + self.ffn(self.norms[2](x))) * mask[..., None]


class ContentEncoder(nn.Module):
    """Cells -> grid with position/header/numeric embeddings -> axial blocks -> pooled ``[T, d]``."""

    def __init__(self, dim: int, heads: int, layers: int, max_rows: int, max_cols: int):
        super().__init__()
        self.row = nn.Embedding(max_rows, dim)
        self.col = nn.Embedding(max_cols, dim)
        self.flags = nn.Embedding(4, dim)  # header x numeric
        for emb in (self.row, self.col, self.flags):
            nn.init.normal_(emb.weight, std=0.02)
        self.blocks = nn.ModuleList(AxialBlock(dim, heads) for _ in range(layers))
        self.pool_norm = nn.LayerNorm(dim)
        self.pool_score = nn.Linear(dim, 1)
        self.out = nn.Linear(dim, dim)

    def forward(self, cells: Tensor, batch: TableBatch) -> Tensor:
        t, r, c = batch.mask.shape
        grid = cells.new_zeros(t * r * c, cells.shape[-1]).index_copy(0, batch.cell_index, cells)
        flags = batch.header.long() * 2 + batch.numeric.long()
        x = grid.view(t, r, c, -1) + self.row.weight[:r, None] + self.col.weight[None, :c] + self.flags(flags)
        x = x * batch.mask[..., None]
        for block in self.blocks:
            x = block(x, batch.mask)
        h = self.pool_norm(x).view(t, r * c, -1)
        weights = _masked_softmax(self.pool_score(h).squeeze(-1), batch.mask.view(t, r * c), dim=-1)
        return self.out(torch.einsum("tn,tnd->td", weights, h))


class TableEmbedding(NamedTuple):
    """Per-table outputs of :class:`TableEmbedder`, ``T`` rows each."""

    caption: Tensor  #: [T, d]
    content: Tensor  #: [T, d]
    structure: Tensor  #: [T, S]
    joint: Tensor  #: [T, d], L2-normalised


class TableEmbedder(nn.Module):
    """Caption encoder + content encoder + structure features -> :class:`TableEmbedding`.

    Args:
        vocab_size: word ids (padding and unknown included).
        n_buckets: character n-gram hash buckets.
        dim: embedding width ``d``.
        heads: attention heads of the content encoder.
        layers: axial blocks of the content encoder.
        max_rows: row positions (the encoder's size cap).
        max_cols: column positions.
        dropout: dropout on caption and cell vectors while training.
    """

    def __init__(self, vocab_size: int, n_buckets: int, dim: int = 32, heads: int = 2, layers: int = 1,
                 max_rows: int = 100, max_cols: int = 32, dropout: float = 0.0):
        super().__init__()
        self.text = TextBag(vocab_size, n_buckets, dim)
        self.dropout = nn.Dropout(dropout)
        self.caption = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.content = ContentEncoder(dim, heads, layers, max_rows, max_cols)
        self.joint = nn.Linear(2 * dim + len(STRUCTURE), dim)

    def forward(self, batch: TableBatch) -> TableEmbedding:
        caption = self.caption(self.dropout(self.text(batch.caption_words, batch.caption_offsets,
                                                      batch.caption_ngrams, batch.caption_ngram_offsets)))
        cells = self.dropout(self.text(batch.cell_words, batch.cell_offsets, batch.cell_ngrams,
                                       batch.cell_ngram_offsets))
        content = self.content(cells, batch)
        joint = F.normalize(self.joint(torch.cat([caption, content, batch.structure], -1)), dim=-1)
        return TableEmbedding(caption, content, batch.structure, joint)


def _unit_similarity(u: Tensor, v: Tensor) -> Tensor:
    r""":math:`1 - \tfrac12\lVert \hat u - \hat v \rVert^2` (cosine, exactly 1 when ``u == v``)."""
    return 1.0 - 0.5 * (F.normalize(u, dim=-1) - F.normalize(v, dim=-1)).square().sum(-1)


def pair_features(a: TableEmbedding, b: TableEmbedding, lexical: Tensor | None, learned: bool = True) -> Tensor:
    """Similarity features ``[P, F]`` of aligned pairs; each is symmetric and maximal when ``a == b``.

    Columns: caption, content and joint cosines (if ``learned``), minus the absolute difference of
    each structure feature, then the lexical features (:data:`~tasks.tabsim.lexical.FEATURES`) if
    given.
    """
    parts = [-(a.structure - b.structure).abs()]
    if learned:
        parts[:0] = [_unit_similarity(a.caption, b.caption)[:, None], _unit_similarity(a.content, b.content)[:, None],
                     _unit_similarity(a.joint, b.joint)[:, None]]
    if lexical is not None:
        parts.append(lexical)
    return torch.cat(parts, -1)


def n_pair_features(lexical: bool, learned: bool = True) -> int:
    """Width of :func:`pair_features`."""
    return 3 * learned + len(STRUCTURE) + (len(LEXICAL_FEATURES) if lexical else 0)


class MonotoneHead(nn.Module):
    r"""A linear map plus an MLP, both non-decreasing in every input feature.

    Weights pass through :math:`\mathrm{sp} = \mathrm{softplus}` (so they are positive) and the
    activations are ``tanh`` (increasing):

    .. math::
        \ell = \mathrm{sp}(v)^\top x + c + \mathrm{sp}(w_3)^\top
                \tanh(\mathrm{sp}(W_2) \tanh(\mathrm{sp}(W_1) x + b_1) + b_2)

    The linear part starts as an equal-weight vote of the features and the MLP starts near zero,
    so training begins from a logistic regression on the similarity features.
    """

    def __init__(self, n_in: int, hidden: int = 16):
        super().__init__()
        self.linear = nn.Parameter(torch.zeros(n_in))
        self.bias = nn.Parameter(torch.zeros(()))
        shapes = [(hidden, n_in), (hidden, hidden), (1, hidden)]
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(s) * 0.5 - 1.5) for s in shapes)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(s[0])) for s in shapes)
        with torch.no_grad():
            self.weights[-1].fill_(-5.0)

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, F.softplus(self.linear)[None]).squeeze(-1) + self.bias
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = F.linear(h, F.softplus(w), b)
            if i < len(self.weights) - 1:
                h = torch.tanh(h)
        return out + h.squeeze(-1)


class Calibration(nn.Module):
    r"""Platt scaling :math:`p = \sigma(e^{\alpha} \ell + \beta)` and the decision threshold.

    The scale is positive, so calibration keeps the order of logits (and the head's symmetry and
    maximum at identical tables).
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("log_scale", torch.zeros(()))
        self.register_buffer("bias", torch.zeros(()))
        self.register_buffer("threshold", torch.tensor(0.5))

    def forward(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(self.log_scale.exp() * logits + self.bias)

    def fit(self, logits: Tensor, labels: Tensor, steps: int = 100) -> None:
        """Fit scale and bias by minimising BCE on ``(logits, labels)`` with L-BFGS.

        Works whatever the caller's grad mode: Lightning's ``validate`` and ``test`` run under
        ``torch.inference_mode``, where autograd records nothing even inside ``enable_grad``
        (the inputs are cloned out of inference mode for that reason).
        """
        with torch.inference_mode(False), torch.no_grad():
            self._fit(logits.detach().clone().double(), labels.detach().clone().double(), steps)

    def _fit(self, logits: Tensor, labels: Tensor, steps: int) -> None:
        params = torch.zeros(2, requires_grad=True)
        opt = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            with torch.enable_grad():
                loss = F.binary_cross_entropy_with_logits(params.double()[0].exp() * logits + params.double()[1],
                                                          labels)
                loss.backward()
            return loss

        opt.step(closure)
        if torch.isfinite(params).all():
            self.log_scale.fill_(float(params[0]))
            self.bias.fill_(float(params[1]))


class TabSimNet(nn.Module):
    """Embedder, Siamese head and calibration: ``logits(batch, a, b, lexical)`` -> ``[P]``.

    Args:
        vocab_size: word ids (padding and unknown included).
        n_buckets: character n-gram hash buckets.
        dim: embedding width.
        heads: attention heads.
        layers: axial blocks.
        max_rows: the content encoder's row cap.
        max_cols: the content encoder's column cap.
        head: ``"bce"`` (monotone MLP over similarity features) or ``"contrastive"``.
        use_lexical: feed the lexical features to the ``"bce"`` head.
        dropout: dropout on text vectors while training.
        use_learned: feed the learned embedding cosines to the ``"bce"`` head (``False`` is an
            ablation: the head then reads only structure and lexical features).
    """

    def __init__(self, vocab_size: int, n_buckets: int, dim: int = 32, heads: int = 2, layers: int = 1,
                 max_rows: int = 100, max_cols: int = 32, head: str = "bce", use_lexical: bool = True,
                 dropout: float = 0.0, use_learned: bool = True):
        super().__init__()
        if head not in ("bce", "contrastive"):
            raise ValueError(f"TabSimNet: head must be 'bce' or 'contrastive', got {head!r}")
        self.use_lexical, self.use_learned = use_lexical and head == "bce", use_learned or head != "bce"
        self.embedder = TableEmbedder(vocab_size, n_buckets, dim, heads, layers, max_rows, max_cols, dropout)
        self.head = MonotoneHead(n_pair_features(self.use_lexical, self.use_learned)) if head == "bce" else None
        self.calibration = Calibration()

    def pair_logits(self, a: TableEmbedding, b: TableEmbedding, lexical: Tensor | None = None) -> Tensor:
        """Logits of aligned pairs of embeddings (``-distance`` for the contrastive head)."""
        if self.head is None:
            return -(a.joint - b.joint).square().sum(-1).clamp_min(1e-12).sqrt()
        return self.head(pair_features(a, b, lexical if self.use_lexical else None, self.use_learned))

    def embed(self, chunks: Sequence[TableBatch]) -> TableEmbedding:
        """Embeddings of the tables of ``chunks``, concatenated in order."""
        parts = [self.embedder(c) for c in chunks]
        return TableEmbedding(*(torch.cat(field) for field in zip(*parts)))

    def forward(self, chunks: Sequence[TableBatch], a: Tensor, b: Tensor, lexical: Tensor | None = None) -> Tensor:
        """Logits ``[P]`` of pairs ``(a[i], b[i])``, indices into the tables of ``chunks``."""
        emb = self.embed(chunks)
        return self.pair_logits(TableEmbedding(*(e[a] for e in emb)), TableEmbedding(*(e[b] for e in emb)), lexical)

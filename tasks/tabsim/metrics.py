r"""Classification and ranking metrics for scored table pairs.

Binary: accuracy and macro-F1 at a threshold, and the threshold that maximises macro-F1.
Ranking, over query tables (pairs grouped by ``table_a``; queries whose candidates are all
similar or all dissimilar are skipped, as in the paper's ranking scenario):

.. math::
    \mathrm{AP}(q) = \frac{1}{|R_q|}\sum_{k:\,y_k = 1} \mathrm{P@}k, \qquad
    \mathrm{NDCG@10}(q) = \frac{\sum_{k \le 10} y_k / \log_2(k + 1)}
                               {\sum_{k \le \min(10, |R_q|)} 1 / \log_2(k + 1)}
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(np.int64)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be equal 1-d shapes")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return scores, labels


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, macro-F1 and F1 of the similar class when ``score >= threshold`` means similar."""
    scores, labels = _check(scores, labels)
    pred = scores >= threshold
    f1 = []
    for cls in (0, 1):
        tp = np.sum((pred == cls) & (labels == cls))
        denom = np.sum(pred == cls) + np.sum(labels == cls)
        f1.append(2 * tp / denom if denom else 0.0)
    return {"acc": float(np.mean(pred == labels)), "macro_f1": float(np.mean(f1)), "f1_similar": float(f1[1])}


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the highest macro-F1 on these scores (midpoint between two scores)."""
    scores, labels = _check(scores, labels)
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2, [values[-1] + 1e-6]])
    f1 = [binary_metrics(scores, labels, t)["macro_f1"] for t in candidates]
    return float(candidates[int(np.argmax(f1))])


def ranking_metrics(scores: np.ndarray, labels: np.ndarray, queries: Sequence[str]) -> dict[str, float]:
    """MAP, P@1 and NDCG@10 averaged over queries with both a similar and a dissimilar candidate.

    Ties are broken by position (stable sort on the negated score). With no such query the
    metrics are NaN and ``n_queries`` is 0.
    """
    scores, labels = _check(scores, labels)
    queries = np.asarray(queries)
    ap, p1, ndcg = [], [], []
    for q in dict.fromkeys(queries.tolist()):
        idx = np.flatnonzero(queries == q)
        y = labels[idx][np.argsort(-scores[idx], kind="stable")]
        n_rel = int(y.sum())
        if n_rel == 0 or n_rel == len(y):
            continue
        hits = np.cumsum(y)
        ap.append(float(np.sum(y * hits / np.arange(1, len(y) + 1)) / n_rel))
        p1.append(float(y[0]))
        disc = 1.0 / np.log2(np.arange(2, 12))
        ndcg.append(float(np.sum(y[:10] * disc[: len(y[:10])]) / np.sum(disc[: min(10, n_rel)])))
    if not ap:
        return {"map": float("nan"), "p_at_1": float("nan"), "ndcg_at_10": float("nan"), "n_queries": 0}
    return {"map": float(np.mean(ap)), "p_at_1": float(np.mean(p1)), "ndcg_at_10": float(np.mean(ndcg)),
            "n_queries": len(ap)}

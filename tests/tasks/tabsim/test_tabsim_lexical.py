"""Tests of the lexical features and the metrics: hand-computed values and the published baselines."""
import math

import numpy as np
import pytest

from graphcore.datasets.tables import Table, load_pairs, load_tables, strubert_folds
from graphcore.tasks.tabsim.lexical import LexicalModel, cosine, jaccard, words
from graphcore.tasks.tabsim.metrics import best_threshold, binary_metrics, ranking_metrics


def test_words_and_set_measures():
    assert words("IL-6 (pg/ml), Müller_2") == ["il", "6", "pg", "ml", "müller", "2"]
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 0.0
    a, b = {"x": 0.6, "y": 0.8}, {"y": 1.0}
    assert cosine(a, b) == cosine(b, a) == pytest.approx(0.8)
    assert cosine(a, {}) == 0.0


def test_tfidf_by_hand():
    t1 = Table("primers used", [["gene"]], [["il6"]])
    t2 = Table("patients", [["gene"]], [["tnf"]])
    lm = LexicalModel.fit([t1, t2])
    # caption idf: "primers" is in 1 of 2 captions -> log(3/2) + 1; tf 1 -> weight idf; normalised
    vec = lm.tfidf(["primers", "primers", "used"], lm.df_caption)
    w_p, w_u = (1 + math.log(2)) * (math.log(3 / 2) + 1), math.log(3 / 2) + 1
    norm = math.hypot(w_p, w_u)
    assert vec == pytest.approx({"primers": w_p / norm, "used": w_u / norm})
    # unseen word gets the largest idf, log(3) + 1
    assert lm.tfidf(["zzz", "primers"], lm.df_caption)["zzz"] > lm.tfidf(["zzz", "primers"], lm.df_caption)["primers"]
    cap, cells, jac = lm.features(lm.profile(t1), lm.profile(t2))
    assert cap == 0.0 and 0 < cells < 1 and jac == pytest.approx(1 / 6)
    assert lm.features(lm.profile(t1), lm.profile(t1)) == pytest.approx((1.0, 1.0, 1.0))
    assert LexicalModel.from_state(lm.state_dict()).features(lm.profile(t1), lm.profile(t2)) == (cap, cells, jac)


def test_binary_metrics_and_threshold_by_hand():
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    m = binary_metrics(scores, labels, 0.3)  # predicts 0,1,1,1: class 0 F1 = 2/3, class 1 F1 = 0.8
    assert m["acc"] == 0.75 and m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2) and m["f1_similar"] == 0.8
    thr = best_threshold(scores, labels)  # ties (0.225 and 0.6 both give 0.733): the first wins
    assert thr == pytest.approx(0.225)
    grid = [binary_metrics(scores, labels, t)["macro_f1"] for t in np.linspace(0, 1, 101)]
    assert binary_metrics(scores, labels, thr)["macro_f1"] == pytest.approx(max(grid))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        binary_metrics(scores, np.array([0, 2, 1, 1]), 0.5)
    with pytest.raises(ValueError, match="must be equal 1-d shapes"):
        binary_metrics(scores, labels[:3], 0.5)


def test_ranking_metrics_by_hand():
    # query q: ranking y = [1, 0, 1] -> AP = (1 + 2/3) / 2; P@1 = 1; NDCG@10 = (1 + 1/log2(4)) / (1 + 1/log2(3))
    scores = np.array([0.9, 0.5, 0.3, 0.2, 0.1])
    labels = np.array([1, 0, 1, 1, 1])
    queries = ["q", "q", "q", "all-similar", "all-similar"]
    m = ranking_metrics(scores, labels, queries)
    assert m["n_queries"] == 1
    assert m["map"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["p_at_1"] == 1.0
    assert m["ndcg_at_10"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert math.isnan(ranking_metrics(scores[3:], labels[3:], queries[3:])["map"])


def test_lexical_baselines_reproduce_published_numbers():
    """The data README's baselines: TF-IDF caption 0.914/0.907 (StruBERT folds), Jaccard MAP 0.967."""
    tables = load_tables()
    pairs = load_pairs(tables=tables)
    lm = LexicalModel.fit(tables.values())
    prof = {k: lm.profile(t) for k, t in tables.items()}
    feats = np.array([lm.features(prof[p.table_a], prof[p.table_b]) for p in pairs])
    y = np.array([p.similar for p in pairs])
    per_fold = [binary_metrics(feats[te, 0], y[te], best_threshold(feats[tr, 0], y[tr]))
                for tr, te in strubert_folds(pairs)]
    assert np.mean([m["acc"] for m in per_fold]) == pytest.approx(0.914, abs=0.002)
    assert np.mean([m["macro_f1"] for m in per_fold]) == pytest.approx(0.907, abs=0.002)
    rank = ranking_metrics(feats[:, 2], y, [p.table_a for p in pairs])
    assert rank["n_queries"] == 127
    assert rank["map"] == pytest.approx(0.967, abs=0.001) and rank["p_at_1"] == pytest.approx(0.961, abs=0.001)

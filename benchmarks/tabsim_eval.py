"""Evaluate table similarity against lexical baselines on the same folds, in the same run.

Schemes: grouped 5-fold CV by query table (honest), StruBERT's 5 folds and TabSim's 75/25 split
(both leak tables between train and test). Methods: the lexical baselines (TF-IDF caption cosine,
TF-IDF cells cosine, token Jaccard over caption + cells; threshold fitted on each training part
for max macro-F1) and the Siamese model variants (threshold chosen on validation). Binary metrics
are means over folds; ranking metrics (MAP, P@1, NDCG@10) are over the query tables with both
labels, from the pooled out-of-fold scores. Throughput: tables/s to encode and to embed, pairs/s
for the head on cached embeddings (medians over repeats).

    python benchmarks/tabsim_eval.py                       # full run (about 15 min on 1 core)
    python benchmarks/tabsim_eval.py --quick               # smoke run: 1 epoch, grouped only
    python benchmarks/tabsim_eval.py --export tasks/tabsim/pretrained/pmc_tabsim.ckpt.gz
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402

from graphcore.datasets.tables import BUNDLED_PAIRS, BUNDLED_TABLES, load_pairs, load_tables  # noqa: E402
from graphcore.tasks.tabsim.data import TabSimDataModule, split_pairs  # noqa: E402
from graphcore.tasks.tabsim.lexical import FEATURES, LexicalModel  # noqa: E402
from graphcore.tasks.tabsim.metrics import best_threshold, binary_metrics, ranking_metrics  # noqa: E402
from graphcore.tasks.tabsim.module import TabSimModule  # noqa: E402
from graphcore.tasks.tabsim.scorer import Scorer  # noqa: E402

SCHEMES = {"grouped": 5, "strubert": 5, "tabsim": 1}
VARIANTS = {"siamese_bce": {"head": "bce", "use_lexical": True},
            "siamese_bce_nolex": {"head": "bce", "use_lexical": False},
            "head_only_lex_struct": {"head": "bce", "use_learned": False},
            "siamese_contrastive": {"head": "contrastive", "use_lexical": False}}
BASELINES = {name: column for column, name in enumerate(FEATURES)}  # tfidf_caption, tfidf_cells, jaccard


def data_files(data: Path) -> tuple[Path, Path]:
    """The table and pair files under ``data``, else the bundled copies."""
    tables, pairs = data / "pmc_tables.jsonl", data / "pmc_pairs.jsonl"
    if tables.is_file() and pairs.is_file():
        return tables, pairs
    print(f"{data} has no pmc_tables.jsonl/pmc_pairs.jsonl: using the bundled copies")
    return BUNDLED_TABLES, BUNDLED_PAIRS


def train(tables: Path, pairs: Path, split: str, fold: int, epochs: int, seed: int, variant: dict,
          progress: bool) -> tuple[TabSimModule, TabSimDataModule, L.Trainer, float]:
    """Fit one model on one fold; returns the module, its data, the trainer and the fit seconds."""
    L.seed_everything(seed, verbose=False)
    dm = TabSimDataModule(str(tables), str(pairs), split=split, fold=fold, seed=seed)
    module = TabSimModule(**variant)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=progress, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, dm)
    return module, dm, trainer, time.perf_counter() - start


def summarise(per_fold: list[dict], oof: np.ndarray, labels: np.ndarray, queries: list[str],
              tested: np.ndarray) -> dict:
    """Mean binary metrics over folds, ranking metrics over pooled out-of-fold scores."""
    out = {k: float(np.mean([m[k] for m in per_fold])) for k in per_fold[0]}
    out.update(ranking_metrics(oof[tested], labels[tested], [queries[i] for i in np.flatnonzero(tested)]))
    return out


def median_rate(fn, count: int, repeats: int) -> float:
    """Median items/s of ``fn()`` processing ``count`` items, over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return count / float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "tables",
                        help="folder with pmc_tables.jsonl and pmc_pairs.jsonl (default ../shared/datasets/tables; "
                             "falls back to the bundled copies)")
    parser.add_argument("--schemes", nargs="+", choices=list(SCHEMES), default=list(SCHEMES))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--ablation-schemes", nargs="+", choices=list(SCHEMES), default=["grouped"],
                        help="schemes on which variants other than siamese_bce run (default: grouped)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each throughput measurement")
    parser.add_argument("--quick", action="store_true", help="1 epoch, grouped scheme, fold 0 only")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "tabsim_eval.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "tabsim_eval.png")
    parser.add_argument("--export", type=Path, help="only train siamese_bce on grouped fold 0 and write a gzipped "
                        "weights-only checkpoint here (the pretrained model of `score`/`search`)")
    parser.add_argument("--progress", action="store_true", help="show Lightning's progress bars")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    tables_path, pairs_path = data_files(args.data)

    if args.export:
        _, _, trainer, seconds = train(tables_path, pairs_path, "grouped", 0, args.epochs, args.seed,
                                       VARIANTS["siamese_bce"], args.progress)
        with tempfile.TemporaryDirectory() as tmp:
            trainer.save_checkpoint(Path(tmp) / "m.ckpt", weights_only=True)
            raw = (Path(tmp) / "m.ckpt").read_bytes()
        args.export.parent.mkdir(parents=True, exist_ok=True)
        args.export.write_bytes(gzip.compress(raw, mtime=0))
        print(f"trained in {seconds:.0f} s; wrote {args.export} ({args.export.stat().st_size / 1e3:.0f} kB)")
        return

    tables = load_tables(tables_path)
    pairs = load_pairs(pairs_path, tables)
    labels = np.asarray([p.similar for p in pairs])
    queries = [p.table_a for p in pairs]
    lexical = LexicalModel.fit(tables.values())
    profiles = {tid: lexical.profile(t) for tid, t in tables.items()}
    feats = np.asarray([LexicalModel.features(profiles[p.table_a], profiles[p.table_b]) for p in pairs])
    schemes = ["grouped"] if args.quick else args.schemes
    epochs = 1 if args.quick else args.epochs

    results: dict[str, dict[str, dict]] = {}
    fit_seconds: list[float] = []
    scorer = None
    for scheme in schemes:
        n_folds = 1 if args.quick else SCHEMES[scheme]
        folds = [split_pairs(pairs, scheme, k, seed=args.seed) for k in range(n_folds)]
        tested = np.zeros(len(pairs), dtype=bool)
        for _, test in folds:
            tested[test] = True
        results[scheme] = {}
        for name, col in BASELINES.items():
            oof, per_fold = np.zeros(len(pairs)), []
            for train_idx, test in folds:
                thr = best_threshold(feats[train_idx, col], labels[train_idx])
                per_fold.append(binary_metrics(feats[test, col], labels[test], thr))
                oof[test] = feats[test, col]
            results[scheme][name] = summarise(per_fold, oof, labels, queries, tested)
        variants = [v for v in args.variants if v == "siamese_bce" or scheme in args.ablation_schemes]
        for name in variants:
            oof, per_fold = np.zeros(len(pairs)), []
            for k, (_, test) in enumerate(folds):
                module, dm, _, seconds = train(tables_path, pairs_path, scheme, k, epochs, args.seed, VARIANTS[name],
                                            args.progress)
                fit_seconds.append(seconds)
                scorer = Scorer(module)
                emb = scorer.embed(dm.encoded)
                ids = {tid: i for i, tid in enumerate(tables)}
                scores = scorer.score_embedded(dm.encoded, emb, [(ids[pairs[i].table_a], ids[pairs[i].table_b])
                                                                 for i in test])
                per_fold.append(binary_metrics(scores, labels[test], scorer.threshold))
                oof[test] = scores
                print(f"{scheme:8s} fold {k} {name:20s} macro-F1 {per_fold[-1]['macro_f1']:.3f} "
                      f"({seconds:.0f} s)", flush=True)
            results[scheme][name] = summarise(per_fold, oof, labels, queries, tested)

    # throughput, with the last trained model
    table_list = list(tables.values())
    encoded = scorer.encode(table_list)
    emb = scorer.embed(encoded)
    ids = {tid: i for i, tid in enumerate(tables)}
    index = [(ids[p.table_a], ids[p.table_b]) for p in pairs]
    speed = {
        "encode_tables_per_s": median_rate(lambda: scorer.encode(table_list), len(table_list), args.repeats),
        "embed_tables_per_s": median_rate(lambda: scorer.embed(encoded), len(encoded), args.repeats),
        "score_pairs_per_s (cached embeddings)": median_rate(lambda: scorer.score_embedded(encoded, emb, index),
                                                             len(index), args.repeats),
        "lexical_features_pairs_per_s": median_rate(
            lambda: [LexicalModel.features(profiles[p.table_a], profiles[p.table_b]) for p in pairs],
            len(pairs), args.repeats),
        "median_fit_seconds": float(np.median(fit_seconds)),
    }

    env = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "lightning": L.__version__, "numpy": np.__version__, "epochs": epochs, "seed": args.seed,
           "data": str(tables_path)}
    print(f"\nmachine: {env['platform']}, {env['cpu_count']} CPUs, torch threads {env['torch_threads']}; "
          f"python {env['python']}, torch {env['torch']}, lightning {env['lightning']}, numpy {env['numpy']}")
    cols = ["acc", "macro_f1", "f1_similar", "map", "p_at_1", "ndcg_at_10", "n_queries"]
    for scheme, methods in results.items():
        print(f"\n{scheme} ({'grouped by query table' if scheme == 'grouped' else 'published split, leaky'})")
        print(f"{'method':22s}" + "".join(f"{c:>11s}" for c in cols))
        for name, m in methods.items():
            print(f"{name:22s}" + "".join(f"{m[c]:11.3f}" if c != "n_queries" else f"{m[c]:11d}" for c in cols))
    print("\nthroughput (median of {} runs)".format(args.repeats))
    for k, v in speed.items():
        print(f"  {k:40s} {v:12.1f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": env, "results": results, "throughput": speed}, indent=2))
    print(f"\nwrote {args.out}")
    if not args.quick:
        plot(results, args.figure)
        print(f"wrote {args.figure}")


def plot(results: dict[str, dict[str, dict]], path: Path) -> None:
    """Bar chart of macro-F1 and MAP per scheme and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    methods = list(dict.fromkeys(m for r in results.values() for m in r))
    width = 0.8 / len(methods)
    for ax, metric, low in zip(axes, ("macro_f1", "map"), (0.7, 0.85)):
        for j, method in enumerate(methods):
            xs = [i + j * width for i, r in enumerate(results.values()) if method in r]
            ys = [r[method][metric] for r in results.values() if method in r]
            ax.bar(xs, ys, width, label=method)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(results))], list(results))
        ax.set_ylim(low, 1.0)
        ax.set_title({"macro_f1": "macro-F1 (mean over folds)", "map": "ranking MAP (pooled out-of-fold)"}[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

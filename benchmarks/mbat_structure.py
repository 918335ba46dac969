r"""Ablation of the structure-aware switches of :class:`~tasks.mbat.encoder.JsonEncoder`, on validation queries only.

Every switch of the structure term is turned off (or its balance fixed) one at a time, and
leave-one-out P@1 is measured on the *validation* half of the queries of
:func:`benchmarks.mbat_eval.query_split` (each query searches the whole corpus). The defaults
were chosen from this table; ``benchmarks/mbat_eval.py`` then reports the test half.

    python -m benchmarks.mbat_structure            # every corpus, D=4096 (about 6 min on 2 cores)
"""
from __future__ import annotations

import argparse
import time

from benchmarks.mbat_eval import TASKS, encode_all, retrieval_metrics
from graphcore.datasets.json_corpora import corpus_path, iter_records
from graphcore.tasks.mbat.encoder import JsonEncoder

VARIANTS: dict[str, dict] = {
    "defaults (beta by fit)": {},
    "no structure term": {"structure": False},
    "beta = 0.25": {"structure_weight": 0.25},
    "beta = 0.5": {"structure_weight": 0.5},
    "beta = 1": {"structure_weight": 1.0},
    "no type/length tokens": {"structure_arrays": False},
    "no structure IDF": {"structure_idf": False},
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.mbat_structure", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--dim", type=int, default=4096)
    args = ap.parse_args(argv)
    table: dict[str, dict[str, str]] = {}
    for task in args.tasks:
        corpus, label, mask = TASKS[task]
        recs = list(iter_records(corpus_path(corpus), mask))
        docs, labels = [r.record for r in recs], [str(r.labels[label]) for r in recs]
        for name, kw in VARIANTS.items():
            t = time.perf_counter()
            enc = JsonEncoder(dim=args.dim, **kw).fit(docs)
            x = encode_all(enc.encode_batch, docs)
            p1 = retrieval_metrics(x @ x.T, labels)["P@1 val"]
            table.setdefault(name, {})[task] = f"{p1:.3f}" + (f" (b {enc.structure_beta:.2f})" if enc.config.structure else "")
            print(f"  {task} {name}: val P@1 {p1:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"\nvalidation-query P@1 at D={args.dim}\n")
    print("| variant | " + " | ".join(args.tasks) + " |")
    print("|---|" + "---|" * len(args.tasks))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(row[t] for t in args.tasks) + " |")


if __name__ == "__main__":
    main()

r"""Capacity: how many key–value pairs one vector holds and still gives back.

A flat record :math:`\{k_1: x_1, \dots, k_n: x_n\}` with values drawn from a codebook of
:math:`M` atoms is encoded, and every :math:`x_j` is read back by
:math:`\arg\max_c \cos(R_{k_j}^\top \operatorname{enc}, v(c))`. Each unbound field is the
wanted code plus :math:`n - 1` scrambled codes, so the signal-to-noise ratio is about
:math:`\sqrt{D / n}` and the number of recoverable pairs grows linearly in :math:`D`
(roughly :math:`D / (2 \ln M)` at high accuracy).

Run ``python -m tasks.mbat.capacity`` to measure the curves and write
``docs/figures/mbat_capacity.png`` and ``results/mbat_capacity.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from graphcore.tasks.mbat.encoder import JsonEncoder
from graphcore.tasks.mbat.vsa import cosine_matrix

REPO_ROOT = Path(__file__).resolve().parents[2]


def recall(dim: int, n_pairs: int, trials: int = 32, codebook: int = 1000, family: str = "perm", seed: int = 0) -> float:
    """Fraction of values recovered exactly from ``trials`` records of ``n_pairs`` pairs each."""
    if n_pairs < 1 or trials < 1 or codebook < 2:
        raise ValueError(f"recall: need n_pairs >= 1, trials >= 1, codebook >= 2; got {n_pairs}, {trials}, {codebook}")
    enc = JsonEncoder(dim=dim, seed=seed, family=family, ngram=0, string_weights=(1.0, 0.0, 0.0), idf=False)
    rng = np.random.default_rng(seed)
    atoms = [f"v{i}" for i in range(codebook)]
    truth = rng.integers(0, codebook, size=(trials, n_pairs))
    keys = [f"k{j}" for j in range(n_pairs)]
    docs = [{k: atoms[v] for k, v in zip(keys, row)} for row in truth]
    x = enc.encode_batch(docs)
    codes = torch.stack([enc.leaf_code((keys[0],), a) for a in atoms])
    hits = 0
    for j, key in enumerate(keys):
        y = enc.role((key,)).apply_transpose(x)
        guess = cosine_matrix(y, codes).argmax(dim=1).cpu().numpy()
        hits += int((guess == truth[:, j]).sum())
    return hits / (trials * n_pairs)


def capacity_curves(dims: Sequence[int] = (256, 512, 1024, 2048, 4096), trials: int = 16, codebook: int = 1000,
                    family: str = "perm", seed: int = 0, threshold: float = 0.99, progress: bool = True) -> dict:
    """Recall against the number of pairs for each ``D``, and the capacity at ``threshold``.

    The pair counts are a geometric grid from 4 to ``D/2``; capacity is the largest count
    whose recall is at least ``threshold``.
    """
    from tqdm.auto import tqdm

    out = {"codebook": codebook, "family": family, "threshold": threshold, "trials": trials, "curves": {}}
    for dim in tqdm(dims, desc="capacity", disable=not progress):
        grid = sorted({int(round(v)) for v in np.geomspace(4, dim / 2, 12)})
        rec = [recall(dim, n, trials, codebook, family, seed) for n in grid]
        ok = [n for n, r in zip(grid, rec) if r >= threshold]
        out["curves"][str(dim)] = {"pairs": grid, "recall": rec, "capacity": max(ok) if ok else 0}
    return out


def plot(result: dict, path: str | Path) -> None:
    """Recall-vs-pairs curves (left) and capacity-vs-D (right) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    dims, caps = [], []
    for d, c in result["curves"].items():
        a.plot(c["pairs"], c["recall"], marker="o", ms=3, label=f"D={d}")
        dims.append(int(d))
        caps.append(c["capacity"])
    a.axhline(result["threshold"], color="grey", lw=0.8, ls="--")
    a.set(xscale="log", xlabel="key-value pairs in one record", ylabel="exact recall",
          title=f"recall ({result['family']} roles, {result['codebook']} values)")
    a.legend(fontsize=8)
    b.plot(dims, caps, marker="o")
    b.set(xscale="log", yscale="log", xlabel="D", ylabel=f"pairs recalled at >= {result['threshold']:.0%}",
          title="capacity grows linearly in D")
    b.set_xticks(dims, [str(d) for d in dims])
    b.minorticks_off()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict:
    """CLI: measure, print a table, write JSON and the PNG."""
    ap = argparse.ArgumentParser(prog="python -m tasks.mbat.capacity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    ap.add_argument("--trials", type=int, default=16, help="records per (D, pairs) point")
    ap.add_argument("--codebook", type=int, default=1000, help="distinct values M")
    ap.add_argument("--family", default="perm")
    ap.add_argument("--png", default=str(REPO_ROOT / "docs/figures/mbat_capacity.png"))
    ap.add_argument("--json", default=str(REPO_ROOT / "results/mbat_capacity.json"))
    args = ap.parse_args(argv)
    res = capacity_curves(args.dims, args.trials, args.codebook, args.family)
    res["machine"] = {"platform": platform.platform(), "cpus": torch.get_num_threads(), "torch": torch.__version__}
    print(f"{'D':>6} {'capacity':>9}   (pairs recalled exactly at >= {res['threshold']:.0%}, {res['codebook']} values)")
    for d, c in res["curves"].items():
        print(f"{d:>6} {c['capacity']:>9}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    plot(res, args.png)
    print(f"wrote {args.json} and {args.png}")
    return res


if __name__ == "__main__":
    main()

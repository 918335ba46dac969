"""Cost of the traffic model's spatial layer against the number of sensors N: dense vs graph.

One training step (forward, backward, Adam) of the task's network, ``VirtualNodeSTGCN`` with the
demo's sizes (hidden 32, graph 16, 2 blocks, K = 2 diffusion steps, 12 input and 12 output
steps), in three forms of the same parameters:

* ``dense``: the ``[N+n_v]²`` reference (``tasks.traffic.adjacency``);
* ``graph eager``: the HeteroGraph layer of ``tasks.traffic.spatial`` as plain PyTorch ops;
* ``graph compiled``: the same layer through ``graphcore.compile`` (CPU kernels).

Each (N, mode, form) runs in a fresh subprocess (``benchmarks.common.run_isolated``), so its
peak memory is its own: the step's peak resident memory above the process after the model and
a batch are built (first step, then the median of the timed ones). Graphs: METR-LA's real
sensor graph at N = 207, and beyond it synthetic road-like graphs: points in the plane, each
joined to its k nearest neighbours (k chosen so that the mean out-degree with the self loop is
METR-LA's, 8.3), weights the DCRNN Gaussian kernel of the distance cut at 0.1.

    nice -n 10 python -m benchmarks.traffic_scale                      # N = 207, 716, 2000, 8600
    python -m benchmarks.traffic_scale --sizes 207 716 --modes all_ones adaptive --forms dense compiled

Prints the table (the peer, dense, as a ratio), the machine and versions, the LargeST-CA
epoch estimate, writes JSON and a plot (time and memory against N).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import (OK, add_common_arguments, environment, median_time, peak_rss_during,  # noqa: E402
                               print_environment, print_table, run_isolated, write_json)

SHARED_GRAPHS = ROOT.parent / "shared" / "datasets" / "traffic"
METR_LA_DEGREE = 1722 / 207          # mean out-degree of METR-LA's graph, self loops included
FORMS = {"dense": "dense", "graph eager": "eager", "graph compiled": "compiled"}
LARGEST_CA = {"sensors": 8600, "steps": 31 * 288, "split_train": 0.6}   # one month at 5 min, 60/20/20
FIGURE = ROOT / "docs" / "figures" / "traffic_scale.png"


def knn_road_graph(n: int, seed: int = 0, degree: float = METR_LA_DEGREE) -> np.ndarray:
    """``[n, n]`` directed k-nearest-neighbour graph on uniform points in the unit square, with
    self loops, weights ``exp(-(d/σ)²)`` (σ the std of the kNN distances) cut below 0.1."""
    from scipy.spatial import cKDTree

    points = np.random.default_rng(seed).random((n, 2))
    k = max(1, round(degree - 1))
    dist, index = cKDTree(points).query(points, k=k + 1)      # the first neighbour is the point itself
    sigma = dist[:, 1:].std()
    weight = np.exp(-np.square(dist / sigma))
    weight[weight < 0.1] = 0.0
    adj = np.zeros((n, n), dtype=np.float32)
    adj[np.repeat(np.arange(n), k + 1), index.ravel()] = weight.ravel()
    np.fill_diagonal(adj, 1.0)
    return adj


def road_graph(n: int) -> tuple[np.ndarray, str]:
    """METR-LA's real graph at 207 sensors (when ``../shared`` has it), else a synthetic one."""
    metr = SHARED_GRAPHS / "metr_la_graph" / "metr_la_graph.npz"
    if n == 207 and metr.is_file():
        with np.load(metr) as z:
            return z["adj"].astype(np.float32), "METR-LA (real)"
    return knn_road_graph(n), "kNN synthetic"


def one_cell(n: int, mode: str, form: str, n_virtual: int, batch: int, threads: int, repeats: int,
             budget_s: float) -> dict:
    """Build the network and a batch, then time training steps and measure the first one's peak memory."""
    import torch

    from graphcore.tasks.traffic.model import VirtualNodeSTGCN

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    adj, _ = road_graph(n)
    net = VirtualNodeSTGCN(torch.from_numpy(adj), in_channels=2, input_len=12, horizon=12, n_virtual=n_virtual,
                           adjacency_mode=mode, spatial=FORMS[form])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 12, n, 2), torch.randn(batch, 12, n)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = (net(x) - y).abs().mean()
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    _, peak = peak_rss_during(step)          # the first step: compiles the plans too (cached on disk)
    first = time.perf_counter() - start
    timing = median_time(step, repeats=repeats, warmup=0, budget_s=budget_s)
    edges = getattr(net.adjacency, "num_edges", None)
    return {"first_step_s": first, "step_s": timing.median, "runs_s": list(timing.runs), "peak_mb": peak / 2**20,
            "edges_per_direction": edges}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[207, 716, 2000, 8600])
    parser.add_argument("--modes", nargs="+", default=["semi", "distance"],
                        choices=["distance", "all_ones", "adaptive", "semi"])
    parser.add_argument("--forms", nargs="+", default=["dense", "eager", "compiled"],
                        choices=["dense", "eager", "compiled"])
    parser.add_argument("--eager_max_n", type=int, default=2000,
                        help="run the eager graph form only up to this N (it runs the compiled form's ops, slower)")
    parser.add_argument("--n_virtual", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8, help="windows per training step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after the first")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per cell before it is given up")
    parser.add_argument("--plot", default=str(FIGURE))
    add_common_arguments(parser, "traffic_scale.json")
    return parser.parse_args(argv)


def draw(rows: list[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax, label in (("step_s", axes[0], "training step (s)"), ("peak_mb", axes[1], "peak memory of a step (MB)")):
        for (mode, form), style in zip(sorted({(r["mode"], r["form"]) for r in rows}), ("o-", "s-", "^-", "o--", "s--", "^--")):
            cells = sorted((r["N"], r[key]) for r in rows if (r["mode"], r["form"]) == (mode, form) and r.get(key))
            if cells:
                ax.plot(*zip(*cells), style, label=f"{form}, {mode}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sensors N")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("VirtualNodeSTGCN training step, 10 virtual nodes, batch 8, 1 thread", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    args = parse_args(argv)
    rows = []
    names = {v: k for k, v in FORMS.items()}
    for n in args.sizes:
        graph = road_graph(n)[1]
        for mode in args.modes:
            for form in (names[f] for f in args.forms if not (f == "eager" and n > args.eager_max_n)):
                out = run_isolated(one_cell, n, mode, form, args.n_virtual, args.batch, args.threads, args.repeats,
                                   args.timeout, timeout_s=args.timeout)
                row = {"N": n, "graph": graph, "mode": mode, "form": form, "status": out.status}
                if out.status == OK:
                    row.update(out.value)
                else:
                    row["message"] = out.message.strip().splitlines()[-1] if out.message else ""
                rows.append(row)
                print(f"N={n} {mode} {form}: {row.get('step_s', row['status'])}", flush=True)
    for row in rows:
        dense = next((r for r in rows if (r["N"], r["mode"], r["form"]) == (row["N"], row["mode"], "dense")
                      and r.get("step_s")), None)
        if dense and row.get("step_s"):
            row["speedup"] = dense["step_s"] / row["step_s"]
            row["leaner"] = dense["peak_mb"] / max(row["peak_mb"], 1e-9)
    print_table(rows, {"N": "N", "graph": "graph", "mode": "mode", "form": "form", "edges_per_direction": "edges",
                       "step_s": "step s (median)", "first_step_s": "first step s", "peak_mb": "peak MB",
                       "speedup": "x faster than dense", "leaner": "x leaner than dense", "status": "status"},
                title=f"training step, n_v = {args.n_virtual}, batch {args.batch}, {args.threads} thread(s)",
                markdown=args.markdown)
    estimate = None
    ca = [r for r in rows if r["N"] == LARGEST_CA["sensors"] and r["form"] == "graph compiled" and r.get("step_s")
          and r["mode"] == "semi"]
    if ca:
        windows = math.floor(LARGEST_CA["split_train"] * (LARGEST_CA["steps"] - 24 + 1))
        estimate = {"train_windows": windows, "batch": args.batch,
                    "epoch_hours": windows / args.batch * ca[0]["step_s"] / 3600}
        print(f"\nLargeST-CA-sized month (8,600 sensors, 5 min, 60 % train): {windows} training windows; "
              f"one epoch of the compiled semi model at batch {args.batch} ≈ {estimate['epoch_hours']:.1f} h "
              f"on {args.threads} thread(s)")
    env = environment("torch", "numpy")
    print_environment(env)
    path = write_json(args.output, {"args": vars(args), "environment": env, "rows": rows, "largest_ca_epoch": estimate})
    figure = draw(rows, Path(args.plot))
    print(path)
    print(figure)
    return {"rows": rows, "estimate": estimate}


if __name__ == "__main__":
    main()

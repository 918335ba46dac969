"""Ablation of the traffic forecaster: adjacency mode x virtual nodes x seeds (x seasonal prior).

On Los-loop by default, or on any data set with a config in ``tasks/traffic/configs/``
(``--dataset montevideo_bus``: its windows and missing-value rule), with ``--seasonal_prior
true false`` training every cell with and without the prior.

Every configuration is trained for a fixed number of epochs in its own forked process (so its
peak memory is its own), then evaluated on the test split beside the persistence,
time-of-day-mean and seasonal-prior floors computed on the same windows. Prints a markdown table (mean ± std over
seeds), the machine and library versions, and writes a JSON result after every run (``--resume``
continues an interrupted grid) plus figures.

    nice -n 10 python benchmarks/traffic_ablation.py              # full grid: 4 modes x n_v {0,1,5,10,20} x 3 seeds
    python benchmarks/traffic_ablation.py --quick                 # distance/semi x n_v {0,10} x 1 seed, 2 epochs
    python benchmarks/traffic_ablation.py --modes distance semi --n_virtual 0 10 --epochs 12 \\
        --hidden_channels 32 --graph_channels 16 --workers 2 \\
        --out results/traffic_goal.json                            # the demo model, two runs at a time
    python benchmarks/traffic_ablation.py --dataset scats_boroondara --modes distance semi --n_virtual 0 10 \
        --seeds 0 --seasonal_prior true false --out results/traffic_ablation_scats.json

``semi`` with 0 virtual nodes is the ``distance`` model, so that cell is not trained twice.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from graphcore.datasets.traffic import LOS_LOOP  # noqa: E402
from graphcore.tasks.traffic.adjacency import ADJACENCY_MODES  # noqa: E402
from graphcore.tasks.traffic.baselines import floor_errors  # noqa: E402
from graphcore.tasks.traffic.data import TrafficDataModule  # noqa: E402
from graphcore.tasks.traffic.metrics import MaskedHorizonErrors, horizon_report  # noqa: E402
from graphcore.tasks.traffic.module import TrafficForecaster, forecast  # noqa: E402
from graphcore.tasks.traffic.plots import plot_error_vs_horizon, plot_sensitivity, plot_virtual_adjacency  # noqa: E402
from graphcore.tasks.traffic.report import markdown_table  # noqa: E402
from graphcore.tasks.traffic.sensitivity import hop_distances, layerwise_sensitivity, sensitivity_by_hop  # noqa: E402

SHARED_LOS_LOOP = ROOT.parent / "shared" / "datasets" / "traffic" / "los_loop" / "los_loop.npz"
SENSITIVITY_RUNS = {("distance", 0), ("semi", 10)}   # drawn for seed 0
CONFIGS = ROOT / "tasks" / "traffic" / "configs"


class TrainTimer(L.Callback):
    """Wall time spent in training epochs only (validation excluded)."""

    def __init__(self):
        self.seconds, self._start = 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds += time.perf_counter() - self._start


def errors_to_json(errors: MaskedHorizonErrors, interval: float) -> dict:
    per_step = {k: v.tolist() for k, v in errors.compute().items()}
    return {"per_step": per_step, "rows": horizon_report(errors, interval)}


def run_one(data: TrafficDataModule, mode: str, n_virtual: int, seed: int, prior: bool, args) -> dict:
    """Train and evaluate one configuration (runs in a forked child)."""
    torch.set_num_threads(args.threads)
    L.seed_everything(seed, verbose=False)
    model = TrafficForecaster(adjacency_mode=mode, n_virtual=n_virtual, hidden_channels=args.hidden_channels,
                              graph_channels=args.graph_channels, lr=args.lr, seasonal_prior=prior)
    timer = TrainTimer()
    trainer = L.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, gradient_clip_val=5.0, callbacks=[timer])
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainer.fit(model, data)
    _, val_errors = forecast(model, data, "val")
    _, test_errors = forecast(model, data, "test")
    interval = data.series.interval_minutes
    result = {"mode": mode, "n_virtual": n_virtual, "seed": seed, "prior": prior, "epochs": args.epochs,
              "parameters": sum(p.numel() for p in model.parameters()),
              "train_seconds": timer.seconds,
              "train_windows_per_s": args.epochs * len(data.dataset("train")) / timer.seconds,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "rss_at_start_mb": baseline_rss,
              "val": errors_to_json(val_errors, interval), "test": errors_to_json(test_errors, interval)}
    if seed == 0 and prior == args.seasonal_prior[0] and (mode, n_virtual) in SENSITIVITY_RUNS:
        targets = np.random.default_rng(0).choice(data.series.num_nodes, size=args.sensitivity_targets, replace=False)
        window = data.dataset("test")[len(data.dataset("test")) // 2][0]
        hops = hop_distances(data.series.adjacency)
        distances, means = sensitivity_by_hop(layerwise_sensitivity(model.net, window, targets.tolist()), hops, targets)
        result["sensitivity"] = {"hops": distances.tolist(), "means": means.tolist()}
    if seed == 0 and model.net.adjacency.emb1 is not None and n_virtual:
        result["virtual_edge_weights"] = model.net.adjacency.virtual_edge_weights().tolist()
    return result


def run_cell(job: tuple) -> dict:
    """:func:`run_one` on one ``(data, mode, n_virtual, seed, prior, args)`` tuple (for ``Pool.imap``)."""
    return run_one(*job)


def grid(args) -> list[tuple[str, int, int, bool]]:
    cells = [(m, v) for m in args.modes for v in args.n_virtual if not (m == "semi" and v == 0)]
    return [(m, v, s, p) for p in args.seasonal_prior for m, v in cells for s in args.seeds]


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def summarise(results: list[dict], floors: dict, args) -> str:
    summary = list(next(iter(floors.values()))["rows"])          # the horizon rows, in time (metrics.horizon_report)
    far = summary[-1]
    header = ["config", "seeds", *(f"MAE {r}" for r in summary), f"RMSE {far}", "train windows/s", "peak RSS MB"]
    rows = [[name, "-", *(f"{floors[name]['rows'][r]['mae']:.2f}" for r in summary),
             f"{floors[name]['rows'][far]['rmse']:.2f}", "-", "-"] for name in floors]
    configs = sorted({(r["mode"], r["n_virtual"], r.get("prior", True)) for r in results},
                     key=lambda c: (not c[2], ADJACENCY_MODES.index(c[0]), c[1]))
    for mode, n_v, prior in configs:
        runs = [r for r in results if (r["mode"], r["n_virtual"], r.get("prior", True)) == (mode, n_v, prior)]
        rows.append([f"{mode}, {n_v} VN{'' if prior else ', no prior'}", len(runs),
                     *(mean_std([r["test"]["rows"][row]["mae"] for r in runs]) for row in summary),
                     mean_std([r["test"]["rows"][far]["rmse"] for r in runs]),
                     f"{np.median([r['train_windows_per_s'] for r in runs]):.0f}",
                     f"{np.median([r['peak_rss_mb'] for r in runs]):.0f}"])
    return markdown_table(header, rows)


def environment(args) -> dict:
    import lightning
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": args.threads, "python": platform.python_version(),
            "torch": torch.__version__, "lightning": lightning.__version__, "numpy": np.__version__}


def draw(results: list[dict], floors: dict, minutes: np.ndarray, series, args) -> list[Path]:
    figures = Path(args.figures)
    prefix = "traffic_ablation" if args.dataset is None else f"traffic_ablation_{args.dataset}"
    prior = args.seasonal_prior[0]
    results = [r for r in results if r.get("prior", True) == prior]
    floor_curves = {name: (minutes, np.array(f["per_step"]["mae"]), None) for name, f in floors.items()}
    panels = {}
    for mode in args.modes:
        curves = {}
        for n_v in args.n_virtual:
            key = ("distance", 0) if (mode, n_v) == ("semi", 0) else (mode, n_v)
            runs = [np.array(r["test"]["per_step"]["mae"]) for r in results if (r["mode"], r["n_virtual"]) == key]
            if runs:
                curves[f"{n_v} VN"] = (minutes, np.mean(runs, axis=0), np.std(runs, axis=0) if len(runs) > 1 else None)
        if curves:
            panels[f"adjacency: {mode}"] = {**curves, **floor_curves}
    written = [plot_error_vs_horizon(panels, figures / f"{prefix}_error_vs_horizon.png", f"masked MAE ({series.unit})")]
    sens = {f"{r['mode']}, {r['n_virtual']} VN": (np.array(r["sensitivity"]["hops"]), np.array(r["sensitivity"]["means"]))
            for r in results if "sensitivity" in r}
    if sens:
        written.append(plot_sensitivity(sens, figures / f"{prefix}_sensitivity.png"))
    semi = [r for r in results if "virtual_edge_weights" in r and r["mode"] == "semi" and r["n_virtual"] == 10]
    if semi and series.lat is not None:
        written.append(plot_virtual_adjacency(series.lat, series.lon, np.array(semi[0]["virtual_edge_weights"]),
                                              figures / f"{prefix}_virtual_adjacency.png"))
    return written


def true_or_false(text: str) -> bool:
    """``true``/``false`` (also yes/no, 1/0); anything else is an error, never a silent False."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = SHARED_LOS_LOOP if SHARED_LOS_LOOP.is_file() else LOS_LOOP
    parser.add_argument("--data", default=str(default_data), help="Los-loop .npz (default: shared copy, else bundled)")
    parser.add_argument("--dataset", default=None, help="a data set with a config in tasks/traffic/configs/ "
                                                        "(its data section is used instead of --data)")
    parser.add_argument("--modes", nargs="+", default=list(ADJACENCY_MODES), choices=ADJACENCY_MODES)
    parser.add_argument("--n_virtual", nargs="+", type=int, default=[0, 1, 5, 10, 20])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per run (default 5; 2 with --quick)")
    parser.add_argument("--hidden_channels", type=int, default=16)
    parser.add_argument("--graph_channels", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seasonal_prior", type=true_or_false, nargs="+", default=[True],
                        help="the network corrects a weekday/weekend profile + decaying anomaly, as the task's "
                             "default (model.seasonal_prior); 'false' for the plain network; 'true false' for both")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--workers", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--sensitivity_targets", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="distance/semi x n_v {0, 10} x seed 0, 2 epochs")
    parser.add_argument("--out", default=str(ROOT / "results" / "traffic_ablation.json"))
    parser.add_argument("--figures", default=str(ROOT / "results" / "figures"),
                        help="folder for PNGs (copy the ones the README shows to docs/figures/)")
    parser.add_argument("--resume", action="store_true", help="keep finished runs of --out with the same settings")
    args = parser.parse_args(argv)
    if args.quick:
        args.modes, args.n_virtual, args.seeds = ["distance", "semi"], [0, 10], [0]
    if args.epochs is None:
        args.epochs = 2 if args.quick else 5
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    torch.set_num_threads(args.threads)
    if args.dataset is None:
        data = TrafficDataModule(data_path=args.data, input_len=12, horizon=24)
    else:
        import yaml
        data = TrafficDataModule(**yaml.safe_load((CONFIGS / f"{args.dataset}.yaml").read_text())["data"])
    data.setup()
    interval = data.series.interval_minutes
    floors = {name: errors_to_json(e, interval) for name, e in floor_errors(data.series, data.windows, "test").items()}
    settings = {k: getattr(args, k)
                for k in ("data", "dataset", "epochs", "hidden_channels", "graph_channels", "lr", "threads",
                          "seasonal_prior")}
    # runs before the adjacency embeddings were exempt from weight decay (their virtual edges decayed to 0)
    # have no such key, so --resume does not mix them with these
    settings["embedding_weight_decay"] = 0.0
    out = Path(args.out)
    results = []
    if args.resume and out.is_file():
        previous = json.loads(out.read_text())
        if previous.get("settings") == settings:
            results = previous["runs"]
    done = {(r["mode"], r["n_virtual"], r["seed"], r.get("prior", True)) for r in results}
    todo = [cell for cell in grid(args) if cell not in done]
    context = multiprocessing.get_context("fork")
    with context.Pool(args.workers, maxtasksperchild=1) as pool:
        runs = pool.imap_unordered(run_cell, [(data, mode, n_v, seed, prior, args) for mode, n_v, seed, prior in todo])
        for result in tqdm(runs, total=len(todo), desc="ablation runs", unit="run"):
            results.append(result)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"settings": settings, "environment": environment(args),
                                       "floors": floors, "runs": results}, indent=1))
    minutes = np.arange(1, data.horizon + 1) * interval
    table = summarise(results, floors, args)
    env = environment(args)
    series = data.series
    masked = "nothing masked" if series.missing_value is None else f"entries = {series.missing_value:g} masked"
    print(f"\n{series.name} test split, {data.input_len} in / {data.horizon} out at {interval:g} min, {args.epochs} "
          f"epochs per run, hidden {args.hidden_channels}/{args.graph_channels}; MAE/RMSE in {series.unit} "
          f"({masked}), mean ± std over seeds\n")
    print(table)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in env.items()))
    for path in draw(results, floors, minutes, series, args):
        print(path)
    print(out)
    return {"table": table, "runs": results}


if __name__ == "__main__":
    main()

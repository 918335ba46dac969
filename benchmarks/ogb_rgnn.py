"""Hector's grid on real heterogeneous graphs: compiled graphcore against PyG, DGL and eager.

For each graph (one inverse relation per relation), model (RGCN, RGAT, HGT; one layer, full
graph), feature size ``d`` (input = output) and mode (``infer``: forward under ``no_grad``;
``train``: forward + backward of a sum), every system runs in a fresh subprocess with a time
limit and a memory cap, reporting the median of ``--repeats`` runs and the peak extra resident
memory of the first run:

* ``compiled``: ``graphcore.compile(layer)`` on the CPU backend (the CUDA one with ``--device cuda``);
* ``eager``: the same graphcore layer, uncompiled;
* ``pyg``: PyG's ``RGCNConv`` and ``FastRGCNConv`` (RGCN; the faster counts), ``RGATConv``, ``HGTConv``;
* ``dgl``: DGL's ``RelGraphConv``, ``HeteroGraphConv`` + ``GATConv`` and ``HGTConv`` (Hector's
  baselines), run in ``.venv-dgl`` (``make dgl-env``; DGL 2.1 needs torch <= 2.2.1);
* ``pyg_compile`` and ``eager_compile``: PyG's layers and graphcore's eager layer under
  ``torch.compile`` (Inductor, ``dynamic=False``: one full graph per shape), what a PyG user tries
  first. Their first call (Inductor's compile) is reported apart (``first s``) from the step time.

The fastest peer is the fastest of PyG, DGL and the two torch.compile rows.

Graphs come from graphcore's ``.npz`` files (names resolve to ``datasets/data`` and
``../shared/datasets/hetero``), from OGB's raw heterograph layout read with ogb's reader
(``--ogb-raw DIR``), or from a downloaded OGB dataset (``--ogb-root ROOT --ogb-name ogbn-mag``).
The run also measures the machine's fp32 sgemm peak and the GFLOP/s the compiled GEMM kernels
reach (per-kernel timers in the generated code). Output: tables with ratios to the fastest peer
and to eager, a JSON file and a PNG plot.

    python -m benchmarks.ogb_rgnn --quick                  # d = 64, bundled graphs
    python -m benchmarks.ogb_rgnn                          # the full grid (hours)
    python -m benchmarks.ogb_rgnn --device cuda --quick    # on a GPU machine
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import torch
from tqdm import tqdm

from benchmarks.common import (MB, OK, TIMEOUT, add_common_arguments, environment, median_time, peak_rss_during,
                               print_environment, print_table, run_isolated, write_json)
from benchmarks.rgnn_layers import build as build_peer

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ("aifb", "mutag", "fb15k237", "heco_dblp", "hector_mag_0.1")
MODELS = ("rgcn", "rgat", "hgt")
SYSTEMS = ("compiled", "eager", "pyg", "dgl", "pyg_compile", "eager_compile")
PEERS = ("pyg", "dgl", "pyg_compile", "eager_compile")  # what compiled graphcore is compared with
PYG_VARIANTS = {"rgcn": ("pyg", "pyg_fast"), "rgat": ("pyg",), "hgt": ("pyg",)}
NAMES = {"compiled": "graphcore compiled", "eager": "graphcore eager",
         "eager_compile": "graphcore eager + torch.compile"}
DGL_PYTHON = ROOT / ".venv-dgl" / "bin" / "python"


def load_graph(spec: str):
    """A graph spec: ``npz:<name or path>``, ``ogbraw:<dir>`` or ``ogb:<root>:<name>``; inverses added."""
    kind, _, rest = spec.partition(":")
    if kind == "npz":
        from graphcore.datasets.hetero import load

        graph = load(rest).graph
    elif kind == "ogbraw":
        import graphcore as gc

        graph = gc.from_ogb(rest)
    else:
        root, name = rest.split(":")
        graph = load_ogb_dataset(root, name)
    return graph.add_reverse_edges()


def load_ogb_dataset(root: str, name: str):
    """A downloaded OGB node-property dataset (``ogbn-mag``) read with ogb's own loader."""
    from ogb.nodeproppred import NodePropPredDataset

    import graphcore as gc

    folder = Path(root) / name.replace("-", "_")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: download {name} with ogb first (this machine is offline)")
    data = NodePropPredDataset(name=name, root=root)[0][0]
    edges = {tuple(r): torch.from_numpy(e) for r, e in data["edge_index_dict"].items()}
    return gc.HeteroGraph({t: int(n) for t, n in sorted(data["num_nodes_dict"].items())}, edges)


def measure(system: str, spec: str, model: str, variant: str, d: int, heads: int, mode: str, repeats: int,
            warmup: int, budget_s: float, threads: int, device: str, backend: str | None = None,
            passes: list[str] | None = None) -> dict:
    """One cell in the current process (``main`` isolates it).

    ``backend`` and ``passes`` choose the compiled system's backend (default: the device's native
    one) and optimising passes (default: all).
    """
    import graphcore as gc

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    graph = load_graph(spec).to(device)
    impl = "graphcore" if system in ("compiled", "eager", "eager_compile") else variant
    module, run = build_peer(model, impl, graph, d, heads, prepare=system != "compiled")
    module = module.to(device)
    executables = []
    if system == "compiled":
        compiled = gc.compile(module, backend=backend or ("cuda" if device == "cuda" else "cpu"), passes=passes)
        run = lambda x: compiled(graph, x)  # noqa: E731 (the step closes over it)
    elif system.endswith("_compile"):
        run = torch.compile(run, dynamic=False)  # Inductor; compiles on the first (untimed) step
    x = torch.randn(graph.num_nodes(), d, device=device, requires_grad=mode == "train")

    def step() -> None:
        if mode == "infer":
            with torch.no_grad():
                run(x)
        else:
            module.zero_grad(set_to_none=True)
            x.grad = None
            out = run(x)
            values = out.values() if isinstance(out, dict) else [out]
            torch.stack([v.sum() for v in values if v is not None]).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    first = time.perf_counter()
    _, peak = peak_rss_during(step)
    compile_s = time.perf_counter() - first
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    plan_cost = {}
    if system == "compiled":
        runner = next(iter(compiled._graphcore_plans.values()))
        plan_cost = {"estimated_gflop": runner.plan.cost_optimised.flops / 1e9,
                     "estimated_naive_gflop": runner.plan.cost_naive.flops / 1e9,
                     "estimated_gb": runner.plan.cost_optimised.bytes / 1e9}
        executables = [e for e in (runner.forward, runner.backward) if e is not None and hasattr(e, "profile")]
        for e in executables:
            e.profile = []
    spent = (first if system.endswith("_compile") else time.perf_counter()) - started  # Inductor's compile is apart
    timing = median_time(step, repeats=repeats, warmup=max(warmup - 1, 0), budget_s=budget_s - spent)
    layout = graph.layout
    result = {"median_s": timing.median, "runs_s": list(timing.runs), "peak_bytes": peak, "first_call_s": compile_s,
              "num_nodes": graph.num_nodes(), "num_edges": graph.num_edges(), "num_relations": graph.num_relations,
              "usrc": layout.unique_src.num_pairs, "udst": layout.unique_dst.num_pairs, **plan_cost}
    if executables:
        result.update(gemm_throughput(executables, graph.layout, repeats + max(warmup - 1, 0)))
    return result


def gemm_throughput(executables, layout, calls: int) -> dict:
    """FLOPs and seconds of the compiled GEMM kernels (mm and outer) from their timers."""
    from graphcore.codegen.ir.kernel import GemmSpec

    flops = seconds = 0.0
    for e in executables:
        for kernel, spent in zip(e.program.kernels, e.profile):
            if isinstance(kernel, GemmSpec) and kernel.mode in ("mm", "outer"):
                flops += 2.0 * layout.rows(str(kernel.rows)) * kernel.k * kernel.n * kernel.heads * calls
                seconds += spent
    return {"gemm_gflops": flops / 1e9, "gemm_seconds": seconds}


def measure_dgl(path: str, model: str, d: int, heads: int, mode: str, repeats: int, warmup: int, budget_s: float,
                threads: int) -> dict:
    command = [str(DGL_PYTHON), "-m", "benchmarks.dgl_runner", "--graph", path, "--model", model, "--d", str(d),
               "--heads", str(heads), "--mode", mode, "--repeats", str(repeats), "--warmup", str(warmup),
               "--threads", str(threads), "--budget", str(budget_s)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=budget_s + 120, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": TIMEOUT, "message": f"killed after {budget_s + 120:.0f} s"}
    if done.returncode != 0:
        tail = done.stderr.strip()[-400:]
        status = "OOM" if ("memory" in tail.lower() or done.returncode == -9) else \
            (TIMEOUT if "TimeBudgetExceeded" in tail else "ERROR")
        return {"status": status, "message": tail}
    return {"status": OK, **json.loads(done.stdout.strip().splitlines()[-1])}


def sgemm_peak(threads: int) -> float:
    """GFLOP/s of a 2048^2 fp32 matrix product with torch (MKL/OpenBLAS), median of 5."""
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    timing = median_time(lambda: a @ b, repeats=5, warmup=2)
    return 2 * 2048**3 / timing.median / 1e9


def stream_bandwidth(threads: int) -> float:
    """GB/s of a 256 MB fp32 copy (read + write counted) with torch, median of 5: the memory roof."""
    torch.set_num_threads(threads)
    a = torch.randn(64 * 2**20)
    b = torch.empty_like(a)
    timing = median_time(lambda: b.copy_(a), repeats=5, warmup=2)
    return 2 * a.numel() * a.element_size() / timing.median / 1e9


def add_roofline(rows: list[dict], cells: list[dict], peak_gflops: float, bandwidth_gbs: float) -> None:
    """Each row's roofline time of one step, ``max(FLOPs / sgemm peak, bytes / stream bandwidth)``
    from the compiled plan's cost estimate (the whole step, not only the GEMMs), and its share of
    the compiled cell's time (``roofline / measured``).

    The cost model counts bytes as if every op read its inputs and wrote its output once (the
    unfused traffic), so fused kernels that keep intermediates in registers can move less than
    that: a share above 1 says the kernels beat the unfused traffic, not that they beat the
    machine. FLOPs are counted exactly."""
    estimates = {(c["graph"], c["model"], c["d"], c["mode"]): c for c in cells
                 if c["system"] == "compiled" and c["status"] == OK and "estimated_gb" in c}
    for row in rows:
        c = estimates.get((row["graph"], row["model"], row["d"], row["mode"]))
        if c is None:
            continue
        bound_s = max(c["estimated_gflop"] / peak_gflops, c["estimated_gb"] / bandwidth_gbs)
        row["roofline_ms"] = bound_s * 1e3
        row["roofline_share"] = bound_s / c["median_s"]


def npz_for(spec: str, scratch: Path) -> str | None:
    """A ``.npz`` path of the graph for the DGL interpreter (written once for OGB and synthetic sources)."""
    from graphcore.datasets.synthetic import parse_name

    kind, _, rest = spec.partition(":")
    if kind == "npz" and parse_name(rest) is None:
        from graphcore.datasets.hetero import resolve

        return str(resolve(rest))
    import graphcore as gc

    target = scratch / (Path(rest.replace(":", "_")).name + ".npz")
    if not target.is_file():
        graph = load_graph(spec)
        forward = gc.HeteroGraph(graph.num_nodes_dict, {r: e for r, e in graph.edge_index_dict.items()
                                                         if not r[1].startswith("rev_")})
        gc.save_npz(forward, target)
    return str(target)


def graph_specs(args) -> list[str]:
    from graphcore.datasets.hetero import resolve
    from graphcore.datasets.synthetic import parse_name

    specs = []
    for name in args.graphs:
        if parse_name(name) is not None:  # a synthetic graph: <schema>[:<scale>], e.g. mag_like:0.1
            specs.append(f"npz:{name}")
            continue
        try:
            resolve(name)
            specs.append(f"npz:{name}")
        except ValueError:
            print(f"skipping graph '{name}': not found (pass a path, or put ../shared beside the repo)")
    specs += [f"ogbraw:{p}" for p in args.ogb_raw]
    if args.ogb_root:
        specs.append(f"ogb:{args.ogb_root}:{args.ogb_name}")
    return specs


def label(spec: str) -> str:
    from graphcore.datasets.synthetic import parse_name

    kind, _, rest = spec.partition(":")
    if kind == "npz" and parse_name(rest) is not None:
        return rest
    return Path(rest.split(":")[-1]).name.removesuffix(".npz") + (" (ogb raw)" if kind == "ogbraw" else "")


def summary_rows(cells: list[dict]) -> list[dict]:
    """One row per (graph, model, d, mode): times, memory and ratios to the fastest peer and eager."""
    groups: dict[tuple, dict[str, dict]] = {}
    for c in cells:
        key = (c["graph"], c["model"], c["d"], c["mode"])
        best = groups.setdefault(key, {}).get(c["system"])
        if c["status"] == OK and (best is None or best["status"] != OK or c["median_s"] < best["median_s"]):
            groups[key][c["system"]] = c
        elif best is None:
            groups[key][c["system"]] = c
    rows = []
    for (graph, model, d, mode), by in groups.items():
        row = {"graph": graph, "model": model, "d": d, "mode": mode}
        for system, c in by.items():
            row[f"{system}_ms"] = c["median_s"] * 1e3 if c["status"] == OK else c["status"]
            row[f"{system}_mb"] = c["peak_bytes"] / MB if c["status"] == OK else None
            row[f"{system}_first_s"] = c.get("first_call_s") if c["status"] == OK else None
        ours = by.get("compiled")
        peers = [c for s, c in by.items() if s in PEERS and c["status"] == OK]
        if ours and ours["status"] == OK:
            if peers:
                fastest = min(peers, key=lambda c: c["median_s"])
                row["vs_fastest_peer"] = fastest["median_s"] / ours["median_s"]
                row["fastest_peer"] = fastest["name"]
                row["peer_mem_ratio"] = ours["peak_bytes"] / max(fastest["peak_bytes"], 1)
            eager = by.get("eager")
            if eager and eager["status"] == OK:
                row["vs_eager"] = eager["median_s"] / ours["median_s"]
            if ours.get("gemm_seconds"):
                row["gemm_gflops_s"] = ours["gemm_gflops"] / ours["gemm_seconds"]
        rows.append(row)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({r["mode"] for r in rows})
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        chosen = [r for r in rows if r["mode"] == mode and isinstance(r.get("vs_fastest_peer"), float)]
        labels = [f"{r['graph']}\n{r['model']} d={r['d']}" for r in chosen]
        ax.bar(range(len(chosen)), [r["vs_fastest_peer"] for r in chosen], color="tab:blue", label="vs fastest peer")
        ax.bar(range(len(chosen)), [r.get("vs_eager", 0) for r in chosen], color="tab:orange", alpha=0.5,
               width=0.4, label="vs graphcore eager")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(chosen)), labels, rotation=70, fontsize=7)
        ax.set_ylabel("speed-up of compiled graphcore (x)")
        ax.set_title(f"{mode}: time of peer / time of compiled")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", nargs="+", default=list(GRAPHS),
                        help="graph names, .npz paths, or synthetic graphs <schema>:<scale> (mag_like:0.1)")
    parser.add_argument("--ogb-raw", nargs="*", default=[], help="folders in OGB's raw heterograph layout")
    parser.add_argument("--ogb-root", help="root of downloaded OGB datasets (read with ogb's loader)")
    parser.add_argument("--ogb-name", default="ogbn-mag")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--dims", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--modes", nargs="+", choices=("infer", "train"), default=["infer", "train"])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--heads", type=int, default=1, help="heads of RGAT and HGT")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cell-timeout", type=float, default=120.0, help="seconds per cell before TIMEOUT")
    parser.add_argument("--compile-timeout", type=float, default=900.0,
                        help="extra seconds a torch.compile cell may spend compiling (its first call)")
    parser.add_argument("--mem-limit-gb", type=float, default=20.0, help="memory per cell before OOM")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="d = 64 and the bundled graphs only")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "figures" / "ogb_rgnn.png"))
    add_common_arguments(parser, "ogb_rgnn.json")
    parser.set_defaults(threads=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.dims = [64]
        args.graphs = [g for g in args.graphs if g in ("aifb", "mutag")] or args.graphs
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    specs = graph_specs(args)
    systems = list(args.systems)
    if "dgl" in systems and (args.device == "cuda" or not DGL_PYTHON.is_file()):
        print("DGL rows skipped: run `make dgl-env` first (CPU only)" if args.device == "cpu" else
              "DGL rows skipped on CUDA (the DGL environment is a CPU install)")
        systems.remove("dgl")
    scratch = ROOT / "results" / "graphs"
    jobs = [(s, m, d, mode, system, variant) for s in specs for m in args.models for d in args.dims
            for mode in args.modes for system in systems
            for variant in (PYG_VARIANTS[m] if system in ("pyg", "pyg_compile") else (system,))]
    cells = []
    for spec, model, d, mode, system, variant in tqdm(jobs, desc="cells", unit="cell"):
        base = {"graph": label(spec), "model": model, "d": d, "mode": mode, "system": system}
        if system == "dgl":
            out = measure_dgl(npz_for(spec, scratch), model, d, args.heads, mode, args.repeats, args.warmup,
                              args.cell_timeout, args.threads)
            cell = {**base, "name": f"DGL {model}", **out}
        else:
            result = run_isolated(measure, system, spec, model, variant, d, args.heads, mode, args.repeats,
                                  args.warmup, args.cell_timeout, args.threads, args.device,
                                  timeout_s=args.cell_timeout + 120 +
                                  (args.compile_timeout if system.endswith("_compile") else 0),
                                  memory_limit_bytes=int(args.mem_limit_gb * 2**30))
            name = NAMES.get(system, f"PyG {variant}" + (" + torch.compile" if system == "pyg_compile" else ""))
            cell = {**base, "name": name, "status": result.status,
                    **(result.value if result.status == OK else {"message": result.message, **result.details})}
        cells.append(cell)
        if cell["status"] != OK:
            tqdm.write(f"{cell['graph']} {model} d={d} {mode} {cell['name']}: {cell['status']}: "
                       f"{str(cell.get('message', '')).strip()[-200:]}")
    rows = summary_rows(cells)
    peak = sgemm_peak(args.threads) if args.device == "cpu" else None
    bandwidth = stream_bandwidth(args.threads) if args.device == "cpu" else None
    if peak and bandwidth:
        add_roofline(rows, cells, peak, bandwidth)
    columns = {"graph": "graph", "model": "model", "d": "d", "mode": "mode", "compiled_ms": "compiled ms",
               "eager_ms": "eager ms", "pyg_ms": "PyG ms", "dgl_ms": "DGL ms", "pyg_compile_ms": "PyG+tc ms",
               "eager_compile_ms": "eager+tc ms", "fastest_peer": "fastest peer", "vs_fastest_peer": "x fastest peer",
               "vs_eager": "x eager", "compiled_mb": "compiled MB", "peer_mem_ratio": "MB / peer MB",
               "gemm_gflops_s": "GEMM GFLOP/s", "roofline_ms": "roofline ms", "roofline_share": "of roofline"}
    print_table(rows, columns, title="medians (ms), speed-ups of compiled graphcore", markdown=args.markdown)
    firsts = {"graph": "graph", "model": "model", "d": "d", "mode": "mode", "compiled_first_s": "graphcore first s",
              "pyg_compile_first_s": "PyG+tc first s", "eager_compile_first_s": "eager+tc first s"}
    if any(r.get("pyg_compile_first_s") or r.get("eager_compile_first_s") for r in rows):
        print_table(rows, firsts, title="first call (s): compilation, apart from the step times above",
                    markdown=args.markdown)
    if peak:
        print(f"\nfp32 sgemm peak on this machine ({args.threads} threads, 2048^2, same run): {peak:.0f} GFLOP/s; "
              f"stream copy {bandwidth:.1f} GB/s; roofline = max(FLOPs / peak, bytes / bandwidth) of the "
              "compiled plan's cost estimate for the whole step")
    env = {**environment("torch", "torch-geometric", "numpy", "ogb"),
           "settings": {k: v for k, v in vars(args).items() if k not in ("output", "markdown")}}
    print()
    print_environment(env)
    if args.plot and rows:
        plot(rows, Path(args.plot))
        print(f"plot: {args.plot}")
    payload = {**env, "sgemm_peak_gflops": peak, "stream_gbs": bandwidth, "cells": cells, "summary": rows}
    print(f"wrote {write_json(args.output, payload)}")
    return payload


if __name__ == "__main__":
    main()

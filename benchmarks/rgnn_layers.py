"""One relational layer, graphcore eager vs PyG, on real graphs: time and peak memory.

For every graph (inverse relations added) and layer family, one layer with ``d`` input and
output features (default 64) runs

* ``fwd``: inference, under ``torch.no_grad()``;
* ``fwd+bwd``: a training step: forward with gradients, ``out.sum().backward()``, inputs
  requiring grad as a hidden layer's do;

as graphcore eager (:class:`graphcore.nn.RGCN`/``RGAT``/``HGT``) and PyG's ``RGCNConv``,
``FastRGCNConv``, ``RGATConv`` and ``HGTConv`` (``RGCN`` with ``aggr="mean"``, ``RGAT``/``HGT``
with ``--heads`` heads of ``d // heads`` features). Each cell is a fresh subprocess: it
builds the graph and the layer, prepares the inputs each library wants (graphcore's cached
layout, PyG's ``edge_index``/``edge_type`` or dicts; timed separately as ``prep``), measures
the peak resident memory of the first step, then the median of ``--repeats`` steps after
``--warmup``. A cell over ``--cell-budget`` seconds is ``TIMEOUT``, one whose address space
would grow past ``--mem-limit-gb`` is ``OOM``.

    python -m benchmarks.rgnn_layers                     # all graphs, layers, passes
    python -m benchmarks.rgnn_layers --graphs aifb --layers rgat --repeats 3
    python -m benchmarks.rgnn_layers --from-json results/rgnn_layers.json --plot docs/figures/rgnn_layers.png
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch_geometric.nn import FastRGCNConv, HGTConv, RGATConv, RGCNConv
from tqdm import tqdm

import graphcore as gc
from benchmarks.common import (MB, OK, TIMEOUT, add_common_arguments, environment, median_time, peak_rss_during,
                               print_environment, print_table, run_isolated, write_json)
from graphcore.datasets.hetero import load
from graphcore.graph import HeteroGraph

GRAPHS = ("aifb", "mutag", "fb15k237", "heco_dblp")
LAYERS = {"rgcn": ("graphcore", "pyg", "pyg_fast"), "rgat": ("graphcore", "pyg"), "hgt": ("graphcore", "pyg")}
PYG_NAMES = {("rgcn", "pyg"): "RGCNConv", ("rgcn", "pyg_fast"): "FastRGCNConv", ("rgat", "pyg"): "RGATConv",
             ("hgt", "pyg"): "HGTConv"}
PASSES = ("fwd", "fwd+bwd")
Runner = Callable[[torch.Tensor], object]


def implementation_name(layer: str, impl: str) -> str:
    return f"graphcore.nn.{layer.upper()}" if impl == "graphcore" else f"PyG {PYG_NAMES[layer, impl]}"


def load_graph(name: str) -> HeteroGraph:
    """The graph with inverse relations, from the bundled data, ``../shared`` or a path."""
    return load(name).graph.add_reverse_edges()


def build(layer: str, impl: str, graph: HeteroGraph, d: int, heads: int,
          prepare: bool = True) -> tuple[torch.nn.Module, Runner]:
    """The layer and a function ``x -> output`` on ``graph`` taking global-order features ``[N, d]``.

    Everything a library precomputes once per graph happens here, outside the timed step. With
    ``prepare=False`` graphcore's layouts are left to be built on first use (a compiled model's
    first call then includes every layout its kernels read, and only those).
    """
    R, T = graph.num_relations, graph.num_node_types
    if impl == "graphcore":
        module = {"rgcn": lambda: gc.nn.RGCN(d, d, R, aggr="mean"),
                  "rgat": lambda: gc.nn.RGAT(d, d // heads, R, heads=heads),
                  "hgt": lambda: gc.nn.HGT(d, d, T, R, heads=heads)}[layer]()
    elif layer == "hgt":
        module = HGTConv(d, d, (list(graph.node_types), list(graph.relations)), heads=heads)
    else:
        module = {("rgcn", "pyg"): lambda: RGCNConv(d, d, R, aggr="mean"),
                  ("rgcn", "pyg_fast"): lambda: FastRGCNConv(d, d, R, aggr="mean"),
                  ("rgat", "pyg"): lambda: RGATConv(d, d // heads, R, heads=heads)}[layer, impl]()
    return module, runner(module, layer, impl, graph, prepare)


def runner(module: torch.nn.Module, layer: str, impl: str, graph: HeteroGraph, prepare: bool = True) -> Runner:
    """``x -> module output`` on ``graph``, with the inputs the library wants prepared once."""
    if impl == "graphcore":
        layout = graph.layout  # build the cached layouts the eager ops read
        eager_layouts = ("src", "dst", "etype", "rel_ptr", "node_offsets", "node_type", "in_degree", "dst_etype_count")
        for name in eager_layouts if prepare else ():
            getattr(layout, name)
        return lambda x: module(graph, x)
    if layer == "hgt":
        edges = graph.edge_index_dict
        return lambda x: module(graph.unstack(x), edges)
    edge_index, edge_type = torch.stack([graph.layout.src, graph.layout.dst]), graph.layout.etype
    return lambda x: module(x, edge_index, edge_type)


def one_edge_copy(graph: HeteroGraph) -> HeteroGraph:
    """The same schema with one node per type and one edge per relation: warms up lazy
    initialisation (imports, caches) without allocating much."""
    zero = torch.zeros(2, 1, dtype=torch.int64)
    return HeteroGraph({t: 1 for t in graph.node_types}, {r: zero for r in graph.relations})


def _backward(out) -> None:
    values = out.values() if isinstance(out, dict) else [out]
    torch.stack([v.sum() for v in values if v is not None]).sum().backward()


def measure_cell(graph_name: str, layer: str, impl: str, mode: str, d: int, heads: int, repeats: int, warmup: int,
                 budget_s: float, threads: int) -> dict:
    """Run one cell (in the current process; :func:`main` calls it isolated).

    Memory is the peak resident growth of the first step on the real graph, after one step on
    :func:`one_edge_copy` (so lazy initialisation is not counted, and no large block freed by
    an earlier step is reused unseen).
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    graph = load_graph(graph_name)
    t1 = time.perf_counter()
    module, run = build(layer, impl, graph, d, heads)
    prep_s = time.perf_counter() - t1

    def step(run: Runner, x: torch.Tensor) -> None:
        if mode == "fwd":
            with torch.no_grad():
                run(x)
        else:
            module.zero_grad(set_to_none=True)
            x.grad = None
            _backward(run(x))

    tiny = one_edge_copy(graph)
    step(runner(module, layer, impl, tiny), torch.randn(tiny.num_nodes(), d, requires_grad=mode == "fwd+bwd"))
    x = torch.randn(graph.num_nodes(), d, requires_grad=mode == "fwd+bwd")
    _, peak = peak_rss_during(lambda: step(run, x))
    budget_left = budget_s - (time.perf_counter() - t0)
    timing = median_time(lambda: step(run, x), repeats=repeats, warmup=max(warmup - 1, 0), budget_s=budget_left)
    return {"median_s": timing.median, "runs_s": list(timing.runs), "peak_bytes": peak, "prep_s": prep_s,
            "num_nodes": graph.num_nodes(), "num_edges": graph.num_edges(), "num_relations": graph.num_relations}


def ratio_rows(cells: list[dict]) -> list[dict]:
    """One row per PyG cell: its time and memory over graphcore's in the same (graph, layer, pass)."""
    ours = {(c["graph"], c["layer"], c["pass"]): c for c in cells if c["impl"] == "graphcore"}
    rows = []
    for c in cells:
        if c["impl"] == "graphcore":
            continue
        g = ours.get((c["graph"], c["layer"], c["pass"]))
        row = {"graph": c["graph"], "layer": c["layer"], "pass": c["pass"], "peer": c["name"]}
        if g and g["status"] == OK and c["status"] == OK:
            row["speedup"] = c["median_s"] / g["median_s"]
            row["memory_ratio"] = c["peak_bytes"] / max(g["peak_bytes"], 1)
        elif g and g["status"] == OK and c["status"] == TIMEOUT and c.get("seconds_per_run"):
            row["speedup"] = f">= {c['seconds_per_run'] / g['median_s']:.0f} (peer TIMEOUT)"
        else:
            row["speedup"] = f"peer {c['status']}" if g and g["status"] == OK else "n/a"
        rows.append(row)
    return rows


def display(cell: dict) -> dict:
    """A cell as table columns: ms and MB, or the failure status."""
    row = {k: cell[k] for k in ("graph", "layer", "pass", "name")}
    if cell["status"] == OK:
        row.update(ms=cell["median_s"] * 1e3, peak_mb=cell["peak_bytes"] / MB, prep_ms=cell["prep_s"] * 1e3)
    else:
        lower = f" (>= {cell['seconds_per_run']:.1f} s/run)" if cell.get("seconds_per_run") else ""
        row.update(ms=cell["status"] + lower, peak_mb=cell["status"])
    return row


def plot(cells: list[dict], path: str) -> None:
    """Bar chart of median step time (log scale), one panel per pass.

    A peer that timed out is drawn hatched at its lower bound (one run's time); an OOM cell is
    labelled.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passes = [p for p in PASSES if any(c["pass"] == p for c in cells)]
    groups = list(dict.fromkeys((c["graph"], c["layer"]) for c in cells))
    impls = ("graphcore", "pyg", "pyg_fast")
    labels = {"graphcore": "graphcore eager", "pyg": "PyG (RGCNConv / RGATConv / HGTConv)",
              "pyg_fast": "PyG FastRGCNConv"}
    fig, axes = plt.subplots(len(passes), 1, figsize=(max(8, 0.9 * len(groups)), 3.6 * len(passes)), squeeze=False)
    width = 0.27
    for ax, mode in zip(axes[:, 0], passes):
        found = {(c["graph"], c["layer"], c["impl"]): c for c in cells if c["pass"] == mode}
        top = max([c["median_s"] * 1e3 for c in found.values() if c["status"] == OK] or [1.0])
        for k, impl in enumerate(impls):
            for i, (graph, layer) in enumerate(groups):
                c = found.get((graph, layer, impl))
                if c is None:
                    continue
                x = i + (k - 1) * width
                if c["status"] == OK:
                    ax.bar(x, c["median_s"] * 1e3, width, color=f"C{k}", label=labels[impl] if i == 0 else None)
                elif c.get("seconds_per_run"):
                    ax.bar(x, c["seconds_per_run"] * 1e3, width, color=f"C{k}", alpha=0.35, hatch="//")
                    ax.text(x, c["seconds_per_run"] * 1e3 * 0.8, c["status"], rotation=90, ha="center", va="top",
                            fontsize=7)
                else:
                    ax.text(x, top, c["status"], rotation=90, ha="center", va="top", fontsize=7, color=f"C{k}")
        ax.set_yscale("log")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel("median ms per step")
        ax.set_title(f"one layer, {mode} (hatched: lower bound of a TIMEOUT)", fontsize=10)
        ax.set_xticks(range(len(groups)), [f"{g}\n{layer.upper()}" for g, layer in groups], fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(cells: list[dict], markdown: bool) -> list[dict]:
    """Print the per-cell table and the ratio table; return the ratio rows."""
    columns = {"graph": "graph", "layer": "layer", "pass": "pass", "name": "implementation", "ms": "median ms",
               "peak_mb": "peak MB", "prep_ms": "prep ms"}
    print_table([display(c) for c in cells], columns, title="per cell", markdown=markdown)
    ratios = ratio_rows(cells)
    print_table(ratios, {"graph": "graph", "layer": "layer", "pass": "pass", "peer": "peer",
                         "speedup": "graphcore speed-up (peer time / ours)", "memory_ratio": "peer MB / ours"},
                title="graphcore eager vs PyG, same run", markdown=markdown)
    return ratios


def measure(args: argparse.Namespace) -> list[dict]:
    """Every (graph, layer, implementation, pass) cell, each in its own subprocess."""
    jobs = [(g, layer, impl, mode) for g in args.graphs for layer in args.layers for impl in LAYERS[layer]
            for mode in args.passes]
    cells = []
    for g, layer, impl, mode in tqdm(jobs, desc="cells", unit="cell"):
        out = run_isolated(measure_cell, os.fspath(g), layer, impl, mode, args.d, args.heads, args.repeats,
                           args.warmup, args.cell_budget, args.threads,
                           timeout_s=args.cell_budget + 60, memory_limit_bytes=int(args.mem_limit_gb * 2**30))
        cell = {"graph": os.path.basename(os.fspath(g)).removesuffix(".npz"), "layer": layer, "impl": impl,
                "pass": mode, "name": implementation_name(layer, impl), "status": out.status,
                **(out.value if out.status == OK else {"message": out.message, **out.details})}
        cells.append(cell)
        if out.status != OK:
            tqdm.write(f"{cell['graph']} {cell['name']} {mode}: {out.status}: {out.message.strip()[-300:]}")
    return cells


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", nargs="+", default=list(GRAPHS),
                        help="dataset names (bundled, in ../shared/datasets/hetero) or .npz paths")
    parser.add_argument("--layers", nargs="+", choices=list(LAYERS), default=list(LAYERS))
    parser.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES))
    parser.add_argument("--d", type=int, default=64, help="input and output features")
    parser.add_argument("--heads", type=int, default=4, help="heads of RGAT and HGT")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (the memory run counts as one)")
    parser.add_argument("--cell-budget", type=float, default=90.0, help="seconds per cell before TIMEOUT")
    parser.add_argument("--mem-limit-gb", type=float, default=8.0, help="address-space growth per cell before OOM")
    parser.add_argument("--plot", metavar="PNG", help="also draw the step times as a bar chart")
    parser.add_argument("--from-json", metavar="JSON", help="re-print (and --plot) a saved result; measure nothing")
    add_common_arguments(parser, "rgnn_layers.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.from_json:
        payload = json.loads(Path(args.from_json).read_text())
        report(payload["cells"], args.markdown)
    else:
        cells = measure(args)
        ratios = report(cells, args.markdown)
        env = {**environment("torch", "torch-geometric", "numpy"),
               "settings": {k: v for k, v in vars(args).items() if k not in ("output", "markdown", "plot")}}
        print()
        print_environment(env)
        payload = {**env, "cells": cells, "ratios": ratios}
        print(f"\nwrote {write_json(args.output, payload)}")
    if args.plot:
        plot(payload["cells"], args.plot)
        print(f"wrote {args.plot}")
    return payload


if __name__ == "__main__":
    main()

"""Hector's ablation of the compiler's passes on real graphs (reference backend).

For RGAT and HGT on each graph, feature size ``d`` and mode, the model is compiled with
compact materialization on/off x linear operator reordering on/off (fusion and aggregate-first
always on), run on the reference (PyTorch) backend, and compared with graphcore eager and PyG
measured in the same run: median time, peak extra memory and the cost model's FLOP estimate of
the optimised program. Expectation to confirm or refute: the two passes cut training FLOPs and
peak memory by at least 2x where |E|/|U| is large; where they do not, the table shows what the
cost model chose (a pass that does not pay leaves the program unchanged).

    python -m benchmarks.rgnn_passes --graphs aifb mutag --dims 64
"""
from __future__ import annotations

import argparse
import itertools

from tqdm import tqdm

from benchmarks.common import MB, OK, add_common_arguments, environment, print_environment, print_table, \
    run_isolated, write_json
from benchmarks.ogb_rgnn import graph_specs, label, measure

GRAPHS = ("aifb", "mutag", "fb15k237", "heco_dblp", "hector_mag_0.1")
VARIANTS = {(c, r): [p for p, on in (("reorder", r), ("aggregate_first", True), ("compact", c), ("fuse", True)) if on]
            for c, r in itertools.product((True, False), repeat=2)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", nargs="+", default=list(GRAPHS))
    parser.add_argument("--models", nargs="+", choices=("rgat", "hgt"), default=["rgat", "hgt"])
    parser.add_argument("--dims", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--modes", nargs="+", choices=("infer", "train"), default=["infer", "train"])
    parser.add_argument("--backend", choices=("torch", "cpu"), default="torch", help="backend of the compiled rows")
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--cell-timeout", type=float, default=120.0)
    parser.add_argument("--mem-limit-gb", type=float, default=20.0)
    parser.add_argument("--no-peers", action="store_true", help="skip the eager and PyG rows")
    add_common_arguments(parser, "rgnn_passes.json")
    parser.set_defaults(threads=2, ogb_raw=[], ogb_root=None)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    specs = graph_specs(args)
    jobs = []
    for spec, model, d, mode in itertools.product(specs, args.models, args.dims, args.modes):
        for (compact, reorder), passes in VARIANTS.items():
            jobs.append((spec, model, d, mode, "compiled", model, passes, {"compact": compact, "reorder": reorder}))
        if not args.no_peers:
            jobs.append((spec, model, d, mode, "eager", model, None, {}))
            jobs.append((spec, model, d, mode, "pyg", "pyg", None, {}))
    cells = []
    for spec, model, d, mode, system, variant, passes, flags in tqdm(jobs, desc="cells", unit="cell"):
        out = run_isolated(measure, system, spec, model, variant, d, args.heads, mode, args.repeats, args.warmup,
                           args.cell_timeout, args.threads, "cpu", args.backend, passes,
                           timeout_s=args.cell_timeout + 120, memory_limit_bytes=int(args.mem_limit_gb * 2**30))
        cell = {"graph": label(spec), "model": model, "d": d, "mode": mode, "system": system, **flags,
                "status": out.status, **(out.value if out.status == OK else {"message": out.message})}
        cells.append(cell)
        if out.status != OK:
            tqdm.write(f"{cell['graph']} {model} d={d} {mode} {system} {flags}: {out.status}")
    rows = []
    for c in cells:
        if c["system"] != "compiled":
            continue
        same = [p for p in cells if p["system"] != "compiled" and
                all(p[k] == c[k] for k in ("graph", "model", "d", "mode"))]
        base = next((p for p in cells if p["system"] == "compiled" and not p["compact"] and not p["reorder"] and
                     all(p[k] == c[k] for k in ("graph", "model", "d", "mode"))), None)
        row = {k: c[k] for k in ("graph", "model", "d", "mode", "compact", "reorder")}
        if c["status"] != OK:
            row["ms"] = c["status"]
            rows.append(row)
            continue
        row.update(ms=c["median_s"] * 1e3, peak_mb=c["peak_bytes"] / MB, gflop=c["estimated_gflop"],
                   e_over_u=c["num_edges"] / max(c["usrc"], 1))
        if base and base["status"] == OK:
            row["flop_cut"] = base["estimated_gflop"] / max(c["estimated_gflop"], 1e-12)
            row["mem_cut"] = base["peak_bytes"] / max(c["peak_bytes"], 1)
        for p in same:
            if p["status"] == OK:
                row[f"x_{p['system']}"] = p["median_s"] / c["median_s"]
            else:
                row[f"x_{p['system']}"] = f"{p['system']} {p['status']}"
        rows.append(row)
    columns = {"graph": "graph", "model": "model", "d": "d", "mode": "mode", "compact": "compact",
               "reorder": "reorder", "ms": "ms", "peak_mb": "peak MB", "gflop": "est. GFLOP",
               "flop_cut": "FLOP cut vs no passes", "mem_cut": "memory cut", "e_over_u": "|E|/|U_src|",
               "x_eager": "x eager", "x_pyg": "x PyG"}
    print_table(rows, columns, title=f"pass ablation ({args.backend} backend)", markdown=args.markdown)
    env = {**environment("torch", "torch-geometric"),
           "settings": {k: v for k, v in vars(args).items() if k not in ("output", "markdown")}}
    print()
    print_environment(env)
    payload = {**env, "cells": cells, "rows": rows}
    print(f"wrote {write_json(args.output, payload)}")
    return payload


if __name__ == "__main__":
    main()

"""One DGL benchmark cell, run by ``benchmarks/ogb_rgnn.py`` inside the DGL interpreter.

DGL 2.1 loads only with torch <= 2.2.1, so it lives in its own virtual environment (``make
dgl-env``) and this script must not import graphcore: it reads the graph ``.npz`` with numpy (the
format of ``datasets/README``), adds one inverse relation per relation as graphcore does (relations renamed ``r0, r1, ...``), builds
DGL's layers (Hector's baselines) and prints one JSON line with the median step time and the
peak extra resident memory.

* RGCN: ``RelGraphConv`` on the homogeneous graph, edges presorted by relation, mean
  normalisation per relation (``norm = 1 / |N_r(v)|``) as graphcore's ``RGCN(aggr="mean")``.
* RGAT: ``HeteroGraphConv({rel: GATConv})`` summing relations (Hector's RGAT baseline).
* HGT: ``HGTConv`` on the homogeneous graph, presorted.

    .venv-dgl/bin/python -m benchmarks.dgl_runner --graph path.npz --model rgat --d 64 --mode train
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from benchmarks.common import median_time, peak_rss_during


def read_graph(path: str):
    import dgl

    with np.load(path, allow_pickle=False) as z:
        num_nodes = {k.split("__", 1)[1]: int(z[k]) for k in z.files if k.startswith("num_nodes__")}
        edges = {}
        for key in z.files:
            if key.startswith("edge_index__"):
                s, r, d = key.split("__")[1:]
                index = z[key].astype(np.int64)
                edges[(s, r, d)] = (torch.from_numpy(index[0]), torch.from_numpy(index[1]))
    for (s, r, d), (u, v) in list(edges.items()):
        edges[(d, "rev_" + r, s)] = (v, u)
    # relations renamed r0, r1, ...: unique per canonical type and valid module names
    renamed = {(s, f"r{i}", d): uv for i, ((s, _, d), uv) in enumerate(edges.items())}
    return dgl.heterograph(renamed, num_nodes_dict=num_nodes)


def build(model: str, hg, d: int, heads: int):
    import dgl
    from dgl.nn.pytorch import GATConv, HeteroGraphConv, HGTConv, RelGraphConv

    if model == "rgat":
        layer = HeteroGraphConv({rel: GATConv(d, d // heads, heads, allow_zero_in_degree=True)
                                 for rel in hg.etypes}, aggregate="sum")
        x = {nt: torch.randn(hg.num_nodes(nt), d) for nt in hg.ntypes}
        return layer, x, lambda inputs: layer(hg, inputs)
    g = dgl.to_homogeneous(hg)
    etype, ntype = g.edata[dgl.ETYPE], g.ndata[dgl.NTYPE]
    x = torch.randn(g.num_nodes(), d)
    if model == "rgcn":
        layer = RelGraphConv(d, d, len(hg.canonical_etypes), self_loop=True)
        _, dst = g.edges()
        key = dst * len(hg.canonical_etypes) + etype
        _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
        norm = (1.0 / counts[inverse].float()).view(-1, 1)
        return layer, x, lambda inputs: layer(g, inputs, etype, norm, presorted=True)
    layer = HGTConv(d, d // heads, heads, len(hg.ntypes), len(hg.canonical_etypes), dropout=0.0)
    return layer, x, lambda inputs: layer(g, inputs, ntype, etype, presorted=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", required=True, help="graph .npz in graphcore's format")
    parser.add_argument("--model", choices=("rgcn", "rgat", "hgt"), required=True)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--mode", choices=("infer", "train"), default="train")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds for the timed runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hg = read_graph(args.graph)
    layer, x, run = build(args.model, hg, args.d, args.heads)
    inputs = x if not isinstance(x, dict) else dict(x)
    if args.mode == "train":
        for t in (inputs.values() if isinstance(inputs, dict) else [inputs]):
            t.requires_grad_()

    def step():
        if args.mode == "infer":
            with torch.no_grad():
                run(inputs)
            return
        layer.zero_grad(set_to_none=True)
        out = run(inputs)
        values = out.values() if isinstance(out, dict) else [out]
        torch.stack([v.sum() for v in values]).sum().backward()

    _, peak = peak_rss_during(step)
    timing = median_time(step, repeats=args.repeats, warmup=max(args.warmup - 1, 0), budget_s=args.budget)
    import dgl

    json.dump({"median_s": timing.median, "runs_s": list(timing.runs), "peak_bytes": peak,
               "dgl": dgl.__version__, "torch": torch.__version__}, sys.stdout)
    print()


if __name__ == "__main__":
    main()

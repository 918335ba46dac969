"""Mini-batch training of 2-layer RGNNs on sampled batches: graphcore compiled and eager, PyG and DGL.

Setting (the issue's): fan-out ``[10, 10]`` per relation, batch of 1024 seeds of the target
type, hidden 64, random ``N(0, 1)`` 64-d input features on every node type (the same inputs for
every system, so the comparison is of the relational layers), cross-entropy on the seeds, Adam.
Every system trains on the *same* batches, sampled once by
:class:`graphcore.sampling.HeteroNeighborSampler`; per batch the run reports separately:

* ``sample ms``: the sampler alone (CSR built once, before);
* ``build ms``: the batch graph (:func:`graphcore.sampling.sampled_graph`, features gathered)
  and the layouts of it and of its trimmed graphs (sorted edges, CSR, compact maps: what the
  compiled kernels read);
* ``train ms``: forward, backward and optimiser step on the built batch (median over batches).

Layer ``l`` of ``L`` runs on the batch cut to ``L - l`` hops (``SampledGraph.trimmed``, PyG's
``trim_to_layer``), for graphcore and PyG alike, so the last layer computes the seeds alone, as
DGL's blocks do; ``--no-trim`` runs every layer on the whole batch. graphcore's layers are
compiled one by one: one plan per layer serves every batch and every cut.

``seeds/s`` is ``batch / (sample + build + train)`` (PyG's rows count their own per-batch input
preparation in ``train``); ``epoch s`` scales that to all training seeds. With ``--processes 1
2`` the compiled system (and DGL) also runs end to end (sampling inside the loop) in 1 process with
``--threads`` threads and in 2 DDP processes (gloo) with ``--threads // 2`` each, every rank
sampling its half of the seeds.

``dgl`` is DGL's own pipeline (``benchmarks/dgl_minibatch_runner.py``, run by ``.venv-dgl``'s
interpreter: ``make dgl-env``): ``dgl.dataloading.NeighborSampler`` with the same fan-out and
``DataLoader`` over the same seeds in the same order, on the same graph, features and labels
(written once to an ``.npz``), and DGL's layers (``RelGraphConv``, ``HeteroGraphConv`` of
``GATConv``, ``HGTConv``). It samples its own batches, so its ``sample ms`` is DGL's sampler with
its block building and feature gathering (no separate build column) and its ``nodes/edges``
are its own batches' medians; its ``seeds/s`` is ``batch / (sample + train)``. Without
``.venv-dgl`` the row says so. The fastest peer is the faster of PyG and DGL. With
``--processes`` DGL runs end to end too, in 1 and 2 DDP processes (its loader's ``use_ddp``).

    python -m benchmarks.rgnn_minibatch --graphs mag_like:0.1 hector_mag_0.1 --steps 8
    python -m benchmarks.rgnn_minibatch                    # mag_like:1.0 and hector_mag_0.1
    python -m benchmarks.rgnn_minibatch --graphs mag_like:1.0 --threads 2 --steps 8 --processes 1 2
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import add_common_arguments, environment, print_environment, print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
DGL_PYTHON = ROOT / ".venv-dgl" / "bin" / "python"
MODELS = ("rgcn", "rgat", "hgt")
SYSTEMS = ("compiled", "eager", "pyg", "dgl")
UNLABELLED_CLASSES = 349  # ogbn-mag's venues, for graphs without labels
PYG_MAX_BYTES = 2 * 2**30  # PyG's RGATConv materialises an [E, d, d] weight per layer; skip above this


def load(name: str, dim: int):
    """The graph (inverse relations added, random features on every type), its target type,
    labels, training seeds and class count (random labels where the graph has none)."""
    from graphcore.datasets.hetero import load as load_dataset
    from graphcore.graph import HeteroGraph

    data = load_dataset(name)
    graph = data.graph.add_reverse_edges()
    gen = torch.Generator().manual_seed(0)
    x = {t: torch.randn(graph.num_nodes(t), dim, generator=gen) for t in graph.node_types}
    graph = HeteroGraph(graph.num_nodes_dict, graph.edge_index_dict, x)
    if data.labels is None:  # an unlabelled graph (hector_mag_0.1): random labels on its largest type, all seeds
        target = "paper" if "paper" in graph.node_types else max(graph.node_types, key=graph.num_nodes)
        labels = torch.randint(UNLABELLED_CLASSES, (graph.num_nodes(target),), generator=gen)
        return graph, target, labels, torch.arange(graph.num_nodes(target)), UNLABELLED_CLASSES
    labels = data.labels.clamp(min=0)
    return graph, data.target, labels, data.train_idx, int(labels.max()) + 1


def graphcore_stack(model: str, graph, dim: int, classes: int, heads: int):
    from graphcore import nn as gnn
    from graphcore.tasks.rgnn.model import RelationalStack

    R, T = graph.num_relations, graph.num_node_types
    make = {"rgcn": lambda i, o, h: gnn.RGCN(i, o, R, aggr="mean"),
            "rgat": lambda i, o, h: gnn.RGAT(i, o // h, R, heads=h),
            "hgt": lambda i, o, h: gnn.HGT(i, o, T, R, heads=h)}[model]
    return RelationalStack([make(dim, dim, heads), make(dim, classes, 1)])


class PyGStack(torch.nn.Module):
    """Two PyG layers (``RGCNConv``, ``RGATConv`` or ``HGTConv``) with a ReLU between them."""

    def __init__(self, model: str, graph, dim: int, classes: int, heads: int):
        super().__init__()
        from torch_geometric.nn import HGTConv, RGATConv, RGCNConv

        R, meta = graph.num_relations, (list(graph.node_types), list(graph.relations))
        self.model = model
        make = {"rgcn": lambda i, o, h: RGCNConv(i, o, R, aggr="mean"),
                "rgat": lambda i, o, h: RGATConv(i, o // h, R, heads=h),
                "hgt": lambda i, o, h: HGTConv(i, o, meta, heads=h)}[model]
        self.layers = torch.nn.ModuleList([make(dim, dim, heads), make(dim, classes, 1)])

    def layer(self, i: int, g, x):
        """Layer ``i`` on the batch graph ``g`` (stacked rows in, stacked rows out), in PyG's
        calling convention: per-type dicts for ``HGTConv``, homogeneous ids for the others."""
        layer = self.layers[i]
        if self.model == "hgt":
            out = layer(g.unstack(x), g.edge_index_dict)
            return g.stack({t: (v if v is not None else torch.zeros(g.num_nodes(t), layer.out_channels))
                            for t, v in out.items()})
        offsets = {t: g.node_offset(t) for t in g.node_types}  # homogeneous ids: the per-batch input PyG needs
        edges = [g.edge_index(r) + torch.tensor([[offsets[r[0]]], [offsets[r[2]]]]) for r in g.relations]
        edge_type = torch.cat([torch.full((e.size(1),), i) for i, e in enumerate(edges)])
        return layer(x, torch.cat(edges, 1), edge_type)


def seed_outputs(layers, g, x, trim: bool):
    """The seeds' outputs of 2 layers with a ReLU between (``layers``: callables ``(graph, x)``).
    ``trim``: layer ``l`` of ``L`` on ``g.trimmed(L - l)`` (PyG's ``trim_to_layer``), so the last
    layer runs for the seeds' first hop; otherwise every layer on the whole batch."""
    if trim:
        return g.seed_outputs(layers, x, torch.relu)
    h = x
    for i, layer in enumerate(layers):
        h = layer(g, h)
        if i < len(layers) - 1:
            h = h.relu()
    return h.index_select(0, g.seed_index)


def warm_layout(g) -> None:
    """Build the layout parts the compiled kernels read (what ``compiled(g, x)`` would build)."""
    layout = g.layout
    for name in ("src", "dst", "etype", "rel_ptr", "node_offsets", "node_type", "dst_ptr", "dst_etype_count"):
        getattr(layout, name)
    layout.unique_src  # noqa: B018
    layout.unique_dst  # noqa: B018


def training_order(seeds: torch.Tensor) -> torch.Tensor:
    """The seeds in the (fixed, shuffled) order every system's batches take them."""
    return seeds[torch.randperm(seeds.numel(), generator=torch.Generator().manual_seed(0))]


def sample_batches(graph, target: str, seeds: torch.Tensor, fanout: list[int], batch: int, count: int) -> dict:
    """``count`` batches sampled and built once, with the per-batch times of each part."""
    from graphcore.sampling import HeteroNeighborSampler, sampled_graph

    t0 = time.perf_counter()
    sampler = HeteroNeighborSampler(graph, fanout, seed=0)
    csr_s = time.perf_counter() - t0
    order = training_order(seeds)
    batches, sample_s, build_s = [], [], []
    for i in range(count):
        ids = order[i * batch:(i + 1) * batch]
        t0 = time.perf_counter()
        node, row, col, edge, per_hop, edges_per_hop = sampler.sample(target, ids)
        t1 = time.perf_counter()
        g = sampled_graph(graph, node, row, col, edge, input_type=target, batch_size=ids.numel(),
                          num_sampled_nodes=per_hop, num_sampled_edges=edges_per_hop)
        for hops in range(len(fanout), 0, -1):  # the layouts of the trimmed graphs the layers run on
            warm_layout(g.trimmed(hops))
        t2 = time.perf_counter()
        batches.append(g)
        sample_s.append(t1 - t0)
        build_s.append(t2 - t1)
    return {"batches": batches, "sample_s": statistics.median(sample_s), "build_s": statistics.median(build_s),
            "csr_s": csr_s, "edges": statistics.median(g.num_edges() for g in batches),
            "nodes": statistics.median(g.num_nodes() for g in batches)}


class SeedOutputs(torch.nn.Module):
    """:func:`seed_outputs` of ``net``'s layers as a module whose parameters are ``net``'s (what
    DDP wraps; the compiled layers share those parameters and stay out of the module tree)."""

    def __init__(self, net, layers: list, trim: bool):
        super().__init__()
        self.net, self.trim = net, trim
        self.__dict__["runners"] = layers

    def forward(self, g, x):
        return seed_outputs(self.runners, g, x, self.trim)


def stack_layers(system: str, net) -> list:
    """The 2 layers of ``net`` as callables ``(graph, x)``: compiled one by one for ``compiled``
    (each layer's plan serves every batch and every trimmed graph of it)."""
    import graphcore as gc

    if system == "pyg":
        return [functools.partial(net.layer, i) for i in range(len(net.layers))]
    return [gc.compile(layer, backend="cpu") if system == "compiled" else layer for layer in net.layers]


def train_cell(system: str, model: str, batches: list, labels: torch.Tensor, dim: int, classes: int, heads: int,
               warmup: int, trim: bool = True) -> dict:
    """Median train-step time of one system on the prepared batches."""
    graph0 = batches[0]
    torch.manual_seed(0)
    if system == "pyg":
        net = PyGStack(model, graph0, dim, classes, heads)
        if model == "rgat" and max(g.num_edges() for g in batches) * dim * dim * 4 > PYG_MAX_BYTES:
            return {"status": "skipped: RGATConv materialises an [E, d, d] weight tensor (> 2 GiB per layer)"}
    else:
        net = graphcore_stack(model, graph0, dim, classes, heads)
    layers = stack_layers(system, net)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    times, first_s = [], None
    for i, g in enumerate(batches):
        x = torch.cat([g.x[t] for t in g.node_types])
        y = labels[g.n_id[g.input_type][:g.batch_size]]
        t0 = time.perf_counter()
        out = seed_outputs(layers, g, x, trim)
        loss = F.cross_entropy(out, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        seconds = time.perf_counter() - t0
        if i == 0:
            first_s = seconds
        if i >= warmup:
            times.append(seconds)
    return {"status": "ok", "train_s": statistics.median(times), "first_s": first_s, "loss": loss.item()}


def write_dgl_input(path: Path, graph, target: str, labels: torch.Tensor, seeds: torch.Tensor, classes: int) -> None:
    """The graph, features, labels and ordered seeds for ``benchmarks/dgl_minibatch_runner.py``
    (its :func:`read_input` documents the keys): the DGL interpreter cannot import graphcore."""
    import numpy as np

    meta = {"node_types": list(graph.node_types), "relations": [list(r) for r in graph.relations],
            "target": target, "classes": classes}
    arrays = {"meta": np.array(json.dumps(meta)), "labels": labels.numpy(), "seeds": seeds.numpy(),
              "num_nodes": np.array([graph.num_nodes(t) for t in graph.node_types], dtype=np.int64)}
    arrays.update({f"edges_{i}": graph.edge_index(r).numpy() for i, r in enumerate(graph.relations)})
    arrays.update({f"x_{i}": graph.x[t].numpy() for i, t in enumerate(graph.node_types)})
    np.savez(path, **arrays)


def dgl_cell(path: Path, model: str, args: argparse.Namespace, processes: int = 1) -> dict:
    """DGL's sampler, loader and layers on the graph at ``path``, in ``processes`` DDP processes
    (one subprocess in ``.venv-dgl``, which spawns the others)."""
    command = [str(DGL_PYTHON), "-m", "benchmarks.dgl_minibatch_runner", "--input", str(path), "--model", model,
               "--fanout", *map(str, args.fanout), "--batch-size", str(args.batch_size), "--hidden", str(args.hidden),
               "--heads", str(args.heads), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads), "--processes", str(processes)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.dgl_timeout, cwd=ROOT,
                              env={**os.environ, "DGLBACKEND": "pytorch"})
    except subprocess.TimeoutExpired:
        return {"status": f"timeout: DGL cell killed after {args.dgl_timeout:.0f} s"}
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "Error" in line] or [f"exit code {done.returncode}"]
        return {"status": f"failed: {lines[-1].strip()[:160]}"}
    return {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def ddp_worker(rank: int, world: int, args: argparse.Namespace, graph_name: str, model: str, queue) -> None:
    """One DDP rank: end-to-end compiled training on its share of the seeds (sampling included)."""
    import torch.distributed as dist

    from graphcore.sampling import NeighborLoader

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.set_num_threads(max(1, args.threads // world))
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    graph, target, labels, seeds, classes = load(graph_name, args.hidden)
    seeds = training_order(seeds)
    steps = args.warmup + args.steps
    mine = seeds[:steps * args.batch_size * world][rank::world]
    loader = NeighborLoader(graph, args.fanout, input_nodes=(target, mine), batch_size=args.batch_size, seed=0)
    torch.manual_seed(0)
    net = graphcore_stack(model, graph, args.hidden, classes, args.heads)
    run = SeedOutputs(net, stack_layers("compiled", net), args.trim)
    wrapped = torch.nn.parallel.DistributedDataParallel(run) if world > 1 else run
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    sample_s, train_s = [], []
    iterator = iter(loader)
    for i in range(steps):
        t0 = time.perf_counter()
        g = next(iterator)
        t1 = time.perf_counter()
        x = torch.cat([g.x[t] for t in g.node_types])
        out = wrapped(g, x)
        loss = F.cross_entropy(out, labels[g.n_id[target][:g.batch_size]])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        t2 = time.perf_counter()
        if i >= args.warmup:
            sample_s.append(t1 - t0)
            train_s.append(t2 - t1)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    queue.put({"rank": rank, "sample_s": statistics.median(sample_s), "train_s": statistics.median(train_s)})


def processes_row(args, graph_name: str, model: str, world: int) -> dict:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=ddp_worker, args=(r, world, args, graph_name, model, queue)) for r in range(world)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=3600) for _ in workers]
    for w in workers:
        w.join()
    sample = statistics.mean(r["sample_s"] for r in results)
    train = statistics.mean(r["train_s"] for r in results)
    return {"graph": graph_name, "model": model, "system": "compiled", "processes": world,
            "threads_each": max(1, args.threads // world), "sample_ms": 1e3 * sample, "train_ms": 1e3 * train,
            "seeds_per_s": world * args.batch_size / (sample + train), "status": "ok"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", nargs="+", default=["mag_like:1.0", "hector_mag_0.1"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--fanout", type=int, nargs="+", default=[10, 10])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="timed batches per cell (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first batches (the compiled build is one)")
    parser.add_argument("--processes", type=int, nargs="*", default=[], help="end-to-end runs of compiled and DGL, e.g. 1 2")
    parser.add_argument("--no-trim", dest="trim", action="store_false",
                        help="run every layer on the whole batch (default: layer l of L on the batch cut to L - l "
                             "hops, PyG's trim_to_layer, for graphcore and PyG alike; DGL's blocks do the same)")
    parser.add_argument("--dgl-timeout", type=float, default=1800.0, help="seconds per DGL cell before it is killed")
    add_common_arguments(parser, "rgnn_minibatch.json")
    parser.set_defaults(threads=2)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, batch_rows, process_rows = [], [], []
    scratch = tempfile.TemporaryDirectory(prefix="rgnn_minibatch_")
    for name in args.graphs:
        graph, target, labels, seeds, classes = load(name, args.hidden)
        dgl_input = None
        if "dgl" in args.systems and DGL_PYTHON.exists():
            dgl_input = Path(scratch.name) / "graph.npz"
            needed = (args.warmup + args.steps) * args.batch_size * max([1, *args.processes])
            write_dgl_input(dgl_input, graph, target, labels, training_order(seeds)[:needed], classes)
        prepared = sample_batches(graph, target, seeds, args.fanout, args.batch_size, args.warmup + args.steps)
        per_epoch = -(-seeds.numel() // args.batch_size)
        batch_rows.append({"graph": name, "train_seeds": int(seeds.numel()), "batch_nodes": prepared["nodes"],
                           "batch_edges": prepared["edges"], "csr_s": prepared["csr_s"],
                           "sample_ms": 1e3 * prepared["sample_s"], "build_ms": 1e3 * prepared["build_s"]})
        for model in args.models:
            for system in args.systems:
                row = {"graph": name, "model": model, "system": system}
                if system == "dgl" and dgl_input is None:
                    row["status"] = f"not run: DGL's sampler and layers need {DGL_PYTHON} (make dgl-env)"
                elif system == "dgl":
                    row.update(dgl_cell(dgl_input, model, args))
                else:
                    try:
                        row.update(train_cell(system, model, prepared["batches"], labels, args.hidden, classes,
                                              args.heads, args.warmup, args.trim))
                    except (RuntimeError, MemoryError) as err:  # a peer that cannot run this batch size
                        row["status"] = f"failed: {str(err).splitlines()[0][:120]}"
                if row.get("status") == "ok" and system == "dgl":  # its own sampler; blocks built while sampling
                    step = row["sample_s"] + row["train_s"]
                    row.update(sample_ms=1e3 * row["sample_s"], train_ms=1e3 * row["train_s"], step_ms=1e3 * step,
                               seeds_per_s=args.batch_size / step, epoch_s=per_epoch * step)
                elif row.get("status") == "ok":
                    step = prepared["sample_s"] + (prepared["build_s"] if system != "pyg" else 0.0) + row["train_s"]
                    row.update(sample_ms=1e3 * prepared["sample_s"], train_ms=1e3 * row["train_s"], step_ms=1e3 * step,
                               seeds_per_s=args.batch_size / step,
                               epoch_s=per_epoch * step, build_share=prepared["build_s"] / step if system != "pyg" else None)
                rows.append(row)
                print_table([row], ["graph", "model", "system", "sample_ms", "train_ms", "seeds_per_s", "status"])
            for world in args.processes:
                if "compiled" in args.systems:
                    process_rows.append(processes_row(args, name, model, world))
                if dgl_input is not None:
                    cell = dgl_cell(dgl_input, model, args, world)
                    process_rows.append({"graph": name, "model": model, "system": "dgl", "processes": world,
                                         "threads_each": max(1, args.threads // world), "status": cell["status"]})
                    if cell["status"] == "ok":
                        process_rows[-1].update(sample_ms=1e3 * cell["sample_s"], train_ms=1e3 * cell["train_s"],
                                                seeds_per_s=world * args.batch_size / (cell["sample_s"] + cell["train_s"]))
    scratch.cleanup()
    for row in rows:
        peers = [r["seeds_per_s"] for r in rows if r["graph"] == row["graph"] and r["model"] == row["model"]
                 and r["system"] in ("pyg", "dgl") and r.get("seeds_per_s")]
        if row["system"] == "compiled" and row.get("seeds_per_s") and peers:
            row["x_fastest_peer"] = row["seeds_per_s"] / max(peers)
        eager = [r for r in rows if r["graph"] == row["graph"] and r["model"] == row["model"] and r["system"] == "eager"
                 and r.get("seeds_per_s")]
        if row["system"] == "compiled" and row.get("seeds_per_s") and eager:
            row["x_eager"] = row["seeds_per_s"] / eager[0]["seeds_per_s"]
    print_table(batch_rows, {"graph": "graph", "train_seeds": "train seeds", "batch_nodes": "nodes/batch",
                             "batch_edges": "edges/batch", "csr_s": "CSR s (once)", "sample_ms": "sample ms",
                             "build_ms": "build+layout ms"}, title="batches (median)", markdown=args.markdown)
    print_table(rows, {"graph": "graph", "model": "model", "system": "system", "sample_ms": "sample ms", "train_ms": "train ms",
                       "step_ms": "step ms", "build_share": "build share", "seeds_per_s": "seeds/s",
                       "epoch_s": "epoch s", "x_fastest_peer": "x fastest peer", "x_eager": "x eager",
                       "status": "status"}, title="training steps", markdown=args.markdown)
    if process_rows:
        print_table(process_rows, ["graph", "model", "system", "processes", "threads_each", "sample_ms", "train_ms",
                                   "seeds_per_s", "status"],
                    title="end to end (sampling in the loop), 1 vs 2 processes", markdown=args.markdown)
    env = environment("torch", "torch-geometric", "lightning")
    print()
    print_environment(env)
    payload = {**env, "settings": vars(args), "batches": batch_rows, "cells": rows, "processes": process_rows}
    print(f"\nwrote {write_json(args.output, payload)}")
    return payload


if __name__ == "__main__":
    main()

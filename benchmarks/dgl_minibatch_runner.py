"""DGL's row of ``benchmarks/rgnn_minibatch.py``: its own sampler, loader and layers, in ``.venv-dgl``.

DGL 2.1 loads only with torch <= 2.2.1, so this runs in its own interpreter (``make dgl-env``)
and imports only numpy, torch and dgl (not graphcore, not ``benchmarks.common``). The benchmark
writes the graph it trains the other systems on to an ``.npz`` (inverse relations already added,
the random ``N(0, 1)`` features of every node type, the labels and the training seeds in the
benchmark's shuffled order; see :func:`read_input`), so DGL sees the same inputs; it samples its
own batches of those seeds with ``dgl.dataloading.NeighborSampler`` (``fanout`` in-edges per
relation and hop, without replacement) and ``dgl.dataloading.DataLoader`` (features gathered by
the sampler, ``prefetch_node_feats``). Two layers, as the other rows:

* RGCN: ``RelGraphConv`` (mean per relation, ``norm = 1 / |N_r(v)|``, self loop), as
  ``benchmarks/dgl_runner.py``'s full-graph peer;
* RGAT: ``HeteroGraphConv({rel: GATConv})`` summing relations (Hector's RGAT baseline);
* HGT: ``HGTConv``.

``RelGraphConv`` and ``HGTConv`` take a homogeneous graph: each layer's heterogeneous block
becomes a homogeneous block (:func:`homogeneous_block`) whose destination nodes come first, as
DGL's blocks need, so that conversion is counted in ``train``, like PyG's per-batch input
preparation in its row. One JSON line on stdout: median ``sample_s`` (the loader's ``next``:
sampling, blocks and feature gathering) and ``train_s`` (forward, backward, Adam step); with
``--processes 2``, two DDP processes (gloo, ``threads // 2`` threads each, DGL's loader with
``use_ddp=True`` giving each its share of the seeds), their medians averaged.

    .venv-dgl/bin/python -m benchmarks.dgl_minibatch_runner --input batches.npz --model rgat
"""
from __future__ import annotations

import argparse
import json
import os
import queue as queues
import statistics
import sys
import time

os.environ.setdefault("DGLBACKEND", "pytorch")

import dgl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from dgl.nn.pytorch import GATConv, HeteroGraphConv, HGTConv, RelGraphConv  # noqa: E402


def read_input(path: str) -> dict:
    """The benchmark's ``.npz``: ``meta`` (JSON: ``node_types``, ``relations`` as ``[src, rel,
    dst]``, ``target``, ``classes``), ``num_nodes`` per type, ``edges_<i>`` ``[2, E]`` per relation,
    ``x_<i>`` per node type, ``labels`` of the target type and ``seeds`` in training order.
    Relations are renamed ``r0, r1, ...`` (unique, valid module names)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        counts = {t: int(n) for t, n in zip(meta["node_types"], z["num_nodes"])}
        edges = {}
        for i, (s, _, d) in enumerate(meta["relations"]):
            index = torch.from_numpy(z[f"edges_{i}"])
            edges[(s, f"r{i}", d)] = (index[0], index[1])
        hg = dgl.heterograph(edges, num_nodes_dict=counts)
        for i, t in enumerate(meta["node_types"]):
            hg.nodes[t].data["x"] = torch.from_numpy(z[f"x_{i}"])
        return {"graph": hg, "target": meta["target"], "classes": int(meta["classes"]),
                "labels": torch.from_numpy(z["labels"]), "seeds": torch.from_numpy(z["seeds"])}


def homogeneous_block(block, ntypes: list[str], canonical: list[tuple[str, str, str]]):
    """A heterogeneous block as a homogeneous one: ``(block, src node type ids, edge type ids)``.

    Source nodes are every type's destination nodes (type by type), then every type's other
    source nodes, so the destination nodes are a prefix, which ``RelGraphConv``'s self loop and
    ``HGTConv``'s skip connection read. Edges are sorted by relation (``presorted`` for
    ``RelGraphConv``). :func:`stack_sources` orders features the same way.
    """
    n_dst = [block.num_dst_nodes(t) for t in ntypes]
    n_src = [block.num_src_nodes(t) for t in ntypes]
    dst_offset = np.concatenate([[0], np.cumsum(n_dst)])
    rest_offset = dst_offset[-1] + np.concatenate([[0], np.cumsum([s - d for s, d in zip(n_src, n_dst)])])
    index = {t: i for i, t in enumerate(ntypes)}
    us, vs, types = [], [], []
    for r, relation in enumerate(canonical):
        u, v = block.edges(etype=relation)
        i, j = index[relation[0]], index[relation[2]]
        us.append(torch.where(u < n_dst[i], u + int(dst_offset[i]), u - n_dst[i] + int(rest_offset[i])))
        vs.append(v + int(dst_offset[j]))
        types.append(torch.full((u.numel(),), r, dtype=torch.int64))
    num_dst, num_src = int(dst_offset[-1]), int(rest_offset[-1])
    homogeneous = dgl.create_block((torch.cat(us), torch.cat(vs)), num_src_nodes=num_src, num_dst_nodes=num_dst)
    src_type = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(n_dst)] +
                         [torch.full((s - d,), i, dtype=torch.int64) for i, (s, d) in enumerate(zip(n_src, n_dst))])
    return homogeneous, src_type, torch.cat(types)


def stack_sources(h: dict, block, ntypes: list[str]) -> torch.Tensor:
    """Per-type source features in :func:`homogeneous_block`'s node order."""
    dst = [h[t][:block.num_dst_nodes(t)] for t in ntypes]
    rest = [h[t][block.num_dst_nodes(t):] for t in ntypes]
    return torch.cat(dst + rest)


def split_destinations(out: torch.Tensor, block, ntypes: list[str]) -> dict:
    """A homogeneous block's ``[N_dst, d]`` output back into per-type tensors."""
    return dict(zip(ntypes, torch.split(out, [block.num_dst_nodes(t) for t in ntypes])))


class DGLStack(torch.nn.Module):
    """Two DGL layers with a ReLU between them, run on the loader's blocks (per-type features)."""

    def __init__(self, model: str, hg, dim: int, classes: int, heads: int):
        super().__init__()
        self.model, self.ntypes, self.canonical = model, list(hg.ntypes), list(hg.canonical_etypes)
        R, T = len(self.canonical), len(self.ntypes)
        shapes = [(dim, dim, heads), (dim, classes, 1)]
        if model == "rgcn":
            layers = [RelGraphConv(i, o, R, self_loop=True) for i, o, _ in shapes]
        elif model == "rgat":
            layers = [HeteroGraphConv({r: GATConv(i, o // h, h, allow_zero_in_degree=True) for _, r, _ in self.canonical},
                                      aggregate="sum") for i, o, h in shapes]
        else:
            layers = [HGTConv(i, o // h, h, T, R, dropout=0.0) for i, o, h in shapes]
        self.layers = torch.nn.ModuleList(layers)

    def layer(self, layer, block, h: dict) -> dict:
        if self.model == "rgat":
            out = layer(block, h)  # a type none of whose relations has an edge in the block is left out
            gat = next(iter(layer.mods.values()))
            width = gat._num_heads * gat._out_feats
            return {t: out[t].flatten(1) if t in out else h[t].new_zeros(block.num_dst_nodes(t), width)
                    for t in self.ntypes}
        homogeneous, src_type, etype = homogeneous_block(block, self.ntypes, self.canonical)
        x = stack_sources(h, block, self.ntypes)
        if self.model == "rgcn":
            dst = homogeneous.edges()[1]
            _, inverse, counts = torch.unique(dst * len(self.canonical) + etype, return_inverse=True, return_counts=True)
            norm = (1.0 / counts[inverse].float()).view(-1, 1)
            out = layer(homogeneous, x, etype, norm, presorted=True)
        else:  # nodes are not sorted by type (destinations first), so not presorted
            out = layer(homogeneous, x, src_type, etype)
        return split_destinations(out, block, self.ntypes)

    def forward(self, blocks: list, h: dict) -> dict:
        for i, (layer, block) in enumerate(zip(self.layers, blocks)):
            h = self.layer(layer, block, h)
            if i < len(self.layers) - 1:
                h = {t: v.relu() for t, v in h.items()}
        return h


def train(rank: int, world: int, args: argparse.Namespace, queue) -> None:
    """One process: ``warmup + steps`` batches of DGL's loader (its share of the seeds when
    ``world > 1``, gradients all-reduced by DDP over gloo); its medians go to ``queue``."""
    torch.set_num_threads(max(1, args.threads // world))
    torch.manual_seed(0)
    if world > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29534")
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    data = read_input(args.input)
    hg, target = data["graph"], data["target"]
    # DGL lists fan-outs from the input layer to the output layer: the reverse of hops from the seeds
    sampler = dgl.dataloading.NeighborSampler(list(reversed(args.fanout)), prefetch_node_feats={t: ["x"] for t in hg.ntypes})
    seeds = data["seeds"][:(args.warmup + args.steps) * args.batch_size * world]
    loader = dgl.dataloading.DataLoader(hg, {target: seeds}, sampler, batch_size=args.batch_size, shuffle=False,
                                        drop_last=False, num_workers=0, use_ddp=world > 1)
    net = DGLStack(args.model, hg, args.hidden, data["classes"], args.heads)
    # a relation without edges in a batch leaves its GATConv unused: DDP must not wait for its gradients
    run = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True) if world > 1 else net
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    sample_s, train_s, nodes, edges, first_s = [], [], [], [], None
    iterator = iter(loader)
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        _, output_nodes, blocks = next(iterator)
        t1 = time.perf_counter()
        x = blocks[0].srcdata["x"]
        out = run(blocks, x if isinstance(x, dict) else {hg.ntypes[0]: x})[target]
        loss = F.cross_entropy(out, data["labels"][output_nodes[target]])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        t2 = time.perf_counter()
        if i == 0:
            first_s = t2 - t1
        if i >= args.warmup:
            sample_s.append(t1 - t0)
            train_s.append(t2 - t1)
            nodes.append(sum(blocks[0].num_src_nodes(t) for t in hg.ntypes))
            edges.append(sum(b.num_edges() for b in blocks))
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    queue.put({"sample_s": statistics.median(sample_s), "train_s": statistics.median(train_s), "first_s": first_s,
               "loss": loss.item(), "batch_nodes": statistics.median(nodes), "batch_edges": statistics.median(edges)})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="the .npz written by benchmarks/rgnn_minibatch.py")
    parser.add_argument("--model", choices=("rgcn", "rgat", "hgt"), required=True)
    parser.add_argument("--fanout", type=int, nargs="+", default=[10, 10], help="per hop from the seeds (PyG's order)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in all (each of P processes: threads // P)")
    parser.add_argument("--processes", type=int, default=1, help="DDP processes (gloo), each sampling its share")
    args = parser.parse_args(argv)
    if args.processes == 1:
        local = queues.SimpleQueue()
        train(0, 1, args, local)
        results = [local.get()]
    else:
        context = torch.multiprocessing.get_context("spawn")
        queue = context.SimpleQueue()
        torch.multiprocessing.start_processes(train, args=(args.processes, args, queue), nprocs=args.processes,
                                              start_method="spawn")
        results = [queue.get() for _ in range(args.processes)]
    summary = {key: statistics.mean(r[key] for r in results) for key in results[0]}
    json.dump({**summary, "processes": args.processes, "threads_each": max(1, args.threads // args.processes),
               "dgl": dgl.__version__, "torch": torch.__version__}, sys.stdout)
    print()


if __name__ == "__main__":
    main()

r"""Is one plan per schema good enough? A plan decided on the first graph against one re-decided
for every graph.

``graphcore.compile`` takes its cost-model decisions (linear reordering, compaction,
aggregate-first) once per graph *schema*, on the statistics of the first graph it sees, and
reuses the kernels for every later graph of that schema (a sampled mini-batch, an edge
subset). The alternative is to re-decide per graph, which may rebuild kernels (seconds of
g++) whenever the decision flips. This benchmark measures what re-deciding would gain: for
random edge subsets of each graph, the training step of the plan decided on the full graph
against a fresh compilation decided on the subset itself (its build excluded), and whether
the two plans differ at all.

    python -m benchmarks.plan_per_schema                      # bundled AIFB and MUTAG
    python -m benchmarks.plan_per_schema --graphs aifb mutag heco_dblp heco_acm fb15k237
"""
from __future__ import annotations

import argparse
import copy

import torch
from tqdm import tqdm

import graphcore as gc
from benchmarks.common import add_common_arguments, environment, median_time, print_environment, print_table, write_json
from graphcore.datasets.hetero import load
from graphcore.testing import edge_subset

MODELS = ("rgcn", "rgat", "hgt")


def layer(model: str, g: gc.HeteroGraph, d: int) -> torch.nn.Module:
    return {"rgcn": lambda: gc.nn.RGCN(d, d, g.num_relations, aggr="mean"),
            "rgat": lambda: gc.nn.RGAT(d, d, g.num_relations),
            "hgt": lambda: gc.nn.HGT(d, d, g.num_node_types, g.num_relations)}[model]()


def step_fn(compiled: torch.nn.Module, g: gc.HeteroGraph, x: torch.Tensor):
    def step():
        compiled(g, x).sum().backward()
    return step


def decisions(compiled: torch.nn.Module) -> list[str]:
    """The plan's decision log (what each pass did)."""
    return [f"{name}: {message}" for name, message in compiled._graphcore_last.log]


def measure(graph: str, model: str, d: int, fractions: list[float], repeats: int) -> list[dict]:
    full = load(graph).graph.add_reverse_edges()
    torch.manual_seed(0)
    base = layer(model, full, d)
    schema_plan = gc.compile(copy.deepcopy(base))
    step_fn(schema_plan, full, torch.randn(full.num_nodes(), d, requires_grad=True))()  # decide on the full graph
    decided_on_full = decisions(schema_plan)
    rows = []
    for fraction in fractions:
        sub = edge_subset(full, fraction, seed=int(fraction * 1000))
        x = torch.randn(sub.num_nodes(), d, requires_grad=True)
        kept = median_time(step_fn(schema_plan, sub, x), repeats=repeats).median
        own_plan = gc.compile(copy.deepcopy(base))
        step_fn(own_plan, sub, x)()  # decide (and build, untimed) on this subgraph
        own = median_time(step_fn(own_plan, sub, x), repeats=repeats).median
        rows.append({"graph": graph, "model": model, "fraction": fraction, "edges": sub.num_edges(),
                     "same_plan": decisions(own_plan) == decided_on_full,
                     "schema_plan_ms": kept * 1e3, "own_plan_ms": own * 1e3, "ratio": kept / own})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--graphs", nargs="+", default=["aifb", "mutag"],
                        help="graph names (datasets/data or ../shared/datasets/hetero)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.05, 0.2, 0.5],
                        help="edge fractions of the subgraphs")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    add_common_arguments(parser, "plan_per_schema.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = environment("torch")
    print_environment(env)
    rows = []
    for graph in tqdm(args.graphs, desc="graphs"):
        for model in args.models:
            rows += measure(graph, model, args.dim, args.fractions, args.repeats)
    print_table(rows, {"graph": "graph", "model": "model", "fraction": "edges kept", "edges": "|E|",
                       "same_plan": "same decisions", "schema_plan_ms": "schema plan ms",
                       "own_plan_ms": "own plan ms", "ratio": "schema / own"},
                title=f"training step, d = {args.dim}: plan decided on the full graph vs on each subgraph (median)",
                markdown=args.markdown)
    result = {"environment": env, "settings": vars(args), "rows": rows}
    print("wrote", write_json(args.output, result))
    return result


if __name__ == "__main__":
    main()

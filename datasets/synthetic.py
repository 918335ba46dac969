r"""Synthetic heterogeneous graphs with the schema and counts of real ones, at any scale.

``mag_like`` has ogbn-mag's schema and published counts (1,939,743 nodes: paper 736,389,
author 1,134,649, institution 8,740, field_of_study 59,965; 21,111,007 edges: writes 7,145,660,
cites 5,416,271, has_topic 7,505,078, affiliated_with 1,043,998), so the large-graph recipe runs
here without the 1.2 GB download. Degrees are Zipf-like, as in real citation and authorship
graphs: each endpoint of an edge is drawn with probability

.. math::
    P(v) \propto \operatorname{rank}(v)^{-a}, \qquad a = 0.8,

where ranks are a random permutation of the type's nodes (the hubs are not the low ids). A
graph is reproducible from ``(schema, scale, seed)``: every draw comes from one seeded
:class:`torch.Generator`. Labels (349 venue classes on ``paper``, as ogbn-mag) and an 80/10/10
split are random: the graph is for measuring speed and memory, not accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from graphcore.codegen.errors import GraphError
from graphcore.graph import HeteroGraph, Relation


@dataclass(frozen=True)
class Schema:
    """Node types with counts, relations with edge counts, and the labelled type."""

    num_nodes: dict[str, int]
    num_edges: dict[Relation, int]
    target: str
    num_classes: int


SCHEMAS: dict[str, Schema] = {
    "mag_like": Schema(
        num_nodes={"paper": 736_389, "author": 1_134_649, "institution": 8_740, "field_of_study": 59_965},
        num_edges={("author", "writes", "paper"): 7_145_660, ("paper", "cites", "paper"): 5_416_271,
                   ("paper", "has_topic", "field_of_study"): 7_505_078,
                   ("author", "affiliated_with", "institution"): 1_043_998},
        target="paper", num_classes=349),
}
ZIPF_EXPONENT = 0.8


def zipf_endpoints(count: int, num_nodes: int, generator: torch.Generator, exponent: float = ZIPF_EXPONENT
                   ) -> torch.Tensor:
    """``count`` node ids in ``[0, num_nodes)`` drawn with ``P ∝ rank^-exponent`` over a random ranking
    (inverse-CDF sampling: one ``searchsorted``, so 10^7 draws take about a second)."""
    weights = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-exponent)
    cdf = torch.cumsum(weights, 0)
    cdf /= cdf[-1].clone()
    ranks = torch.searchsorted(cdf, torch.rand(count, generator=generator, dtype=torch.float64)).clamp_(max=num_nodes - 1)
    node_of_rank = torch.randperm(num_nodes, generator=generator)
    return node_of_rank[ranks]


def synthetic_graph(schema: str = "mag_like", scale: float = 1.0, seed: int = 0) -> tuple[HeteroGraph, Schema]:
    """The graph of ``schema`` with every node and edge count multiplied by ``scale`` (at least one
    node per type), Zipf-like degrees, reproducible from ``seed``.

    Raises:
        GraphError: an unknown schema, or a scale that is not positive.
    """
    if schema not in SCHEMAS:
        raise GraphError(f"unknown synthetic schema {schema!r}; known: {sorted(SCHEMAS)}")
    if not scale > 0:
        raise GraphError(f"synthetic graph scale must be > 0, got {scale}")
    spec = SCHEMAS[schema]
    generator = torch.Generator().manual_seed(seed)
    counts = {t: max(1, round(n * scale)) for t, n in spec.num_nodes.items()}
    edges = {}
    for (src, rel, dst), n in spec.num_edges.items():
        m = round(n * scale)
        edges[(src, rel, dst)] = torch.stack([zipf_endpoints(m, counts[src], generator),
                                              zipf_endpoints(m, counts[dst], generator)])
    return HeteroGraph(counts, edges), spec


def parse_name(name: str) -> tuple[str, float] | None:
    """``"mag_like:0.1"`` -> ``("mag_like", 0.1)``; ``"mag_like"`` -> scale 1; None if not synthetic."""
    schema, _, scale = name.partition(":")
    if schema not in SCHEMAS:
        return None
    try:
        return schema, float(scale) if scale else 1.0
    except ValueError:
        raise GraphError(f"synthetic graph {name!r}: the scale after ':' must be a number, e.g. {schema}:0.1") from None


__all__ = ["SCHEMAS", "Schema", "parse_name", "synthetic_graph", "zipf_endpoints"]

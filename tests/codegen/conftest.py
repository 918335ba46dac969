"""Fixtures for compiler tests: edge-case graphs, layers and their traced programs in fp64."""
import pytest
import torch

from graphcore.codegen.passes.context import GraphStats, PassContext
from graphcore.testing import edge_case_graphs, layer_zoo
from graphcore.trace import trace

GRAPHS = edge_case_graphs()


@pytest.fixture(autouse=True)
def _fp64(fp64):
    yield


def traced_cases():
    """(graph name, layer name) pairs: every layer on every edge-case graph."""
    return [(g, m) for g in GRAPHS for m in layer_zoo(GRAPHS[g])]


def make_case(graph_name: str, layer_name: str, seed: int = 0):
    torch.manual_seed(seed)
    g = GRAPHS[graph_name]
    model = layer_zoo(g)[layer_name]
    x = torch.randn(g.num_nodes(), model.in_channels, dtype=torch.float64)
    program, names = trace(model, g, (x,))
    params = dict(model.named_parameters())
    return g, model, x, program, [params[n] for n in names]


def context(g, passes=("reorder", "aggregate_first", "compact", "fuse")) -> PassContext:
    return PassContext(GraphStats.from_layout(g.layout), passes=tuple(passes))

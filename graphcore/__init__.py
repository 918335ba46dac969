"""graphcore: heterogeneous graphs, relational ops, and a compiler for relational GNNs."""
from graphcore.codegen.errors import BuildError, CompileError, GraphcoreError, GraphError, VerifyError
from graphcore import nn, ops
from graphcore.compile import compile
from graphcore.convert import from_dgl, from_networkx, from_pyg, to_pyg
from graphcore.graph import HeteroGraph, Relation
from graphcore.io import from_ogb, load_npz, save_npz

__all__ = [
    "BuildError", "CompileError", "GraphError", "GraphcoreError", "HeteroGraph", "Relation", "VerifyError",
    "compile", "from_dgl", "from_networkx", "from_ogb", "from_pyg", "load_npz", "nn", "ops", "save_npz", "to_pyg",
]
__version__ = "0.1.0"

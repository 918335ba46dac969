"""graphcore: heterogeneous graphs, relational ops, and a compiler for relational GNNs."""
from codegen.errors import BuildError, CompileError, GraphcoreError, GraphError, VerifyError

__all__ = ["BuildError", "CompileError", "GraphcoreError", "GraphError", "VerifyError"]
__version__ = "0.1.0"

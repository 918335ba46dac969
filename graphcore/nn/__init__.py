"""Relational GNN layers written only with :mod:`graphcore.ops`, so the compiler can trace them."""
from graphcore.nn.hgt import HGT
from graphcore.nn.rgat import RGAT
from graphcore.nn.rgcn import RGCN

__all__ = ["HGT", "RGAT", "RGCN"]

"""Relational GNN entity classification (R-GCN, RGAT, HGT) on heterogeneous graphs.

``python -m tasks.rgnn fit --data aifb --model rgcn``; see :mod:`tasks.rgnn.cli`.
"""

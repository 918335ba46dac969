"""Relational graph attention layer."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from graphcore import ops
from graphcore.graph import HeteroGraph


class RGAT(nn.Module):
    r"""Relational graph attention, after `"Relational Graph Attention Networks"
    <https://arxiv.org/abs/1904.05811>`_ (PyG's ``RGATConv`` in its default configuration).

    .. math::
        g_{uv} = h_u W_r, \quad
        s_{uv,k} = \mathrm{LeakyReLU}\big((h_u W_r) a^{src}_{r,k} + (h_v W_r) a^{dst}_{r,k}\big), \quad
        \alpha_{uv,k} = \operatorname{softmax}_{u \in \mathcal{N}(v)} s_{uv,k}, \quad
        h'_{v,k} = \sum_{u} \alpha_{uv,k}\, g_{uv,k} + b

    where :math:`r` is the relation of edge :math:`(u, v)`, the softmax runs over all incoming
    edges (across relations), and head :math:`k` reads block :math:`k` of :math:`g_{uv}`.
    The attention vectors :math:`a_{r,k} \in \mathbb{R}^{H F}` are per relation and head and read
    the whole transformed vector; PyG's ``RGATConv`` is the special case of one ``q``/``k`` shared
    by all relations (copy them into every relation's slice to compare).

    Args:
        in_channels: input features per node.
        out_channels: features per head.
        num_relations: number of relations.
        heads: attention heads; outputs are concatenated (``[N, heads * out_channels]``).
        negative_slope: LeakyReLU slope of the scores.
        dropout: dropout on the attention coefficients (training only).
        bias: add a learnable bias.

    .. note::
        Written naively (every edge transforms both endpoints); :func:`graphcore.compile`
        folds the attention vectors into the weights (:math:`(h W_r) a_r = h (W_r a_r)`) and
        computes per-``(node, relation)`` values once.
    """

    def __init__(self, in_channels: int, out_channels: int, num_relations: int, *, heads: int = 1,
                 negative_slope: float = 0.2, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.num_relations = in_channels, out_channels, num_relations
        self.heads, self.negative_slope, self.dropout = heads, negative_slope, dropout
        self.weight = nn.Parameter(torch.empty(num_relations, in_channels, heads * out_channels))
        self.att_src = nn.Parameter(torch.empty(num_relations, heads * out_channels, heads))
        self.att_dst = nn.Parameter(torch.empty(num_relations, heads * out_channels, heads))
        self.bias = nn.Parameter(torch.empty(heads * out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.weight, self.att_src, self.att_dst):
            nn.init.xavier_uniform_(p)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, g: HeteroGraph, x: Tensor) -> Tensor:
        h_src = ops.typed_linear(g, ops.gather(g, x, by="src"), self.weight, by="etype")
        h_dst = ops.typed_linear(g, ops.gather(g, x, by="dst"), self.weight, by="etype")
        score = ops.ewise("add", ops.typed_linear(g, h_src, self.att_src, by="etype"),
                          ops.typed_linear(g, h_dst, self.att_dst, by="etype"))
        score = ops.unary("leaky_relu", ops.split_heads(score, self.heads), negative_slope=self.negative_slope)
        alpha = ops.edge_softmax(g, score, group=self.attention_group)
        if self.dropout > 0:
            alpha = ops.unary("dropout", alpha, p=self.dropout, training=self.training)
        msg = ops.ewise("mul", ops.split_heads(h_src, self.heads), alpha)
        out = ops.merge_heads(ops.aggregate(g, msg))
        if self.bias is not None:
            out = ops.ewise("add", out, self.bias)
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_relations={self.num_relations}, heads={self.heads})")

    # softmax over all incoming edges ("dst"); "dst_etype" within each relation, which is PyG's
    # RGATConv(attention_mechanism="within-relation") (set on the instance, see graphcore.pyg)
    attention_group = "dst"

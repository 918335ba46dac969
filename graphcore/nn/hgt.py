"""Heterogeneous graph transformer layer."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from graphcore import ops
from graphcore.graph import HeteroGraph


class HGT(nn.Module):
    r"""The Heterogeneous Graph Transformer layer from `"Heterogeneous Graph Transformer"
    <https://arxiv.org/abs/2003.01332>`_, as PyG's ``HGTConv``.

    .. math::
        k_u = h_u W^K_{\tau(u)}, \; q_v = h_v W^Q_{\tau(v)}, \; v_u = h_u W^V_{\tau(u)} \\
        s_{uv,k} = \frac{\mu_{r,k}}{\sqrt{D}}\, (k_{u,k} W^{att}_{r,k}) \cdot q_{v,k}, \quad
        \alpha_{uv,k} = \operatorname{softmax}_{u \in \mathcal{N}(v)} s_{uv,k} \\
        a_v = W^{out}_{\tau(v)}\, \mathrm{GELU}\Big(\big\Vert_k \sum_u \alpha_{uv,k}\, v_{u,k} W^{msg}_{r,k}\Big), \quad
        h'_v = \beta_{\tau(v)}\, a_v + (1 - \beta_{\tau(v)})\, h_v

    with :math:`\beta_t = \sigma(\text{skip}_t)`; the skip is used only when input and output
    sizes agree. The softmax runs over *all* incoming edges of :math:`v` (PyG and DGL).

    Args:
        in_channels: input features per node (all types; project first if they differ).
        out_channels: output features per node, divisible by ``heads``.
        num_node_types: node types of the graphs it will run on.
        num_relations: relations of the graphs it will run on.
        heads: attention heads; each has ``out_channels // heads`` features.

    Shapes:
        x ``[N, in_channels]`` in global node order -> ``[N, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_node_types: int, num_relations: int, *,
                 heads: int = 1):
        super().__init__()
        if out_channels % heads != 0:
            raise ValueError(f"HGT: out_channels ({out_channels}) must be divisible by heads ({heads})")
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.num_node_types, self.num_relations = num_node_types, num_relations
        dim = out_channels // heads
        T, R, H = num_node_types, num_relations, heads
        self.k_weight = nn.Parameter(torch.empty(T, in_channels, out_channels))
        self.q_weight = nn.Parameter(torch.empty(T, in_channels, out_channels))
        self.v_weight = nn.Parameter(torch.empty(T, in_channels, out_channels))
        self.k_bias = nn.Parameter(torch.empty(T, out_channels))
        self.q_bias = nn.Parameter(torch.empty(T, out_channels))
        self.v_bias = nn.Parameter(torch.empty(T, out_channels))
        self.att_rel = nn.Parameter(torch.empty(R, H, dim, dim))
        self.msg_rel = nn.Parameter(torch.empty(R, H, dim, dim))
        self.prior = nn.Parameter(torch.empty(R, H, 1))
        self.out_weight = nn.Parameter(torch.empty(T, out_channels, out_channels))
        self.out_bias = nn.Parameter(torch.empty(T, out_channels))
        self.skip = nn.Parameter(torch.empty(T, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.k_weight, self.q_weight, self.v_weight, self.out_weight):
            nn.init.xavier_uniform_(w)
        for w in (self.att_rel, self.msg_rel):
            nn.init.xavier_uniform_(w.view(-1, w.size(-2), w.size(-1)))
        for b in (self.k_bias, self.q_bias, self.v_bias, self.out_bias):
            nn.init.zeros_(b)
        nn.init.ones_(self.prior)
        nn.init.ones_(self.skip)

    def forward(self, g: HeteroGraph, x: Tensor) -> Tensor:
        H, D = self.heads, self.out_channels // self.heads
        k = ops.split_heads(ops.typed_linear(g, x, self.k_weight, by="ntype", bias=self.k_bias), H)
        q = ops.split_heads(ops.typed_linear(g, x, self.q_weight, by="ntype", bias=self.q_bias), H)
        v = ops.split_heads(ops.typed_linear(g, x, self.v_weight, by="ntype", bias=self.v_bias), H)
        k_edge = ops.typed_linear(g, ops.gather(g, k, by="src"), self.att_rel, by="etype")
        v_edge = ops.typed_linear(g, ops.gather(g, v, by="src"), self.msg_rel, by="etype")
        score = ops.dot(k_edge, ops.gather(g, q, by="dst"))
        score = ops.ewise("mul", score, ops.gather(g, self.prior, by="etype"))
        alpha = ops.edge_softmax(g, ops.ewise("mul", score, 1.0 / math.sqrt(D)))
        out = ops.merge_heads(ops.aggregate(g, ops.ewise("mul", v_edge, alpha)))
        out = ops.typed_linear(g, ops.unary("gelu", out), self.out_weight, by="ntype", bias=self.out_bias)
        if self.in_channels == self.out_channels:
            beta = ops.unary("sigmoid", ops.gather(g, self.skip, by="ntype"))
            out = ops.ewise("add", ops.ewise("mul", out, beta), ops.ewise("mul", ops.ewise("sub", 1.0, beta), x))
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_node_types={self.num_node_types}, num_relations={self.num_relations}, heads={self.heads})")

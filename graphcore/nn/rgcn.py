"""R-GCN layer."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from graphcore import ops
from graphcore.graph import HeteroGraph


class RGCN(nn.Module):
    r"""The relational graph convolution from `"Modeling Relational Data with Graph
    Convolutional Networks" <https://arxiv.org/abs/1703.06103>`_.

    .. math::
        h_v' = W_0 h_v + b + \sum_{r} \frac{1}{c_{v,r}} \sum_{u \in \mathcal{N}_r(v)} W_r h_u

    with :math:`c_{v,r} = 1` for ``aggr="sum"`` and :math:`|\mathcal{N}_r(v)|` for
    ``aggr="mean"`` (mean within each relation, then a sum over relations, as PyG's
    ``RGCNConv(aggr="mean")`` on its per-relation path).

    Args:
        in_channels: input features per node.
        out_channels: output features per node.
        num_relations: number of relations of the graphs it will run on.
        num_bases: if set, :math:`W_r = \sum_b a_{rb} V_b` with this many bases.
        self_loop: add the root weight :math:`W_0 h_v`.
        aggr: ``"sum"`` or ``"mean"``.
        bias: add a learnable bias.

    Shapes:
        x ``[N, in_channels]`` in global node order -> ``[N, out_channels]``.

    .. note::
        Parameter names and shapes follow PyG's ``RGCNConv`` (``weight`` ``[R, in, out]`` or
        ``comp`` ``[R, B]`` with ``weight`` ``[B, in, out]``, ``root``, ``bias``), but PyG's default is
        ``aggr="mean"``: loading a PyG ``state_dict`` into an ``RGCN`` with another ``aggr`` warns.
    """

    def __init__(self, in_channels: int, out_channels: int, num_relations: int, *, num_bases: int | None = None,
                 self_loop: bool = True, aggr: Literal["sum", "mean"] = "sum", bias: bool = True):
        super().__init__()
        if aggr not in ("sum", "mean"):
            raise ValueError(f"RGCN: aggr must be 'sum' or 'mean', got {aggr!r}")
        self.in_channels, self.out_channels, self.num_relations = in_channels, out_channels, num_relations
        self.num_bases, self.aggr = num_bases, aggr
        if num_bases is not None:
            self.weight = nn.Parameter(torch.empty(num_bases, in_channels, out_channels))
            self.comp = nn.Parameter(torch.empty(num_relations, num_bases))
        else:
            self.weight = nn.Parameter(torch.empty(num_relations, in_channels, out_channels))
            self.register_parameter("comp", None)
        self.root = nn.Parameter(torch.empty(in_channels, out_channels)) if self_loop else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight.view(self.weight.size(0), -1, self.out_channels))
        if self.comp is not None:
            nn.init.xavier_uniform_(self.comp)
        if self.root is not None:
            nn.init.xavier_uniform_(self.root)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, g: HeteroGraph, x: Tensor) -> Tensor:
        weight = ops.combine_bases(self.comp, self.weight) if self.comp is not None else self.weight
        msg = ops.typed_linear(g, ops.gather(g, x, by="src"), weight, by="etype")
        if self.aggr == "mean":
            out = ops.aggregate(g, msg, reduce="mean", group="dst_etype")
        else:
            out = ops.aggregate(g, msg, reduce="sum")
        if self.root is not None:
            out = ops.ewise("add", out, ops.linear(x, self.root))
        if self.bias is not None:
            out = ops.ewise("add", out, self.bias)
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_relations={self.num_relations}, aggr={self.aggr!r})")

    _version = 2  # state_dicts saved by this class carry version 2; PyG's RGCNConv saves version 1

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Warn when a state_dict that is not ours (PyG's ``RGCNConv`` saves the same keys) meets an
        ``aggr`` other than PyG's default: the weights load, but the outputs would differ."""
        import warnings  # here, not at the top: line numbers of this module are in the golden IR dumps

        if local_metadata.get("version") != self._version and self.aggr != PYG_DEFAULT_AGGR:
            warnings.warn(f"loading a state_dict not saved by graphcore.nn.RGCN (PyG's RGCNConv has the same keys) "
                          f"into RGCN(aggr={self.aggr!r}); PyG's RGCNConv defaults to aggr='mean': pass "
                          f"aggr='mean' to RGCN if the weights come from RGCNConv(...) with its default",
                          stacklevel=3)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


PYG_DEFAULT_AGGR = "mean"  # torch_geometric.nn.RGCNConv's default aggr

r"""Segment and scatter primitives on plain tensors with explicit index vectors.

These are the numerical ground truth of graphcore: the eager ops (``graphcore.ops``), the
level-1 IR interpreter and the reference backend all call them, so there is exactly one
definition of, say, a max-subtracted softmax. All are differentiable with PyTorch autograd.

Rows of every domain are *segment-sorted* by type (node types by global id, edges by
relation, compact pairs by relation), so a typed matmul is a loop over contiguous segments
described by a pointer vector ``ptr`` of length ``T + 1``.
"""
from __future__ import annotations

import torch
from torch import Tensor


def segment_matmul(x: Tensor, weight: Tensor, ptr: list[int]) -> Tensor:
    r"""Typed matmul: rows ``ptr[t]:ptr[t+1]`` of ``x`` are multiplied by ``weight[t]``.

    .. math::
        y_i = x_i W_{\tau(i)}

    Args:
        x: ``[M, K]`` or, with a per-head weight, ``[M, H, K]``.
        weight: ``[T, K, N]``, or ``[T, H, K, N]`` for an independent matrix per head.
        ptr: ``T + 1`` segment boundaries (Python ints), ``ptr[-1] == M``.

    Returns:
        ``[M, N]`` or ``[M, H, N]``.
    """
    per_head = weight.dim() == 4
    # split/unbind (not slicing in a loop): their backward assembles one gradient instead of
    # adding a full-size zero tensor per segment
    sizes = [ptr[t + 1] - ptr[t] for t in range(weight.size(0))]
    def product(rows: Tensor, w: Tensor) -> Tensor:
        return torch.einsum("mhk,hkn->mhn", rows, w) if per_head else rows @ w

    outs = [product(rows, w) for rows, w in zip(torch.split(x, sizes), weight.unbind(0)) if rows.size(0)]
    if not outs:
        if weight.size(0):  # no rows: an empty product, still in autograd's graph (zero gradients)
            return product(x, weight[0])
        shape = (x.size(0), x.size(1), weight.size(-1)) if per_head else (x.size(0), weight.size(-1))
        return x.new_zeros(shape)
    return torch.cat(outs, dim=0)


def segment_outer(x: Tensor, grad: Tensor, ptr: list[int], num_types: int) -> Tensor:
    r"""Per-type outer product sum, the weight gradient of :func:`segment_matmul`.

    .. math::
        \frac{\partial L}{\partial W_t} = \sum_{i : \tau(i) = t} x_i^\top g_i
    """
    per_head = x.dim() == 3
    sizes = [ptr[t + 1] - ptr[t] for t in range(num_types)]
    outs = [torch.einsum("mhk,mhn->hkn", a, g) if per_head else a.transpose(0, 1) @ g
            for a, g in zip(torch.split(x, sizes), torch.split(grad, sizes))]
    return torch.stack(outs, dim=0)


def per_row(factor: Tensor, like: Tensor) -> Tensor:
    """View a ``[M]`` vector as ``[M, 1, ...]`` so it scales whole rows of ``like``."""
    return factor.view(-1, *([1] * (like.dim() - 1)))


def segment_softmax(scores: Tensor, group: Tensor, num_groups: int) -> Tensor:
    r"""Softmax of ``scores`` over rows sharing a ``group`` id, max-subtracted.

    .. math::
        \alpha_e = \frac{\exp(s_e - m_{g(e)})}{\sum_{e' : g(e') = g(e)} \exp(s_{e'} - m_{g(e)})},
        \quad m_g = \max_{e : g(e) = g} s_e

    The max is detached: softmax is invariant to the shift, so its gradient through the max is
    exactly zero, and detaching avoids routing gradient through ``amax``'s tie-breaking.
    Groups with no rows simply produce no output; logits of 1e4 do not overflow.
    """
    if scores.size(0) == 0:
        return scores
    shape = (num_groups,) + tuple(scores.shape[1:])
    index = group.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    peak = scores.new_full(shape, float("-inf")).scatter_reduce(0, index, scores.detach(), "amax")
    ex = torch.exp(scores - peak.index_select(0, group))
    denom = scores.new_zeros(shape).index_add(0, group, ex)
    return ex / denom.index_select(0, group)


def scatter_sum(values: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Sum rows of ``values`` into ``num_groups`` rows; empty groups are zero."""
    return values.new_zeros((num_groups,) + tuple(values.shape[1:])).index_add(0, group, values)


def scatter_max(values: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Row-wise max per group; empty groups are zero (as in PyG and DGL)."""
    index = group.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    out = values.new_zeros((num_groups,) + tuple(values.shape[1:]))
    return out.scatter_reduce(0, index, values, "amax", include_self=False)

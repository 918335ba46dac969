"""Elementwise functions shared by the eager ops, the IR interpreter and the reference backend.

Each activation has a derivative ``d_<name>`` (a function of the activation's *input*), which the
compiler's VJP rules multiply by; keeping both here gives each one definition.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "exp", "neg", "identity", "reciprocal",
               "softplus")
DERIVATIVES = ("d_relu", "d_leaky_relu", "d_elu", "d_gelu", "d_softplus")
UNARY = (*ACTIVATIONS, *DERIVATIVES, "inf_to_zero")  # inf_to_zero: empty max-groups give 0
BINARY = ("add", "sub", "mul", "div", "eq", "maximum")
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def activation(op: str, x: Tensor, negative_slope: float = 0.01, alpha: float = 1.0) -> Tensor:
    """Apply activation ``op`` (or derivative ``d_op``) elementwise."""
    if op == "relu":
        return F.relu(x)
    if op == "leaky_relu":
        return F.leaky_relu(x, negative_slope)
    if op == "elu":
        return F.elu(x, alpha)
    if op == "gelu":
        return F.gelu(x)
    if op in ("sigmoid", "tanh", "exp", "neg", "reciprocal"):
        return getattr(torch, op)(x)
    if op == "identity":
        return x
    if op == "softplus":  # log(1 + e^x), linear above 20 (as torch's default threshold)
        return F.softplus(x)
    if op == "d_relu":
        return (x > 0).to(x.dtype)
    if op == "d_leaky_relu":
        return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative_slope))
    if op == "d_elu":
        return torch.where(x > 0, torch.ones_like(x), alpha * torch.exp(x))
    if op == "d_gelu":  # d/dx x Phi(x) = Phi(x) + x phi(x)
        return 0.5 * (1.0 + torch.erf(x * _INV_SQRT2)) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
    if op == "d_softplus":  # sigmoid below the threshold, 1 above it (as torch's softplus backward)
        return torch.where(x > 20, torch.ones_like(x), torch.sigmoid(x))
    if op == "inf_to_zero":
        return torch.where(torch.isinf(x), torch.zeros_like(x), x)
    raise ValueError(f"unknown activation {op!r}; known: {UNARY}")


def binary(op: str, a: Tensor, b: Tensor) -> Tensor:
    """Apply binary ``op`` with PyTorch broadcasting (``eq`` gives 1.0/0.0 in the operands' dtype)."""
    if op == "eq":
        return (a == b).to(torch.promote_types(a.dtype, b.dtype))
    if op == "maximum":
        return torch.maximum(a, b)
    if op in ("add", "sub", "mul", "div"):
        return getattr(torch, op)(a, b)
    raise ValueError(f"unknown binary op {op!r}; known: {BINARY}")


def sum_to(x: Tensor, shape: tuple[int, ...], has_rows: bool, keep_rows: bool) -> Tensor:
    """Sum broadcast axes of ``x`` down to row shape ``shape``; with ``has_rows`` the first axis
    is the row axis, summed away unless ``keep_rows`` (the gradient of a broadcast operand)."""
    if has_rows and not keep_rows:
        x, has_rows = x.sum(0), False
    lead = 1 if has_rows else 0
    extra = x.dim() - lead - len(shape)
    if extra:
        x = x.sum(dim=tuple(range(lead, lead + extra)))
    dims = tuple(lead + i for i, s in enumerate(shape) if s == 1 and x.size(lead + i) != 1)
    return x.sum(dim=dims, keepdim=True) if dims else x

"""Elementwise functions shared by the eager ops, the IR interpreter and the reference backend.

Each activation has a derivative ``d_<name>`` (a function of the activation's *input*), which the
compiler's VJP rules multiply by; keeping both here gives each one definition.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "exp", "neg", "identity", "reciprocal")
DERIVATIVES = ("d_relu", "d_leaky_relu", "d_elu", "d_gelu")
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
    if op == "d_relu":
        return (x > 0).to(x.dtype)
    if op == "d_leaky_relu":
        return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative_slope))
    if op == "d_elu":
        return torch.where(x > 0, torch.ones_like(x), alpha * torch.exp(x))
    if op == "d_gelu":  # d/dx x Phi(x) = Phi(x) + x phi(x)
        return 0.5 * (1.0 + torch.erf(x * _INV_SQRT2)) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
    raise ValueError(f"unknown activation {op!r}; known: {ACTIVATIONS + DERIVATIVES}")


def binary(op: str, a: Tensor, b: Tensor) -> Tensor:
    """Apply binary ``op`` with PyTorch broadcasting (``eq`` gives 1.0/0.0 in the operands' dtype)."""
    if op == "eq":
        return (a == b).to(torch.promote_types(a.dtype, b.dtype))
    if op == "maximum":
        return torch.maximum(a, b)
    if op in ("add", "sub", "mul", "div"):
        return getattr(torch, op)(a, b)
    raise ValueError(f"unknown binary op {op!r}; known: {BINARY}")

r"""The elementwise functions of ``ewise`` and ``unary``: one entry each, with its C spelling and
its derivative.

The reference implementation of every function is in :mod:`codegen.numerics.elementwise` (the
eager ops, the interpreter and the torch backend call it). Here each function gets:

* ``c``: its spelling in the C-family printers, a template over ``{x}`` (unary) or ``{a}``,
  ``{b}`` (binary), with ``{std}`` for the dialect's math namespace (``gc_math::`` in the CPU prelude: std's
  functions with a vectorisable float ``exp``; nothing in CUDA) and ``{slope}``/``{alpha}`` for the attributes of ``leaky_relu``/``elu``;
* ``grad``: its VJP, built in the IR from the cotangent ``g``: ``grad(b, op, g, x, y)`` returns
  :math:`\bar{x}` for a unary function (input ``x``, output ``y``), ``grad(b, op, g, a, c)`` both
  operands' cotangents for a binary one (before broadcasting is undone). ``None``: the function
  only appears in gradients and is not differentiated again.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import const
from ..program import OpKind
from ...numerics import elementwise


@dataclass(frozen=True)
class Function:
    name: str
    c: str
    grad: Callable | None = None


def _ewise(b, op: str, a, c):
    return b.emit(OpKind.EWISE, (a, c), op=op)


def _unary(b, op: str, x, **attrs):
    return b.emit(OpKind.UNARY, (x,), op=op, **attrs)


def _times(local: Callable):
    """The VJP ``g * local(b, op, x, y)`` of a function with local derivative ``local``."""
    def grad(b, op, g, x, y):
        return _ewise(b, "mul", g, local(b, op, x, y))

    return grad


def _derivative(name: str):
    """``g * d_<name>(x)``: a derivative that is itself a function of the input."""
    def local(b, op, x, y):
        extra = {k: op.attr(k) for k in ("negative_slope", "alpha") if op.attr(k) is not None}
        return _unary(b, f"d_{name}", x, **extra)

    return _times(local)


UNARY: dict[str, Function] = {f.name: f for f in (
    Function("relu", "gc_relu({x})", _derivative("relu")),
    Function("leaky_relu", "gc_leaky_relu({x}, {slope})", _derivative("leaky_relu")),
    Function("elu", "gc_elu({x}, {alpha})", _derivative("elu")),
    Function("gelu", "gc_gelu({x})", _derivative("gelu")),
    Function("sigmoid", "gc_sigmoid({x})",  # y (1 - y)
             _times(lambda b, op, x, y: _ewise(b, "mul", y, _ewise(b, "sub", const(b, 1.0, y.dtype), y)))),
    Function("tanh", "{std}tanh({x})",  # 1 - y^2
             _times(lambda b, op, x, y: _ewise(b, "sub", const(b, 1.0, y.dtype), _ewise(b, "mul", y, y)))),
    Function("exp", "{std}exp({x})", _times(lambda b, op, x, y: y)),
    Function("neg", "(-({x}))", lambda b, op, g, x, y: _unary(b, "neg", g)),
    Function("identity", "{x}", lambda b, op, g, x, y: g),
    Function("reciprocal", "((real)1 / ({x}))",  # -y^2
             _times(lambda b, op, x, y: _unary(b, "neg", _ewise(b, "mul", y, y)))),
    Function("softplus", "({x} > (real)20 ? {x} : {std}log1p({std}exp({x})))", _derivative("softplus")),
    Function("d_relu", "gc_d_relu({x})"),
    Function("d_leaky_relu", "gc_d_leaky_relu({x}, {slope})"),
    Function("d_elu", "gc_d_elu({x}, {alpha})"),
    Function("d_gelu", "gc_d_gelu({x})"),
    Function("d_softplus", "({x} > (real)20 ? (real)1 : gc_sigmoid({x}))"),
    Function("inf_to_zero", "gc_inf_to_zero({x})"),
)}


def _grad_add(b, op, g, a, c):
    return g, g


def _grad_sub(b, op, g, a, c):
    return g, _unary(b, "neg", g)


def _grad_mul(b, op, g, a, c):
    return _ewise(b, "mul", g, c), _ewise(b, "mul", g, a)


def _grad_div(b, op, g, a, c):
    da = _ewise(b, "div", g, c)
    return da, _unary(b, "neg", _ewise(b, "mul", da, op.out))


BINARY: dict[str, Function] = {f.name: f for f in (
    Function("add", "({a} + {b})", _grad_add),
    Function("sub", "({a} - {b})", _grad_sub),
    Function("mul", "({a} * {b})", _grad_mul),
    Function("div", "({a} / {b})", _grad_div),
    Function("eq", "(({a}) == ({b}) ? (real)1 : (real)0)"),
    Function("maximum", "(({a}) > ({b}) ? ({a}) : ({b}))"),
)}

if set(UNARY) != set(elementwise.UNARY) or set(BINARY) != set(elementwise.BINARY):
    raise ImportError("codegen.ir.ops.functions and codegen.numerics.elementwise disagree on the function names")

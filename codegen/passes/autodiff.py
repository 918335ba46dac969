r"""Reverse-mode autodiff inside the IR: one VJP rule per op kind.

The result is a *joint* program: inputs are the primal inputs followed by one cotangent per
primal output; outputs are the primal outputs, then the gradients of the inputs marked in
``ctx.grad_inputs``, then one gradient per parameter. Because the backward ops are ordinary IR
ops, every later pass (reordering, compaction, fusion) optimises them too; ``partition`` then
splits the joint program into a forward and a backward program.

Each rule gets the op, its output cotangent ``g`` and a builder, and returns one cotangent per
input (``None`` where the input is not differentiable). For
:math:`y = f(x_1, \dots)`, it emits :math:`\bar{x}_i = \bar{y}\, \partial y / \partial x_i`.
"""
from __future__ import annotations

from collections.abc import Callable

from codegen.errors import CompileError
from codegen.ir.program import Builder, Op, OpKind, Program
from codegen.ir.values import Value
from codegen.passes.context import PassContext

Rule = Callable[[Builder, Op, Value], list[Value | None]]
RULES: dict[OpKind, Rule] = {}


def rule(kind: OpKind) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[kind] = fn
        return fn

    return register


def _const(b: Builder, value: float, dtype: str) -> Value:
    return b.emit(OpKind.CONST, (), value=value, dtype=dtype)


def _to_shape(b: Builder, g: Value, target: Value) -> Value:
    """Undo broadcasting of ``target`` in ``g`` (sum rows/axes it was broadcast over)."""
    if g.domain == target.domain and g.shape == target.shape:
        return g
    return b.emit(OpKind.SUM_TO, (g,), domain=str(target.domain), shape=target.shape)


@rule(OpKind.TYPED_LINEAR)
def _typed_linear(b: Builder, op: Op, g: Value) -> list[Value | None]:
    x, w = op.inputs
    per_head, transposed = op.attr("per_head", False), op.attr("transpose_w", False)
    dx = b.emit(OpKind.TYPED_LINEAR, (g, w), per_head=per_head or None, transpose_w=(not transposed) or None)
    if dx.shape != x.shape:
        dx = b.emit(OpKind.RESHAPE, (dx,), shape=x.shape)
    dw = b.emit(OpKind.TYPED_OUTER, (x, g), weight_domain=str(w.domain), per_head=per_head or None,
                transpose_w=transposed or None)
    return [dx, dw]


@rule(OpKind.WEIGHT_MATMUL)
def _weight_matmul(b: Builder, op: Op, g: Value) -> list[Value | None]:
    a, c = op.inputs
    lhs, out = op.attr("equation").split("->")
    sa, sc = lhs.split(",")
    for name, own, other in (("first", sa, sc), ("second", sc, sa)):
        if set(own) - set(out) - set(other):
            raise CompileError(f"weight_matmul '{op.attr('equation')}': the {name} operand has an axis summed "
                               "alone, which has no VJP rule", op="weight_matmul", source_line=op.loc)
    da = b.emit(OpKind.WEIGHT_MATMUL, (g, c), equation=f"{out},{sc}->{sa}", domain=str(a.domain))
    dc = b.emit(OpKind.WEIGHT_MATMUL, (a, g), equation=f"{sa},{out}->{sc}", domain=str(c.domain))
    return [da, dc]


@rule(OpKind.GATHER)
def _gather(b: Builder, op: Op, g: Value) -> list[Value | None]:
    return [b.emit(OpKind.AGGREGATE, (g,), index=op.attr("index"), reduce="sum")]


@rule(OpKind.AGGREGATE)
def _aggregate(b: Builder, op: Op, g: Value) -> list[Value | None]:
    index = op.attr("index")
    (x,) = op.inputs
    if op.attr("reduce") == "sum":
        return [b.emit(OpKind.GATHER, (g,), index=index)]
    # max: the gradient goes to the maxima, split evenly between ties (as torch's amax)
    winner = b.emit(OpKind.EWISE, (x, b.emit(OpKind.GATHER, (op.out,), index=index)), op="eq")
    ties = b.emit(OpKind.AGGREGATE, (winner,), index=index, reduce="sum")
    ties = b.emit(OpKind.EWISE, (ties, _const(b, 1.0, g.dtype)), op="maximum")
    share = b.emit(OpKind.GATHER, (b.emit(OpKind.EWISE, (g, ties), op="div"),), index=index)
    return [b.emit(OpKind.EWISE, (share, winner), op="mul")]


@rule(OpKind.DOT)
def _dot(b: Builder, op: Op, g: Value) -> list[Value | None]:
    a, c = op.inputs
    return [b.emit(OpKind.EWISE, (g, c), op="mul"), b.emit(OpKind.EWISE, (g, a), op="mul")]


@rule(OpKind.EWISE)
def _ewise(b: Builder, op: Op, g: Value) -> list[Value | None]:
    a, c = op.inputs
    kind = op.attr("op")
    if kind == "add":
        da, dc = g, g
    elif kind == "sub":
        da, dc = g, b.emit(OpKind.UNARY, (g,), op="neg")
    elif kind == "mul":
        da, dc = b.emit(OpKind.EWISE, (g, c), op="mul"), b.emit(OpKind.EWISE, (g, a), op="mul")
    elif kind == "div":
        da = b.emit(OpKind.EWISE, (g, c), op="div")
        dc = b.emit(OpKind.UNARY, (b.emit(OpKind.EWISE, (da, op.out), op="mul"),), op="neg")
    else:
        return [None, None]  # eq / maximum appear only in gradients
    return [_to_shape(b, da, a), _to_shape(b, dc, c)]


@rule(OpKind.UNARY)
def _unary(b: Builder, op: Op, g: Value) -> list[Value | None]:
    (x,) = op.inputs
    kind, y = op.attr("op"), op.out
    if kind == "identity":
        return [g]
    if kind == "neg":
        return [b.emit(OpKind.UNARY, (g,), op="neg")]
    if kind in ("relu", "leaky_relu", "elu", "gelu"):
        extra = {k: op.attr(k) for k in ("negative_slope", "alpha") if op.attr(k) is not None}
        local = b.emit(OpKind.UNARY, (x,), op=f"d_{kind}", **extra)
    elif kind == "sigmoid":  # y (1 - y)
        local = b.emit(OpKind.EWISE, (y, b.emit(OpKind.EWISE, (_const(b, 1.0, y.dtype), y), op="sub")), op="mul")
    elif kind == "tanh":  # 1 - y^2
        local = b.emit(OpKind.EWISE, (_const(b, 1.0, y.dtype), b.emit(OpKind.EWISE, (y, y), op="mul")), op="sub")
    elif kind == "exp":
        local = y
    elif kind == "reciprocal":  # -y^2
        local = b.emit(OpKind.UNARY, (b.emit(OpKind.EWISE, (y, y), op="mul"),), op="neg")
    else:
        raise CompileError(f"unary '{kind}' has no VJP rule", op=f"unary[{kind}]", source_line=op.loc)
    return [b.emit(OpKind.EWISE, (g, local), op="mul")]


@rule(OpKind.EDGE_SOFTMAX)
def _edge_softmax(b: Builder, op: Op, g: Value) -> list[Value | None]:
    r"""For :math:`y = \mathrm{softmax}(s)` per group: :math:`\bar{s} = y (\bar{y} - \sum_{group} \bar{y} y)`."""
    y, index = op.out, op.attr("index")
    total = b.emit(OpKind.AGGREGATE, (b.emit(OpKind.EWISE, (g, y), op="mul"),), index=index, reduce="sum")
    centred = b.emit(OpKind.EWISE, (g, b.emit(OpKind.GATHER, (total,), index=index)), op="sub")
    return [b.emit(OpKind.EWISE, (y, centred), op="mul")]


@rule(OpKind.RESHAPE)
def _reshape(b: Builder, op: Op, g: Value) -> list[Value | None]:
    (x,) = op.inputs
    return [b.emit(OpKind.RESHAPE, (g,), shape=x.shape, domain=str(x.domain))]


@rule(OpKind.SUM_TO)
def _sum_to(b: Builder, op: Op, g: Value) -> list[Value | None]:
    (x,) = op.inputs
    # broadcasting back: multiply a zero of x's shape by g
    zeros = b.emit(OpKind.EWISE, (x, _const(b, 0.0, x.dtype)), op="mul")
    return [b.emit(OpKind.EWISE, (zeros, g), op="add")]


for _kind in (OpKind.CONST, OpKind.GRAPH_CONST, OpKind.DROPOUT_MASK):
    RULES[_kind] = lambda b, op, g: [None] * len(op.inputs)


def run(program: Program, ctx: PassContext) -> Program:
    """Append the backward computation; see the module docstring for the joint interface."""
    if ctx.differentiated:
        return program
    b = Builder.after(program)
    b.ops = list(program.ops)
    cotangents = tuple(b.value(y.domain, y.shape, y.dtype, f"grad_output{i}") for i, y in enumerate(program.outputs))
    grads: dict[int, Value] = {}

    def accumulate(v: Value, g: Value) -> None:
        grads[v.id] = g if v.id not in grads else b.emit(OpKind.EWISE, (grads[v.id], g), op="add")

    for y, dy in zip(program.outputs, cotangents):
        accumulate(y, dy)
    for op in reversed(program.ops):
        g = grads.get(op.out.id)
        if g is None:
            continue
        if op.kind not in RULES:
            raise CompileError(f"{op.kind} has no VJP rule (is the program already differentiated?)",
                               op=str(op.kind), source_line=op.loc)
        b.loc = op.loc
        for inp, dinp in zip(op.inputs, RULES[op.kind](b, op, g)):
            if dinp is not None:
                accumulate(inp, dinp)

    def gradient(v: Value) -> Value:
        if v.id in grads:
            return grads[v.id]
        return b.emit(OpKind.EWISE, (v, _const(b, 0.0, v.dtype)), op="mul")  # unreachable: zero

    wanted = [v for v, flag in zip(program.inputs, ctx.grad_inputs) if flag]
    outputs = (*program.outputs, *(gradient(v) for v in wanted), *(gradient(p) for p in program.params))
    ctx.num_primal_inputs, ctx.num_primal_outputs = len(program.inputs), len(program.outputs)
    ctx.differentiated = True
    ctx.note("autodiff", f"added {len(b.ops) - len(program.ops)} backward ops for {len(wanted)} inputs "
                         f"and {len(program.params)} parameters")
    return Program(program.inputs + cotangents, program.params, tuple(b.ops), outputs)

r"""Symbolic tracing of a module into the level-1 relational IR.

The model runs once with :class:`SymbolicTensor` stand-ins for its input and parameters and a
:class:`SymbolicGraph` for the graph. Each :mod:`graphcore.ops` call sees the
``__graphcore_trace__`` hook on an argument and is recorded; elementwise torch functions
(activations, arithmetic, dropout, head reshapes) are recorded through ``__torch_function__``.
Anything else raises :class:`~codegen.errors.CompileError` naming the function and the line of
user code that called it. Shapes are concrete (one trace per graph schema and feature size), so
Python code that reads ``x.size(1)`` works; the recorded program has no control flow.

A parameter gets its IR domain from its first use: the weight of ``typed_linear(..., by="etype")``
is per-relation, a bias added to node rows is a scalar-domain value, and so on.
"""
from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from graphcore.codegen.errors import CompileError
from graphcore.codegen.ir.program import Builder, OpKind, Program
from graphcore.codegen.ir.values import TYPE_DOMAINS, Domain, Value
from graphcore.graph import HeteroGraph

EDGE_INPUT_PREFIX = "edge:"  # program inputs read from the graph's edge data: "edge:<field name>"

_SKIP_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (torch,))
_SKIP_FILES = (__file__, os.path.join(os.path.dirname(__file__), "ops.py"))

_METADATA = {"size", "dim", "ndimension", "numel", "__len__", "is_floating_point", "__format__", "__repr__",
             "element_size", "nelement", "requires_grad_", "__get__"}

_ACTIVATIONS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", Tensor.relu: "relu",
    F.gelu: "gelu", F.elu: "elu", F.leaky_relu: "leaky_relu", F.softplus: "softplus",
    torch.sigmoid: "sigmoid", Tensor.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
    torch.tanh: "tanh", Tensor.tanh: "tanh", F.tanh: "tanh",
    torch.exp: "exp", Tensor.exp: "exp",
    torch.neg: "neg", Tensor.neg: "neg", Tensor.__neg__: "neg",
}
_BINARY: dict[Any, tuple[str, bool]] = {  # function -> (op, operands swapped)
    torch.add: ("add", False), Tensor.add: ("add", False), Tensor.__add__: ("add", False),
    Tensor.__radd__: ("add", True),
    torch.sub: ("sub", False), Tensor.sub: ("sub", False), Tensor.__sub__: ("sub", False),
    Tensor.__rsub__: ("sub", True),
    torch.mul: ("mul", False), Tensor.mul: ("mul", False), Tensor.__mul__: ("mul", False),
    Tensor.__rmul__: ("mul", True),
    torch.div: ("div", False), Tensor.div: ("div", False), Tensor.__truediv__: ("div", False),
    Tensor.__rtruediv__: ("div", True),
}


def user_location() -> str:
    """``file:line`` of the innermost frame outside torch and the tracing machinery."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(_SKIP_DIRS) and name not in _SKIP_FILES and "functools" not in name:
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def _func_name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


class SymbolicTensor(Tensor):
    """A stand-in tensor (no storage) bound to an IR value, or to a parameter not yet typed."""

    @staticmethod
    def __new__(cls, tracer: Tracer, shape: tuple[int, ...], dtype: torch.dtype, value: Value | None,
                param: str | None = None):
        self = Tensor._make_wrapper_subclass(cls, shape, dtype=dtype, device="meta")
        self.tracer, self.value, self.param = tracer, value, param
        return self

    def __repr__(self, *, tensor_contents=None) -> str:
        what = self.value.describe() if self.value is not None else f"parameter '{self.param}'"
        return f"SymbolicTensor({what})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tracer = next(a.tracer for a in _flatten(args, kwargs) if isinstance(a, SymbolicTensor))
        return tracer.torch_function(func, args, kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        # Reached only by aten ops that __torch_function__ let through (none should be).
        raise CompileError(f"cannot compile aten op '{func}'", op=str(func), source_line=user_location())

    def __graphcore_trace__(self, fn, args, kwargs):
        return self.tracer.record(fn, args, kwargs)


def _flatten(args, kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


class SymbolicGraph:
    """Stands in for the :class:`HeteroGraph` while tracing; carries the tracer."""

    def __init__(self, tracer: Tracer, graph: HeteroGraph):
        self.tracer, self.graph = tracer, graph

    def __getattr__(self, name):  # schema queries (num_nodes, node_types, ...) answer from the real graph
        return getattr(self.graph, name)

    def __graphcore_trace__(self, fn, args, kwargs):
        return self.tracer.record(fn, args, kwargs)


class Tracer:
    """Records a module's forward on one graph into a :class:`Program`."""

    def __init__(self, graph: HeteroGraph, dtype: torch.dtype):
        self.graph, self.layout = graph, graph.layout
        self.dtype = dtype
        self.dtype_name = str(dtype).removeprefix("torch.")
        self.builder = Builder()
        self.inputs: list[Value] = []
        self.params: dict[str, Value] = {}
        self.edge_fields: dict[str, Value] = {}

    # ------------------------------------------------------------------ symbolic values
    def _full_shape(self, v: Value) -> tuple[int, ...]:
        if v.domain == Domain.SCALAR:
            return v.shape
        return (self.layout.rows(v.domain), *v.shape)

    def wrap(self, value: Value) -> SymbolicTensor:
        return SymbolicTensor(self, self._full_shape(value), self.dtype, value)

    def input(self, tensor: Tensor, name: str) -> SymbolicTensor:
        if tensor.dim() < 1 or tensor.size(0) != self.layout.num_nodes:
            raise CompileError(f"input '{name}' must have one row per node ({self.layout.num_nodes}), "
                               f"got shape {list(tensor.shape)}")
        value = self.builder.value(Domain.NODE, tensor.shape[1:], self.dtype_name, name)
        self.inputs.append(value)
        return self.wrap(value)

    def parameter(self, name: str, tensor: Tensor) -> SymbolicTensor:
        return SymbolicTensor(self, tuple(tensor.shape), self.dtype, None, param=name)

    def as_value(self, x: Any, domain: Domain | None = None, what: str = "operand") -> Value:
        """The IR value of ``x``; a parameter is typed on first use (``domain``, default scalar)."""
        if isinstance(x, SymbolicTensor):
            if x.value is not None:
                if domain is not None and x.value.domain != domain:
                    return self._retype(x.value, domain)
                return x.value
            domain = domain or Domain.SCALAR
            if x.param in self.params:
                return self._retype(self.params[x.param], domain)
            shape = tuple(x.shape) if domain == Domain.SCALAR else tuple(x.shape[1:])
            expected = self.layout.rows(domain) if domain in TYPE_DOMAINS else None
            if expected is not None and x.size(0) != expected:
                raise CompileError(f"parameter '{x.param}' is used per {domain} but has {x.size(0)} rows, "
                                   f"not {expected}", source_line=user_location())
            value = self.builder.value(domain, shape, self.dtype_name, x.param)
            self.params[x.param] = value
            x.value = value
            return value
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return self.builder.emit(OpKind.CONST, (), value=float(x), dtype=self.dtype_name)
        raise CompileError(f"cannot trace a {type(x).__name__} {what}: only the model's input, its parameters "
                           "and Python numbers may enter compiled ops", source_line=user_location())

    def _retype(self, value: Value, domain: Domain) -> Value:
        if value.domain == domain:
            return value
        if domain in TYPE_DOMAINS or value.domain in TYPE_DOMAINS:
            full = self._full_shape(value)
            shape = full if domain == Domain.SCALAR else full[1:]
            return self.builder.emit(OpKind.RESHAPE, (value,), shape=shape, domain=str(domain))
        raise CompileError(f"value {value.describe()} is used as {domain}", source_line=user_location())

    def emit(self, kind: OpKind, inputs, **attrs) -> SymbolicTensor:
        self.builder.loc = user_location()
        try:
            return self.wrap(self.builder.emit(kind, inputs, **attrs))
        except CompileError as err:
            raise CompileError(str(err), op=str(kind), source_line=self.builder.loc) from None

    # ------------------------------------------------------------------ graphcore.ops
    def record(self, fn: Callable, args, kwargs) -> SymbolicTensor:
        """Record one :mod:`graphcore.ops` call (dispatched here by ``traceable``)."""
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        name = fn.__name__
        handler = getattr(self, f"_op_{name}", None)
        if handler is None:
            raise CompileError(f"graphcore.ops.{name} has no tracing rule", op=name, source_line=user_location())
        return handler(**{k: v for k, v in a.items() if k != "g"})

    def _bias(self, out: SymbolicTensor, bias, by: str | None) -> SymbolicTensor:
        if bias is None:
            return out
        if by is None:
            return self.emit(OpKind.EWISE, (out.value, self.as_value(bias)), op="add")
        domain = Domain.NTYPE if by == "ntype" else Domain.ETYPE
        gathered = self.builder.emit(OpKind.GATHER, (self.as_value(bias, domain),), index=by)
        return self.emit(OpKind.EWISE, (out.value, gathered), op="add")

    def _op_typed_linear(self, x, weight, by, bias):
        domain = {"ntype": Domain.NTYPE, "etype": Domain.ETYPE}.get(by)
        if domain is None:
            raise CompileError(f"typed_linear: by must be 'ntype' or 'etype', got {by!r}", op="typed_linear",
                               source_line=user_location())
        xv = self.as_value(x)
        out = self.emit(OpKind.TYPED_LINEAR, (xv, self.as_value(weight, domain)), per_head=weight.dim() == 4 or None)
        return self._bias(out, bias, by)

    def _op_linear(self, x, weight, bias):
        out = self.emit(OpKind.TYPED_LINEAR, (self.as_value(x), self.as_value(weight, Domain.SCALAR)))
        return self._bias(out, bias, None)

    def _op_gather(self, x, by):
        domain = {"etype": Domain.ETYPE, "ntype": Domain.NTYPE}.get(by)
        return self.emit(OpKind.GATHER, (self.as_value(x, domain),), index=by)

    def _op_edge_data(self, name):
        """An edge-domain input of the program, named ``edge:<name>`` (one per field)."""
        if name not in self.edge_fields:
            values = self.layout.edge_values(name)  # raises GraphError for an unknown field
            if values.dtype != self.dtype:
                raise CompileError(f"edge data '{name}' is {values.dtype} but the model runs in {self.dtype}; "
                                   "convert the edge tensors (or the model) so they match",
                                   source_line=user_location())
            value = self.builder.value(Domain.EDGE, tuple(values.shape[1:]) or (1,), self.dtype_name,  # as ops.edge_data
                                       f"{EDGE_INPUT_PREFIX}{name}")
            self.inputs.append(value)
            self.edge_fields[name] = value
        return self.wrap(self.edge_fields[name])

    def _op_dot(self, a, b):
        return self.emit(OpKind.DOT, (self.as_value(a), self.as_value(b)))

    def _op_edge_softmax(self, scores, group):
        index = {"dst": "dst", "dst_etype": "udst_inv"}.get(group)
        if index is None:
            raise CompileError(f"edge_softmax: unknown group {group!r}", op="edge_softmax", source_line=user_location())
        return self.emit(OpKind.EDGE_SOFTMAX, (self.as_value(scores),), index=index)

    def _op_aggregate(self, msg, reduce, group):
        m = self.as_value(msg)
        if group == "dst_etype" and reduce == "mean":
            self.builder.loc = user_location()
            count = self.builder.emit(OpKind.GRAPH_CONST, (), name="inv_udst_count", dtype=self.dtype_name)
            m = self.builder.emit(OpKind.EWISE, (m, self.builder.emit(OpKind.GATHER, (count,), index="udst_inv")),
                                  op="mul")
            reduce = "sum"
        elif group not in ("dst", "dst_etype") or reduce not in ("sum", "mean", "max") or \
                (group == "dst_etype" and reduce == "max"):
            raise CompileError(f"aggregate: unsupported reduce={reduce!r} group={group!r}", op="aggregate",
                               source_line=user_location())
        if reduce == "mean":
            total = self.builder.emit(OpKind.AGGREGATE, (m,), index="dst", reduce="sum")
            inv = self.builder.emit(OpKind.GRAPH_CONST, (), name="inv_in_degree", dtype=self.dtype_name)
            return self.emit(OpKind.EWISE, (total, inv), op="mul")
        return self.emit(OpKind.AGGREGATE, (m,), index="dst", reduce=reduce)

    def _op_ewise(self, op, a, b):
        return self.emit(OpKind.EWISE, (self.as_value(a), self.as_value(b)), op=op)

    def _op_unary(self, op, x, negative_slope, alpha, p, training):
        xv = self.as_value(x)
        if op == "dropout":
            return self._dropout(xv, p, training)
        extra = {"negative_slope": negative_slope} if op == "leaky_relu" else {"alpha": alpha} if op == "elu" else {}
        return self.emit(OpKind.UNARY, (xv,), op=op, **extra)

    def _dropout(self, xv: Value, p: float, training: bool) -> SymbolicTensor:
        if not training or p == 0:
            return self.wrap(xv)
        mask = self.builder.emit(OpKind.DROPOUT_MASK, (xv,), p=float(p))
        return self.emit(OpKind.EWISE, (xv, mask), op="mul")

    def _reshape(self, x, fn: Callable, *args) -> SymbolicTensor:
        xv = self.as_value(x)
        shape = fn(torch.empty(self._full_shape(xv), device="meta"), *args).shape
        if xv.domain != Domain.SCALAR:
            if shape[0] != self.layout.rows(xv.domain):
                raise CompileError(f"a reshape may not change the number of rows ({list(x.shape)} -> {list(shape)})",
                                   op="reshape", source_line=user_location())
            shape = shape[1:]
        return self.emit(OpKind.RESHAPE, (xv,), shape=tuple(shape))

    def _op_split_heads(self, x, heads):
        return self._reshape(x, lambda t: t.view(t.size(0), heads, t.size(1) // heads))

    def _op_merge_heads(self, x):
        return self._reshape(x, lambda t: t.reshape(t.size(0), -1))

    def _op_combine_bases(self, coeff, basis):
        return self.emit(OpKind.WEIGHT_MATMUL, (self.as_value(coeff, Domain.ETYPE), self.as_value(basis)),
                         equation="rb,bkn->rkn", domain="etype")

    # ------------------------------------------------------------------ plain torch functions
    def torch_function(self, func, args, kwargs):
        name = _func_name(func)
        if name.split(".")[-1] in _METADATA or name in ("Tensor.shape.__get__", "Tensor.dtype.__get__",
                                                         "Tensor.device.__get__", "Tensor.ndim.__get__",
                                                         "Tensor.requires_grad.__get__"):
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func in _ACTIVATIONS:
            op = _ACTIVATIONS[func]
            x = args[0]
            extra = {}
            if op == "leaky_relu":
                extra["negative_slope"] = float(args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01))
            if op == "elu":
                extra["alpha"] = float(args[1] if len(args) > 1 else kwargs.get("alpha", 1.0))
            if op == "softplus" and (tuple(args[1:]) + tuple(kwargs.values())) not in ((), (1,), (1, 20), (1.0,),
                                                                                          (1.0, 20.0), (1, 20.0)):
                raise CompileError("softplus: only beta=1, threshold=20 compile", op="softplus",
                                   source_line=user_location())
            return self.emit(OpKind.UNARY, (self.as_value(x),), op=op, **extra)
        if func in _BINARY:
            op, swapped = _BINARY[func]
            a, b = args[0], args[1] if len(args) > 1 else kwargs["other"]
            if swapped:
                a, b = b, a
            return self.emit(OpKind.EWISE, (self.as_value(a), self.as_value(b)), op=op)
        if func is F.dropout:
            p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
            training = args[2] if len(args) > 2 else kwargs.get("training", True)
            return self._dropout(self.as_value(args[0]), p, training)
        if func in (Tensor.view, Tensor.reshape, torch.reshape):
            dims = args[1:] if func is not torch.reshape else (args[1],)
            return self._reshape(args[0], lambda t: t.reshape(*dims))
        raise CompileError(f"cannot compile '{name}': graphcore.compile supports graphcore.ops, activations, "
                           "arithmetic, dropout and row reshapes (or pass fallback='eager')",
                           op=name, source_line=user_location())

    # ------------------------------------------------------------------ result
    def program(self, outputs) -> Program:
        outs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        values = []
        for o in outs:
            if not isinstance(o, SymbolicTensor) or o.value is None:
                raise CompileError(f"the model must return traced tensors, got {type(o).__name__}")
            values.append(o.value)
        used = {v.id for op in self.builder.ops for v in op.inputs} | {v.id for v in values}
        params = tuple(v for v in self.params.values() if v.id in used)
        return Program(tuple(self.inputs), params, tuple(self.builder.ops), tuple(values))


def trace(module: torch.nn.Module, graph: HeteroGraph, inputs: tuple[Tensor, ...]) -> tuple[Program, list[str]]:
    """Trace ``module(graph, *inputs)``; returns the program and the parameter names in
    :attr:`Program.params` order."""
    from torch.func import functional_call

    dtype = inputs[0].dtype
    tracer = Tracer(graph, dtype)
    symbolic_inputs = [tracer.input(t, f"input{i}") for i, t in enumerate(inputs)]
    named = dict(module.named_parameters())
    for name, p in named.items():
        if p.dtype != dtype:
            raise CompileError(f"parameter '{name}' is {p.dtype} but the input is {dtype}; convert the model "
                               "with .to(dtype)")
    stand_ins = {name: tracer.parameter(name, p) for name, p in named.items()}
    out = functional_call(module, stand_ins, (SymbolicGraph(tracer, graph), *symbolic_inputs), strict=False)
    program = tracer.program(out)
    return program, [v.name for v in program.params]

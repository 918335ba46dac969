r"""PyG ``to_hetero`` models under :func:`graphcore.compile`.

``torch_geometric.nn.to_hetero(model, metadata, aggr)`` returns a ``torch.fx.GraphModule`` that
copies every layer per relation (message passing: ``conv1.a__r1__b``) or per node type
(everything else: ``lin.a``), calls each copy on one type's rows, and combines the relations
of every destination type with ``torch.add`` in pairs (``aggr="sum"``), followed by
``torch.div`` by their number (``aggr="mean"``).

graphcore keeps one value per node for all types (rows stacked in node-type order), so this
module runs the GraphModule's fx graph with an interpreter that undoes the copying:

* the per-relation copies of one ``GraphConv``/``SAGEConv`` and the sums that combine them are
  one ``HeteroConv``-like layer (:func:`graphcore.pyg.layers.hetero_conv_forward`, on views of
  the copies' parameters), computed once when its first per-type result is read;
* the per-type copies of an ``nn.Linear`` are one ``typed_linear`` with their weights stacked;
* the per-type copies of an activation, dropout or arithmetic op are that op, once, on the
  stacked value (these act row by row, so each type's rows are what PyG computes);
* the copies of any other module (``LayerNorm``, ``BatchNorm``) run eagerly, each on its type's
  rows, in one step between compiled regions (a graph break).

The copies of one op are recognised by the names ``to_hetero`` gives them (``{op}__{type}``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from graphcore.codegen.errors import CompileError, GraphError
from graphcore.pyg import layers

if TYPE_CHECKING:
    from graphcore.codegen.ir.values import Value
    from graphcore.pyg.frontend import PygFrontend
    from graphcore.trace import SymbolicTensor

_COMBINE = {torch.add: "sum", torch.max: "max", torch.min: "min", torch.mul: "mul"}  # to_hetero's aggrs


def is_to_hetero(module: nn.Module) -> bool:
    """Whether ``module`` is a GraphModule made by ``torch_geometric.nn.to_hetero``."""
    if not isinstance(module, fx.GraphModule):
        return False
    return any(n.op == "call_function" and getattr(n.target, "__module__", "") ==
               "torch_geometric.nn.to_hetero_transformer" for n in module.graph.nodes)


def _key2str(key: str | tuple[str, str, str]) -> str:
    """to_hetero's name of a node or edge type's copy (its ``key2str``)."""
    key = "__".join(key) if isinstance(key, tuple) else key
    return key.replace(" ", "_").replace("-", "_").replace(":", "_")


def _relations(gm: fx.GraphModule) -> list[tuple[str, str, str]]:
    """The metadata relations, from the ``edge_index_dict.get(relation, None)`` calls to_hetero writes."""
    return [n.args[1] for n in gm.graph.nodes if n.op == "call_method" and n.target == "get"
            and isinstance(n.args[1], tuple) and len(n.args[1]) == 3]


@dataclass(eq=False)
class ToHeteroLayer:
    """The per-relation copies of one message-passing layer of a to_hetero model, seen as a
    ``HeteroConv`` (what :func:`layers.check_hetero_conv` and :func:`layers.hetero_conv_forward` read)."""

    path: str
    convs: dict[tuple[str, str, str], nn.Module]
    aggr: str = "sum"
    label: str = field(init=False)

    def __post_init__(self):
        self.label = f"to_hetero layer '{self.path}'"


def _layers(gm: fx.GraphModule) -> dict[str, ToHeteroLayer]:
    """The to_hetero model's message-passing layers by module path, with their copies per relation."""
    from torch_geometric.nn import MessagePassing

    by_name = {_key2str(r): r for r in _relations(gm)}
    found: dict[str, ToHeteroLayer] = {}
    for path, module in gm.named_modules():
        if isinstance(module, nn.ModuleDict) and any(isinstance(m, MessagePassing) for m in module.values()):
            unknown = [k for k in module if k not in by_name]
            if unknown:
                raise CompileError(f"to_hetero layer '{path}' has copies {unknown} for no relation of the model's "
                                   "metadata: to_hetero treats an argument as edge-level only when its name holds "
                                   "'edge' (call it edge_index)", op=type(next(iter(module.values()))).__name__)
            found[path] = ToHeteroLayer(path, {by_name[k]: m for k, m in module.items()})
    return found


def _aggr_of(gm: fx.GraphModule) -> str:
    """to_hetero's ``aggr``: the function that combines the outputs of per-relation copies (and,
    for ``"mean"``, the ``torch.div`` of their sum)."""
    from torch_geometric.nn import MessagePassing

    def from_relations(a: Any) -> bool:
        if not isinstance(a, fx.Node):
            return False
        if a.op == "call_module":
            return isinstance(gm.get_submodule(a.target), MessagePassing)
        return a.op == "call_function" and a.target in _COMBINE and any(from_relations(b) for b in a.args)

    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    if any(n.target is torch.div and from_relations(n.args[0]) for n in calls):
        return "mean"
    return next((_COMBINE[n.target] for n in calls if n.target in _COMBINE and from_relations(n)), "sum")


def check_to_hetero(gm: fx.GraphModule) -> None:
    """Refuse, naming the layer and relation, the to_hetero models graphcore cannot compile."""
    aggr = _aggr_of(gm)
    for layer in _layers(gm).values():
        if aggr not in ("sum", "mean"):
            raise layers._refuse(layer, f"to_hetero(aggr={aggr!r}) (supported: 'sum', 'mean')")
        layers.check_hetero_conv(layer)


@dataclass(frozen=True)
class _Part:
    """The output of some of a layer's per-relation copies for one destination type, before
    to_hetero's combination is complete (``divided``: the sum was divided by its count)."""

    layer: ToHeteroLayer
    base: Value  # the per-node value whose rows every copy read
    relations: frozenset[tuple[str, str, str]]
    ntype: str
    divided: bool = False


class ToHeteroInterpreter(fx.Interpreter):
    """Runs a to_hetero GraphModule's fx graph on stacked symbolic values (see module doc)."""

    def __init__(self, gm: fx.GraphModule, frontend: PygFrontend):
        super().__init__(gm)
        self.frontend, self.tracer = frontend, frontend.tracer
        self.hgraph = frontend.graph
        self.layers = _layers(gm)
        self.prefix = frontend.prefixes[id(gm)]  # the to_hetero model's path in the compiled model
        for layer in self.layers.values():
            layer.aggr = _aggr_of(gm)
            frontend.prefixes[id(layer)] = f"{self.prefix}{layer.path}."
        self.types = {_key2str(t): t for t in self.hgraph.node_types}
        self.memo: dict[tuple, Any] = {}
        missing = [r for r in _relations(gm) if r not in frontend.edge_index_dict]
        if missing:
            raise GraphError(f"the to_hetero model's relation {missing[0]} is not in edge_index_dict; give every "
                             f"relation of its metadata an edge_index (an empty [2, 0] one for no edges)")

    # ------------------------------------------------------------------ fx node kinds
    def call_module(self, target: str, args, kwargs):
        parent, _, key = target.rpartition(".")
        if parent in self.layers:
            return self._relation_call(self.layers[parent], key, args, kwargs)
        if parent and isinstance(self.fetch_attr(parent), nn.ModuleDict) and key in self.types:
            return self._per_type(parent, self.types[key], lambda a, k: self._stacked_module(parent, a, k),
                                  args, kwargs)
        return super().call_module(target, *self._materialized(args, kwargs))

    def call_function(self, target, args, kwargs):
        parts = [a for a in args if isinstance(a, _Part)]
        if parts:
            return self._combine(target, args, kwargs)
        return self._maybe_per_type(target, args, kwargs, super().call_function)

    def call_method(self, target: str, args, kwargs):
        return self._maybe_per_type(getattr(Tensor, target, target), args, kwargs,
                                    lambda _, a, k: super(ToHeteroInterpreter, self).call_method(target, a, k))

    def run_node(self, n: fx.Node) -> Any:
        self.node = n
        return super().run_node(n)

    def output(self, target, args, kwargs):
        return super().output(target, *self._materialized(args, kwargs))

    # ------------------------------------------------------------------ message passing
    def _relation_call(self, layer: ToHeteroLayer, key: str, args, kwargs) -> _Part:
        relation = next(r for r, c in layer.convs.items() if _key2str(r) == key)
        if len(args) != 2 or kwargs:
            raise layers._refuse(layer, f"extra arguments to its copy for {relation} (edge_weight, size, ...)")
        x, edge_index = self._materialized(args, {})[0]
        if edge_index is not self.frontend.edge_index_dict[relation]:
            raise CompileError(f"{layer.label}: its copy for {relation} is called with another edge_index than "
                               "edge_index_dict's", op=type(layer.convs[relation]).__name__)
        rows = x if isinstance(x, tuple) else (x, x)
        bases = {getattr(r, "node_slice", None) and r.node_slice[0] for r in rows}
        if len(bases) != 1 or None in bases or [r.node_slice[1] for r in rows] != [relation[0], relation[2]]:
            raise CompileError(f"{layer.label}: its copy for {relation} must read the rows of node types "
                               f"{relation[0]!r} and {relation[2]!r} of one compiled value", op=type(layer).__name__)
        return _Part(layer, bases.pop(), frozenset([relation]), relation[2])

    def _combine(self, target, args, kwargs) -> _Part | SymbolicTensor:
        """to_hetero's combination of per-relation outputs: the sums and the division of ``"mean"``."""
        a, b = args[0], args[1] if len(args) > 1 else None
        if target is torch.add and isinstance(a, _Part) and isinstance(b, _Part) and not kwargs and \
                (a.layer, a.base, a.ntype) == (b.layer, b.base, b.ntype) and not (a.divided or b.divided):
            return _Part(a.layer, a.base, a.relations | b.relations, a.ntype)
        if target is torch.div and isinstance(a, _Part) and type(b) is int and b == len(a.relations) \
                and not a.divided:
            return _Part(a.layer, a.base, a.relations, a.ntype, divided=True)
        return super().call_function(target, *self._materialized(args, kwargs))

    def _materialize(self, part: _Part) -> SymbolicTensor:
        """The rows of ``part``'s type of its layer's output, once its relations are all combined."""
        layer = part.layer
        incoming = {r for r in layer.convs if r[2] == part.ntype}
        if part.relations != incoming:
            raise CompileError(f"{layer.label}: the output for node type {part.ntype!r} combines relations "
                               f"{sorted(part.relations)} but not all of {sorted(incoming)}; graphcore compiles "
                               "to_hetero's own combination (aggr='sum' or 'mean')", op="to_hetero")
        if part.divided != (layer.aggr == "mean" and len(incoming) > 1):
            raise CompileError(f"{layer.label}: the output for node type {part.ntype!r} is not combined as "
                               f"to_hetero(aggr={layer.aggr!r}) combines it", op="to_hetero")
        key = ("layer", id(layer), part.base.id)
        if key not in self.memo:
            x_dict = self.frontend.unstacked(self.tracer.wrap(part.base), list(self.hgraph.node_types))
            self.memo[key] = layers.hetero_conv_forward(layer, self.frontend, x_dict, self.frontend.edge_index_dict)
        return self.memo[key][part.ntype]

    def _materialized(self, args, kwargs) -> tuple[tuple, dict]:
        flat, spec = tree_flatten((args, kwargs), is_leaf=lambda x: isinstance(x, _Part))
        return tree_unflatten([self._materialize(x) if isinstance(x, _Part) else x for x in flat], spec)

    # ------------------------------------------------------------------ per node type
    def _maybe_per_type(self, func, args, kwargs, run):
        args, kwargs = self._materialized(args, kwargs)
        ntype = self._slice_type(args, kwargs)
        if ntype is None or not self._is_row_wise(func):
            return run(func, args, kwargs)
        origin = self.node.name.removesuffix(f"__{_key2str(ntype)}")
        return self._per_type(origin, ntype, lambda a, k: func(*a, **k), args, kwargs)

    def _slice_type(self, args, kwargs) -> str | None:
        """The node type whose copy of an op this fx node is (one type's rows in, named ``{op}__{type}``)."""
        from graphcore.trace import SymbolicTensor

        types = {a.node_slice[1] for a in tree_flatten((args, kwargs))[0]
                 if isinstance(a, SymbolicTensor) and a.node_slice is not None}
        suffix = self.node.name.rpartition("__")[2]
        return types.pop() if len(types) == 1 and _key2str(next(iter(types))) == suffix else None

    @staticmethod
    def _is_row_wise(func) -> bool:
        from graphcore.trace import _ACTIVATIONS, _BINARY

        return func in _ACTIVATIONS or func in _BINARY or func is F.dropout

    def _per_type(self, origin: str, ntype: str, stacked, args, kwargs) -> SymbolicTensor:
        """``ntype``'s copy of the op ``origin``: its rows of ``stacked``, the op's copies as one op on
        the stacked values, run once for all types (memoised on ``origin`` and the values read)."""
        from graphcore.trace import SymbolicTensor

        args, kwargs = self._materialized(args, kwargs)
        flat, spec = tree_flatten((args, kwargs))
        bases = [a.node_slice[0] if isinstance(a, SymbolicTensor) and a.node_slice is not None else None
                 for a in flat]
        if any(a.node_slice[1] != ntype for a, b in zip(flat, bases) if b is not None):
            raise CompileError(f"to_hetero's copy '{self.node.name}' for node type {ntype!r} reads another type's "
                               "rows", op=self.node.name)
        memo_key = ("per_type", origin, tuple(b.id if b is not None else _const_key(a) for a, b in zip(flat, bases)))
        if memo_key not in self.memo:
            out = stacked(*tree_unflatten([self.tracer.wrap(b) if b is not None else a for a, b in zip(flat, bases)],
                                          spec))
            if not (isinstance(out, SymbolicTensor) and out.value is not None and out.node_slice is None):
                raise CompileError(f"to_hetero's copies of '{origin}' do not give one row per node; graphcore "
                                   "cannot compile them", op=origin)
            self.memo[memo_key] = out
        return self.tracer.node_slice(self.memo[memo_key].value, ntype)

    def _stacked_module(self, parent: str, args, kwargs) -> SymbolicTensor:
        """The per-type copies of a module as one op on the stacked value: ``typed_linear`` for
        ``Linear`` copies, the module itself for a parameterless activation or dropout, and
        otherwise each copy on its type's rows in one eager step (a graph break)."""
        from graphcore import ops

        copies = self.fetch_attr(parent)
        types = self.hgraph.node_types
        mods = [copies[_key2str(t)] if _key2str(t) in copies else None for t in types]  # None: not in metadata
        present = [m for m in mods if m is not None]
        name, kind = f"{self.prefix}{parent}", type(present[0]).__name__
        if all(_is_linear(m) for m in present) and len(args) == 1 and not kwargs:
            def stack(*ps):  # rows of zeros for types that the metadata lacks (PyG ignores their rows)
                it = iter(ps)
                return torch.stack([next(it) if m is not None else torch.zeros_like(ps[0]) for m in mods])

            w = self.tracer.prepare(f"{name}.weight@graphcore", lambda *ws: stack(*[v.t() for v in ws]),
                                    *[m.weight for m in present])
            b = None
            if present[0].bias is not None:
                b = self.tracer.prepare(f"{name}.bias@graphcore", stack, *[m.bias for m in present])
            return ops.typed_linear(self.frontend.g, args[0], w, by="ntype", bias=b)
        if all(isinstance(m, _ROW_WISE_MODULES) and not any(True for _ in m.parameters()) for m in present):
            return present[0](*args, **kwargs)
        if len(args) != 1 or kwargs:
            raise CompileError(f"to_hetero's per-node-type copies of '{name}' ({kind}) take more than the rows: "
                               "graphcore cannot run them", op=kind)
        per_type = _PerTypeModules(mods, tuple(self.hgraph.num_nodes(t) for t in types))
        return self.tracer.eager(per_type, (args[0],), {}, f"to_hetero '{name}' ({kind} per node type)",
                                 shape_of=per_type.on_meta)


class _PerTypeModules:
    """Each node type's copy of a module on that type's rows of the stacked value: an eager step
    between compiled regions, for the row counts of the traced graph (the step holds them, so
    the plan serves graphs of those sizes only)."""

    def __init__(self, mods: list[nn.Module | None], counts: tuple[int, ...]):
        self.mods, self.counts = mods, counts

    def __call__(self, x: Tensor) -> Tensor:
        return self._run(x, lambda m, rows: m(rows))

    def on_meta(self, x: Tensor) -> Tensor:
        """The output's shape: each copy run on meta tensors, with meta stand-ins for its state."""
        from torch.func import functional_call

        def run(m, rows):
            state = {n: torch.empty(t.shape, dtype=t.dtype, device="meta")
                     for n, t in [*m.named_parameters(), *m.named_buffers()]}
            return functional_call(m, state, (rows,))

        return self._run(x, run)

    def _run(self, x: Tensor, run) -> Tensor:
        outs = [run(m, rows) if m is not None else None for m, rows in zip(self.mods, x.split(list(self.counts)))]
        like = next(o for o in outs if o is not None)  # zeros for the rows of types the metadata lacks
        return torch.cat([o if o is not None else like.new_zeros(n, *like.shape[1:])
                          for o, n in zip(outs, self.counts)])


def _const_key(a: Any) -> Any:
    """A memo key for a non-tensor argument (its value when hashable)."""
    try:
        hash(a)
        return a
    except TypeError:
        return id(a)


def _is_linear(module: nn.Module) -> bool:
    from torch_geometric.nn import Linear

    return isinstance(module, (nn.Linear, Linear))


_ROW_WISE_MODULES = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Dropout,
                     nn.Identity)


def to_hetero_forward(gm: fx.GraphModule, frontend: PygFrontend, *args, **kwargs) -> Any:
    """What runs in place of a to_hetero model's forward while it is traced."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    values = list(args)
    for n in placeholders[len(args):]:
        if n.target in kwargs:
            values.append(kwargs.pop(n.target))
        elif n.args:
            values.append(n.args[0])
        else:
            raise GraphError(f"the to_hetero model needs its argument '{n.target}'")
    if kwargs:
        raise GraphError(f"the to_hetero model has no arguments {sorted(kwargs)}")
    if frontend.edge_index_dict is None:
        raise GraphError("a to_hetero model takes (x_dict, edge_index_dict) or a HeteroData")
    return ToHeteroInterpreter(gm, frontend).run(*values)

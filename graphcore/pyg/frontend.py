r"""PyG's calling conventions for compiled models.

A compiled model that contains PyG layers is called as in PyG:

* ``model(x, edge_index, edge_type)``, the convention of ``RGCNConv``, ``FastRGCNConv`` and
  ``RGATConv``: the graph has one node type and the model's ``num_relations`` relations;
* ``model(x_dict, edge_index_dict, ...)``, the hetero convention of ``HGTConv``: node types in
  ``x_dict`` order, relations in ``edge_index_dict`` order (more arguments may follow, such as the
  homogeneous ``edge_index``/``edge_type`` of the same graph for an ``RGCNConv`` inside);
* ``model(data)`` with a ``HeteroData``: ``model(data.x_dict, data.edge_index_dict)``; this is also
  how a ``to_hetero`` model is called (:mod:`graphcore.pyg.to_hetero` runs its fx graph).

The :class:`~graphcore.graph.HeteroGraph` and its layout are built from the edge tensors once
and cached (:class:`GraphCache`, keyed by the tensors' identity and version), not rebuilt on
every call. While the model is traced, ``x`` (or the rows of ``x_dict``, stacked in node-type
order) is symbolic and each PyG layer runs its graphcore equivalent (:mod:`graphcore.pyg.layers`).
"""
from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from graphcore.codegen.errors import CompileError, GraphError
from graphcore.graph import HeteroGraph
from graphcore.pyg import layers, to_hetero

if TYPE_CHECKING:
    from graphcore.compile import Call
    from graphcore.trace import SymbolicGraph, SymbolicTensor, Tracer

SUPPORTED = ("RGCNConv, FastRGCNConv, RGATConv, HGTConv, HeteroConv over GraphConv/SAGEConv, "
             "to_hetero(aggr='sum'/'mean') models over GraphConv/SAGEConv")
_CACHE_SIZE = 8  # graphs kept per compiled model (a training loop alternates a few)


def _pyg_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """PyG's modules in ``model``, without those inside a ``HeteroConv`` or a ``to_hetero`` model
    (each substituted as a whole)."""
    inside: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in inside):
            continue
        if type(module).__module__.startswith("torch_geometric.") or to_hetero.is_to_hetero(module):
            yield name, module
            if type(module).__name__ == "HeteroConv" or to_hetero.is_to_hetero(module):
                inside.append(f"{name}." if name else "")


def is_pyg_model(model: nn.Module) -> bool:
    return next(_pyg_modules(model), None) is not None


def _forward_of(module: nn.Module):
    """The graphcore forward that replaces a PyG layer's while tracing, or None."""
    from torch_geometric.nn import HeteroConv, HGTConv, MessagePassing, RGATConv, RGCNConv

    if to_hetero.is_to_hetero(module):  # its per-relation copies become HeteroConv-like layers
        return to_hetero.check_to_hetero, to_hetero.to_hetero_forward
    if isinstance(module, HeteroConv):  # its inner layers become one graphcore layer
        return layers.check_hetero_conv, layers.hetero_conv_forward
    if isinstance(module, RGCNConv):  # FastRGCNConv too: same parameters and numerics
        return layers.check_rgcn, layers.rgcn_forward
    if isinstance(module, RGATConv):
        return layers.check_rgat, layers.rgat_forward
    if isinstance(module, HGTConv):
        return layers.check_hgt, layers.hgt_forward
    if isinstance(module, MessagePassing):
        return None
    return False  # not a message-passing layer (Linear, HeteroDictLinear, ...): traced as it is


def check_model(model: nn.Module) -> None:
    """Refuse, by class and module path, the PyG layers and configurations graphcore cannot compile."""
    for name, module in _pyg_modules(model):
        found = _forward_of(module)
        if found is None:
            raise CompileError(f"graphcore.compile cannot substitute PyG's {type(module).__name__} ('{name}'); "
                               f"supported layers: {SUPPORTED}", op=type(module).__name__)
        if found:
            found[0](module)


class GraphCache:
    """The graphs of recent calls, keyed by the identity, version and shape of their edge tensors
    (an in-place edit of ``edge_index`` bumps its version and so builds a new graph)."""

    def __init__(self):
        self._graphs: OrderedDict[tuple, tuple[HeteroGraph, tuple[Tensor, ...]]] = OrderedDict()

    def get(self, tensors: tuple[Tensor, ...], extra: tuple, build) -> HeteroGraph:
        key = (tuple((id(t), t._version, tuple(t.shape)) for t in tensors), extra)
        hit = self._graphs.get(key)
        if hit is not None:
            self._graphs.move_to_end(key)
            return hit[0]
        graph = build()
        self._graphs[key] = (graph, tensors)  # holding the tensors keeps their ids from being reused
        if len(self._graphs) > _CACHE_SIZE:
            self._graphs.popitem(last=False)
        return graph


def _num_relations(model: nn.Module) -> int:
    from torch_geometric.nn import RGATConv, RGCNConv

    counts = {(name, m.num_relations) for name, m in _pyg_modules(model) if isinstance(m, (RGCNConv, RGATConv))}
    if not counts:
        raise GraphError("a compiled PyG model called with (x, edge_index, edge_type) needs an RGCNConv, "
                         "FastRGCNConv or RGATConv to say how many relations there are; a model of HGTConv layers "
                         "takes (x_dict, edge_index_dict) or a HeteroData")
    if len({r for _, r in counts}) > 1:
        raise CompileError(f"the model's relational layers disagree on num_relations: {sorted(counts)}")
    return counts.pop()[1]


def _edge_tensors(edge_index: Any, edge_type: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(edge_index, Tensor) or edge_index.is_sparse or edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise GraphError(f"edge_index must be a [2, E] torch.Tensor, got "
                         f"{getattr(edge_index, 'shape', type(edge_index).__name__)}")
    if edge_index.dtype != torch.int64:
        raise GraphError(f"edge_index must be int64, got {edge_index.dtype}; convert it with .long()")
    if not isinstance(edge_type, Tensor) or edge_type.dim() != 1 or edge_type.numel() != edge_index.size(1):
        raise GraphError(f"edge_type must be a 1-d tensor with one relation id per edge ({edge_index.size(1)}), got "
                         f"{getattr(edge_type, 'shape', type(edge_type).__name__)}")
    return edge_index, edge_type.long()


def homogeneous_graph(num_nodes: int, edge_index: Tensor, edge_type: Tensor, num_relations: int) -> HeteroGraph:
    """The graph of ``(edge_index, edge_type)``: one node type ``"node"``, relation ``r`` named ``str(r)``."""
    bad = (edge_type < 0) | (edge_type >= num_relations)
    if bool(bad.any()):
        pos = int(bad.nonzero()[0, 0])
        raise GraphError(f"edge_type {int(edge_type[pos])} at edge {pos} is out of range: the model's relational "
                         f"layers have num_relations={num_relations} (valid relation ids are 0..{num_relations - 1})")
    return HeteroGraph({"node": num_nodes},
                       {("node", str(r), "node"): edge_index[:, edge_type == r] for r in range(num_relations)})


def hetero_graph(x_dict: dict[str, Tensor], edge_index_dict: dict) -> HeteroGraph:
    for relation in edge_index_dict:
        for end, ntype in (("source", relation[0]), ("destination", relation[2])):
            if ntype not in x_dict:
                raise GraphError(f"x_dict has no features for node type '{ntype}', the {end} type of relation "
                                 f"{tuple(relation)}; give every node type a [num_nodes, F] tensor")
    return HeteroGraph({t: x.size(0) for t, x in x_dict.items()},
                       {tuple(r): e for r, e in edge_index_dict.items()})


def _is_edge_dict(a: Any) -> bool:
    return isinstance(a, dict) and bool(a) and all(isinstance(k, tuple) and len(k) == 3 for k in a)


def _is_x_dict(a: Any) -> bool:
    return isinstance(a, dict) and bool(a) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in a.items())


class PygFrontend:
    """One PyG-convention call: builds its graph and inputs, and serves the substituted layers
    while the model is traced."""

    def __init__(self, model: nn.Module, args: tuple, kwargs: dict, cache: GraphCache):
        from torch_geometric.data import HeteroData

        if len(args) == 1 and not kwargs and isinstance(args[0], HeteroData):
            args = (args[0].x_dict, args[0].edge_index_dict)
        self.model, self.args, self.kwargs = model, args, dict(kwargs)
        self.tracer: Tracer | None = None
        self.g: SymbolicGraph | None = None
        self.prefixes: dict[int, str] = {}
        self._checked: set[tuple[int, int]] = set()
        positions = list(enumerate(args)) + list(kwargs.items())
        edge_dicts = [(p, a) for p, a in positions if _is_edge_dict(a)]
        if edge_dicts:
            x_dicts = [(p, a) for p, a in positions if _is_x_dict(a)]
            if not x_dicts:
                raise GraphError("a compiled PyG model called with an edge_index_dict needs an x_dict "
                                 "{node_type: [num_nodes, F]} among its arguments")
            (self.x_at, x_dict), (_, self.edge_index_dict) = x_dicts[0], edge_dicts[0]
            tensors = tuple(self.edge_index_dict.values())
            self.graph = cache.get(tensors, ("hetero", tuple(self.edge_index_dict), tuple(x_dict),
                                             tuple(x.size(0) for x in x_dict.values())),
                                   lambda: hetero_graph(x_dict, self.edge_index_dict))
            sizes = {t: tuple(x.shape[1:]) for t, x in x_dict.items()}
            if len(set(sizes.values())) > 1:
                raise GraphError(f"x_dict rows have different sizes {sizes}; graphcore stacks node types into one "
                                 "[N, F] tensor: project each type to a common size first")
            self.inputs = (torch.cat([x_dict[t] for t in self.graph.node_types]),)
            self.x_keys = tuple(x_dict)
            self.call_edges = None
        else:
            if not args or not isinstance(args[0], Tensor):
                raise GraphError("a compiled PyG model takes (x, edge_index, edge_type), (x_dict, edge_index_dict) "
                                 f"or a HeteroData; got {[type(a).__name__ for a in args]}")
            edge_type = args[2] if len(args) > 2 else kwargs.get("edge_type")
            edge_index, edge_type = _edge_tensors(args[1] if len(args) > 1 else kwargs.get("edge_index"), edge_type)
            x, R = args[0], _num_relations(model)
            self.graph = cache.get((edge_index, edge_type), ("homogeneous", x.size(0), R),
                                   lambda: homogeneous_graph(x.size(0), edge_index, edge_type, R))
            self.inputs = (x,)
            self.x_at, self.x_keys, self.edge_index_dict = 0, None, None
            self.call_edges = (args[1] if len(args) > 1 else kwargs.get("edge_index"),
                               args[2] if len(args) > 2 else kwargs.get("edge_type"))

    def call(self) -> Call:
        from graphcore.compile import Call

        layout = tuple(p if isinstance(p, str) else type(a).__name__ for p, a in
                       list(enumerate(self.args)) + list(self.kwargs.items()))
        return Call(self.graph, self.inputs, lambda: self.model(*self.args, **self.kwargs), self.make_args,
                    ("pyg", layout, self.x_keys), self.tracing)

    # ------------------------------------------------------------------ tracing
    def make_args(self, g: SymbolicGraph, xs: list[SymbolicTensor]) -> tuple[tuple, dict]:
        self.g, self.tracer = g, g.tracer
        if self.x_keys is None:
            x = xs[0]
        else:
            x = {t: self.tracer.node_slice(xs[0].value, t) for t in self.x_keys}
        args, kwargs = list(self.args), dict(self.kwargs)
        if isinstance(self.x_at, str):
            kwargs[self.x_at] = x
        else:
            args[self.x_at] = x
        return tuple(args), kwargs

    @contextlib.contextmanager
    def tracing(self):
        """Replace every PyG layer's ``forward`` (on the instance) by its graphcore equivalent."""
        patched = []
        try:
            for name, module in _pyg_modules(self.model):
                found = _forward_of(module)
                if found is False:
                    continue
                if found is None:
                    raise CompileError(f"graphcore.compile cannot substitute PyG's {type(module).__name__} "
                                       f"('{name}'); supported layers: {SUPPORTED}", op=type(module).__name__)
                found[0](module)
                self.prefixes[id(module)] = f"{name}." if name else ""
                module.forward = functools.partial(found[1], module, self)
                patched.append(module)
            yield
        finally:
            for module in patched:
                del module.forward

    def name(self, conv: nn.Module, attr: str) -> str:
        """A prepared weight's name: the PyG parameter's own name with its module path."""
        return f"{self.prefixes[id(conv)]}{attr}"

    def graph_for(self, conv: nn.Module, edge_index: Any, edge_type: Any) -> SymbolicGraph:
        """The graph of this call, after checking that a layer's ``(edge_index, edge_type)`` is it."""
        who = f"{type(conv).__name__} ('{self.prefixes[id(conv)].rstrip('.')}')"
        if self.call_edges is not None:
            if edge_index is self.call_edges[0] and edge_type is self.call_edges[1]:
                return self.g
            raise CompileError(f"{who} is called with another edge_index/edge_type than the model's input; a "
                               "compiled model runs every layer on the graph it is called with", op=type(conv).__name__)
        edge_index, edge_type = _edge_tensors(edge_index, edge_type)
        if (id(edge_index), id(edge_type)) not in self._checked:
            self._check_homogeneous_view(who, edge_index, edge_type)
            self._checked.add((id(edge_index), id(edge_type)))
        return self.g

    def _check_homogeneous_view(self, who: str, edge_index: Tensor, edge_type: Tensor) -> None:
        """A hetero call's layer given homogeneous edges: they must be the graph's own, with global
        node ids in node-type order and relation ids in relation order (PyG's ``to_homogeneous``)."""
        L = self.graph.layout
        n, r = L.num_nodes, L.num_relations

        def codes(et, src, dst):
            return torch.sort((et * n + src) * n + dst).values

        ours = codes(L.etype, L.src, L.dst)
        same = edge_index.size(1) == ours.numel()
        if same and ours.numel():
            in_range = not bool((edge_type < 0).any() or (edge_type >= r).any() or (edge_index < 0).any()
                                or (edge_index >= n).any())
            same = in_range and torch.equal(codes(edge_type, edge_index[0], edge_index[1]), ours)
        if not same:
            raise CompileError(f"{who} is called with an edge_index/edge_type that is not the homogeneous view of the "
                               "call's edge_index_dict (global node ids in x_dict order, relation ids in "
                               "edge_index_dict order, as HeteroData.to_homogeneous() gives)", op="RGCNConv")

    def hetero_graph_for(self, conv: nn.Module, edge_index_dict: Any) -> SymbolicGraph:
        who = f"{type(conv).__name__} ('{self.prefixes[id(conv)].rstrip('.')}')"
        if self.edge_index_dict is None:
            raise CompileError(f"{who} takes (x_dict, edge_index_dict): call the compiled model with them or with a "
                               "HeteroData", op=type(conv).__name__)
        if not _is_edge_dict(edge_index_dict) or list(edge_index_dict) != list(self.edge_index_dict) or \
                any(a is not b for a, b in zip(edge_index_dict.values(), self.edge_index_dict.values())):
            raise CompileError(f"{who} is called with another edge_index_dict than the model's input",
                               op=type(conv).__name__)
        return self.g

    def stacked(self, conv: nn.Module, x_dict: Any) -> SymbolicTensor:
        """The per-node value behind an ``x_dict`` of every node type's rows."""
        from graphcore.trace import SymbolicTensor

        slices = {t: getattr(v, "node_slice", None) for t, v in x_dict.items()} if isinstance(x_dict, dict) else {}
        base = next(iter(slices.values()), None)
        types = self.graph.node_types
        if base is None or set(slices) != set(types) or any(
                not isinstance(x_dict[t], SymbolicTensor) or s != (base[0], t) for t, s in slices.items()):
            raise CompileError(f"{type(conv).__name__} ('{self.prefixes[id(conv)].rstrip('.')}') needs an x_dict with "
                               f"the rows of every node type {list(types)} of one compiled value (the model's "
                               "x_dict, or a layer's output dict)", op=type(conv).__name__)
        return self.tracer.wrap(base[0])

    def unstacked(self, value: SymbolicTensor, types: list[str]) -> dict[str, SymbolicTensor]:
        return {t: self.tracer.node_slice(value.value, t) for t in types}


def pyg_call(model: nn.Module, args: tuple, kwargs: dict, cache: GraphCache) -> Call:
    return PygFrontend(model, args, kwargs, cache).call()

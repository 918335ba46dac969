r"""``graphcore.compile``: turn a relational GNN module into fused kernels.

The returned module *is* the model, re-classed: an instance of a subclass of the model's class
that shares its parameters, buffers and submodules (the very same tensors), so its
``state_dict`` is the model's, any optimizer over ``compiled.parameters()`` trains the model,
and it drops into a LightningModule unchanged. Only ``forward`` differs: on the first call for
a graph *schema* (node types and relations, with feature sizes, dtype, train/eval mode), the
model is traced into the level-1 IR, optimised, differentiated, fused and lowered; later calls,
on that graph or any other of the same schema (a sampled mini-batch, say), run the cached
kernels with the new graph's layout as run-time data. Cost-model decisions are taken once per
schema, on the statistics of the first graph seen; ``explain()`` prints them.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from graphcore import ops
from graphcore.codegen import backends
from graphcore.codegen.driver.plan import Plan, build_plan
from graphcore.codegen.driver.runner import PlanRunner
from graphcore.codegen.errors import CompileError, GraphError
from graphcore.codegen.ir.program import Program
from graphcore.codegen.passes.context import GraphStats
from graphcore.codegen.passes.registry import resolve_passes
from graphcore.codegen.runtime.workspace import WorkspacePool
from graphcore.graph import HeteroGraph
from graphcore.trace import EDGE_INPUT_PREFIX, trace


class CompiledMixin:
    """The behaviour ``compile`` adds to a model's class (see module doc)."""

    _graphcore_original: nn.Module
    _graphcore_options: dict[str, Any]
    _graphcore_plans: dict[tuple, PlanRunner]
    _graphcore_last: Plan | None  # the plan of the latest call (not its graph: that may be large)
    _graphcore_eager: bool

    def forward(self, g: HeteroGraph, *inputs: Tensor):
        if self._graphcore_eager:
            return self._eager(g, *inputs)
        if not isinstance(g, HeteroGraph):
            raise CompileError(f"a compiled model takes a HeteroGraph first, got {type(g).__name__}")
        named = self._graphcore_params
        try:
            runner = self._runner(g, inputs, named)
        except CompileError as err:
            if self._graphcore_options["fallback"] != "eager":
                raise
            warnings.warn(f"graphcore.compile fell back to eager execution: {err}", stacklevel=2)
            self._graphcore_eager = True
            return self._eager(g, *inputs)
        params = [named[name] for name in runner.param_names]
        inputs = (*inputs, *edge_inputs(g, runner.edge_fields))
        train = torch.is_grad_enabled() and (any(t.requires_grad for t in inputs) or
                                             any(p.requires_grad for p in params))
        layout = g.layout
        outs = runner.apply(layout, list(inputs), params) if train else runner.run_inference(layout, list(inputs), params)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _eager(self, g, *inputs):
        original = self._graphcore_original
        original.train(self.training)
        return original(g, *inputs)

    @property
    def _graphcore_params(self) -> dict[str, Tensor]:
        return dict(self._graphcore_original.named_parameters())

    def _runner(self, g: HeteroGraph, inputs: tuple[Tensor, ...], named: dict[str, Tensor]) -> PlanRunner:
        check_inputs(g, inputs)
        grad = torch.is_grad_enabled()
        edge_grads = {name: grad and any(t.requires_grad for t in field.values()) for name, field in g.edge_data.items()}
        params_need = grad and any(p.requires_grad for p in named.values())
        key = (schema_of(g), tuple(tuple(t.shape[1:]) for t in inputs), inputs[0].dtype, inputs[0].device.type,
               self.training, params_need, tuple(grad and t.requires_grad for t in inputs),
               tuple((name, edge_grads[name], *_field_kind(field)) for name, field in g.edge_data.items()))
        plans = self._graphcore_plans
        if key not in plans:
            options = self._graphcore_options
            original = self._graphcore_original
            original.train(self.training)
            traced, names = trace(original, g, inputs)
            fields = edge_fields(traced, len(inputs))
            grad_inputs = (*(grad and t.requires_grad for t in inputs), *(edge_grads[f] for f in fields))
            train = any(grad_inputs) or params_need
            dump = options["dump_dir"]
            if dump is not None:
                dump = _fresh_folder(Path(dump), f"{type(original).__name__}_plan{{}}_{'train' if train else 'infer'}")
            plan = build_plan(traced, GraphStats.from_layout(g.layout), train=train,
                              grad_inputs=grad_inputs if train else tuple(False for _ in grad_inputs),
                              passes=options["passes"], dump_dir=dump)
            backend = backends.resolve(options["backend"], inputs[0].device.type)
            # plans of one compiled model run one at a time: they share one pool of temporaries
            device = str(inputs[0].device)
            if device not in self._graphcore_pools:
                self._graphcore_pools[device] = WorkspacePool(inputs[0].device)
            plans[key] = PlanRunner(plan, backend, grad_inputs, len(traced.outputs), names,
                                    self._graphcore_pools[device], fields)
            source = getattr(plans[key].forward, "source", None)  # native backends: one translation unit
            if dump is not None and source is not None:
                (dump / ("module.cu" if backend == "cuda" else "module.cpp")).write_text(source)
        runner = plans[key]
        self._graphcore_last = runner.plan
        return runner

    def __reduce_ex__(self, protocol):
        """Pickle (``torch.save``, ``copy.deepcopy``, multiprocessing) as the original model plus
        the compile options: plans and native libraries are per process and rebuild lazily on the
        first call after loading, from the build cache."""
        return _recompile, (self._graphcore_original, dict(self._graphcore_options))

    def explain(self, file=None) -> str:
        """The plan of the most recent call: passes that fired, graph sizes, cost before -> after."""
        if self._graphcore_last is None:
            text = "not compiled yet: call the model on a graph first"
        else:
            text = explain_plan(self._graphcore_last)
        print(text, file=file)
        return text


def check_inputs(g: HeteroGraph, inputs: tuple[Tensor, ...]) -> None:
    """Refuse inputs that the cached kernels would misread, before any plan is looked up.

    A plan is keyed by the row *shape* of its inputs, and its kernels take their row counts from
    the graph: an input with another number of rows would be read past its end (or partly
    ignored). So every call checks, in O(number of inputs), what the native code trusts: one
    row per node of ``g``, one floating dtype and one device for all inputs, the graph's device.
    """
    if not inputs:
        raise GraphError("a compiled model needs at least one node-feature input after the graph")
    rows, device = g.num_nodes(), g.device
    first = inputs[0]
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise GraphError(f"input {i} of the compiled model must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 1 or t.size(0) != rows:
            raise GraphError(f"input {i} must have one row per node of the graph ({rows} rows), got shape "
                             f"{list(t.shape)}; stack per-type features with HeteroGraph.stack")
        if not t.is_floating_point():
            raise GraphError(f"input {i} must be a floating-point tensor, got {t.dtype}")
        if t.dtype != first.dtype:
            raise GraphError(f"input {i} is {t.dtype} but input 0 is {first.dtype}; give every input one dtype")
        if t.device != device:
            raise GraphError(f"input {i} is on {t.device} but the graph is on {device}; move both with .to(device)")


def schema_of(g: HeteroGraph) -> tuple:
    """What a plan depends on in a graph: its node types and relations, in order (row counts,
    edges and edge values are run-time data)."""
    return g.node_types, g.relations


def _field_kind(field: dict) -> tuple:
    """An edge-data field's dtype and row shape (a plan reads it with that layout)."""
    first = next(iter(field.values()), None)
    return (None, ()) if first is None else (first.dtype, tuple(first.shape[1:]))


def edge_fields(traced: Program, num_node_inputs: int) -> tuple[str, ...]:
    """Names of the edge-data fields a traced program reads, in its input order (after the node inputs)."""
    return tuple(v.name.removeprefix(EDGE_INPUT_PREFIX) for v in traced.inputs[num_node_inputs:])


def edge_inputs(g: HeteroGraph, fields: tuple[str, ...]) -> list[Tensor]:
    """The graph's edge-data tensors for ``fields``, in canonical edge order (read on every call:
    a sampled batch or a new weight brings its own)."""
    return [ops.edge_data(g, name) for name in fields]


def _recompile(model: nn.Module, options: dict[str, Any]) -> nn.Module:
    """Unpickling of a compiled model (see :meth:`CompiledMixin.__reduce_ex__`)."""
    return compile(model, **options)


def _fresh_folder(root: Path, pattern: str) -> Path:
    """``root / pattern.format(n)`` for the first ``n`` not taken yet: dumps of several graphs,
    models or runs into one folder never overwrite each other."""
    n = 0
    while (root / pattern.format(n)).exists():
        n += 1
    return root / pattern.format(n)


def explain_plan(plan: Plan) -> str:
    from graphcore.codegen.ir.values import Domain

    st = plan.stats
    edges, usrc, udst = st[Domain.EDGE], st[Domain.USRC], st[Domain.UDST]
    lines = [f"graphcore plan: passes {list(plan.passes) or 'none'}",
             f"  decided once per schema, on its first graph: |V|={st[Domain.NODE]} |E|={edges} |U_src|={usrc} (|E|/|U_src|={edges / max(usrc, 1):.2f}) "
             f"|U_dst|={udst} (|E|/|U_dst|={edges / max(udst, 1):.2f}) node types={st[Domain.NTYPE]} "
             f"relations={st[Domain.ETYPE]}",
             f"  estimated GFLOP {plan.cost_naive.flops / 1e9:.4f} -> {plan.cost_optimised.flops / 1e9:.4f}, "
             f"MB moved {plan.cost_naive.bytes / 1e6:.2f} -> {plan.cost_optimised.bytes / 1e6:.2f}",
             f"  kernels: forward {len(plan.forward.kernels)}"
             + (f", backward {len(plan.backward.kernels)}, saved for backward {plan.num_saved}"
                if plan.backward is not None else "")]
    for name, message in plan.log:
        lines.append(f"  [{name}] {message}")
    return "\n".join(lines)


def compile(model: nn.Module, *, backend: str = "auto", passes: list[str] | None = None,
            dump_dir: str | Path | None = None, fallback: str = "error") -> nn.Module:
    r"""Compile a module built from :mod:`graphcore.ops` into fused kernels.

    Args:
        model: a module whose ``forward(g, *x)`` uses :mod:`graphcore.ops` (the layers of
            :mod:`graphcore.nn`, stacks of them with activations and dropout, or your own).
        backend: ``"auto"`` (``cpu`` for CPU tensors, ``cuda`` for CUDA ones), ``"cpu"``,
            ``"cuda"``, or ``"torch"`` (the reference backend).
        passes: optimising passes to run (default: all of ``codegen.passes.registry.OPTIONAL``).
        dump_dir: write the level-1 IR after every pass, the level-2 specs and (native backends) the
            generated C++/CUDA translation unit there, one folder per plan. Default: the
            ``GRAPHCORE_DUMP_DIR`` environment variable, if set.
        fallback: ``"error"`` raises :class:`CompileError` on unsupported code; ``"eager"`` warns
            and runs the model uncompiled.

    Returns:
        The model re-classed (same parameters and ``state_dict``) with a compiled ``forward``.
        It pickles and deep-copies as the model plus these options (``torch.save(compiled, f)``
        and ``torch.load(f, weights_only=False)`` round-trip; kernels are rebuilt on first use).
        Compiling a compiled model compiles its original model with the new options.
    """
    if isinstance(model, CompiledMixin):  # compiling again: start from the model, with the new options
        model = model._graphcore_original
    if fallback not in ("error", "eager"):
        raise ValueError(f"fallback must be 'error' or 'eager', got {fallback!r}")
    if passes is not None:
        resolve_passes(passes)  # an unknown name fails here, not on the first call
    backends.resolve(backend, "cpu")
    if dump_dir is None:
        dump_dir = os.environ.get("GRAPHCORE_DUMP_DIR") or None
    cls = type(model)
    compiled_cls = type(f"Compiled{cls.__name__}", (CompiledMixin, cls), {"__module__": cls.__module__})
    compiled = object.__new__(compiled_cls)
    compiled.__dict__.update(model.__dict__)  # same _parameters/_modules/_buffers dicts: shared tensors
    compiled.__dict__.update(_graphcore_original=None, _graphcore_options=dict(
        backend=backend, passes=passes, dump_dir=dump_dir, fallback=fallback),
        _graphcore_plans={}, _graphcore_pools={}, _graphcore_last=None,
        _graphcore_eager=False)
    object.__setattr__(compiled, "_graphcore_original", model)
    return compiled


__all__ = ["compile", "explain_plan"]

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

import contextlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

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
from graphcore.huge_pages import enable_huge_pages
from graphcore.trace import EDGE_INPUT_PREFIX, EagerStep, Ref, Region, Segments, trace, trace_segments


@dataclass
class Call:
    """One call of a compiled model, in graphcore's terms: the graph, the per-node inputs (one
    row per node of ``graph``), how the traced call's arguments are built around symbolic
    stand-ins (``make_args(g, xs)``; ``None``: graphcore's ``(g, *xs)``), what a plan depends on
    in the call's conventions (``signature``), a context active while tracing (PyG's layers are
    substituted in it), and how to run the model uncompiled on the call's own arguments."""

    graph: HeteroGraph
    inputs: tuple[Tensor, ...]
    eager: Callable[[], Any]
    make_args: Callable | None = None
    signature: tuple = ()
    tracing: Callable[[], ContextManager] = contextlib.nullcontext


class CompiledMixin:
    """The behaviour ``compile`` adds to a model's class (see module doc)."""

    _graphcore_original: nn.Module
    _graphcore_options: dict[str, Any]
    _graphcore_plans: dict[tuple, PlanRunner | SegmentedRunner]
    _graphcore_last: Plan | SegmentedRunner | None  # what the latest call ran (not its graph: that may be large)
    _graphcore_failed: dict[tuple, str]  # plan keys that fell back to eager, with why

    def forward(self, *args, **kwargs):
        call = self._graphcore_call(args, kwargs)
        check_inputs(call.graph, call.inputs)
        named = self._graphcore_params
        key = self._plan_key(call, named)
        if key in self._graphcore_failed:
            return self._eager(call)
        try:
            runner = self._runner(call, key, named)
        except GraphError:
            raise  # bad input or a model bug: eager would fail the same way
        except Exception as err:  # noqa: BLE001 - fallback="eager" catches every failure of compilation
            if self._graphcore_options["fallback"] != "eager":
                if isinstance(err, CompileError):
                    raise
                raise CompileError(f"graphcore.compile failed on {type(self._graphcore_original).__name__}: "
                                   f"{type(err).__name__}: {err}") from err
            warnings.warn(f"graphcore.compile fell back to eager execution for this graph schema and input: "
                          f"{type(err).__name__}: {err}", stacklevel=2)
            self._graphcore_failed[key] = f"{type(err).__name__}: {err}"
            return self._eager(call)
        if isinstance(runner, SegmentedRunner):
            self._graphcore_last = runner
            return runner(call.graph, call.inputs, named)
        self._graphcore_last = runner.plan
        g, inputs = call.graph, call.inputs
        params = [named[name] for name in runner.param_names]
        inputs = (*inputs, *edge_inputs(g, runner.edge_fields))
        train = torch.is_grad_enabled() and (any(t.requires_grad for t in inputs) or
                                             any(p.requires_grad for p in params))
        layout = g.layout
        outs = runner.apply(layout, list(inputs), params) if train else runner.run_inference(layout, list(inputs), params)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _graphcore_call(self, args: tuple, kwargs: dict) -> Call:
        original = self._graphcore_original
        if args and isinstance(args[0], HeteroGraph) and not kwargs:
            if type(original).__module__.startswith("torch_geometric."):
                raise GraphError(f"a compiled PyG {type(original).__name__} is called the PyG way: (x, edge_index, "
                                 "edge_type), (x_dict, edge_index_dict) or a HeteroData (gc.to_pyg(g) makes one), "
                                 "not with a HeteroGraph")
            g, inputs = args[0], args[1:]
            return Call(g, inputs, lambda: original(g, *inputs))
        from graphcore.pyg import frontend

        if frontend.is_pyg_model(original):
            return frontend.pyg_call(original, args, kwargs, self._graphcore_graphs)
        got = type(args[0]).__name__ if args else "no arguments"
        raise CompileError(f"a compiled model takes a HeteroGraph first, got {got} (models containing PyG layers "
                           "also take PyG's (x, edge_index, edge_type), (x_dict, edge_index_dict) or a HeteroData)")

    def _eager(self, call: Call):
        self._graphcore_original.train(self.training)
        return call.eager()

    @property
    def _graphcore_params(self) -> dict[str, Tensor]:
        return dict(self._graphcore_original.named_parameters())

    def _plan_key(self, call: Call, named: dict[str, Tensor]) -> tuple:
        g, inputs = call.graph, call.inputs
        grad = torch.is_grad_enabled()
        edge_grads = {name: grad and any(t.requires_grad for t in field.values()) for name, field in g.edge_data.items()}
        params_need = grad and any(p.requires_grad for p in named.values())
        key = (schema_of(g), tuple(tuple(t.shape[1:]) for t in inputs), inputs[0].dtype, inputs[0].device.type,
               self.training, params_need, tuple(grad and t.requires_grad for t in inputs),
               tuple((name, edge_grads[name], *_field_kind(field)) for name, field in g.edge_data.items()))
        return (*key, call.signature) if call.signature else key

    def _runner(self, call: Call, key: tuple, named: dict[str, Tensor]) -> PlanRunner | SegmentedRunner:
        plans = self._graphcore_plans
        runner = plans.get(key)
        if isinstance(runner, SegmentedRunner) and runner.sizes not in (None, sizes_of(call.graph)):
            key = (*key, sizes_of(call.graph))  # a step holds a row count: one runner per graph size
            runner = plans.get(key)
        if runner is None:
            runner = plans[key] = self._build(call, named)
        return runner

    def _build(self, call: Call, named: dict[str, Tensor]) -> PlanRunner | SegmentedRunner:
        options, original = self._graphcore_options, self._graphcore_original
        g, inputs = call.graph, call.inputs
        original.train(self.training)
        with call.tracing():
            segments = trace_segments(original, g, inputs, fullgraph=options["fullgraph"], make_args=call.make_args)
        if not segments.regions:
            first = segments.breaks[0] if segments.breaks else None
            raise CompileError("graphcore.compile found nothing to compile: every op of the model runs eagerly",
                               op=first.name if first else None, source_line=first.loc if first else None)
        if call.make_args is None and len(segments.steps) == 1:
            return self._plain_runner(g, inputs)
        dump = options["dump_dir"]
        folder = None if dump is None else _fresh_folder(Path(dump), f"{type(original).__name__}_plan{{}}_regions")

        def build_region(index: int, region: Region, grad_inputs: tuple[bool, ...], params_need: bool,
                         layout) -> PlanRunner:
            train = any(grad_inputs) or params_need
            at = None if folder is None else folder / f"region{index}_{'train' if train else 'infer'}"
            plan = build_plan(region.program, GraphStats.from_layout(layout), train=train,
                              grad_inputs=grad_inputs if train else tuple(False for _ in grad_inputs),
                              passes=options["passes"], dump_dir=at)
            return self._plan_runner(plan, region.program, grad_inputs, region.param_names, region.edge_fields,
                                     inputs[0], at)

        return SegmentedRunner(segments, build_region, sizes_of(g) if segments.sized else None)

    def _plain_runner(self, g: HeteroGraph, inputs: tuple[Tensor, ...]) -> PlanRunner:
        """One program for the whole model (no graph break): the plan of the model's own inputs."""
        options, original = self._graphcore_options, self._graphcore_original
        grad = torch.is_grad_enabled()
        traced, names = trace(original, g, inputs)
        fields = edge_fields(traced, len(inputs))
        edge_grads = {name: grad and any(t.requires_grad for t in field.values()) for name, field in g.edge_data.items()}
        grad_inputs = (*(grad and t.requires_grad for t in inputs), *(edge_grads[f] for f in fields))
        params_need = grad and any(p.requires_grad for p in original.parameters())
        train = any(grad_inputs) or params_need
        dump = options["dump_dir"]
        if dump is not None:
            dump = _fresh_folder(Path(dump), f"{type(original).__name__}_plan{{}}_{'train' if train else 'infer'}")
        plan = build_plan(traced, GraphStats.from_layout(g.layout), train=train,
                          grad_inputs=grad_inputs if train else tuple(False for _ in grad_inputs),
                          passes=options["passes"], dump_dir=dump)
        return self._plan_runner(plan, traced, grad_inputs, names, fields, inputs[0], dump)

    def _plan_runner(self, plan: Plan, program: Program, grad_inputs: tuple[bool, ...], names: list[str],
                     fields: tuple[str, ...], like: Tensor, dump: Path | None) -> PlanRunner:
        backend = backends.resolve(self._graphcore_options["backend"], like.device.type)
        # plans of one compiled model run one at a time: they share one pool of temporaries
        device = str(like.device)
        if device not in self._graphcore_pools:
            self._graphcore_pools[device] = WorkspacePool(like.device)
        runner = PlanRunner(plan, backend, grad_inputs, len(program.outputs), names, self._graphcore_pools[device],
                            fields)
        source = getattr(runner.forward, "source", None)  # native backends: one translation unit
        if dump is not None and source is not None:
            (dump / ("module.cu" if backend.startswith("cuda") else "module.cpp")).write_text(source)
        return runner

    def __reduce_ex__(self, protocol):
        """Pickle (``torch.save``, ``copy.deepcopy``, multiprocessing) as the original model plus
        the compile options: plans and native libraries are per process and rebuild lazily on the
        first call after loading, from the build cache."""
        return _recompile, (self._graphcore_original, dict(self._graphcore_options))

    def explain(self, file=None) -> str:
        """What the most recent call ran: its graph breaks (each with the user's source line), the
        eager weight preparations, and per compiled region the plan (passes that fired, graph
        sizes, cost before -> after); then the schemas that fell back to eager, and why."""
        text = "\n".join(line for title, lines in explain_sections(self._graphcore_last, self._graphcore_failed)
                         for line in (title, *lines))
        print(text, file=file)
        return text


class SegmentedRunner:
    """Runs a model traced with graph breaks: its eager steps and compiled regions in order.

    Each region's plan is built on first use, for the gradient needs of that call (which of its
    inputs and weights require grad), and cached. ``sizes`` is set when an eager step holds a row
    count of the traced graph: the runner then serves graphs of those sizes only.
    """

    def __init__(self, segments: Segments, build_region: Callable[..., PlanRunner], sizes: tuple | None):
        self.segments, self.sizes = segments, sizes
        self._build = build_region
        self._runners: dict[tuple, PlanRunner] = {}
        self.plans: dict[int, Plan] = {}  # region index -> plan of its latest run (explain)

    def __call__(self, g: HeteroGraph, inputs: tuple[Tensor, ...], named: dict[str, Tensor]):
        env: dict[int, Tensor] = {v.id: t for v, t in zip(self.segments.inputs, inputs)}
        params = dict(named)
        grad = torch.is_grad_enabled()
        for index, step in enumerate(self.segments.steps):
            if isinstance(step, EagerStep):
                _run_eager(step, g, env, params)
                continue
            xs = [env[v.id].contiguous() for v in step.program.inputs[:step.num_node_inputs]]
            xs += edge_inputs(g, step.edge_fields)
            ps = [params[name].contiguous() for name in step.param_names]
            flags = tuple(grad and t.requires_grad for t in xs)
            params_need = grad and any(p.requires_grad for p in ps)
            key = (index, flags, params_need)
            if key not in self._runners:
                self._runners[key] = self._build(index, step, flags, params_need, g.layout)
            runner = self._runners[key]
            self.plans[index] = runner.plan
            outs = runner.apply(g.layout, xs, ps) if any(flags) or params_need else \
                runner.run_inference(g.layout, xs, ps)
            env.update(zip((v.id for v in step.program.outputs), outs))
        flat = [_resolve(r, g, env, params) for r in self.segments.outputs]
        return tree_unflatten(flat, self.segments.out_spec)


def _resolve(ref: Ref, g: HeteroGraph, env: dict[int, Tensor], params: dict[str, Tensor]) -> Any:
    if ref.kind == "value":
        return env[ref.key.id]
    if ref.kind == "param":
        return params[ref.key]
    if ref.kind == "slice":
        start = g.node_offset(ref.ntype)
        return env[ref.key.id][start:start + g.num_nodes(ref.ntype)]
    return ref.key


def _run_eager(step: EagerStep, g: HeteroGraph, env: dict[int, Tensor], params: dict[str, Tensor]) -> None:
    args, kwargs = tree_unflatten([_resolve(r, g, env, params) for r in step.leaves], step.spec)
    for ref, out in zip(step.outputs, tree_flatten(step.fn(*args, **kwargs))[0]):
        if ref.kind == "value":
            env[ref.key.id] = out
        elif ref.kind == "param":
            params[ref.key] = out


def sizes_of(g: HeteroGraph) -> tuple:
    """Row counts of a graph (what a size-specialised eager step depends on)."""
    return tuple(g.num_nodes_dict.values()), tuple(g.num_edges(r) for r in g.relations)


def explain_sections(last: Plan | SegmentedRunner | None, failed: dict[tuple, str]) -> list[tuple[str, list[str]]]:
    """The report of :meth:`CompiledMixin.explain` as ``(title, lines)`` sections: graph breaks,
    eager weight preparations, one section per compiled plan, and eager fallbacks."""
    sections: list[tuple[str, list[str]]] = []
    if last is None:
        sections.append(("not compiled yet: call the model on a graph first", []))
    elif isinstance(last, Plan):
        text = explain_plan(last).split("\n")
        sections.append((text[0], text[1:]))
    else:
        segments = last.segments
        steps = [s for s in segments.steps if isinstance(s, EagerStep)]
        breaks = [s for s in steps if s.is_break]
        prepared = [s for s in steps if not s.is_break]
        sections.append((f"graphcore: {len(segments.regions)} compiled regions, {len(breaks)} graph breaks, "
                         f"{len(prepared)} eager weight preparations", []))
        sections.append((f"graph breaks ({len(breaks)}):",
                         [f"  break {i + 1}: {s.name} at {s.loc} runs eagerly" for i, s in enumerate(breaks)]))
        if prepared:
            sections.append((f"eager weight preparations ({len(prepared)}):",
                             [f"  {s.name}" for s in prepared]))
        region = 0
        for index, step in enumerate(segments.steps):
            if isinstance(step, Region):
                plan = last.plans.get(index)
                lines = explain_plan(plan).split("\n") if plan is not None else ["  not run yet"]
                sections.append((f"region {region}:", ["  " + line for line in lines]))
                region += 1
    if failed:
        sections.append(("fell back to eager:", [f"  {why}" for why in failed.values()]))
    return sections


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
            hint = "; stack a PyG x_dict into global node order with g.stack(x_dict)" if isinstance(t, dict) else ""
            raise GraphError(f"input {i} of the compiled model must be a torch.Tensor, got {type(t).__name__}{hint}")
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
            dump_dir: str | Path | None = None, fallback: str = "error", fullgraph: bool = False) -> nn.Module:
    r"""Compile a module built from :mod:`graphcore.ops`, or a model with PyG layers, into fused kernels.

    Args:
        model: a module whose ``forward(g, *x)`` uses :mod:`graphcore.ops` (the layers of
            :mod:`graphcore.nn`, stacks of them with activations and dropout, or your own), or a
            PyG model: its ``RGCNConv``, ``FastRGCNConv``, ``RGATConv`` and ``HGTConv`` layers are
            substituted by graphcore's (see :mod:`graphcore.pyg`), and it is called as in PyG.
        backend: ``"auto"`` (``cpu`` for CPU tensors, ``cuda`` for CUDA ones), ``"cpu"``,
            ``"cuda"``, ``"cuda-emu"`` (the CUDA kernels executed on CPU tensors) or ``"torch"`` (the reference backend).
        passes: optimising passes to run (default: all of ``codegen.passes.registry.OPTIONAL``).
        dump_dir: write the level-1 IR after every pass, the level-2 specs and (native backends) the
            generated C++/CUDA translation unit there, one folder per plan. Default: the
            ``GRAPHCORE_DUMP_DIR`` environment variable, if set.
        fallback: ``"error"`` raises :class:`CompileError` when compilation fails; ``"eager"`` warns
            and runs the model uncompiled for that graph schema and input (other schemas still
            compile), whatever the failure.
        fullgraph: ``False`` (default) runs what the compiler cannot express (``LayerNorm``,
            ``BatchNorm``, embedding lookups, other torch code) eagerly between compiled regions,
            as torch.compile does; ``True`` makes every such graph break a :class:`CompileError`
            that names the op and the line.

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
    enable_huge_pages()
    if dump_dir is None:
        dump_dir = os.environ.get("GRAPHCORE_DUMP_DIR") or None
    from graphcore.pyg import frontend

    if fallback == "error":
        frontend.check_model(model)  # a PyG layer configuration we cannot compile fails here, by name
    cls = type(model)
    compiled_cls = type(f"Compiled{cls.__name__}", (CompiledMixin, cls), {"__module__": cls.__module__})
    compiled = object.__new__(compiled_cls)
    compiled.__dict__.update(model.__dict__)  # same _parameters/_modules/_buffers dicts: shared tensors
    compiled.__dict__.update(_graphcore_original=None, _graphcore_options=dict(
        backend=backend, passes=passes, dump_dir=dump_dir, fallback=fallback, fullgraph=fullgraph),
        _graphcore_plans={}, _graphcore_pools={}, _graphcore_last=None, _graphcore_failed={},
        _graphcore_graphs=frontend.GraphCache())
    object.__setattr__(compiled, "_graphcore_original", model)
    return compiled


__all__ = ["compile", "explain_plan", "explain_sections"]

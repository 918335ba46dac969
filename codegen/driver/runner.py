"""Runs a compiled plan: draws dropout masks, calls the backend, and wires backward into autograd.

Training uses one :class:`torch.autograd.Function`: its forward runs the forward kernels and
saves what the partition chose to save; its backward runs the backward kernels. Inference runs
the forward-only plan with no autograd bookkeeping.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import backends
from ..ir.kernel import KernelProgram
from ..ir.values import Domain
from .plan import Plan
from ..ir.layout import GraphLayout
from ..runtime.workspace import WorkspacePool


class PlanRunner:
    """A :class:`Plan` built with one backend, run on any graph of the schema it was planned for.

    The graph is run-time data: every call takes a layout (the full graph, a sampled batch).
    Its inputs are the model's node inputs followed by the graph's edge-data fields the program
    reads (``edge_fields``, which the caller appends on every call).
    """

    def __init__(self, plan: Plan, backend: str, grad_inputs: tuple[bool, ...], num_outputs: int,
                 param_names: list[str], pool: WorkspacePool, edge_fields: tuple[str, ...] = ()):
        self.plan, self.param_names, self.edge_fields = plan, param_names, edge_fields
        programs = {"forward": plan.forward}
        if plan.backward is not None:
            programs["backward"] = plan.backward
        built = backends.build(backend, programs, pool)
        self.forward, self.backward = built["forward"], built.get("backward")
        self.grad_inputs, self.num_outputs = grad_inputs, num_outputs

    @staticmethod
    def draw(layout: GraphLayout, program: KernelProgram, like: Tensor) -> dict[str, Tensor]:
        """Dropout masks (values 0 or 1/(1-p)) from torch's RNG, so seeding works as usual."""
        masks = {}
        for name, p in program.random:
            buf = program.buffer(name)
            rows = () if buf.domain == Domain.SCALAR else (layout.rows(str(buf.domain)),)
            keep = torch.rand((*rows, *buf.shape), dtype=like.dtype, device=like.device) >= p
            masks[name] = keep.to(like.dtype) / (1.0 - p)
        return masks

    def run_inference(self, layout: GraphLayout, inputs: list[Tensor], params: list[Tensor]) -> list[Tensor]:
        masks = self.draw(layout, self.plan.forward, inputs[0])
        return self.forward.run(layout, inputs, params, masks)[: self.num_outputs]

    def apply(self, layout: GraphLayout, inputs: list[Tensor], params: list[Tensor]) -> tuple[Tensor, ...]:
        return _CompiledFunction.apply(self, layout, len(inputs), *inputs, *params)


class _CompiledFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runner: PlanRunner, layout: GraphLayout, num_inputs: int, *tensors: Tensor):
        inputs, params = list(tensors[:num_inputs]), list(tensors[num_inputs:])
        outs = runner.forward.run(layout, inputs, params, runner.draw(layout, runner.plan.forward, inputs[0]))
        primal, saved = outs[: runner.num_outputs], outs[runner.num_outputs:]
        ctx.runner, ctx.layout, ctx.num_inputs, ctx.num_params = runner, layout, num_inputs, len(params)
        ctx.save_for_backward(*inputs, *params, *saved)
        return tuple(primal)

    @staticmethod
    def backward(ctx, *grad_outputs: Tensor):
        runner: PlanRunner = ctx.runner
        tensors = ctx.saved_tensors
        n_in, n_p = ctx.num_inputs, ctx.num_params
        inputs, params, saved = tensors[:n_in], tensors[n_in:n_in + n_p], tensors[n_in + n_p:]
        grads = [g.contiguous() for g in grad_outputs]
        outs = runner.backward.run(ctx.layout, [*inputs, *saved, *grads], list(params))
        flags = runner.grad_inputs
        input_grads, at = [], 0
        for flag in flags:
            input_grads.append(outs[at] if flag else None)
            at += int(flag)
        return (None, None, None, *input_grads, *outs[at:])

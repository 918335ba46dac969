"""Completeness of the op table (after Inductor's test_op_completeness): every level-1 op kind has
every entry, every elementwise function a spelling and a VJP decision, every level-2 statement a
spelling in every printer; and no pass or printer keeps its own list of op kinds."""
import ast
from pathlib import Path

import pytest

from graphcore import codegen
from graphcore.codegen.backends.cfamily import CFamilyPrinter
from graphcore.codegen.backends.cpu.printer import CpuPrinter
from graphcore.codegen.backends.cuda.printer import CudaPrinter
from graphcore.codegen.backends.torch.executor import TorchKernels
from graphcore.codegen.ir.kernel import STMT_OPS, Loop, TraversalSpec
from graphcore.codegen.ir.ops import LOWERINGS, OPS, OpDef
from graphcore.codegen.ir.ops.functions import BINARY, UNARY
from graphcore.codegen.ir.program import OpKind
from graphcore.codegen.numerics import elementwise
from graphcore.codegen.passes.context import GraphStats
from graphcore.codegen.driver.plan import build_plan

from .conftest import make_case, traced_cases

CODEGEN = Path(codegen.__file__).resolve().parent


@pytest.mark.parametrize("kind", list(OpKind))
def test_every_op_kind_has_every_entry(kind):
    entry = OPS.get(kind)
    assert isinstance(entry, OpDef), f"{kind} is not in the op table (codegen/ir/ops)"
    assert entry.kind == kind
    for rule in ("infer", "evaluate", "vjp", "flops", "group_index"):
        assert callable(getattr(entry, rule)), f"{kind} has no {rule} rule"
    assert entry.lowering in LOWERINGS
    if entry.lowering in ("traversal", "alias"):
        assert callable(entry.emit), f"{kind} lowers through statements but has no emit rule"


@pytest.mark.parametrize("name", sorted(UNARY) + sorted(BINARY))
def test_every_elementwise_function_is_spelled_and_has_a_reference(name):
    function = UNARY.get(name) or BINARY[name]
    spelled = function.c.format(x="X", a="A", b="B", std="std::", slope="S", alpha="L")
    assert "{" not in spelled and ("X" in spelled if name in UNARY else "A" in spelled and "B" in spelled)
    assert name in (elementwise.UNARY if name in UNARY else elementwise.BINARY)


@pytest.mark.parametrize("printer", [CFamilyPrinter, CpuPrinter, CudaPrinter, TorchKernels])
def test_every_statement_op_is_spelled_by_every_printer(printer):
    missing = [op for op in STMT_OPS if op not in printer.STATEMENTS]
    assert not missing, f"{printer.__name__} cannot print {missing}"


def _statements(kernel):
    def walk(body):
        for s in body:
            if isinstance(s, Loop):
                yield from walk(s.body)
            else:
                yield s.op

    return set(walk(kernel.body if isinstance(kernel, TraversalSpec) else kernel.epilogue))


def test_lowering_emits_only_declared_statement_ops():
    seen = set()
    for graph_name, layer_name in traced_cases():
        g, _, _, program, _ = make_case(graph_name, layer_name)
        plan = build_plan(program, GraphStats.from_layout(g.layout), train=True, grad_inputs=(True,))
        for kernels in (plan.forward, plan.backward):
            for k in kernels.kernels:
                seen |= _statements(k)
    assert seen <= set(STMT_OPS), seen - set(STMT_OPS)
    assert {"load", "store", "reduce", "init", "ewise"} <= seen  # the zoo exercises the table


def _op_kind_lists(path: Path) -> list[str]:
    """Tuple/list/set literals naming two or more ``OpKind`` members: a private list of ops."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            kinds = [e for e in node.elts if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                     and e.value.id == "OpKind"]
            if len(kinds) >= 2:
                found.append(f"{path.relative_to(CODEGEN.parent)}:{node.lineno}")
    return found


def test_passes_lowering_and_printers_ask_the_table_instead_of_listing_op_kinds():
    files = [p for p in CODEGEN.rglob("*.py") if "ir/ops" not in p.as_posix()]
    assert files
    lists = [where for p in files for where in _op_kind_lists(p)]
    assert not lists, f"op-kind lists outside the op table (use traits): {lists}"

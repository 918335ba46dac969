"""The level-2 verifier: accepts what lowering and legalisation produce for the whole zoo, and
rejects hand-made bad specs with a message naming the stage, the kernel and the statement."""
import pytest

from graphcore.codegen.backends.cpu.legalize import split_scatter
from graphcore.codegen.backends.cuda.legalize import split_epilogues
from graphcore.codegen.errors import VerifyError
from graphcore.codegen.ir.kernel import Access, Buffer, GemmSpec, KernelProgram, Loop, Stmt, TraversalSpec
from graphcore.codegen.ir.values import Domain
from graphcore.codegen.ir.verify_kernels import verify_kernels
from graphcore.codegen.passes.context import GraphStats
from graphcore.codegen.driver.plan import build_plan

from ..conftest import make_case, traced_cases


def _program(*kernels, buffers=None) -> KernelProgram:
    buffers = buffers or (
        Buffer("x", Domain.NODE, (4,), "float64", "input"),
        Buffer("w", Domain.ETYPE, (4, 3), "float64", "param"),
        Buffer("e", Domain.EDGE, (3,), "float64", "temp"),
        Buffer("y", Domain.NODE, (3,), "float64", "output"),
    )
    return KernelProgram(buffers, ("x",), ("w",), ("y",), tuple(kernels))


def _load(out, buffer, chain=(), base="row", shape=(4,)):
    return Stmt("load", out, shape=shape, attrs=(("access", Access(buffer, chain, base)),))


def _store(arg, buffer, chain=(), mode="set", shape=(3,), base="row"):
    return Stmt("store", None, (arg,), shape, (("access", Access(buffer, chain, base)), ("mode", mode)))


def _sum_incoming() -> TraversalSpec:
    """y[v] = sum over incoming edges of e (a correct grouped traversal)."""
    return TraversalSpec("k_sum", Domain.NODE, (
        Stmt("init", "acc", shape=(3,), attrs=(("value", 0.0),)),
        Loop((_load("m", "e", base="member", shape=(3,)), Stmt("reduce", "acc", ("m",), (3,), (("fn", "sum"),)))),
        _store("acc", "y"),
    ), "dst", Domain.EDGE)


def test_a_correct_hand_made_program_passes():
    gemm = GemmSpec("k_gemm", "mm", Domain.EDGE, "rel_ptr", Access("x", ("src",)), Access("w"), Access("e"), k=4, n=3)
    program = _program(gemm, _sum_incoming())
    assert verify_kernels(program, "test") is program


def test_unknown_buffer_is_named_with_kernel_and_statement():
    bad = TraversalSpec("k_flat", Domain.NODE, (_load("a", "x"), _store("a", "nowhere", shape=(4,))))
    with pytest.raises(VerifyError, match=r"after pass 'lower\[forward\]': kernel 'k_flat', statement 1 "
                                          r"\(store\): reads or writes undeclared buffer 'nowhere'"):
        verify_kernels(_program(bad), "lower[forward]")


def test_a_chain_that_does_not_compose_from_the_row_domain():
    # node rows read through 'src' (a map that reads edge rows): the chain starts in the wrong domain
    bad = TraversalSpec("k_chain", Domain.NODE, (_load("a", "x", ("src",)), _store("a", "y", shape=(4,))))
    with pytest.raises(VerifyError, match=r"kernel 'k_chain', statement 0 \(load a\): access chain \['src'\] to "
                                          r"'x' applies 'src' \(reads edge rows\) to node rows"):
        verify_kernels(_program(bad), "test")
    twice = TraversalSpec("k_twice", Domain.EDGE, (_load("a", "x", ("src", "dst")), _store("a", "e", shape=(4,))))
    with pytest.raises(VerifyError, match=r"kernel 'k_twice', statement 0 .*applies 'dst' \(reads edge rows\) to node"):
        verify_kernels(_program(twice), "test")
    ends_wrong = TraversalSpec("k_end", Domain.EDGE, (_load("a", "x", ("src", "ntype")),))
    with pytest.raises(VerifyError, match=r"kernel 'k_end', statement 0 .*from edge rows ends in ntype rows"):
        verify_kernels(_program(ends_wrong), "test")
    short = TraversalSpec("k_short", Domain.EDGE, (_load("a", "x"),))
    with pytest.raises(VerifyError, match=r"ends in edge rows, but buffer 'x' has node rows"):
        verify_kernels(_program(short), "test")


def test_an_uninitialised_accumulator():
    bad = TraversalSpec("k_acc", Domain.NODE, (
        Loop((_load("m", "e", base="member", shape=(3,)), Stmt("reduce", "acc", ("m",), (3,), (("fn", "sum"),)))),
    ), "dst", Domain.EDGE)
    with pytest.raises(VerifyError, match=r"kernel 'k_acc', statement 1 \(reduce acc\): accumulates into 'acc', "
                                          "which no init started"):
        verify_kernels(_program(bad), "test")


def test_a_racy_set_store_through_a_scattering_chain():
    # every edge writes its destination's row: edges into one node overwrite each other
    bad = TraversalSpec("k_race", Domain.EDGE, (_load("m", "e", shape=(3,)), _store("m", "y", ("dst",))))
    with pytest.raises(VerifyError, match=r"kernel 'k_race', statement 1 \(store\): a 'set' store to 'y' through "
                                          r"\['dst'\] is racy"):
        verify_kernels(_program(bad), "test")
    adding = TraversalSpec("k_add", Domain.EDGE, (_load("m", "e", shape=(3,)), _store("m", "y", ("dst",), "add")))
    verify_kernels(_program(adding), "test")  # an accumulating scatter is fine
    gemm = GemmSpec("k_gemm_race", "mm", Domain.EDGE, "rel_ptr", Access("x", ("src",)), Access("w"),
                    Access("y", ("dst",)), k=4, n=3, accumulate=False)
    with pytest.raises(VerifyError, match=r"kernel 'k_gemm_race': a 'set' store to 'y' through \['dst'\] is racy"):
        verify_kernels(_program(gemm), "test")


def test_use_before_definition_wrong_grouping_and_wrong_weight_domain():
    early = TraversalSpec("k_early", Domain.NODE, (_store("a", "y"),))
    with pytest.raises(VerifyError, match=r"kernel 'k_early', statement 0 \(store\): reads 'a' before it is defined"):
        verify_kernels(_program(early), "test")
    grouped = TraversalSpec("k_group", Domain.EDGE, (), "dst", Domain.EDGE)
    with pytest.raises(VerifyError, match=r"kernel 'k_group': grouped by 'dst' means node groups of edge members"):
        verify_kernels(_program(grouped), "test")
    shared = GemmSpec("k_w", "mm", Domain.NODE, None, Access("x"), Access("w"), Access("y"), k=4, n=3)
    with pytest.raises(VerifyError, match=r"kernel 'k_w': the weight 'w' \(etype\) must be a plain scalar buffer"):
        verify_kernels(_program(shared), "test")


@pytest.mark.parametrize("graph_name, layer_name", traced_cases())
def test_lowered_and_legalised_zoo_programs_verify(graph_name, layer_name):
    g, _, _, program, _ = make_case(graph_name, layer_name)
    plan = build_plan(program, GraphStats.from_layout(g.layout), train=True, grad_inputs=(True,))
    for kernels in (plan.forward, plan.backward):
        verify_kernels(split_scatter(kernels), "legalize[cpu]")
        verify_kernels(split_epilogues(kernels), "legalize[cuda]")

import pytest

from graphcore.codegen.errors import CompileError, VerifyError
from graphcore.codegen.ir.program import Builder, Op, OpKind, Program
from graphcore.codegen.ir.text import format_program
from graphcore.codegen.ir.values import Domain
from graphcore.codegen.ir.verify import verify


def base():
    b = Builder()
    x = b.value(Domain.NODE, (4,), "float32", "x")
    w = b.value(Domain.ETYPE, (4, 3), "float32", "w")
    return b, x, w


def test_builder_infers_domains_and_shapes():
    b, x, w = base()
    e = b.emit(OpKind.GATHER, (x,), index="src")
    y = b.emit(OpKind.TYPED_LINEAR, (e, w))
    s = b.emit(OpKind.AGGREGATE, (y,), index="dst", reduce="sum")
    assert (e.domain, y.domain, y.shape, s.domain) == (Domain.EDGE, Domain.EDGE, (3,), Domain.NODE)
    program = verify(Program((x,), (w,), tuple(b.ops), (s,)))
    text = format_program(program)
    assert "%3: edge[3] = typed_linear(%2, %1)" in text and "gather[index=src](%0)" in text


@pytest.mark.parametrize("build, message", [
    (lambda b, x, w: b.emit(OpKind.TYPED_LINEAR, (x, w)), "weight of node rows must be ntype or scalar"),
    (lambda b, x, w: b.emit(OpKind.GATHER, (x,), index="etype"), "index 'etype' reads etype rows, got node"),
    (lambda b, x, w: b.emit(OpKind.GATHER, (x,), index="sideways"), "unknown index map"),
    (lambda b, x, w: b.emit(OpKind.AGGREGATE, (x,), index="dst", reduce="sum"), "reduces edge rows, got node"),
    (lambda b, x, w: b.emit(OpKind.EWISE, (x, b.emit(OpKind.GATHER, (x,), index="src")), op="add"),
     "different domains"),
    (lambda b, x, w: b.emit(OpKind.UNARY, (x,), op="softsign"), "op must be one of"),
    (lambda b, x, w: b.emit(OpKind.RESHAPE, (x,), shape=(3,)), r"cannot reshape rows \(4,\) to \(3,\)"),
])
def test_ill_typed_ops_raise(build, message):
    b, x, w = base()
    with pytest.raises(CompileError, match=message):
        build(b, x, w)


def test_verify_catches_undefined_values_and_bad_outputs():
    b, x, w = base()
    ghost = b.value(Domain.EDGE, (4,), "float32")
    bad = Op(OpKind.UNARY, (ghost,), (b.value(Domain.EDGE, (4,), "float32"),), (("op", "relu"),))
    with pytest.raises(VerifyError, match="after pass 'mine'.*before it is defined"):
        verify(Program((x,), (w,), (bad,), ()), pass_name="mine")
    wrong = Op(OpKind.UNARY, (x,), (b.value(Domain.NODE, (5,), "float32"),), (("op", "relu"),))
    with pytest.raises(VerifyError, match="outputs .* but its inputs infer"):
        verify(Program((x,), (w,), (wrong,), ()))
    with pytest.raises(VerifyError, match="never defined"):
        verify(Program((x,), (w,), (), (ghost,)))


def _fused(members, inputs, outputs):
    return Op(OpKind.FUSED, tuple(inputs), tuple(outputs), (("kind", "traversal"), ("region", tuple(members))))


def test_members_of_fusion_regions_are_verified():
    b, x, w = base()
    e = b.emit(OpKind.GATHER, (x,), index="src")
    y = b.emit(OpKind.TYPED_LINEAR, (e, w))
    s = b.emit(OpKind.AGGREGATE, (y,), index="dst", reduce="sum")
    gather, linear, aggregate = b.ops
    good = Program((x,), (w,), (_fused([gather, linear, aggregate], [x, w], [s]),), (s,))
    assert verify(good) is good
    # a member reading a value from outside the region that is not a region input
    leaky = Program((x,), (w,), (gather, _fused([linear, aggregate], [w], [s])), (s,))
    with pytest.raises(VerifyError, match=r"after pass 'fuse': fused traversal region: member typed_linear reads "
                                          r"%2: edge\[4\]"):
        verify(leaky, "fuse")
    # an ill-typed member (its output claims another shape)
    wrong = Op(OpKind.TYPED_LINEAR, linear.inputs, (y.__class__(y.id, y.domain, (5,), y.dtype),), linear.attrs)
    with pytest.raises(VerifyError, match="member typed_linear outputs .* but its inputs infer"):
        verify(Program((x,), (w,), (_fused([gather, wrong], [x, w], [wrong.out]),), (wrong.out,)), "fuse")
    # an escaping value no member defines
    with pytest.raises(VerifyError, match="lets %4: node\\[3\\] .* escape, but no member defines it"):
        verify(Program((x,), (w,), (_fused([gather, linear], [x, w], [s]),), (s,)), "fuse")

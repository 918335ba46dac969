"""weight_matmul's shape rule parses the einsum itself; it must agree with torch.einsum."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from graphcore.codegen.errors import CompileError
from graphcore.codegen.ir.ops.linear import _einsum_shape
from graphcore.codegen.ir.program import OpKind

LETTERS = "tkmnq"


@st.composite
def equations(draw):
    sizes = {c: draw(st.integers(1, 4)) for c in LETTERS}
    a = "".join(draw(st.permutations(LETTERS))[:draw(st.integers(1, 4))])
    b = "".join(draw(st.permutations(LETTERS))[:draw(st.integers(1, 4))])
    used = sorted(set(a) | set(b))
    out = "".join(draw(st.permutations(used))[:draw(st.integers(0, len(used)))])
    return f"{a},{b}->{out}", tuple(sizes[c] for c in a), tuple(sizes[c] for c in b)


@settings(max_examples=200, deadline=None)
@given(equations())
def test_matches_torch_einsum(case):
    equation, a, b = case
    expected = torch.einsum(equation, torch.zeros(a), torch.zeros(b)).shape
    assert _einsum_shape(OpKind.WEIGHT_MATMUL, equation, a, b) == tuple(expected)


@pytest.mark.parametrize("equation, a, b, message", [
    ("km,mn->kn", (2, 3), (4, 5), "axis 'm' is 3 and 4"),
    ("km,mn->kn", (2, 3, 1), (3, 5), "'km' has 2 axes"),
    ("km,mn", (2, 3), (3, 5), "one axis letter"),
    ("k...,mn->kn", (2, 3), (3, 5), "one axis letter"),
    ("km,mn->kz", (2, 3), (3, 5), "distinct input axes"),
    ("km,mn->kk", (2, 3), (3, 5), "distinct input axes"),
])
def test_bad_equations_are_refused(equation, a, b, message):
    with pytest.raises(CompileError, match=message):
        _einsum_shape(OpKind.WEIGHT_MATMUL, equation, a, b)

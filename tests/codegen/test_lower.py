import pytest

from graphcore.codegen.lower import einsum_as_gemm


@pytest.mark.parametrize("equation, a, b, expected", [
    ("rb,bkn->rkn", (5, 2), (2, 3, 4), (1, 5, 2, 12, ((0, 2, 1), (0, 12, 1), (0, 12, 1)))),
    ("rkm,rmn->rkn", (5, 3, 4), (5, 4, 2), (5, 3, 4, 2, ((12, 4, 1), (8, 2, 1), (6, 2, 1)))),
    ("rkn,bkn->rb", (5, 3, 4), (2, 3, 4), (1, 5, 12, 2, ((0, 12, 1), (0, 1, 12), (0, 2, 1)))),
])
def test_einsum_as_batched_gemm(equation, a, b, expected):
    assert einsum_as_gemm(equation, a, b) == expected


def test_einsum_with_split_groups_is_refused():
    assert einsum_as_gemm("kmn,mq->knq", (2, 3, 4), (3, 5)) is None  # n sits between m and the output

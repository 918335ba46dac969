"""Every orthogonal family: orthogonality, exact unbinding, preserved geometry, non-commutativity."""
import pytest
import torch

from graphcore.tasks.mbat.orthogonal import (FAMILIES, DenseHaar, Identity, RandomisedHadamard, SignedPermutation, fwht,
                                   random_orthogonal)
from graphcore.tasks.mbat.seeding import generator
from graphcore.tasks.mbat.vsa import bind, bundle, cosine, cosine_matrix, normalise, unbind

D = 128


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_orthogonal_to_tolerance(family, dtype, tol):
    m = random_orthogonal(family, D, 0, "role", dtype=dtype).materialise()
    assert m.dtype == dtype
    eye = torch.eye(D, dtype=dtype)
    assert (m @ m.T - eye).abs().max() < tol
    assert (m.T @ m - eye).abs().max() < tol


@pytest.mark.parametrize("family", FAMILIES)
def test_apply_matches_materialised_matrix_and_transpose(family):
    r = random_orthogonal(family, D, 1, "k", dtype=torch.float64)
    m = r.materialise()
    x = torch.randn(3, 5, D, dtype=torch.float64)
    torch.testing.assert_close(r.apply(x), x @ m.T)
    torch.testing.assert_close(r.apply_transpose(x), x @ m)


@pytest.mark.parametrize("family", FAMILIES)
def test_unbind_is_exact_and_geometry_preserved(family):
    r = random_orthogonal(family, D, 0, "a", dtype=torch.float64)
    x, y = torch.randn(4, D, dtype=torch.float64), torch.randn(4, D, dtype=torch.float64)
    torch.testing.assert_close(unbind(r, bind(r, x)), x)
    torch.testing.assert_close(bind(r, x).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close((bind(r, x) * bind(r, y)).sum(-1), (x * y).sum(-1))
    # a bound vector is unlike its input
    assert cosine(bind(r, x), x).abs().max() < 0.5


@pytest.mark.parametrize("family", FAMILIES)
def test_non_commutative(family):
    a = random_orthogonal(family, D, 0, "a", dtype=torch.float64)
    b = random_orthogonal(family, D, 0, "b", dtype=torch.float64)
    x = torch.randn(8, D, dtype=torch.float64)
    ab, ba = a.apply(b.apply(x)), b.apply(a.apply(x))
    assert cosine(ab, ba).abs().max() < 0.5
    torch.testing.assert_close(a.compose(b).apply(x), ab)


@pytest.mark.parametrize("family", FAMILIES)
def test_power_and_name_determinism(family):
    r = random_orthogonal(family, D, 3, "seq", dtype=torch.float64)
    x = torch.randn(2, D, dtype=torch.float64)
    y = x
    for _ in range(5):
        y = r.apply(y)
    torch.testing.assert_close(r.power(5).apply(x), y)
    torch.testing.assert_close(r.power(0).apply(x), x)
    torch.testing.assert_close(random_orthogonal(family, D, 3, "seq", dtype=torch.float64).materialise(), r.materialise())
    assert not torch.allclose(random_orthogonal(family, D, 4, "seq", dtype=torch.float64).materialise(), r.materialise())


def test_dense_haar_is_q_of_qr_with_positive_r_diagonal():
    # the sign fix makes G = QR unique with diag(R) > 0, which is what makes Q Haar distributed
    g = torch.randn(16, 16, generator=generator(5, "dense", "x"), dtype=torch.float64)
    q = DenseHaar.random(16, 5, "x", dtype=torch.float64).matrix
    r = q.T @ g
    torch.testing.assert_close(torch.triu(r), r)
    assert (r.diagonal() > 0).all()


def test_signed_permutation_compose_stays_a_permutation():
    a, b = SignedPermutation.random(D, 0, "a"), SignedPermutation.random(D, 0, "b")
    c = a.compose(b)
    assert isinstance(c, SignedPermutation)
    assert sorted(c.index.tolist()) == list(range(D))
    dest, sign = a.scatter_form()
    e = torch.zeros(D)
    e[7] = 1.0
    y = a.apply(e)
    assert y[dest[7]] == sign[7] and y.abs().sum() == 1


def test_fwht_involution_and_hadamard_errors():
    x = torch.randn(3, 64, dtype=torch.float64)
    torch.testing.assert_close(fwht(fwht(x)), 64 * x)
    with pytest.raises(ValueError, match="power of two"):
        RandomisedHadamard.random(100, 0, "x")
    with pytest.raises(ValueError, match="unknown orthogonal family 'givens'"):
        random_orthogonal("givens", D, 0, "x")
    with pytest.raises(ValueError, match="last dimension 7"):
        SignedPermutation.random(D, 0, "a").apply(torch.zeros(7))
    with pytest.raises(ValueError, match="cannot compose"):
        SignedPermutation.random(D, 0, "a").compose(Identity(64))
    with pytest.raises(ValueError, match="exponent"):
        SignedPermutation.random(D, 0, "a").power(-1)


def test_vsa_bundle_cosine_helpers():
    xs = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(bundle(xs), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(bundle(xs, torch.tensor([2.0, 0.5])), torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(bundle(xs.unsqueeze(0).expand(3, 2, 2)), torch.tensor([[1.0, 2.0]] * 3))
    torch.testing.assert_close(normalise(torch.tensor([[3.0, 4.0], [0.0, 0.0]])), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    torch.testing.assert_close(cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])), torch.tensor(2**-0.5))
    torch.testing.assert_close(cosine_matrix(xs, xs), torch.eye(2))

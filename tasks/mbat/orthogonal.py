r"""Random orthogonal matrices for MBAT binding, dense and structured.

MBAT binds a value :math:`x \in \mathbb{R}^D` to a role by a random orthogonal matrix,
:math:`\mathrm{bind}(R, x) = R x`, and unbinds by the transpose, :math:`R^\top R x = x`.
Because :math:`R^\top R = I`, norms and inner products survive binding exactly and powers
:math:`R^k` never blow up or vanish; because two random :math:`R_a, R_b` do not commute,
:math:`R_a R_b x \neq R_b R_a x` and nested paths keep their order.

Four families, all applied to the *last* axis of a batch ``[..., D]``:

=====================  ==================  ===============  =====================================
family                 memory              apply            notes
=====================  ==================  ===============  =====================================
``dense``  (Haar)      :math:`D^2`         :math:`D^2`      QR of a Gaussian with the sign fix
``perm`` (signed perm) :math:`D`           :math:`D`        a gather and a sign flip; closed
                                                            under products (paths compose to one)
``hadamard``           :math:`rD`          :math:`rD\log D` :math:`\prod_r H S_r`, ``D`` a power of 2
``householder``        :math:`kD`          :math:`kD`       :math:`P \prod_i (I - 2 v_i v_i^\top)`
=====================  ==================  ===============  =====================================

Every map offers :meth:`OrthogonalMap.apply`, :meth:`OrthogonalMap.apply_transpose` and
:meth:`OrthogonalMap.materialise` (the dense matrix, for tests). Randomness is drawn on the
CPU from :func:`tasks.mbat.seeding.generator`, so a role named ``"latlng"`` is the same
matrix in every process.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor

from graphcore.tasks.mbat.seeding import generator

FAMILIES = ("perm", "hadamard", "householder", "dense")


class OrthogonalMap(ABC):
    """A :math:`D \\times D` orthogonal matrix :math:`R`, applied as ``x -> R x`` row-wise."""

    dim: int

    @abstractmethod
    def apply(self, x: Tensor) -> Tensor:
        """Return :math:`R x` for every row of ``x`` (shape ``[..., D]``)."""

    @abstractmethod
    def apply_transpose(self, x: Tensor) -> Tensor:
        """Return :math:`R^\\top x` for every row of ``x`` (shape ``[..., D]``)."""

    @abstractmethod
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "OrthogonalMap":
        """A copy on ``device`` with floating tensors in ``dtype``."""

    def materialise(self) -> Tensor:
        """The dense matrix :math:`R` (``[D, D]``), such that ``apply(x) == x @ R.T``."""
        eye = torch.eye(self.dim, dtype=self._dtype(), device=self._device())
        return self.apply(eye).T.contiguous()

    def compose(self, inner: "OrthogonalMap") -> "OrthogonalMap":
        """The product :math:`R_\\text{self} R_\\text{inner}` (``inner`` is applied first)."""
        _check_same_dim(self, inner)
        return Chain((self, inner))

    def power(self, k: int) -> "OrthogonalMap":
        """:math:`R^k` for ``k >= 0`` (by repeated squaring)."""
        if k < 0:
            raise ValueError(f"power: exponent must be >= 0, got {k}")
        result: OrthogonalMap | None = None
        base: OrthogonalMap = self
        while k:
            if k & 1:
                result = base if result is None else result.compose(base)
            k >>= 1
            if k:
                base = base.compose(base)
        return result if result is not None else Identity(self.dim, self._dtype(), self._device())

    @abstractmethod
    def _dtype(self) -> torch.dtype: ...

    @abstractmethod
    def _device(self) -> torch.device: ...

    def _check_input(self, x: Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__}: input has last dimension {x.shape[-1]}, the map is {self.dim}-dimensional"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


def _check_same_dim(a: OrthogonalMap, b: OrthogonalMap) -> None:
    if a.dim != b.dim:
        raise ValueError(f"cannot compose a {a.dim}-dimensional map with a {b.dim}-dimensional one")


class Identity(OrthogonalMap):
    """:math:`I` (the zeroth power of any map)."""

    def __init__(self, dim: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        self.dim, self.dtype, self.device = dim, dtype, torch.device(device)

    def apply(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return x

    apply_transpose = apply

    def compose(self, inner: OrthogonalMap) -> OrthogonalMap:
        _check_same_dim(self, inner)
        return inner

    def to(self, device=None, dtype=None) -> "Identity":
        return Identity(self.dim, dtype or self.dtype, device or self.device)

    def _dtype(self) -> torch.dtype:
        return self.dtype

    def _device(self) -> torch.device:
        return self.device


class Chain(OrthogonalMap):
    """A product :math:`R_1 R_2 \\cdots R_n` kept as factors (``maps[-1]`` is applied first)."""

    def __init__(self, maps: tuple[OrthogonalMap, ...]):
        flat: list[OrthogonalMap] = []
        for m in maps:
            flat.extend(m.maps if isinstance(m, Chain) else (m,))
        self.maps = tuple(flat)
        self.dim = self.maps[0].dim

    def apply(self, x: Tensor) -> Tensor:
        for m in reversed(self.maps):
            x = m.apply(x)
        return x

    def apply_transpose(self, x: Tensor) -> Tensor:
        for m in self.maps:
            x = m.apply_transpose(x)
        return x

    def to(self, device=None, dtype=None) -> "Chain":
        return Chain(tuple(m.to(device, dtype) for m in self.maps))

    def _dtype(self) -> torch.dtype:
        return self.maps[0]._dtype()

    def _device(self) -> torch.device:
        return self.maps[0]._device()


class DenseHaar(OrthogonalMap):
    r"""A Haar-distributed dense orthogonal matrix.

    :math:`G = QR` for a Gaussian :math:`G`; multiplying the columns of :math:`Q` by
    :math:`\operatorname{sign}(\operatorname{diag} R)` makes the factorisation unique and
    the result exactly Haar distributed (without the fix, QR routines bias the signs).
    Drawn and factorised in float64, then cast.
    """

    def __init__(self, matrix: Tensor):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"DenseHaar: need a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.dim = matrix.shape[0]

    @classmethod
    def random(cls, dim: int, seed: int, *name: str, dtype=torch.float32, device="cpu") -> "DenseHaar":
        g = generator(seed, "dense", *name)
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
        return cls(q.to(device=device, dtype=dtype))

    def apply(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return x @ self.matrix.T

    def apply_transpose(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return x @ self.matrix

    def materialise(self) -> Tensor:
        return self.matrix

    def to(self, device=None, dtype=None) -> "DenseHaar":
        return DenseHaar(self.matrix.to(device=device or self.matrix.device, dtype=dtype or self.matrix.dtype))

    def _dtype(self) -> torch.dtype:
        return self.matrix.dtype

    def _device(self) -> torch.device:
        return self.matrix.device


class SignedPermutation(OrthogonalMap):
    r"""A signed permutation :math:`(R x)_i = s_i\, x_{\pi(i)}` with :math:`s_i \in \{\pm 1\}`.

    :math:`O(D)` memory and time, and closed under products:
    :math:`R_1 R_2 x = (s_1 \odot s_2[\pi_1]) \odot x[\pi_2[\pi_1]]`, so a whole JSON path
    collapses to one gather.
    """

    def __init__(self, index: Tensor, sign: Tensor):
        if index.shape != sign.shape or index.ndim != 1:
            raise ValueError(f"SignedPermutation: index {tuple(index.shape)} and sign {tuple(sign.shape)} must be equal 1-D shapes")
        self.index, self.sign = index, sign
        self.dim = index.shape[0]
        self._inverse: Tensor | None = None
        self._scatter: tuple[Tensor, Tensor] | None = None

    @classmethod
    def random(cls, dim: int, seed: int, *name: str, dtype=torch.float32, device="cpu") -> "SignedPermutation":
        g = generator(seed, "perm", *name)
        index = torch.randperm(dim, generator=g)
        sign = torch.randint(0, 2, (dim,), generator=g).to(torch.float64) * 2 - 1
        return cls(index.to(device), sign.to(device=device, dtype=dtype))

    @property
    def inverse_index(self) -> Tensor:
        """:math:`\\pi^{-1}` (cached)."""
        if self._inverse is None:
            inv = torch.empty_like(self.index)
            inv[self.index] = torch.arange(self.dim, device=self.index.device)
            self._inverse = inv
        return self._inverse

    def scatter_form(self) -> tuple[Tensor, Tensor]:
        """``(dest, sign)`` with :math:`R e_p = \\text{sign}_p\\, e_{\\text{dest}_p}` (cached), for sparse inputs."""
        if self._scatter is None:
            inv = self.inverse_index
            self._scatter = (inv, self.sign[inv])
        return self._scatter

    def apply(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return x[..., self.index] * self.sign

    def apply_transpose(self, x: Tensor) -> Tensor:
        self._check_input(x)
        inv = self.inverse_index
        return (x * self.sign)[..., inv]

    def compose(self, inner: OrthogonalMap) -> OrthogonalMap:
        if isinstance(inner, SignedPermutation):
            _check_same_dim(self, inner)
            return SignedPermutation(inner.index[self.index], self.sign * inner.sign[self.index])
        return super().compose(inner)

    def to(self, device=None, dtype=None) -> "SignedPermutation":
        return SignedPermutation(
            self.index.to(device or self.index.device),
            self.sign.to(device=device or self.sign.device, dtype=dtype or self.sign.dtype),
        )

    def _dtype(self) -> torch.dtype:
        return self.sign.dtype

    def _device(self) -> torch.device:
        return self.sign.device


def fwht(x: Tensor) -> Tensor:
    r"""Unnormalised fast Walsh–Hadamard transform over the last axis (length a power of 2).

    :math:`O(D \log D)`; ``fwht(fwht(x)) == D * x``.
    """
    d = x.shape[-1]
    shape = x.shape
    h = 1
    y = x.reshape(-1, d)
    while h < d:
        y = y.view(-1, d // (2 * h), 2, h)
        y = torch.stack((y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]), dim=2)
        h *= 2
    return y.reshape(shape)


class RandomisedHadamard(OrthogonalMap):
    r"""A product of randomised Hadamard blocks :math:`R = \prod_{r=1}^{n} \tfrac{1}{\sqrt D} H S_r`.

    :math:`H` is the Walsh–Hadamard matrix and :math:`S_r` random sign diagonals; three
    rounds mix as well as a dense random rotation for binding purposes. Needs ``D`` a
    power of two. :math:`O(nD)` memory, :math:`O(nD \log D)` apply.
    """

    def __init__(self, signs: Tensor):
        d = signs.shape[-1]
        if signs.ndim != 2 or d & (d - 1):
            raise ValueError(
                f"RandomisedHadamard: needs signs of shape [rounds, D] with D a power of two, got {tuple(signs.shape)}; "
                "pick D = 2^k or use the 'perm' or 'householder' family"
            )
        self.signs = signs
        self.dim = d
        self._scale = 1.0 / math.sqrt(d)

    @classmethod
    def random(cls, dim: int, seed: int, *name: str, rounds: int = 3, dtype=torch.float32, device="cpu") -> "RandomisedHadamard":
        if dim & (dim - 1):
            raise ValueError(f"RandomisedHadamard: D={dim} is not a power of two; pick D = 2^k or another family")
        g = generator(seed, "hadamard", *name)
        signs = torch.randint(0, 2, (rounds, dim), generator=g).to(torch.float64) * 2 - 1
        return cls(signs.to(device=device, dtype=dtype))

    def apply(self, x: Tensor) -> Tensor:
        self._check_input(x)
        for s in self.signs:
            x = fwht(x * s) * self._scale
        return x

    def apply_transpose(self, x: Tensor) -> Tensor:
        self._check_input(x)
        for s in self.signs.flip(0):
            x = fwht(x) * self._scale * s
        return x

    def to(self, device=None, dtype=None) -> "RandomisedHadamard":
        return RandomisedHadamard(self.signs.to(device=device or self.signs.device, dtype=dtype or self.signs.dtype))

    def _dtype(self) -> torch.dtype:
        return self.signs.dtype

    def _device(self) -> torch.device:
        return self.signs.device


class HouseholderProduct(OrthogonalMap):
    r"""A signed permutation times ``k`` Householder reflections.

    .. math::
        R = P \prod_{i=1}^{k} \left(I - 2 v_i v_i^\top\right), \qquad \lVert v_i \rVert = 1.

    With Gaussian :math:`v_i` and :math:`k = D` the product of reflections alone is Haar
    distributed; with :math:`k \ll D` it differs from :math:`I` only on a :math:`k`-dimensional
    subspace, so :math:`P` supplies the scrambling that binding needs while the reflections
    make :math:`R` a non-permutation matrix. :math:`O(kD)` memory and apply.
    """

    def __init__(self, vectors: Tensor, perm: SignedPermutation):
        if vectors.ndim != 2 or vectors.shape[1] != perm.dim:
            raise ValueError(f"HouseholderProduct: vectors {tuple(vectors.shape)} do not match D={perm.dim}")
        self.vectors, self.perm = vectors, perm
        self.dim = perm.dim

    @classmethod
    def random(cls, dim: int, seed: int, *name: str, reflections: int = 4, dtype=torch.float32, device="cpu") -> "HouseholderProduct":
        g = generator(seed, "householder", *name)
        v = torch.randn(reflections, dim, generator=g, dtype=torch.float64)
        v = v / v.norm(dim=1, keepdim=True)
        perm = SignedPermutation.random(dim, seed, "householder", *name, dtype=dtype, device=device)
        return cls(v.to(device=device, dtype=dtype), perm)

    def apply(self, x: Tensor) -> Tensor:
        self._check_input(x)
        for v in self.vectors.flip(0):
            x = x - 2 * (x @ v).unsqueeze(-1) * v
        return self.perm.apply(x)

    def apply_transpose(self, x: Tensor) -> Tensor:
        x = self.perm.apply_transpose(x)
        for v in self.vectors:
            x = x - 2 * (x @ v).unsqueeze(-1) * v
        return x

    def to(self, device=None, dtype=None) -> "HouseholderProduct":
        return HouseholderProduct(
            self.vectors.to(device=device or self.vectors.device, dtype=dtype or self.vectors.dtype),
            self.perm.to(device, dtype),
        )

    def _dtype(self) -> torch.dtype:
        return self.vectors.dtype

    def _device(self) -> torch.device:
        return self.vectors.device


_FACTORIES: dict[str, Callable[..., OrthogonalMap]] = {
    "perm": SignedPermutation.random,
    "hadamard": RandomisedHadamard.random,
    "householder": HouseholderProduct.random,
    "dense": DenseHaar.random,
}


def random_orthogonal(
    family: str, dim: int, seed: int, *name: str, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> OrthogonalMap:
    """A random orthogonal map of ``family`` (one of :data:`FAMILIES`) named by ``name``."""
    if family not in _FACTORIES:
        raise ValueError(f"unknown orthogonal family {family!r}; choose one of {', '.join(FAMILIES)}")
    if dim < 2:
        raise ValueError(f"dimension must be >= 2, got {dim}")
    return _FACTORIES[family](dim, seed, *name, dtype=dtype, device=device)

"""The multi-task directions against 50-digit references on generated instances (issue 20 item 1;
spec 07 §3.1–3.2, spec 08 §2–3).

* :func:`kexue.mtl.min_norm_weights` (what MGDA and MGDA-UB solve), both forms, on 13 families
  × 80 instances (T = 2 … 40, gradient norms over up to 10^±6; 1,040 instances): wherever float64
  resolves the minimum-norm point (‖u*‖ ≥ 1e-10·maxᵢ‖gᵢ‖ with vectors; with a Gram matrix, whose
  entries carry ε·‖gᵢ‖‖gⱼ‖, ‖u*‖ ≥ 4·√(16Tε)·maxᵢ‖gᵢ‖) cos(u, u*) ≥ 1 − 1e-9 and no task's
  loss rises (⟨u, gᵢ⟩/‖gᵢ‖ ≥ −64ε·maxⱼ‖gⱼ‖, computed exactly for the returned weights); below
  that, any u that would raise a loss beyond that rounding is reported as ``pareto_stationary``.
  With the default ``stationary_tol`` the same holds above 1e-8·maxᵢ‖gᵢ‖, and the flag is never
  raised there.
* :func:`kexue.mtl.primary_auxiliary_direction` on 10 families × 32 instances (main gradient in
  conflict, without conflict, or opposite): ‖u − u*‖ ≤ 1e-9·‖u*‖ + 64ε·‖g₀‖ and no auxiliary
  loss rises beyond ⟨u, gᵢ⟩/‖gᵢ‖ ≥ −64ε·‖g₀‖.
* Through :func:`kexue.mtl.mtl_backward` (MGDA on the shared parameters, MGDA-UB on features,
  the primary/auxiliary aggregator), on models whose per-task gradients are the instance's
  rows.

References and generator: ``tests/mtl/exact_qp.py``. Before issue 20 the solver stopped on
progress measured against the largest gradient and dropped small weights absolutely: on the
``orthogonal`` family (norms over 10^±6) cos(u, u*) fell to 0.80.
"""

from __future__ import annotations

import zlib

import mpmath as mp
import numpy as np
import pytest
import torch

from kexue.mtl import (
    MGDA,
    MinNormInfo,
    min_norm_weights,
    mtl_backward,
    primary_auxiliary_direction,
)

from .exact_qp import (
    DIGITS,
    MIN_NORM_FAMILIES,
    PROJECTION_FAMILIES,
    exact_gram,
    exact_vectors,
    min_norm_reference,
    projection_instance,
    projection_reference,
    quadratic,
)

EPS = float(np.finfo(np.float64).eps)
INSTANCES = 80
PROJECTIONS = 32


def _rng(family: str, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(family.encode()) + salt)


def _gram_floor(tasks: int) -> float:
    return 4.0 * float(np.sqrt(16 * tasks * EPS))


class _Checker:
    """The exact quantities of one min-norm instance: the 50-digit Gram, the reference α*, its
    ‖u*‖ relative to maxᵢ‖gᵢ‖, and for any weights α the exact cos(Gᵀα, u*) and the smallest
    ⟨gᵢ, Gᵀα⟩/(‖gᵢ‖·maxⱼ‖gⱼ‖)."""

    def __init__(self, grads: np.ndarray) -> None:
        self.grads = grads
        self.gram = exact_gram(grads)
        self.star = min_norm_reference(grads, self.gram)
        with mp.workdps(DIGITS):
            self.star_sq = max(quadratic(self.gram, self.star), mp.mpf(0))
            self.largest = max(self.gram[i][i] for i in range(len(grads)))
            self.ratio = float(mp.sqrt(self.star_sq / self.largest))

    def measure(self, alpha: torch.Tensor) -> tuple[float, float]:
        weights = [mp.mpf(float(x)) for x in alpha.numpy()]
        with mp.workdps(DIGITS):
            uu = quadratic(self.gram, weights)
            cosine = (
                float(quadratic(self.gram, weights, self.star) / mp.sqrt(uu * self.star_sq))
                if uu > 0 and self.star_sq > 0
                else 0.0
            )
            inner = min(
                mp.fsum(self.gram[i][j] * weights[j] for j in range(len(weights)))
                / mp.sqrt(self.gram[i][i] * self.largest)
                for i in range(len(weights))
                if self.gram[i][i] > 0
            )
        return cosine, float(inner)


@pytest.mark.parametrize("family", sorted(MIN_NORM_FAMILIES))
def test_min_norm_direction_is_exact_or_reported(family: str) -> None:
    rng = _rng(family)
    resolved = {"grads": 0, "gram": 0}
    for _ in range(INSTANCES):
        grads = MIN_NORM_FAMILIES[family](rng)
        check = _Checker(grads)
        tensor = torch.from_numpy(grads)
        for form, floor in (("grads", 1e-10), ("gram", _gram_floor(len(grads)))):
            data = {"grads": tensor} if form == "grads" else {"gram": tensor @ tensor.T}
            alpha, info = min_norm_weights(**data, stationary_tol=0.0)  # type: ignore[arg-type]
            cosine, inner = check.measure(alpha)
            where = (family, form, len(grads), check.ratio, info)
            if check.ratio >= floor:
                resolved[form] += 1
                assert cosine >= 1 - 1e-9, (cosine, where)
                assert inner >= -64 * EPS, (inner, where)
            elif inner < -64 * EPS:
                assert info.pareto_stationary, (inner, where)  # never an unreported ascent
        # the default policy: stationary below 1e-8·max‖gᵢ‖, exact and unflagged above
        alpha, info = min_norm_weights(grads=tensor)
        cosine, inner = check.measure(alpha)
        if check.ratio >= 1e-8 * (1 + 1e-6):
            assert not info.pareto_stationary, (family, check.ratio, info)
            assert cosine >= 1 - 1e-9, (family, cosine, info)
        elif inner < -64 * EPS:
            assert info.pareto_stationary, (family, check.ratio, info)
    if family not in ("stationary", "opposed_pairs"):  # u* = 0 there by construction
        assert resolved["grads"] >= 5, resolved


def test_orthogonal_family_has_its_closed_form() -> None:
    """The reference itself, on orthogonal rows: α*ᵢ ∝ 1/‖gᵢ‖² (independent of any solver)."""
    rng = _rng("closed form")
    for _ in range(20):
        grads = MIN_NORM_FAMILIES["orthogonal"](rng)
        star = [float(x) for x in min_norm_reference(grads)]
        inverse = 1.0 / np.einsum("ij,ij->i", grads, grads)
        # rows orthogonal to rounding (QR): the weights agree to 1e-12 of the largest
        np.testing.assert_allclose(star, inverse / inverse.sum(), rtol=1e-9, atol=1e-12)


def _projection_error(
    main: np.ndarray, aux: np.ndarray, u: np.ndarray
) -> tuple[float, float, float]:
    """(‖u − u*‖/‖u*‖ or inf, ‖u*‖/‖g₀‖, minᵢ⟨u, gᵢ⟩/(‖gᵢ‖‖g₀‖)), exact for the given u."""
    lam = projection_reference(main, aux)
    with mp.workdps(DIGITS):
        rows = exact_vectors(aux)
        g0 = [mp.mpf(float(x)) for x in main]
        star = [g0[c] + mp.fsum(lam[i] * rows[i][c] for i in range(len(rows)))
                for c in range(len(g0))]  # fmt: skip
        mine = [mp.mpf(float(x)) for x in u]
        star_norm = mp.sqrt(mp.fsum(x * x for x in star))
        main_norm = mp.sqrt(mp.fsum(x * x for x in g0))
        difference = mp.sqrt(mp.fsum((a - b) ** 2 for a, b in zip(mine, star, strict=True)))
        inner = min(
            (mp.fsum(a * b for a, b in zip(mine, row, strict=True))
             / mp.sqrt(mp.fsum(x * x for x in row)) for row in rows if any(row)),
            default=mp.mpf(0),
        )  # fmt: skip
        relative = float(difference / star_norm) if star_norm > 0 else float("inf")
        return relative, float(star_norm / main_norm), float(inner / main_norm)


@pytest.mark.parametrize("family", sorted(PROJECTION_FAMILIES))
def test_primary_auxiliary_projection_is_exact(family: str) -> None:
    rng = _rng(family, 1)
    resolved = 0
    for _ in range(PROJECTIONS):
        main, aux = projection_instance(rng, family)
        u, _, info = primary_auxiliary_direction(torch.from_numpy(main), torch.from_numpy(aux))
        relative, size, inner = _projection_error(main, aux, u.numpy())
        where = (family, len(aux), size, info)
        assert inner >= -64 * EPS, (inner, where)  # no auxiliary loss rises
        if size >= 1e-10:
            resolved += 1
            assert relative * size <= 1e-9 * size + 64 * EPS, (relative, where)
    assert resolved >= PROJECTIONS // 2


def _linear_losses(grads: np.ndarray, theta: torch.Tensor) -> list[torch.Tensor]:
    """Losses ⟨gᵢ, θ⟩: the per-task gradients are exactly the rows gᵢ."""
    return [torch.dot(torch.from_numpy(row), theta) for row in grads]


@pytest.mark.parametrize("upper_bound", [False, True])
def test_mtl_backward_mgda_writes_the_exact_direction(upper_bound: bool) -> None:
    """MGDA through ``mtl_backward`` (Gram form): θ.grad = Σαᵢgᵢ, exact to cos ≥ 1 − 1e-9 where
    the Gram form resolves u*, else zero and reported; MGDA-UB the same on features H = 2θ."""
    rng = _rng("mtl_backward", int(upper_bound))
    checked = 0
    for family in sorted(MIN_NORM_FAMILIES):
        for _ in range(4):
            grads = MIN_NORM_FAMILIES[family](rng)
            check = _Checker(grads)
            theta = torch.zeros(grads.shape[1], dtype=torch.float64, requires_grad=True)
            if upper_bound:
                features = 2.0 * theta
                result = mtl_backward(_linear_losses(grads, features), features=features,
                                      aggregator=MGDA(upper_bound=True))  # fmt: skip
                direction = theta.grad / 2.0  # ∂H/∂θ = 2I
            else:
                result = mtl_backward(_linear_losses(grads, theta), [theta], aggregator="mgda")
                direction = theta.grad
            assert direction is not None
            if check.ratio >= max(_gram_floor(len(grads)), 1e-8 * (1 + 1e-6)):
                checked += 1
                assert not result.pareto_stationary
                weights = torch.linalg.lstsq(torch.from_numpy(grads).T,
                                             direction[:, None]).solution[:, 0]  # fmt: skip
                cosine, _ = check.measure(weights / weights.sum())
                u_star = np.array([float(x) for x in check.star]) @ grads
                cos_direct = float(direction.numpy() @ u_star) / float(
                    np.linalg.norm(direction.numpy()) * np.linalg.norm(u_star)
                )
                assert cos_direct >= 1 - 1e-9, (family, cos_direct, cosine, result.info)
            else:
                inner_direct = grads @ direction.numpy()
                if float(inner_direct.min()) < 0:
                    assert result.pareto_stationary
                    assert not bool(direction.any())
    assert checked >= 10


def test_mtl_backward_primary_auxiliary_writes_the_exact_projection() -> None:
    rng = _rng("mtl_backward primary")
    for family in sorted(PROJECTION_FAMILIES):
        for _ in range(3):
            main, aux = projection_instance(rng, family)
            theta = torch.zeros(aux.shape[1], dtype=torch.float64, requires_grad=True)
            losses = _linear_losses(np.vstack([main, aux]), theta)
            mtl_backward(losses, [theta], aggregator="primary_auxiliary")
            assert theta.grad is not None
            relative, size, inner = _projection_error(main, aux, theta.grad.numpy())
            assert inner >= -64 * EPS, (family, inner)
            if size >= 1e-10:
                assert relative * size <= 1e-9 * size + 64 * EPS, (family, relative)


def test_mtl_backward_zeroes_what_the_solver_cannot_resolve() -> None:
    """u* at 5e-8 of the largest gradient: above mtl_backward's own ‖u‖ test (1e-8) but below
    the Gram form's resolution (‖u‖² ≤ 16Tε·max‖gᵢ‖²); the solver reports it and mtl_backward
    writes u = 0 instead of a direction that may raise a loss (issue 20: MGDA + SGD on digits)."""
    rng = np.random.default_rng(11)
    base = rng.standard_normal((3, 5))
    direction = rng.standard_normal(5)
    grads = base - rng.dirichlet(np.ones(3)) @ base
    grads += 5e-8 * np.abs(grads).max() * direction / np.linalg.norm(direction)
    theta = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    result = mtl_backward(_linear_losses(grads, theta), [theta], aggregator="mgda")
    check = _Checker(grads)
    assert 1e-8 < check.ratio < _gram_floor(3)
    assert isinstance(result.info, MinNormInfo)
    assert result.info.pareto_stationary
    assert result.pareto_stationary
    assert theta.grad is not None
    assert not bool(theta.grad.any())

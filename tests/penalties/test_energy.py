from __future__ import annotations

import math

import pytest
import torch

from kexue.penalties import arc_length_1d, dirichlet_energy


def test_dirichlet_energy_linear_and_quadratic() -> None:
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.randn(20, 3, dtype=torch.float64)
    assert float(dirichlet_energy(lambda v: v @ a, x)) == pytest.approx(5.25, rel=1e-14)
    expected = float((4 * x.pow(2).sum(1)).mean())
    assert float(dirichlet_energy(lambda v: (v**2).sum(1), x)) == pytest.approx(expected)


def test_dirichlet_energy_is_differentiable_on_request() -> None:
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    energy = dirichlet_energy(lambda v: v @ a, torch.randn(4, 2).double(), create_graph=True)
    (grad_a,) = torch.autograd.grad(energy, a)
    torch.testing.assert_close(grad_a, 2 * a.detach())


@pytest.mark.parametrize("method", ["trapezoid", "polyline"])
def test_arc_length_of_affine_function_is_exact(method: str) -> None:
    grid = torch.linspace(-1, 2, 7, dtype=torch.float64)
    length = arc_length_1d(lambda v: 3 * v[:, 0] + 1, grid, method=method)  # type: ignore[arg-type]
    assert float(length) == pytest.approx(3 * math.sqrt(10), rel=1e-13)


def test_arc_length_of_parabola() -> None:
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)
    exact = (2 * math.sqrt(5) + math.asinh(2)) / 4
    trapezoid = float(arc_length_1d(lambda v: v**2, grid))
    polyline = float(arc_length_1d(lambda v: v**2, grid, method="polyline"))
    assert trapezoid == pytest.approx(exact, rel=1e-6)
    assert polyline == pytest.approx(exact, rel=1e-6)
    assert polyline <= exact


def test_bad_inputs() -> None:
    f = lambda v: v[:, 0]  # noqa: E731
    with pytest.raises(ValueError, match="increasing"):
        arc_length_1d(f, torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        arc_length_1d(f, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="2 points"):
        arc_length_1d(f, torch.zeros(1))
    with pytest.raises(TypeError, match="floating"):
        arc_length_1d(f, torch.arange(3))
    with pytest.raises(ValueError, match="NaN"):
        arc_length_1d(f, torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="method"):
        arc_length_1d(f, torch.tensor([0.0, 1.0]), method="simpson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        dirichlet_energy(f, torch.zeros(0, 1))

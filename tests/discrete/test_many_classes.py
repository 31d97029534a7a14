"""The interpolated many-classes path (spec 09 §5.1b): agreement with the direct O(n²K) path
within the stated bound, gradients, the automatic switch, unsupported noise."""

from __future__ import annotations

import pytest
import torch

from kexue.discrete import (
    Logistic,
    Normal,
    interpolated_log_probs,
    interpolation_error_bound,
    perturb_max_probs,
    quadrature_nodes,
)

F64 = torch.float64


@pytest.mark.parametrize(("noise", "rule"), [(Normal(), "gauss-hermite"),
                                             (Logistic(), "gauss-legendre")])  # fmt: skip
@pytest.mark.parametrize("spread", [0.0, 0.3, 3.0, 30.0])
def test_interpolated_agrees_with_direct_within_the_bound(noise, rule, spread: float) -> None:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(int(spread * 10))
    logits = torch.randn(2, 300, dtype=F64, generator=generator) * spread
    nodes, log_weights = quadrature_nodes(noise, rule, 24)
    result = interpolated_log_probs(logits, noise, nodes, log_weights, tolerance=1e-8)
    direct = perturb_max_probs(logits, noise, rule, 24, renormalize=False, log=True,
                               algorithm="direct")  # fmt: skip
    error = float((result.log_probs - direct).abs().max())
    # float64 rounding of sums of up to n terms of size |log p| on top of the stated bound
    rounding = 1e-15 * 300 * max(1.0, float(direct.abs().max()))
    assert error <= result.bound + rounding, (error, result.bound)
    assert result.bound <= 2e-8
    normalized = perturb_max_probs(logits, noise, rule, 24, log=True, algorithm="interpolated")
    reference = perturb_max_probs(logits, noise, rule, 24, log=True, algorithm="direct")
    assert float((normalized - reference).abs().max()) <= 2 * result.bound + 2 * rounding


def test_bound_formula_and_tolerance() -> None:
    assert interpolation_error_bound(1000, Normal(), 0.1) == pytest.approx(
        1e-6 / 46080 * 1000 * 0.48
    )
    logits = torch.randn(1, 2000, dtype=F64, generator=torch.Generator().manual_seed(0)) * 3
    nodes, log_weights = quadrature_nodes(Normal(), "gauss-hermite", 32)
    loose = interpolated_log_probs(logits, Normal(), nodes, log_weights, tolerance=1e-4)
    tight = interpolated_log_probs(logits, Normal(), nodes, log_weights, tolerance=1e-10)
    assert loose.bound <= 1.2e-4
    assert tight.bound <= 1.2e-10
    assert loose.grid_nodes < tight.grid_nodes
    assert (
        float((loose.log_probs - tight.log_probs).abs().max()) <= loose.bound + tight.bound + 1e-9
    )


def test_interpolated_gradient_matches_direct() -> None:
    logits = torch.randn(1, 200, dtype=F64, generator=torch.Generator().manual_seed(3)) * 2
    weights = torch.randn(1, 200, dtype=F64, generator=torch.Generator().manual_seed(4))
    grads = []
    for algorithm in ("direct", "interpolated"):
        x = logits.clone().requires_grad_(True)
        log_p = perturb_max_probs(x, "normal", num_nodes=16, log=True, algorithm=algorithm)
        (log_p.clamp_min(-50) * weights).sum().backward()
        assert x.grad is not None
        grads.append(x.grad)
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-6


def test_gradcheck_of_the_interpolated_path() -> None:
    x = torch.tensor([[0.3, -1.2, 2.0, 0.1, -0.4, 0.9]], dtype=F64, requires_grad=True)

    def log_probs(v: torch.Tensor) -> torch.Tensor:
        return perturb_max_probs(v, "logistic", num_nodes=12, log=True, algorithm="interpolated")

    assert torch.autograd.gradcheck(log_probs, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_auto_switches_to_interpolation_for_many_classes_and_keeps_dtype() -> None:
    logits = torch.randn(3, 600, generator=torch.Generator().manual_seed(0)) * 3
    auto = perturb_max_probs(logits)
    direct = perturb_max_probs(logits, algorithm="direct")
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, direct, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(auto.sum(-1), torch.ones(3))


def test_interpolated_path_needs_a_smooth_noise() -> None:
    with pytest.raises(ValueError, match="interpolated"):
        perturb_max_probs(
            torch.randn(50), "exponential", "gauss-legendre", algorithm="interpolated"
        )
    nodes, log_weights = quadrature_nodes(Normal(), "gauss-hermite", 8)
    with pytest.raises(ValueError, match="tolerance"):
        interpolated_log_probs(torch.zeros(1, 4, dtype=F64), Normal(), nodes, log_weights,
                               tolerance=0.0)  # fmt: skip


def test_vocabulary_sized_input_is_finite() -> None:
    logits = torch.randn(1, 32_000, generator=torch.Generator().manual_seed(0)) * 3
    nodes, log_weights = quadrature_nodes(Normal(), "gauss-hermite", 8)
    result = interpolated_log_probs(logits.double(), Normal(), nodes, log_weights, tolerance=1e-6)
    assert bool(torch.isfinite(result.log_probs).all())
    assert result.bound <= 1.2e-6
    p = perturb_max_probs(logits, num_nodes=8, tolerance=1e-6)
    assert abs(float(p.sum()) - 1) <= 1e-5
    assert int(p.argmax()) == int(logits.argmax())

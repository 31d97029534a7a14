from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.penalties import input_gradient_norm, parameter_gradient_norm


def test_input_gradient_norm_per_sample_flattened() -> None:
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    norm = input_gradient_norm(lambda v: (v**2).sum(dim=(1, 2)), x)
    torch.testing.assert_close(norm, (2 * x).flatten(1).norm(dim=1))
    assert not norm.requires_grad


def test_input_gradient_norm_accepts_b1_and_rejects_other_shapes() -> None:
    x = torch.randn(3, 2, dtype=torch.float64)
    lin = nn.Linear(2, 1).double()
    torch.testing.assert_close(
        input_gradient_norm(lin, x), lin.weight.detach().norm().expand(3), rtol=1e-14, atol=0
    )
    with pytest.raises(ValueError, match="one scalar per sample"):
        input_gradient_norm(lambda v: lin(v).unsqueeze(-1), x)
    with pytest.raises(ValueError, match="one scalar per sample"):
        input_gradient_norm(lambda v: v, x)


def test_input_gradient_norm_eps_safe_at_zero_gradient() -> None:
    a = torch.ones(2, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(3, 2, dtype=torch.float64)
    norm = input_gradient_norm(lambda v: (a * v**2).sum(1), x, create_graph=True)
    assert torch.equal(norm, torch.zeros(3, dtype=torch.float64))
    (grad_a,) = torch.autograd.grad(norm.sum(), a)
    assert torch.isfinite(grad_a).all()


def test_parameter_gradient_norm_value_and_eps_safety() -> None:
    w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    unused = torch.ones(2, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    value = parameter_gradient_norm((w * x).sum() + 2 * b.sum(), [w, b, unused])
    assert float(value) == pytest.approx(3.0, rel=1e-15)  # √(1 + 4 + 4)
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    norm = parameter_gradient_norm((z**2).sum(), [z], create_graph=True)
    assert float(norm.detach()) == 0.0
    (grad_z,) = torch.autograd.grad(norm, z)
    assert torch.equal(grad_z, torch.zeros(3, dtype=torch.float64))


def test_bad_inputs() -> None:
    with pytest.raises(TypeError, match="floating"):
        input_gradient_norm(lambda v: v.sum(1), torch.ones(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="NaN"):
        input_gradient_norm(lambda v: v.sum(1), torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="empty"):
        input_gradient_norm(lambda v: v.sum(1), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="dimension"):
        input_gradient_norm(lambda v: v, torch.zeros(3))
    with pytest.raises(TypeError):
        input_gradient_norm(lambda v: v.sum(1), [[1.0]])  # type: ignore[arg-type]
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="one element"):
        parameter_gradient_norm(w * 2, [w])
    with pytest.raises(ValueError, match="empty"):
        parameter_gradient_norm(w.sum(), [])
    with pytest.raises(ValueError, match="require grad"):
        parameter_gradient_norm(w.sum(), [torch.ones(2)])

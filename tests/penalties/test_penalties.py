from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from kexue.lipschitz import LazyInterval
from kexue.penalties import (
    InputGradientPenalty,
    LazyPenalty,
    add_parameter_gradient_penalty_,
    finite_difference_parameter_penalty,
    input_gradient_penalty,
    parameter_gradient_penalty,
    parameter_gradient_penalty_gradients,
)


def small_mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)
    ).to(dtype)


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    return x, torch.randn(16, 1, generator=gen, dtype=torch.float64)


def test_input_gradient_penalty_value_and_differentiability() -> None:
    a = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64)
    penalty = input_gradient_penalty(lambda v: v @ a, x, weight=0.5)
    assert float(penalty.detach()) == pytest.approx(0.5 * 14.0, rel=1e-14)
    (grad_a,) = torch.autograd.grad(penalty, a)
    torch.testing.assert_close(grad_a, 0.5 * 2 * a.detach())


def test_input_gradient_penalty_is_per_sample_over_flattened_input() -> None:
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    penalty = input_gradient_penalty(lambda v: (v**2).sum(dim=(1, 2, 3)), x)
    expected = (2 * x).flatten(1).pow(2).sum(1).mean()
    assert float(penalty.detach()) == pytest.approx(float(expected), rel=1e-14)


def test_amp_safe_mode_matches_plain_mode_in_float64() -> None:
    mlp = small_mlp()
    x, _ = regression_data()
    plain = input_gradient_penalty(lambda v: mlp(v), x, 2.0)

    class Scaler:
        def get_scale(self) -> float:
            return 1024.0

    for scale in (1024.0, Scaler()):
        scaled = input_gradient_penalty(lambda v: mlp(v), x, 2.0, scale=scale)
        assert float(scaled.detach()) == pytest.approx(float(plain.detach()), rel=1e-14)
        params = list(mlp.parameters())[:-1]  # the last bias does not change ∇ₓf
        grads = torch.autograd.grad(scaled, params)
        plain_grads = torch.autograd.grad(input_gradient_penalty(lambda v: mlp(v), x, 2.0), params)
        for g, h in zip(grads, plain_grads, strict=True):
            torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_amp_safe_mode_is_finite_in_low_precision(dtype: torch.dtype) -> None:
    mlp = small_mlp(dtype=dtype)
    x = regression_data()[0].to(dtype)
    try:
        penalty = input_gradient_penalty(lambda v: mlp(v), x, 1.0, scale=1024.0)
        penalty.backward()
    except RuntimeError as error:  # an op without a low-precision CPU kernel
        pytest.skip(f"{dtype} not supported on CPU for this model: {error}")
    assert penalty.dtype == torch.float32
    assert torch.isfinite(penalty)
    assert all(torch.isfinite(p.grad).all() for p in mlp.parameters() if p.grad is not None)


def test_exact_parameter_penalty_value() -> None:
    w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    loss = (w * x).sum() ** 2 / 2  # ∇w = (w·x) x = 11·(1, 2)
    penalty = parameter_gradient_penalty(loss, [w], weight=0.5)
    assert float(penalty.detach()) == pytest.approx(0.25 * 121 * 5, rel=1e-14)
    (loss + penalty).backward()  # the loss graph is retained
    assert w.grad is not None


def test_finite_difference_matches_double_backward() -> None:
    """C3.8: FD gradient of λ/2‖∇θL‖² ≈ exact λHg to 1e-3 relative at r = 1e-3; θ restored."""
    mlp = small_mlp()
    x, y = regression_data()
    params = list(mlp.parameters())

    def loss_fn() -> torch.Tensor:
        return ((mlp(x) - y) ** 2).mean()

    weight = 0.3
    exact = torch.autograd.grad(parameter_gradient_penalty(loss_fn(), params, weight), params)
    before = [p.detach().clone() for p in params]
    approx = parameter_gradient_penalty_gradients(loss_fn, params, weight, radius=1e-3)
    for p, original in zip(params, before, strict=True):
        assert torch.equal(p.detach(), original)  # bit-exact restore
    exact_flat = torch.cat([g.flatten() for g in exact])
    approx_flat = torch.cat([g.flatten() for g in approx])
    relative = float((approx_flat - exact_flat).norm() / exact_flat.norm())
    assert relative < 1e-3


def test_finite_difference_training_step_accumulates_total_direction() -> None:
    mlp = small_mlp(2)
    x, y = regression_data()
    params = list(mlp.parameters())

    def loss_fn() -> torch.Tensor:
        return ((mlp(x) - y) ** 2).mean()

    result = finite_difference_parameter_penalty(loss_fn, params, 0.1)
    loss = add_parameter_gradient_penalty_(loss_fn, params, 0.1)
    assert float(loss) == pytest.approx(float(loss_fn().detach()), rel=1e-15)
    for p, g, h in zip(params, result.gradients, result.penalty_gradients, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, g + h, rtol=1e-12, atol=1e-15)


def test_finite_difference_restores_parameters_when_loss_fn_raises() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    calls = {"n": 0}

    def loss_fn() -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return (w**3).sum()

    with pytest.raises(RuntimeError, match="boom"):
        parameter_gradient_penalty_gradients(loss_fn, [w], 1.0)
    assert torch.equal(w.detach(), torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_finite_difference_zero_gradient_gives_zero() -> None:
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    grads = parameter_gradient_penalty_gradients(lambda: (w**2).sum(), [w], 1.0)
    assert torch.equal(grads[0], torch.zeros(3, dtype=torch.float64))


def test_lazy_penalty_applies_every_k_steps_times_k() -> None:
    lazy = LazyPenalty(every=4)
    assert isinstance(lazy, LazyInterval)
    calls: list[int] = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.tensor(2.5)

    values = [lazy(step, compute) for step in range(8)]
    assert [v is not None for v in values] == [True, False, False, False] * 2
    assert len(calls) == 2
    assert float(values[0]) == 10.0  # type: ignore[arg-type]
    lr, (b1, b2) = lazy.optimizer_hyperparameters(2e-3, (0.0, 0.99))
    assert lr == pytest.approx(2e-3 * 0.8)
    assert b1 == 0.0
    assert b2 == pytest.approx(0.99**0.8)
    assert LazyPenalty(1).optimizer_hyperparameters(1e-3, (0.5, 0.9)) == (1e-3, (0.5, 0.9))


def test_input_gradient_penalty_wrapper_uses_schedule() -> None:
    a = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 2, dtype=torch.float64)
    wrapper = InputGradientPenalty(weight=0.5, every=2)
    value = wrapper(lambda v: v @ a, x, step=0)
    assert value is not None
    assert float(value.detach()) == pytest.approx(2 * 0.5 * 2.0)
    assert wrapper(lambda v: v @ a, x, step=1) is None


class _SquareOnce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class _NoDoubleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if torch.is_grad_enabled():
            raise RuntimeError("the derivative for '_NoDoubleBackward' is not implemented")
        return grad


def test_double_backward_unsupported_gives_clear_error() -> None:
    torch.manual_seed(0)
    first, last = nn.Linear(3, 4).double(), nn.Linear(4, 1).double()

    def f(v: torch.Tensor) -> torch.Tensor:
        return last(_SquareOnce.apply(first(v)))

    x = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="input-gradient penalty needs double backward") as info:
        input_gradient_penalty(f, x)
    assert "finite-difference" in str(info.value)
    assert "SDPBackend.MATH" in str(info.value)
    params = [*first.parameters(), *last.parameters()]
    with pytest.raises(RuntimeError, match="parameter-gradient penalty needs double backward"):
        parameter_gradient_penalty(f(x).pow(2).mean(), params)
    # the finite-difference penalty needs no double backward
    grads = parameter_gradient_penalty_gradients(lambda: f(x).pow(2).mean(), params, 1.0)
    assert all(torch.isfinite(g).all() for g in grads)

    def g(v: torch.Tensor) -> torch.Tensor:
        return last(torch.tanh(_NoDoubleBackward.apply(first(v))))

    with pytest.raises(RuntimeError, match="finite-difference"):
        input_gradient_penalty(g, x)


def test_bad_inputs() -> None:
    f = nn.Linear(3, 1).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="weight"):
        input_gradient_penalty(f, x, weight=-1.0)
    with pytest.raises(ValueError, match="scale"):
        input_gradient_penalty(f, x, scale=0.0)
    with pytest.raises(TypeError, match="floating"):
        input_gradient_penalty(f, torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        input_gradient_penalty(f, torch.full((4, 3), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="empty"):
        input_gradient_penalty(f, torch.zeros(0, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="one scalar per sample"):
        input_gradient_penalty(nn.Linear(3, 2).double(), x)
    with pytest.raises(ValueError, match="BatchNorm"):
        input_gradient_penalty(nn.Sequential(nn.BatchNorm1d(3), f).double(), x)
    params = list(f.parameters())
    loss = f(x).sum()
    with pytest.raises(ValueError, match="weight"):
        parameter_gradient_penalty(loss, params, weight=-0.1)
    with pytest.raises(ValueError, match="one element"):
        parameter_gradient_penalty(f(x), params)
    with pytest.raises(ValueError, match="empty"):
        parameter_gradient_penalty(loss, [])
    with pytest.raises(ValueError, match="radius"):
        parameter_gradient_penalty_gradients(lambda: f(x).sum(), params, 1.0, radius=0.0)
    with pytest.raises(ValueError, match="radius"):
        parameter_gradient_penalty_gradients(lambda: f(x).sum(), params, 1.0, radius=-1.0)
    with pytest.raises(ValueError, match="weight"):
        parameter_gradient_penalty_gradients(lambda: f(x).sum(), params, -1.0)
    with pytest.raises(ValueError, match="every"):
        LazyPenalty(0)
    with pytest.raises(TypeError, match="every"):
        LazyPenalty(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every"):
        InputGradientPenalty(every=0)
    with pytest.raises(ValueError, match="step"):
        LazyPenalty(2)(-1, lambda: torch.zeros(()))

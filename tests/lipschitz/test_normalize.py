"""Claims C1.1–C1.5, C1.7, C1.11, C1.12 of spec 01 §8 (float64 unless stated)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.lipschitz import (
    NORMALIZATION_METHODS,
    GradientNormalizedCritic,
    normalize_gradient,
    per_sample_norm,
)

from .conftest import activation_pattern, relu_mlp, small_cnn


def _input_gradient_of_f_hat(critic: nn.Module, x: torch.Tensor, method: str, **kwargs: float):
    x = x.clone().requires_grad_(True)
    output = normalize_gradient(critic, x, method, **kwargs)  # type: ignore[arg-type]
    (gradient,) = torch.autograd.grad(output.f_hat.sum(), x)
    return output, gradient


# ----------------------------------------------------------------------------- C1.1


@pytest.mark.parametrize("seed", range(10))
def test_c1_1_gn_gradient_norm_formula_autograd_and_finite_differences(seed: int) -> None:
    critic = relu_mlp(seed)
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    output, gradient = _input_gradient_of_f_hat(critic, x, "gn")
    norm, f = output.grad_norm.detach(), output.f.detach()
    expected = norm.pow(2) / (norm + f.abs()).pow(2)
    measured = per_sample_norm(gradient)
    torch.testing.assert_close(measured, expected, rtol=1e-10, atol=0)
    assert (measured <= 1).all()
    # Central finite differences, only where the whole stencil stays in one linear region.
    h = 1e-6
    checked = 0
    for b in range(x.shape[0]):
        stencil = x[b] + h * torch.tensor([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=x.dtype)
        patterns = activation_pattern(critic, torch.cat([x[b : b + 1], stencil]))
        if not (patterns == patterns[0]).all():
            continue
        values = normalize_gradient(critic, stencil, "gn", create_graph=False).f_hat.detach()
        fd = torch.stack([values[0] - values[1], values[2] - values[3]]) / (2 * h)
        assert torch.linalg.vector_norm(fd).item() == pytest.approx(expected[b].item(), rel=1e-6)
        checked += 1
    assert checked >= 24


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("eps", [1e-4, 1e-8])
def test_c1_1_gran_gradient_norm_formula(seed: int, eps: float) -> None:
    critic = relu_mlp(seed)
    x = torch.randn(32, 2, dtype=torch.float64)
    output, gradient = _input_gradient_of_f_hat(critic, x, "gran", eps=eps)
    norm = output.grad_norm.detach()
    expected = norm.pow(2) / (norm.pow(2) + eps)
    torch.testing.assert_close(per_sample_norm(gradient), expected, rtol=1e-10, atol=0)
    assert (per_sample_norm(gradient) < 1).all()


# ----------------------------------------------------------------------------- C1.2


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_c1_2_gn_is_bounded_at_every_weight_scale(scale: float) -> None:
    for seed in range(5):
        critic = relu_mlp(seed)
        with torch.no_grad():
            for parameter in critic.parameters():
                parameter.mul_(scale)
        x = torch.randn(2000, 2, dtype=torch.float64) * 10
        output = normalize_gradient(critic, x, "gn", create_graph=False)
        assert (output.grad_norm > 0).all()
        assert (output.f_hat.abs() < 1).all()


def test_c1_2_gran_is_unbounded() -> None:
    critic = relu_mlp(0)
    directions = torch.nn.functional.normalize(torch.randn(64, 2, dtype=torch.float64), dim=1)
    near = normalize_gradient(critic, 10 * directions, "gran", create_graph=False).f_hat
    far = normalize_gradient(critic, 1000 * directions, "gran", create_graph=False).f_hat
    # Far from the origin a ReLU net is linear along a ray, so f_hat grows linearly in t.
    assert (far.abs() / near.abs().clamp_min(1e-12)).max() >= 50
    assert far.abs().max() > 100


# ----------------------------------------------------------------------------- C1.4


@pytest.mark.parametrize("c", [1e-3, 0.5, 7.0, 1e3])
def test_c1_4_gn_is_invariant_to_last_layer_scale(c: float) -> None:
    critic = relu_mlp(3)
    x = torch.randn(256, 2, dtype=torch.float64)
    before = normalize_gradient(critic, x, "gn", create_graph=False).f_hat
    with torch.no_grad():
        critic[-1].weight.mul_(c)
        critic[-1].bias.mul_(c)
    after = normalize_gradient(critic, x, "gn", create_graph=False).f_hat
    torch.testing.assert_close(after, before, rtol=1e-12, atol=0)


@pytest.mark.parametrize("layer", [0, 2, 4])
def test_c1_4_bias_free_net_is_invariant_to_any_single_layer_scale(layer: int) -> None:
    critic = relu_mlp(4, bias=False)
    x = torch.randn(256, 2, dtype=torch.float64)
    before = normalize_gradient(critic, x, "gn", create_graph=False).f_hat
    with torch.no_grad():
        critic[layer].weight.mul_(37.0)
    after = normalize_gradient(critic, x, "gn", create_graph=False).f_hat
    torch.testing.assert_close(after, before, rtol=1e-12, atol=0)


def test_c1_4_gran_is_only_approximately_invariant() -> None:
    critic = relu_mlp(3)
    x = torch.randn(64, 2, dtype=torch.float64)
    before = normalize_gradient(critic, x, "gran", eps=1e-2, create_graph=False).f_hat
    with torch.no_grad():
        critic[-1].weight.mul_(1e-2)
        critic[-1].bias.mul_(1e-2)
    after = normalize_gradient(critic, x, "gran", eps=1e-2, create_graph=False).f_hat
    assert not torch.allclose(after, before, rtol=1e-3)


# ----------------------------------------------------------------------------- C1.5


def test_c1_5_bias_free_lower_bound_on_20000_points() -> None:
    critic = relu_mlp(5, bias=False)
    x = torch.randn(20_000, 2, dtype=torch.float64) * 3
    _, gradient = _input_gradient_of_f_hat(critic, x, "gn")
    lower = 1 / (1 + torch.linalg.vector_norm(x, dim=1)).pow(2)
    ratio = per_sample_norm(gradient) / lower
    assert (ratio >= 1 - 1e-12).all()


# ----------------------------------------------------------------------------- C1.7


def test_c1_7_su_variant_bias_gradients_vanish_and_gradient_norm_is_one() -> None:
    critic = relu_mlp(6)
    x = torch.randn(64, 2, dtype=torch.float64)
    _output, gradient = _input_gradient_of_f_hat(critic, x, "su")
    torch.testing.assert_close(
        per_sample_norm(gradient), torch.ones(64, dtype=torch.float64), rtol=0, atol=1e-10
    )
    critic.zero_grad()
    normalize_gradient(critic, x, "su").f_hat.sum().backward()
    for layer in critic:
        if isinstance(layer, nn.Linear):
            # The output bias is not even in the graph (grad None); hidden biases get exact zeros.
            assert layer.bias.grad is None or layer.bias.grad.abs().max() <= 1e-12
            assert layer.weight.grad is not None
            assert layer.weight.grad.abs().max() > 1e-6  # weights do learn
    assert critic[0].bias.grad is not None  # hidden biases are in the graph, and still get 0


def test_c1_7_pure_minus_su_is_constant_inside_a_region() -> None:
    critic = relu_mlp(7)
    x = torch.randn(1, 2, dtype=torch.float64)
    y = x + 1e-7 * torch.randn(1, 2, dtype=torch.float64)
    points = torch.cat([x, y])
    patterns = activation_pattern(critic, points)
    assert (patterns[0] == patterns[1]).all()
    pure = normalize_gradient(critic, points, "pure", create_graph=False).f_hat
    su = normalize_gradient(critic, points, "su", create_graph=False).f_hat
    difference = pure - su
    assert abs(difference[0] - difference[1]).item() <= 1e-10


# ----------------------------------------------------------------------------- C1.11


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", NORMALIZATION_METHODS)
def test_c1_11_zero_critic_gives_finite_values_and_gradients(
    dtype: torch.dtype, method: str
) -> None:
    critic = relu_mlp(0, dtype=dtype)
    with torch.no_grad():
        for parameter in critic.parameters():
            parameter.zero_()
    x = torch.randn(16, 2, dtype=dtype)
    output = normalize_gradient(critic, x, method)  # type: ignore[arg-type]
    assert torch.isfinite(output.f_hat).all()
    output.f_hat.sum().backward()
    for parameter in critic.parameters():
        # None means the parameter is not in the graph (Su's output bias): a zero gradient.
        assert parameter.grad is None or torch.isfinite(parameter.grad).all()
    assert any(parameter.grad is not None for parameter in critic.parameters())


def test_gn_zero_over_zero_is_zero_and_sign_without_gradient() -> None:
    critic = nn.Linear(2, 1).double()
    with torch.no_grad():
        critic.weight.zero_()
        critic.bias.fill_(-3.0)
    x = torch.randn(4, 2, dtype=torch.float64)
    assert torch.equal(
        normalize_gradient(critic, x, "gn").f_hat, -torch.ones(4, dtype=torch.float64)
    )
    with torch.no_grad():
        critic.bias.zero_()
    assert torch.equal(
        normalize_gradient(critic, x, "gn").f_hat, torch.zeros(4, dtype=torch.float64)
    )


def test_half_precision_inputs_are_normalised_in_float32() -> None:
    critic = relu_mlp(0, dtype=torch.bfloat16)
    x = torch.randn(8, 2, dtype=torch.bfloat16)
    output = normalize_gradient(critic, x, "gn")
    assert output.f_hat.dtype == torch.float32
    assert torch.isfinite(output.f_hat).all()
    assert (output.f_hat.abs() <= 1).all()


# ----------------------------------------------------------------------------- C1.12


@pytest.mark.parametrize("method", NORMALIZATION_METHODS)
def test_c1_12_batch_equals_one_sample_at_a_time(method: str) -> None:
    critic = small_cnn(0)
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    batch = normalize_gradient(critic, x, method, create_graph=False).f_hat  # type: ignore[arg-type]
    single = torch.cat(
        [normalize_gradient(critic, x[i : i + 1], method, create_graph=False).f_hat  # type: ignore[arg-type]
         for i in range(6)]
    )  # fmt: skip
    torch.testing.assert_close(batch, single, rtol=1e-12, atol=1e-12)


def test_image_norm_is_over_the_whole_flattened_sample() -> None:
    critic = small_cnn(1)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    output = normalize_gradient(critic, x, "gn", create_graph=False)
    for b in range(3):
        (gradient,) = torch.autograd.grad(critic(x[b : b + 1]).sum(), x)
        assert output.grad_norm[b].item() == pytest.approx(gradient.norm().item(), rel=1e-12)


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(64), nn.SyncBatchNorm(64)])
def test_c1_12_batch_coupled_critics_are_refused(layer: nn.Module) -> None:
    critic = nn.Sequential(nn.Linear(2, 64), layer, nn.ReLU(), nn.Linear(64, 1)).double()
    with pytest.raises(ValueError, match="couples the samples"):
        normalize_gradient(critic, torch.randn(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="couples the samples"):
        GradientNormalizedCritic(critic)


def test_per_sample_normalisations_are_allowed() -> None:
    critic = nn.Sequential(nn.Linear(2, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1)).double()
    assert normalize_gradient(critic, torch.randn(4, 2, dtype=torch.float64)).f_hat.shape == (4,)


# ----------------------------------------------------------------------------- wrapper, bad input


def test_wrapper_module_trains_the_wrapped_critic_and_is_detached_under_no_grad() -> None:
    critic = relu_mlp(2)
    wrapped = GradientNormalizedCritic(critic, "gn")
    x = torch.randn(8, 2, dtype=torch.float64)
    wrapped(x).mean().backward()
    assert all(p.grad is not None for p in critic.parameters())
    with torch.no_grad():
        scores = wrapped(x)
    assert not scores.requires_grad
    assert "method='gn'" in repr(wrapped)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.full((4, 2), float("nan"), dtype=torch.float64), ValueError, "NaN"),
        (torch.zeros(0, 2, dtype=torch.float64), ValueError, "empty"),
        (torch.zeros(4, dtype=torch.float64), ValueError, "batch dimension"),
        (torch.zeros(4, 2, dtype=torch.int64), TypeError, "floating point"),
        ([[0.0, 1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(x: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        normalize_gradient(relu_mlp(0), x)  # type: ignore[arg-type]


def test_non_scalar_critic_output_and_unknown_method() -> None:
    two_outputs = nn.Linear(2, 2).double()
    with pytest.raises(ValueError, match="one scalar per sample"):
        normalize_gradient(two_outputs, torch.randn(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown normalization method"):
        normalize_gradient(relu_mlp(0), torch.randn(4, 2, dtype=torch.float64), "l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        normalize_gradient(relu_mlp(0), torch.randn(4, 2, dtype=torch.float64), "gran", eps=-1.0)

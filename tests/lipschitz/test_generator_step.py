"""Claim C1.6 of spec 01 §8: the fast generator step equals double backprop for piecewise-linear
critics; the critic's parameters receive nothing; smooth critics warn."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from kexue.lipschitz import NORMALIZATION_METHODS, gn_generator_backward

from .conftest import relu_mlp, small_cnn


def _generator_gradients(
    generator: nn.Module, critic: nn.Module, z: torch.Tensor, loss: str, method: str, mode: str
) -> torch.Tensor:
    generator.zero_grad()
    critic.zero_grad()
    gn_generator_backward(critic, generator(z), loss, method, mode=mode)  # type: ignore[arg-type]
    assert all(p.grad is None for p in critic.parameters())
    return torch.cat([p.grad.flatten() for p in generator.parameters()])  # type: ignore[union-attr]


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("loss", ["wgan", "hinge", "ns"])
@pytest.mark.parametrize("method", NORMALIZATION_METHODS)
@pytest.mark.parametrize("activation", [nn.ReLU, nn.LeakyReLU])
def test_c1_6_fast_equals_double_for_mlp_critics(
    loss: str, method: str, activation: type[nn.Module]
) -> None:
    critic = relu_mlp(0, activation=activation)
    torch.manual_seed(1)
    generator = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 2)).double()
    z = torch.randn(64, 3, dtype=torch.float64)
    fast = _generator_gradients(generator, critic, z, loss, method, "fast")
    double = _generator_gradients(generator, critic, z, loss, method, "double")
    assert _relative_difference(fast, double) <= 1e-8


@pytest.mark.parametrize("loss", ["wgan", "hinge", "ns", "bce01"])
def test_c1_6_fast_equals_double_for_cnn_critics(loss: str) -> None:
    critic = small_cnn(0)
    torch.manual_seed(2)
    generator = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8))).double()
    z = torch.randn(16, 4, dtype=torch.float64)
    fast = _generator_gradients(generator, critic, z, loss, "gn", "fast")
    double = _generator_gradients(generator, critic, z, loss, "gn", "double")
    assert _relative_difference(fast, double) <= 1e-8


def test_c1_6_float32_within_official_tolerance() -> None:
    critic = small_cnn(3, dtype=torch.float32)
    generator = nn.Sequential(nn.Linear(4, 64), nn.Unflatten(1, (1, 8, 8)))
    z = torch.randn(32, 4)
    fast = _generator_gradients(generator, critic, z, "ns", "gn", "fast")
    double = _generator_gradients(generator, critic, z, "ns", "gn", "double")
    assert _relative_difference(fast, double) <= 1e-3


def test_smooth_critic_warns_and_fast_differs_from_double() -> None:
    critic = relu_mlp(0, activation=nn.ELU)
    generator = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2)).double()
    z = torch.randn(64, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match="piecewise-linear"):
        fast = _generator_gradients(generator, critic, z, "wgan", "gn", "fast")
    double = _generator_gradients(generator, critic, z, "wgan", "gn", "double")
    assert _relative_difference(fast, double) > 1e-6  # the dropped Hessian term is visible


def test_piecewise_linear_critic_does_not_warn() -> None:
    critic = relu_mlp(0)
    generator = nn.Linear(3, 2).double()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gn_generator_backward(critic, generator(torch.randn(4, 3, dtype=torch.float64)))


def test_returned_loss_matches_the_normalised_scores() -> None:
    from kexue.lipschitz import generator_loss, normalize_gradient

    critic = relu_mlp(0)
    generator = nn.Linear(3, 2).double()
    z = torch.randn(8, 3, dtype=torch.float64)
    value = gn_generator_backward(critic, generator(z), "ns", "gn")
    expected = generator_loss("ns", normalize_gradient(critic, generator(z).detach(), "gn").f_hat)
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    assert not value.requires_grad


def test_bad_input() -> None:
    critic = relu_mlp(0)
    with pytest.raises(ValueError, match="require grad"):
        gn_generator_backward(critic, torch.randn(4, 2, dtype=torch.float64))
    fake = nn.Linear(3, 2).double()(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="mode"):
        gn_generator_backward(critic, fake, mode="triple")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown loss"):
        gn_generator_backward(critic, fake, "mse")  # type: ignore[arg-type]

"""Loss formulas (spec 01 §5.4) and claim C1.8 (hinge degeneracy under GN)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from kexue.lipschitz import critic_loss, generator_loss, normalize_gradient

from .conftest import relu_mlp


def test_formulas_on_known_scores() -> None:
    real = torch.tensor([0.5, 2.0], dtype=torch.float64)
    fake = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    assert critic_loss("wgan", real, fake).item() == pytest.approx(-0.5 - 1.25)
    assert critic_loss("hinge", real, fake).item() == pytest.approx(0.25 + 0.5)
    expected_ns = F.softplus(-real).mean() + F.softplus(fake).mean()
    assert critic_loss("ns", real, fake).item() == pytest.approx(expected_ns.item())
    assert generator_loss("wgan", fake).item() == pytest.approx(0.5)
    assert generator_loss("hinge", fake).item() == pytest.approx(0.5)
    assert generator_loss("ns", fake).item() == pytest.approx(F.softplus(-fake).mean().item())
    bounded = torch.tensor([1.0, -1.0], dtype=torch.float64)
    # bce01: real scored 1 -> p=1, fake scored -1 -> p=0: zero loss
    assert critic_loss("bce01", bounded[:1], bounded[1:]).item() == pytest.approx(0.0)
    assert generator_loss("bce01", torch.zeros(3, dtype=torch.float64)).item() == pytest.approx(
        -torch.log(torch.tensor(0.5)).item()
    )


@pytest.mark.parametrize("seed", range(5))
def test_c1_8_hinge_equals_wgan_plus_two_under_gn(seed: int) -> None:
    critic = relu_mlp(seed)
    x = torch.randn(512, 2, dtype=torch.float64) * 5
    f_hat = normalize_gradient(critic, x, "gn", create_graph=False).f_hat
    real, fake = f_hat[:256], f_hat[256:]
    assert torch.equal(F.relu(1 - real), 1 - real)
    assert torch.equal(F.relu(1 + fake), 1 + fake)
    hinge = critic_loss("hinge", real, fake)
    wgan = critic_loss("wgan", real, fake)
    assert abs(hinge.item() - (wgan.item() + 2)) <= 1e-12
    assert torch.equal(generator_loss("hinge", fake), generator_loss("wgan", fake))


def test_ns_loss_does_not_saturate_under_gn() -> None:
    f_hat = torch.linspace(-1, 1, 101, dtype=torch.float64)
    values = F.softplus(f_hat)
    assert values.min().item() == pytest.approx(0.3133, abs=1e-4)
    assert values.max().item() == pytest.approx(1.3133, abs=1e-4)


def test_bad_input() -> None:
    scores = torch.zeros(3)
    with pytest.raises(ValueError, match="unknown loss"):
        critic_loss("wasserstein", scores, scores)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        critic_loss("bce01", torch.tensor([3.0]), scores)
    with pytest.raises(ValueError, match="1-D"):
        generator_loss("wgan", torch.zeros(3, 1))
    with pytest.raises(ValueError, match="1-D"):
        generator_loss("wgan", torch.zeros(0))

"""Clipping, spectral normalisation and the named constraint strategies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.lipschitz import (
    CONSTRAINTS,
    GradientNormalization,
    apply_spectral_norm,
    clip_weights_,
    critic_loss,
    make_constraint,
)

from .conftest import relu_mlp


def test_clip_weights() -> None:
    critic = relu_mlp(0)
    with torch.no_grad():
        critic[0].weight.mul_(100)
    clip_weights_(critic, 0.01)
    assert max(p.abs().max().item() for p in critic.parameters()) <= 0.01
    with pytest.raises(ValueError, match="positive"):
        clip_weights_(critic, 0.0)


def test_spectral_norm_uses_torch_parametrization_and_normalises() -> None:
    critic = apply_spectral_norm(relu_mlp(0, widths=(2, 64, 64, 1)))
    assert torch.nn.utils.parametrize.is_parametrized(critic[0], "weight")
    critic.train()
    for _ in range(30):  # power iterations converge over training forwards
        critic(torch.randn(4, 2, dtype=torch.float64))
    critic.eval()
    for layer in (critic[0], critic[2], critic[4]):
        assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, abs=1e-3)
    apply_spectral_norm(critic)  # idempotent: no second parametrisation
    assert len(critic[0].parametrizations.weight) == 1
    with pytest.raises(ValueError, match="no Linear/Conv"):
        apply_spectral_norm(nn.ReLU())


def test_every_named_constraint_builds_and_runs_a_critic_and_generator_step() -> None:
    for name in CONSTRAINTS:
        constraint = make_constraint(name)
        critic = constraint.prepare_critic(relu_mlp(1))
        generator = nn.Linear(2, 2).double()
        real = torch.randn(16, 2, dtype=torch.float64)
        fake = generator(torch.randn(16, 2, dtype=torch.float64))
        scores = constraint.scores(critic, torch.cat([real, fake.detach()]))
        loss = critic_loss("wgan", scores[:16], scores[16:])
        penalty = constraint.penalty(critic, real, fake.detach(), step=0)
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
        assert torch.isfinite(loss)
        constraint.after_critic_step(critic)
        critic.zero_grad()
        value = constraint.generator_backward(critic, fake, "wgan")
        assert torch.isfinite(value)
        assert all(p.grad is None for p in critic.parameters()), name
        assert generator.weight.grad is not None, name


def test_named_constraints_have_their_effect() -> None:
    assert isinstance(make_constraint("gran", eps=1e-4), GradientNormalization)
    assert make_constraint("gran-simple").name == "gran-simple"
    assert make_constraint("gp0").center == 0.0  # type: ignore[attr-defined]
    clipped = make_constraint("clip").prepare_critic(relu_mlp(2))
    assert max(p.abs().max().item() for p in clipped.parameters()) <= 0.01
    normalised = make_constraint("gn")
    x = torch.randn(32, 2, dtype=torch.float64) * 10
    assert normalised.scores(relu_mlp(3), x).abs().max() < 1


def test_bad_constraint_names_and_options() -> None:
    with pytest.raises(ValueError, match="unknown Lipschitz constraint"):
        make_constraint("lipschitz-magic")
    with pytest.raises(TypeError, match="bad options"):
        make_constraint("gp", lamda=10)
    with pytest.raises(ValueError, match="generator_mode"):
        make_constraint("gn", generator_mode="slow")
    with pytest.raises(ValueError, match="couples the samples"):
        make_constraint("gp").prepare_critic(nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4)))

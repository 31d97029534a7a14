"""Diagnostics: the library's line-jump measurement reproduces C1.3; gradient norms (C1.10 tool)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.lipschitz import critic_gradient_norms, line_jumps, linear_region_ids

from .conftest import relu_mlp


def test_c1_3_gn_critic_jumps_do_not_shrink_with_the_step_while_f_does() -> None:
    critic = relu_mlp(0)
    generator = torch.Generator().manual_seed(1)
    start = torch.randn(2, dtype=torch.float64, generator=generator)
    direction = torch.nn.functional.normalize(
        torch.randn(2, dtype=torch.float64, generator=generator), dim=0
    )
    jumps = {step: line_jumps(critic, start, direction, step) for step in (6e-3, 6e-4, 6e-5, 6e-6)}
    coarse, fine = jumps[6e-3], jumps[6e-6]
    assert fine.largest_jump_f_hat >= 0.5 * coarse.largest_jump_f_hat
    assert coarse.largest_jump_f / fine.largest_jump_f >= 100
    assert fine.largest_difference_quotient_f_hat > 1e3  # close pairs: |Δf̂|/|Δx| > 1000


def test_gradient_norms_of_gn_critic_are_at_most_one() -> None:
    critic = relu_mlp(2)
    x = torch.randn(500, 2, dtype=torch.float64) * 3
    normalised = critic_gradient_norms(critic, x, "gn")
    raw = critic_gradient_norms(critic, x)
    assert (normalised <= 1 + 1e-12).all()
    assert not torch.allclose(normalised, raw)


def test_linear_region_ids_separate_regions() -> None:
    critic = relu_mlp(0)
    x = torch.randn(1, 2, dtype=torch.float64)
    nearby = x + 1e-9
    far = x + 50
    ids = linear_region_ids(critic, torch.cat([x, nearby, far]))
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]
    with pytest.raises(ValueError, match="piecewise-linear"):
        linear_region_ids(nn.Linear(2, 1), x.float())


def test_line_jumps_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        line_jumps(relu_mlp(0), torch.zeros(1, 2), torch.ones(2), 0.1)
    with pytest.raises(ValueError, match="positive"):
        line_jumps(relu_mlp(0), torch.zeros(2, dtype=torch.float64), torch.ones(2), 0.0)


@pytest.mark.parametrize(("constraint", "method"), [("gn", "gn"), ("gran", "gran"), ("clip", None)])
def test_c1_10_trained_toy_critic_gradient_norms(constraint: str, method: str | None) -> None:
    """C1.10 on a (briefly) trained toy critic: GN/GraN ‖∇f̂‖ <= 1 + 1e-6 at real, fake and
    interpolated points; a clipped critic's median ‖∇f‖ is far below 1."""
    from kexue.data import eight_gaussians
    from kexue.gan import MLPCritic, MLPGenerator, WGANConfig, WGANTrainer

    mixture = eight_gaussians()
    torch.manual_seed(0)
    config = WGANConfig(constraint=constraint, batch_size=64, generator_steps=30, seed=0)
    trainer = WGANTrainer(MLPGenerator(), MLPCritic(), mixture.sample, config)
    trainer.train()
    critic = trainer.critic.double()
    stream = torch.Generator().manual_seed(5)
    real = mixture.sample(512, stream).double()
    fake = trainer.sample(512, ema=False).double()
    alpha = torch.rand(512, 1, generator=stream, dtype=torch.float64)
    for x in (real, fake, alpha * real + (1 - alpha) * fake):
        norms = critic_gradient_norms(critic, x, method)  # type: ignore[arg-type]
        assert torch.isfinite(norms).all()
        if method is None:
            assert norms.median() < 0.5
        else:
            assert norms.max() <= 1 + 1e-6
            assert norms.max() > 1e-3  # the bound is not met trivially by a flat critic

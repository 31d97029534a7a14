"""Hypothesis property tests of the GN invariants (spec 01 C1.2, C1.4, C1.8) over random critics,
weight scales and inputs, in float64."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.lipschitz import critic_loss, normalize_gradient

from .conftest import relu_mlp

seeds = st.integers(min_value=0, max_value=2**16)
log_scales = st.floats(min_value=-6.0, max_value=6.0)
input_scales = st.floats(min_value=1e-3, max_value=1e3)


def _inputs(seed: int, scale: float, n: int = 64) -> torch.Tensor:
    return (
        torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        * scale
    )


@settings(max_examples=40, deadline=None)
@given(seed=seeds, log_scale=log_scales, input_scale=input_scales)
def test_gn_score_is_strictly_inside_minus_one_one(
    seed: int, log_scale: float, input_scale: float
) -> None:
    """C1.2: |f̂| < 1 whatever the weights' scale (1e-6 … 1e6 on every layer) and the input scale."""
    critic = relu_mlp(seed)
    with torch.no_grad():
        for parameter in critic.parameters():
            parameter.mul_(10.0**log_scale)
    out = normalize_gradient(critic, _inputs(seed + 1, input_scale), "gn", create_graph=False)
    assert torch.isfinite(out.f_hat).all()
    assert (out.f_hat.abs() < 1).all()


@settings(max_examples=40, deadline=None)
@given(seed=seeds, log_scale=log_scales)
def test_gn_is_invariant_to_the_last_layer_scale(seed: int, log_scale: float) -> None:
    """C1.4: scaling the last layer (weight and bias) by c > 0 leaves f̂ unchanged."""
    critic = relu_mlp(seed)
    x = _inputs(seed + 2, 1.0)
    before = normalize_gradient(critic, x, "gn", create_graph=False).f_hat
    with torch.no_grad():
        critic[-1].weight.mul_(10.0**log_scale)
        critic[-1].bias.mul_(10.0**log_scale)
    after = normalize_gradient(critic, x, "gn", create_graph=False).f_hat
    torch.testing.assert_close(after, before, rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, input_scale=input_scales)
def test_hinge_equals_wgan_plus_two_under_gn(seed: int, input_scale: float) -> None:
    """C1.8: with |f̂| < 1 the hinge ReLUs never clip, so hinge == WGAN + 2 (and so do gradients)."""
    critic = relu_mlp(seed)
    real = normalize_gradient(critic, _inputs(seed + 3, input_scale), "gn").f_hat
    fake = normalize_gradient(critic, _inputs(seed + 4, input_scale), "gn").f_hat
    hinge = critic_loss("hinge", real, fake)
    wgan = critic_loss("wgan", real, fake)
    torch.testing.assert_close(hinge, wgan + 2, rtol=0, atol=1e-12)
    hinge_grads = torch.autograd.grad(hinge, list(critic.parameters()), retain_graph=True)
    wgan_grads = torch.autograd.grad(wgan, list(critic.parameters()))
    for a, b in zip(hinge_grads, wgan_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

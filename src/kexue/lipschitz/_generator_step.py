"""The generator step through a normalised critic (spec 01 §5.3): ``double`` and ``fast`` modes.

``double`` differentiates the normalised score exactly (second order through the critic). ``fast``
(Faster GN-GAN) uses that, for a piecewise-linear critic, ∇ₓf is constant inside each linear region,
so ∂f̂/∂x is a per-sample multiple of g = ∇ₓf that needs no second-order graph:

* gn: ∂f̂/∂x = g (‖g‖+ε)/(‖g‖+|f|+ε)²    * gran: K g ‖g‖/(‖g‖²+ε)   * gran-simple: K g/(‖g‖+ε)
* su, pure: g/‖g‖

The generator receives ``x.backward(ℓ'(f̂)/B · ∂f̂/∂x)``: exact almost everywhere for ReLU/LeakyReLU
critics (only the Hessian term, zero a.e., is dropped); an approximation for smooth activations.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import nn

from ._checks import as_per_sample_scores, assert_no_batch_coupling, check_input_batch
from ._losses import LossName, generator_loss
from ._normalize import (
    Critic,
    NormalizationMethod,
    default_eps,
    normalize_gradient,
    normalized_score_from_gradient,
    safe_divide,
)

__all__ = ["GeneratorStepMode", "gn_generator_backward", "has_smooth_activations"]

GeneratorStepMode = Literal["fast", "double"]
_SMOOTH = (nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Mish)


def has_smooth_activations(critic: Critic) -> bool:
    """True when the critic contains activation modules that are not piecewise linear."""
    return isinstance(critic, nn.Module) and any(isinstance(m, _SMOOTH) for m in critic.modules())


def _fast_coefficient(
    method: str, f: torch.Tensor, norm: torch.Tensor, eps: float, K: float
) -> torch.Tensor:
    """∂f̂/∂x = coefficient · g inside a linear region (module docstring)."""
    if method == "gn":
        return safe_divide(norm + eps, (norm + f.abs() + eps).pow(2))
    if method == "gran":
        return K * safe_divide(norm, norm.pow(2) + eps)
    if method == "gran-simple":
        return K * safe_divide(torch.ones_like(norm), norm + eps)
    return safe_divide(torch.ones_like(norm), norm)  # su, pure


def gn_generator_backward(
    critic: Critic,
    fake: torch.Tensor,
    loss: LossName = "wgan",
    method: NormalizationMethod = "gn",
    *,
    mode: GeneratorStepMode = "fast",
    eps: float | None = None,
    K: float = 1.0,
    detach_norm: bool = False,
) -> torch.Tensor:
    """Back-propagate the generator loss through a normalised critic into ``fake``'s graph.

    Only the generator's parameters receive gradients (the critic's ``.grad`` fields are untouched).
    Returns the loss value (detached).

    Args:
        critic: the raw critic ``D``.
        fake: ``G(z)``, a tensor that requires grad through the generator.
        loss: generator loss name (``wgan``, ``hinge``, ``ns``, ``bce01``).
        method: normalisation (``gn``, ``gran``, ``gran-simple``, ``su``, ``pure``).
        mode: ``fast`` (first order, default) or ``double`` (exact second order).
    """
    check_input_batch(fake, "fake")
    if not fake.requires_grad:
        raise ValueError("fake must require grad (it should be G(z) with the generator's graph)")
    if mode not in ("fast", "double"):
        raise ValueError(f"mode must be 'fast' or 'double', got {mode!r}")
    if isinstance(critic, nn.Module):
        assert_no_batch_coupling(critic)
    if mode == "double":
        output = normalize_gradient(
            critic, fake, method, eps=eps, K=K, create_graph=True, detach_norm=detach_norm,
            check_critic=False,
        )  # fmt: skip
        value = generator_loss(loss, output.f_hat)
        (gradient,) = torch.autograd.grad(value, fake)
        torch.autograd.backward(fake, grad_tensors=gradient)
        return value.detach()
    if has_smooth_activations(critic):
        warnings.warn(
            "the fast GN generator step is exact only for piecewise-linear critics; this critic "
            "has smooth activations, so the step drops the Hessian term (mode='double' is exact)",
            stacklevel=2,
        )
    with torch.enable_grad():
        f = as_per_sample_scores(critic(fake), fake.shape[0])
        # Only the sub-graph between f and fake runs: the critic's parameters get nothing and the
        # generator's graph behind `fake` survives for the backward below.
        (gradient,) = torch.autograd.grad(f.sum(), fake)
    f, gradient = f.detach(), gradient.detach()
    output = normalized_score_from_gradient(method, f, gradient, fake.detach(), eps=eps, K=K)
    scores = output.f_hat.detach().requires_grad_(True)
    value = generator_loss(loss, scores)
    (loss_derivative,) = torch.autograd.grad(value, scores)  # ℓ'(f̂_b)/B
    eps_value = default_eps(method, output.f.dtype) if eps is None else float(eps)
    coefficient = loss_derivative * _fast_coefficient(
        method, output.f, output.grad_norm, eps_value, K
    )
    shape = (-1,) + (1,) * (fake.ndim - 1)
    rescaled = (coefficient.view(shape) * gradient.to(coefficient.dtype)).to(fake.dtype)
    torch.autograd.backward(fake, grad_tensors=rescaled)
    return value.detach()

"""Annealed importance sampling of ``log p(x)`` (Neal 2001; for decoders, Wu, Burda, Salakhutdinov
and Grosse 2017) — issue 21 item 2.

Importance sampling from the encoder (spec 02 §3.3, formula (3)) fails when the proposal misses
the posterior. AIS moves each proposal sample through intermediate distributions on the
geometric path from the proposal to the unnormalised posterior,

``log π_β(z) = (1 - β) log encoder(z | x) + β [log decoder(x | z) + log prior(z)]``,
``0 = β_0 < β_1 < ... < β_T = 1``,

accumulating ``log w = Σ_t (β_t - β_{t-1}) [log decoder(x | z_{t-1}) + log prior(z_{t-1}) -
log encoder(z_{t-1} | x)]`` and applying one MCMC step that leaves ``π_{β_t}`` invariant after
each increment. ``E[w] = p(x)`` exactly, for any number of temperatures, so
``logsumexp_s log w_s - log S`` over ``S`` chains is, like IS, a stochastic lower bound
(Jensen) — but its variance shrinks as ``T`` grows, whatever the proposal. With ``T = 1`` and no
MCMC step it is IS with ``S`` samples.

Kernel: one Metropolis-adjusted Langevin (MALA) step per temperature, preconditioned by the
proposal's standard deviation ``σ`` (``encode(x).stddev``, ones if unavailable):
``z' = z + (h²/2) ∇ log π_β(z) + h ξ`` with ``h = step_size · σ`` per dimension, accepted with
the Metropolis–Hastings probability. Each chain's step size is adapted from its own past
acceptances (``× exp(0.05 (accepted - 0.57))``: the kernel at step ``t`` depends only on that
chain's past, so every step still leaves ``π_{β_t}`` invariant and the weights stay valid).
Schedule: the sigmoid schedule of Grosse, Maddison and Salakhutdinov (2013),
``β_t ∝ sigmoid(δ (2t / T - 1))`` rescaled to ``[0, 1]``, ``δ = 4``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch
from torch.distributions import Distribution

from ._objectives import _check_samples, check_data, decoder_log_prob
from ._protocol import LatentVariableModel, check_model

__all__ = ["AISEstimate", "ais_log_likelihood", "sigmoid_schedule"]


@dataclasses.dataclass(frozen=True)
class AISEstimate:
    """Per-point results of :func:`ais_log_likelihood` (float64 ``[B]`` on the CPU).

    Attributes:
        log_likelihood: ``logsumexp_s log w_s - log S``; in expectation a lower bound (an upper
            bound for reverse AIS, ``posterior_samples`` given).
        standard_error: delta-method ``sqrt((S / ESS - 1) / S)`` over the chains (spec 02 §3.3).
        effective_sample_size: ``(Σ w)² / Σ w²`` over the chains.
        acceptance_rate: mean MALA acceptance over chains and temperatures.
        num_temperatures, num_samples: ``T`` and ``S``.
    """

    log_likelihood: torch.Tensor
    standard_error: torch.Tensor
    effective_sample_size: torch.Tensor
    acceptance_rate: torch.Tensor
    num_temperatures: int
    num_samples: int


def sigmoid_schedule(num_temperatures: int, sharpness: float = 4.0) -> torch.Tensor:
    """``β_0 = 0 < ... < β_T = 1`` (float64 ``[T + 1]``), dense near both ends."""
    t = torch.linspace(-sharpness, sharpness, num_temperatures + 1, dtype=torch.float64)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


def ais_log_likelihood(
    model: LatentVariableModel,
    x: torch.Tensor,
    num_temperatures: int = 100,
    num_samples: int = 16,
    *,
    step_size: float = 0.5,
    seed: int = 0,
    posterior_samples: torch.Tensor | None = None,
) -> AISEstimate:
    """Annealed importance sampling estimate of ``log p(x)`` per point (module docstring).

    Args:
        model: a :class:`~kexue.density.LatentVariableModel`; its encoder is the start of the path
            and must have a differentiable ``log_prob``; the decoder and prior must be
            differentiable in ``z`` (decoders get flat latents ``[S·B, d]``).
        x: data ``[B, ...]``.
        num_temperatures: ``T`` (one MALA step each); cost ``≈ 2 T S`` decoder passes per point.
        num_samples: ``S`` independent chains per point.
        step_size: initial MALA step in units of the proposal's standard deviation (adapted per
            chain towards 57 % acceptance).
        seed: same seed, same result (for a fixed batch).
        posterior_samples: exact posterior samples ``[S, B, ...]`` (available for data simulated
            from the model: the latent that generated each point). Runs *reverse* AIS instead
            (Grosse, Ghahramani and Adams 2015, "bidirectional Monte Carlo"): the chains start at
            the posterior and anneal back to the proposal; ``E[w] = 1 / p(x)``, so
            ``-(logsumexp_s log w_s - log S)`` is a stochastic **upper** bound of ``log p(x)``.
            Together with the forward run it brackets ``log p(x)``.
    """
    check_model(model)
    x = check_data(x)
    num_samples = _check_samples(num_samples)
    for name, value in (("num_temperatures", num_temperatures),):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not isinstance(step_size, int | float) or isinstance(step_size, bool) or not step_size > 0:
        raise ValueError(f"step_size must be a positive float, got {step_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    betas = sigmoid_schedule(num_temperatures).tolist()
    reverse = posterior_samples is not None
    if reverse:
        betas = betas[::-1]
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.no_grad():
            proposal = model.encode(x)
            prior = model.prior()
            z = proposal.sample(torch.Size([num_samples]))  # [S, B, ...]
            if posterior_samples is not None:
                if posterior_samples.shape != z.shape:
                    raise ValueError(
                        f"posterior_samples must have shape {tuple(z.shape)} (samples, points, "
                        f"latent), got {tuple(posterior_samples.shape)}"
                    )
                z = posterior_samples.to(z.dtype)
            scale = _proposal_scale(proposal, z)
        points = x.shape[0]
        log_w = torch.zeros(num_samples, points, dtype=torch.float64, device=x.device)
        step = torch.full((num_samples, points), float(step_size), dtype=z.dtype, device=z.device)
        accepted_total = torch.zeros_like(log_w)

        def parts(latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(log joint, log proposal) ``[S, B]``."""
            joint = decoder_log_prob(model, latent, x) + prior.log_prob(latent)
            return joint, proposal.log_prob(latent)

        def target_and_grad(
            latent: torch.Tensor, beta: float
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            with torch.enable_grad():
                latent = latent.detach().requires_grad_(True)
                joint, log_q = parts(latent)
                target = (1 - beta) * log_q + beta * joint
                (grad,) = torch.autograd.grad(target.sum(), latent)
            return target.detach(), grad, joint.detach(), log_q.detach()

        _, _, joint, log_q = target_and_grad(z, 0.0)
        extra = [1] * (z.ndim - 2)
        for previous, beta in itertools.pairwise(betas):
            log_w += (beta - previous) * (joint - log_q).to(torch.float64)
            current, grad, _, _ = target_and_grad(z, beta)
            h = step.view(num_samples, points, *extra) * scale
            mean_forward = z + 0.5 * h.square() * grad
            noise = torch.randn_like(z)
            candidate = mean_forward + h * noise
            proposed, grad_c, joint_c, log_q_c = target_and_grad(candidate, beta)
            mean_backward = candidate + 0.5 * h.square() * grad_c
            forward = -0.5 * noise.square().flatten(2).sum(-1)
            backward = -0.5 * ((z - mean_backward) / h).square().flatten(2).sum(-1)
            log_ratio = proposed - current + backward - forward
            log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
            accept = torch.log(torch.rand_like(log_ratio)) < log_ratio
            mask = accept.view(num_samples, points, *extra)
            z = torch.where(mask, candidate, z)
            joint = torch.where(accept, joint_c, joint)  # at the new state, for the next increment
            log_q = torch.where(accept, log_q_c, log_q)
            accepted = accept.to(step.dtype)
            step = step * torch.exp(0.05 * (accepted - 0.57))
            accepted_total += accepted.to(torch.float64)
    if torch.isnan(log_w).any():
        raise ValueError("the model produced NaN log weights during annealing")
    log_sum = torch.logsumexp(log_w, dim=0)
    log_q_hat = log_sum - math.log(num_samples)
    if reverse:  # the log weights estimate log(1 / p(x)); E[log mean w] <= -log p(x)
        log_q_hat = -log_q_hat
    normalised = torch.exp(log_w - log_sum)
    ess = 1 / normalised.square().sum(dim=0)
    stderr = torch.sqrt(torch.clamp(num_samples / ess - 1, min=0) / num_samples)
    acceptance = accepted_total.mean(dim=0) / max(1, num_temperatures)
    return AISEstimate(
        log_q_hat.cpu(),
        stderr.cpu(),
        ess.cpu(),
        acceptance.cpu(),
        num_temperatures,
        num_samples,
    )


def _proposal_scale(proposal: Distribution, z: torch.Tensor) -> torch.Tensor:
    """The proposal's per-dimension standard deviation ``[B, ...]`` (ones if not available)."""
    try:
        scale = proposal.stddev
    except NotImplementedError:
        return torch.ones_like(z[0])
    if scale.shape != z.shape[1:] or not torch.isfinite(scale).all():
        return torch.ones_like(z[0])
    return scale.detach()

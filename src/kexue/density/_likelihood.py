"""The importance-sampled log-likelihood estimator (spec 02 §3.3) and bits/dim.

``log p̂(x) = logsumexp_i log w_i - log M`` with ``M`` proposals per point, streamed over chunks of
(points x samples) that fit a memory budget; every sample is used (unlike pythae's ``get_nll``,
which drops the remainder when ``M`` is not a multiple of its batch size). Per point it also
returns the effective sample size ``ESS = (Σw)² / Σw²`` and the delta-method standard error
``sqrt((M / ESS - 1) / M)`` of ``log p̂``, all computed in log space and accumulated in float64.

Randomness: for Gaussian proposals (``Normal``, ``Independent(Normal)``, ``MultivariateNormal``)
the noise of point ``n`` comes from its own generator seeded by ``(seed, n)``, so the estimate does
not depend on how points and samples are chunked (C2.8). Other proposals are sampled with
``rsample`` under a forked, seeded global RNG per point chunk: reproducible for a fixed chunking.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from ..utils import progress
from ._objectives import _check_samples, check_data, check_log_prob_shapes, decoder_log_prob
from ._protocol import LatentVariableModel, check_model

__all__ = ["LogLikelihoodEstimate", "bits_per_dim", "dequantized_bits_per_dim", "log_likelihood"]


@dataclasses.dataclass(frozen=True)
class LogLikelihoodEstimate:
    """Per-point results of :func:`log_likelihood` (float64 tensors ``[B]``).

    Attributes:
        log_likelihood: ``log p̂(x)`` in nats (an estimate of a lower bound in expectation; the
            estimate of ``p(x)`` itself is unbiased).
        standard_error: delta-method standard error of ``log p̂(x)``.
        effective_sample_size: ``1 / Σ w̃_i²`` of the normalised weights, in ``[1, M]``.
        num_samples: ``M``.
    """

    log_likelihood: torch.Tensor
    standard_error: torch.Tensor
    effective_sample_size: torch.Tensor
    num_samples: int

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood in nats (positive for discrete data)."""
        return float(-self.log_likelihood.mean())

    @property
    def nll_standard_error(self) -> float:
        """Standard error of :attr:`nll` over the points (their spread, not the IS error)."""
        n = self.log_likelihood.numel()
        return float(self.log_likelihood.std() / math.sqrt(n)) if n > 1 else float("nan")


def _derived_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"kexue.density:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _gaussian_parts(proposal: Distribution) -> tuple[torch.Tensor, torch.Tensor, bool] | None:
    """``(loc, scale, is_tril)`` of a Gaussian proposal, or None for other families."""
    if (
        isinstance(proposal, Independent)
        and isinstance(proposal.base_dist, Normal)
        and proposal.reinterpreted_batch_ndims == 1
        and proposal.base_dist.loc.ndim == 2
    ):
        return proposal.base_dist.loc, proposal.base_dist.scale, False
    if isinstance(proposal, MultivariateNormal) and proposal.loc.ndim == 2:
        return proposal.loc, proposal.scale_tril, True
    if isinstance(proposal, Normal) and proposal.loc.ndim == 1:
        return proposal.loc[:, None], proposal.scale[:, None], False
    return None


def log_likelihood(
    model: LatentVariableModel,
    x: torch.Tensor,
    num_samples: int = 5000,
    *,
    chunk_size: int | None = None,
    memory_budget_bytes: int = 256 * 2**20,
    seed: int = 0,
    first_index: int = 0,
    show_progress: bool = False,
) -> LogLikelihoodEstimate:
    """Importance-sampled ``log p(x)`` per point, the encoder as proposal (spec 02 §3.3).

    Args:
        model: anything following :class:`~kexue.density.LatentVariableModel`.
        x: data ``[B, ...]`` in the model's dtype and device (float64 for numerical work).
        num_samples: ``M`` proposals per point (5000 is the IWAE-paper convention).
        chunk_size: (points x samples) pairs evaluated per forward pass; default from
            ``memory_budget_bytes``. Never changes the estimate for Gaussian proposals.
        memory_budget_bytes: rough budget of one forward pass (decoder output and latents).
        seed: same seed, same result.
        first_index: the dataset index of ``x[0]``. Point ``n``'s noise depends only on
            ``(seed, first_index + n)``, so evaluating a dataset in batches (passing each batch's
            offset) gives exactly the result of one call on the whole dataset.
        show_progress: a progress bar over point chunks.

    Returns:
        :class:`LogLikelihoodEstimate` (``log_likelihood``, ``standard_error``,
        ``effective_sample_size``), each float64 ``[B]`` on the CPU.
    """
    check_model(model)
    x = check_data(x)
    num_samples = _check_samples(num_samples)
    for name, value in (("seed", seed), ("first_index", first_index)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    pairs = _pairs_per_pass(x, num_samples, chunk_size, memory_budget_bytes)
    points_per_chunk = max(1, min(x.shape[0], pairs // num_samples))
    samples_per_chunk = min(num_samples, pairs)
    starts = range(0, x.shape[0], points_per_chunk)
    results: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    bar = progress(
        starts, desc="log-likelihood", unit="chunk", disable=None if show_progress else True
    )
    with torch.no_grad():
        for start in bar:
            batch = x[start : start + points_per_chunk]
            results.append(
                _estimate_chunk(
                    model, batch, first_index + start, num_samples, samples_per_chunk, seed
                )
            )
    log_q, stderr, ess = (torch.cat(parts) for parts in zip(*results, strict=True))
    return LogLikelihoodEstimate(log_q, stderr, ess, num_samples)


def _pairs_per_pass(
    x: torch.Tensor, num_samples: int, chunk_size: int | None, memory_budget_bytes: int
) -> int:
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        return chunk_size
    if memory_budget_bytes < 1:
        raise ValueError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
    # One pair materialises the decoder's parameters and log-density terms for one data point
    # (about 4 tensors of the data's size) plus a few latent-sized tensors.
    bytes_per_pair = 4 * x[0].numel() * x.element_size() + 1024
    return max(1, memory_budget_bytes // bytes_per_pair)


def _estimate_chunk(
    model: LatentVariableModel,
    batch: torch.Tensor,
    start: int,
    num_samples: int,
    samples_per_chunk: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    proposal = model.encode(batch)
    prior = model.prior()
    gaussian = _gaussian_parts(proposal)
    noise: torch.Tensor | None = None
    if gaussian is not None:
        loc = gaussian[0]
        generators = [
            torch.Generator(device=loc.device).manual_seed(_derived_seed(seed, start + offset))
            for offset in range(batch.shape[0])
        ]
        shape = (num_samples, loc.shape[-1])
        draws = [
            torch.randn(shape, generator=g, dtype=loc.dtype, device=loc.device) for g in generators
        ]
        noise = torch.stack(draws, dim=1)  # [M, b, d]
    devices = [batch.device] if batch.device.type == "cuda" else []
    running_max = torch.full((batch.shape[0],), -math.inf, dtype=torch.float64, device=batch.device)
    sum_weights = torch.zeros_like(running_max)
    sum_squares = torch.zeros_like(running_max)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_derived_seed(seed, -1 - start))
        for sample_start in range(0, num_samples, samples_per_chunk):
            count = min(samples_per_chunk, num_samples - sample_start)
            if noise is not None and gaussian is not None:
                loc, scale, is_tril = gaussian
                eps = noise[sample_start : sample_start + count]
                z = loc + _scale(eps, scale, is_tril)
            else:
                z = proposal.sample(torch.Size([count]))
            terms = {
                "decode(z).log_prob(x)": decoder_log_prob(model, z, batch),
                "prior().log_prob(z)": prior.log_prob(z),
                "encode(x).log_prob(z)": proposal.log_prob(z),
            }
            check_log_prob_shapes(terms, (count, batch.shape[0]))
            weights = (
                terms["decode(z).log_prob(x)"]
                + terms["prior().log_prob(z)"]
                - terms["encode(x).log_prob(z)"]
            ).to(torch.float64)  # [count, b]
            if torch.isnan(weights).any():
                raise ValueError("the model produced NaN log weights; check its parameters")
            new_max = torch.maximum(running_max, weights.max(dim=0).values)
            finite = torch.isfinite(new_max)
            shift = torch.where(finite, new_max, torch.zeros_like(new_max))
            decay = torch.where(finite, torch.exp(running_max - shift), torch.zeros_like(shift))
            centred = weights - shift
            sum_weights = sum_weights * decay + torch.exp(centred).sum(dim=0)
            sum_squares = sum_squares * decay.square() + torch.exp(2 * centred).sum(dim=0)
            running_max = new_max
    log_sum = torch.log(sum_weights) + running_max
    log_q = log_sum - math.log(num_samples)
    ess = torch.where(
        torch.isfinite(log_sum), sum_weights.square() / sum_squares, torch.zeros_like(log_sum)
    )
    stderr = torch.sqrt(torch.clamp(num_samples / ess - 1, min=0) / num_samples)
    return log_q.cpu(), stderr.cpu(), ess.cpu()


def _scale(eps: torch.Tensor, scale: torch.Tensor, is_tril: bool) -> torch.Tensor:
    if is_tril:  # eps [m, b, d], scale_tril [b, d, d] -> [m, b, d]
        return torch.einsum("bij,mbj->mbi", scale, eps)
    return eps * scale


def bits_per_dim(nll_nats: float | torch.Tensor, num_dims: int) -> float | torch.Tensor:
    """``NLL / (D ln 2)`` for ``D``-dimensional discrete data (e.g. binarised MNIST, D = 784)."""
    if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims < 1:
        raise ValueError(f"num_dims must be an int >= 1, got {num_dims!r}")
    return nll_nats / (num_dims * math.log(2))


def dequantized_bits_per_dim(
    log_density: float | torch.Tensor, num_dims: int, levels: int = 256
) -> float | torch.Tensor:
    """Bits/dim of ``levels``-level data from a continuous density on ``[0, 1]^D`` after uniform
    dequantisation: ``-(log q(u) - D log levels) / (D ln 2)`` (spec 02 §3.3)."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    return bits_per_dim(-(log_density - num_dims * math.log(levels)), num_dims)

"""Perturb-Max probabilities p_i = P[argmax(μ + σε) = i] (spec 09 §2, §5.1, §5.1b; post 9085).

:func:`perturb_max_probs` is the functional core; :func:`perturb_max_nll` and
:func:`expected_max` build on it. Everything is evaluated in log space,

    log p_i = logsumexp_k( log w_k + Σ_{j≠i} log Φ(z_i − z_j + ε_k) ),   z = μ/σ      (spec 09 §5.1)

so that products of many CDFs never underflow to 0 (a class far below the others gets a very
negative but finite log-probability, or −inf where the noise's support makes it impossible) and
no NaN appears in the values or the gradients (safe ``torch.where`` branches, a logsumexp that
maps an all −inf row to −inf with a zero gradient).

Methods (``method=``): ``"exact"`` — the closed forms: Gumbel noise gives ``softmax`` (any n,
bitwise ``torch.softmax`` for probabilities), n = 2 gives p₁ = P[ε₂ − ε₁ ≤ z₁ − z₂] for
normal (probit), Gumbel (sigmoid), uniform and exponential noise, n = 1 gives 1;
the quadrature rules of :mod:`._quadrature` (``"post"``, ``"midpoint"``, ``"gauss-legendre"``,
``"gauss-hermite"``, ``"monte-carlo"``); ``"auto"`` (default) — exact where a closed form
exists, else Gauss–Hermite for normal noise, else Gauss–Legendre.

Algorithms for the quadrature rules (``algorithm=``): ``"direct"`` — the (i, j, k) tensor, cost
O(n²K) time, chunked over i (O(chunk · nK) memory; checkpointed chunks when a gradient is
needed); ``"interpolated"`` — spec 09 §5.1b (:mod:`._many_classes`), O(nM + nK) with a stated
error bound, for normal/logistic noise; ``"auto"`` — interpolated for n ≥ 64 when the noise
supports it, else direct.

Precision: float16/bfloat16 logits are computed in float32 (the interpolated path always in
float64) and the result is returned in the input dtype.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ._exact import check_exact_memory, exact_log_probs
from ._many_classes import interpolated_log_probs
from ._noises import Noise, as_noise
from ._quadrature import QUADRATURE_METHODS, quadrature_nodes

__all__ = [
    "ALGORITHMS",
    "METHODS",
    "Algorithm",
    "Method",
    "expected_max",
    "perturb_max_log_probs",
    "perturb_max_nll",
    "perturb_max_probs",
]

Method = Literal[
    "auto", "exact", "post", "midpoint", "gauss-legendre", "gauss-hermite", "monte-carlo"
]
METHODS: tuple[str, ...] = ("auto", "exact", *QUADRATURE_METHODS)
Algorithm = Literal["auto", "direct", "interpolated"]
ALGORITHMS: tuple[str, ...] = ("auto", "direct", "interpolated")
#: ``algorithm="auto"`` switches to the interpolated path from this many classes on
INTERPOLATION_MIN_CLASSES = 64  # measured crossover: n = 32–64 at K = 32 (benchmarks/discrete.py)
_DIRECT_CHUNK_ELEMENTS = 1 << 22  # elements of one [B, rows, n, K] block of the direct path
#: a masked (−inf) class is placed this far below the lowest finite logit for the fixed rules
_MASK_GAP = 1e4


# --------------------------------------------------------------------------------------------
# Validation


def _check_logits(logits: object, dim: int) -> tuple[torch.Tensor, int]:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}; convert with .float()")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the classes)")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -logits.ndim <= dim < logits.ndim:
        raise ValueError(f"dim={dim!r} is out of range for logits of shape {tuple(logits.shape)}")
    dim = dim % logits.ndim
    if logits.shape[dim] == 0:
        raise ValueError(
            f"logits have no classes along dim {dim} (shape {tuple(logits.shape)}): need n >= 1"
        )
    detached = logits.detach()
    if bool(torch.isnan(detached).any()) or bool(torch.isposinf(detached).any()):
        raise ValueError(
            "logits contain NaN or +inf: Perturb Max needs finite logits; mask a class with -inf "
            "(it then gets p = 0 exactly)"
        )
    if detached.numel() and not bool(torch.isfinite(detached).any(dim).all()):
        raise ValueError(
            f"every slice of logits along dim {dim} needs at least one finite logit (a row is "
            "all -inf: no class can be drawn)"
        )
    return logits, dim


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a real number (the temperature σ), got {scale!r}")
    value = float(scale)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"scale must be finite and >= 0 (0 gives the one-hot argmax), got {value}")
    return value


def _check_options(method: str, algorithm: str, num_nodes: int, tolerance: float) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {ALGORITHMS}")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be an int >= 1 (quadrature nodes K), got {num_nodes!r}")
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not math.isfinite(tolerance)
        or tolerance <= 0
    ):
        raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------
# Building blocks


def _logsumexp(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """logsumexp that returns −inf with a zero (not NaN) gradient for an all −inf slice."""
    peak = x.detach().amax(dim, keepdim=True)
    finite = torch.isfinite(peak)
    shift = torch.where(finite, peak, torch.zeros_like(peak))
    total = torch.exp(x - shift).sum(dim, keepdim=True)
    safe = torch.where(finite, total, torch.ones_like(total))
    out = torch.where(finite, torch.log(safe) + shift, torch.full_like(shift, -math.inf))
    return out if keepdim else out.squeeze(dim)


def _direct_block(
    rows: torch.Tensor, logits: torch.Tensor, noise: Noise, nodes: torch.Tensor
) -> torch.Tensor:
    """S[b, i, k] = Σ_{j≠i} log Φ(z_i − z_j + ε_k) for the rows i of ``rows`` [B, r].

    The sum runs over all j and the self term is subtracted: z_i − z_i + ε_k is exactly ε_k, so
    the subtracted value is exactly the one in the sum (an error of one rounding of the sum)."""
    differences = rows[:, :, None] - logits[:, None, :]  # [B, r, n]
    terms = noise.standard_log_cdf(differences[..., None] + nodes)  # [B, r, n, K]
    return terms.sum(dim=2) - noise.standard_log_cdf(nodes)


def _direct_sums(logits: torch.Tensor, noise: Noise, nodes: torch.Tensor) -> torch.Tensor:
    """S ``[B, n, K]`` by the direct O(n²K) evaluation, in row chunks."""
    if not bool(torch.isfinite(noise.standard_log_cdf(nodes)).all()):
        raise ValueError(
            f"noise {noise.name!r}: log Φ(ε_k) is not finite at a quadrature node (a node outside "
            "the support); check standard_log_cdf and standard_icdf"
        )
    batch, n = logits.shape
    rows_per_chunk = max(1, _DIRECT_CHUNK_ELEMENTS // max(1, batch * n * nodes.numel()))
    if rows_per_chunk >= n:
        return _direct_block(logits, logits, noise, nodes)
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    blocks = []
    for first in range(0, n, rows_per_chunk):
        rows = logits[:, first : first + rows_per_chunk]
        if need_grad:
            block = checkpoint(_direct_block, rows, logits, noise, nodes, use_reentrant=False)
        else:
            block = _direct_block(rows, logits, noise, nodes)
        blocks.append(block)
    return torch.cat(blocks, dim=1)


def _default_rule(noise: Noise) -> str:
    return "gauss-hermite" if noise.name == "normal" else "gauss-legendre"


def _has_closed_form(noise: Noise, n: int) -> bool:
    return noise.name == "gumbel" or n == 1 or (n == 2 and noise.has_difference_cdf)


def _resolve_method(method: str, noise: Noise, n: int) -> str:
    return "exact" if method == "auto" else method


def _exact_log_probs(z: torch.Tensor, noise: Noise) -> torch.Tensor:
    """Closed forms where they exist (Gumbel: log_softmax; n = 2; n = 1), otherwise the exact
    shared-grid quadrature of :mod:`._exact` (every class, every noise). ``z`` float64 or
    float32 [B, n]; −inf entries are masked classes."""
    n = z.shape[-1]
    masked = bool(torch.isneginf(z.detach()).any())
    if noise.name == "gumbel":
        return F.log_softmax(z, dim=-1)
    if n == 1:
        return z * 0.0
    if n == 2 and noise.has_difference_cdf and not masked:
        difference = z[:, :1] - z[:, 1:]
        return torch.cat(
            (noise.log_difference_cdf(difference), noise.log_difference_cdf(-difference)), dim=-1
        )
    return exact_log_probs(z, noise).log_probs.to(z.dtype)


def _argmax_limit(z: torch.Tensor) -> torch.Tensor:
    """σ → 0: the one-hot argmax, ties shared equally (the limit for continuous noise)."""
    top = z.amax(-1, keepdim=True)
    hits = (z == top).to(z.dtype)
    return hits / hits.sum(-1, keepdim=True)


# --------------------------------------------------------------------------------------------
# Public functions


def perturb_max_log_probs(
    logits: torch.Tensor,
    noise: str | Noise = "normal",
    method: Method | str = "auto",
    num_nodes: int = 32,
    *,
    renormalize: bool = True,
    scale: float = 1.0,
    dim: int = -1,
    algorithm: Algorithm | str = "auto",
    tolerance: float = 1e-8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """log p of :func:`perturb_max_probs` (same arguments, ``log=True``)."""
    return perturb_max_probs(
        logits, noise, method, num_nodes, renormalize=renormalize, scale=scale, log=True,
        dim=dim, algorithm=algorithm, tolerance=tolerance, generator=generator,
    )  # fmt: skip


def perturb_max_probs(
    logits: torch.Tensor,
    noise: str | Noise = "normal",
    method: Method | str = "auto",
    num_nodes: int = 32,
    *,
    renormalize: bool = True,
    scale: float = 1.0,
    log: bool = False,
    dim: int = -1,
    algorithm: Algorithm | str = "auto",
    tolerance: float = 1e-8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Perturb-Max probabilities p_i = P[argmax(logits + σε) = i] along ``dim`` (spec 09 §2).

    Args:
        logits: finite floating-point tensor ``[..., n, ...]`` (n ≥ 1 along ``dim``).
        noise: ``"normal"`` (default), ``"gumbel"``, ``"logistic"``, ``"uniform"``,
            ``"exponential"`` or a :class:`Noise` instance (its ``scale`` multiplies ``scale``).
        method: ``"auto"``, ``"exact"`` or a quadrature rule (module docstring).
        num_nodes: K, the quadrature nodes (ignored by the exact path).
        renormalize: divide by Σ_i p_i (in log space). Exact methods sum to 1 up to rounding;
            the post's rule sums to < 1 without it (spec 09 §4, C9.6). Renormalising keeps
            conditions 1–4 but need not improve accuracy.
        scale: the temperature σ ≥ 0 (p(μ; σ) = p(μ/σ; 1)); 0 gives the one-hot argmax (ties
            shared), with a zero gradient.
        log: return log p (−inf where p = 0 exactly).
        algorithm: ``"direct"`` (O(n²K)), ``"interpolated"`` (spec 09 §5.1b, O(nM + nK),
            normal/logistic noise, float64) or ``"auto"`` (interpolated from n ≥ 64).
        tolerance: the interpolated path's bound on the unnormalised log-probabilities
            (:mod:`._many_classes`; twice that after renormalisation).
        generator: random nodes of ``method="monte-carlo"``.

    Returns p (or log p) of the input's shape and dtype; differentiable (spec 09 C9.7).
    Raises TypeError/ValueError for non-float, empty, NaN/inf logits, unknown noise, method or
    algorithm, num_nodes < 1, a negative scale, a noise object missing its methods, or a method
    that does not apply (``"exact"`` without a closed form, ``"gauss-hermite"`` for non-normal
    noise, ``"interpolated"`` for noise without log-CDF derivatives).
    """
    logits, dim = _check_logits(logits, dim)
    noise_object = as_noise(noise)
    _check_options(method, algorithm, num_nodes, tolerance)
    sigma = _check_scale(scale) * noise_object.scale
    moved = logits.movedim(dim, -1)
    shape = moved.shape
    n = shape[-1]
    flat = moved.reshape(-1, n)
    dtype = _compute_dtype(logits.dtype)
    resolved = _resolve_method(method, noise_object, n)

    def restore(result: torch.Tensor) -> torch.Tensor:
        return result.to(logits.dtype).reshape(shape).movedim(-1, dim)

    if flat.shape[0] == 0:
        return restore(flat.to(dtype))
    if sigma == 0.0:
        limit = _argmax_limit(flat.detach().to(dtype))
        finite_flat = torch.isfinite(flat.detach())
        connected = (torch.where(finite_flat, flat, torch.zeros_like(flat)).to(dtype) * 0.0).sum(
            -1, keepdim=True
        )  # a zero gradient, not None
        return restore((torch.log(limit) if log else limit) + connected)
    if resolved == "exact" and noise_object.name != "gumbel":
        dtype = torch.float64  # the shared-grid rule and the n = 2 forms run in float64
        check_exact_memory(flat)  # before any float64 copy: a clear error, not an OOM kill
    z = flat.to(dtype) / sigma
    if resolved == "exact" and noise_object.name == "gumbel" and not log:
        return restore(torch.softmax(z, dim=-1))  # bitwise softmax (C9.2)
    finite = torch.isfinite(z.detach())
    masked = not bool(finite.all())
    if resolved == "exact":
        log_p = _exact_log_probs(z, noise_object)
    else:
        if masked:  # masked classes: far below every other (Φ(gap) = 1), overwritten below
            floor = z.detach().masked_fill(~finite, math.inf).amin(-1, keepdim=True)
            z = torch.where(finite, z, floor - _MASK_GAP)
        nodes, log_weights = quadrature_nodes(
            noise_object, resolved, num_nodes, dtype=dtype, device=z.device, generator=generator
        )
        use_interpolation = algorithm == "interpolated" or (
            algorithm == "auto"
            and n >= INTERPOLATION_MIN_CLASSES
            and noise_object.has_log_cdf_derivatives
        )
        if use_interpolation:
            result = interpolated_log_probs(
                z, noise_object, nodes, log_weights, tolerance=tolerance
            )
            log_p = result.log_probs.to(dtype)
        else:
            sums = _direct_sums(z, noise_object, nodes)
            log_p = _logsumexp(sums + log_weights, dim=-1)
        if masked:
            log_p = log_p.masked_fill(~finite, -math.inf)
    if renormalize and not (resolved == "exact" and noise_object.name == "gumbel"):
        log_p = log_p - _logsumexp(log_p, dim=-1, keepdim=True)
    return restore(log_p if log else torch.exp(log_p))


def perturb_max_nll(
    logits: torch.Tensor,
    target: torch.Tensor,
    noise: str | Noise = "normal",
    method: Method | str = "auto",
    num_nodes: int = 32,
    *,
    reduction: Literal["mean", "sum", "none"] = "mean",
    **kwargs: object,
) -> torch.Tensor:
    """Negative log-likelihood −log p_y of the Perturb-Max distribution (spec 09 §5.2).

    ``logits`` ``[B, n]`` (classes last), ``target`` ``[B]`` integer class indices in
    [0, n); ``reduction`` ``"mean"`` | ``"sum"`` | ``"none"``; other keyword arguments go to
    :func:`perturb_max_probs` (``renormalize``, ``scale``, ``algorithm``, …). With
    ``noise="gumbel"`` this is the cross-entropy. A target with p_y = 0 exactly (bounded noise)
    gives +inf.
    """
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.is_complex():
        raise TypeError("target must be an integer tensor of class indices")
    if not isinstance(logits, torch.Tensor) or logits.ndim < 1:
        raise TypeError("logits must be a tensor [B, n] with the classes last")
    if tuple(target.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal logits.shape[:-1] = "
            f"{tuple(logits.shape[:-1])}"
        )
    n = logits.shape[-1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n):
        raise ValueError(
            f"target values must be in [0, {n}), got {int(target.min())}..{int(target.max())}"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    log_p = perturb_max_probs(logits, noise, method, num_nodes, log=True, **kwargs)  # type: ignore[arg-type]
    losses = -log_p.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


class _ExpectedMax(torch.autograd.Function):
    """E max with the exact gradient p (spec 09 §3: ∇ E max(μ + σε) = p). The value and p come
    from one pass of the shared-grid rule; p is kept for the backward pass, except under
    ``create_graph`` (double backward), where it is recomputed differentiably from z."""

    @staticmethod
    def forward(z: torch.Tensor, noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        result = exact_log_probs(z, noise, conditional_max=True)
        assert result.conditional_max is not None
        p = torch.exp(result.log_probs)
        terms = torch.where(p > 0, p * result.conditional_max, torch.zeros_like(p))
        return terms.sum(-1), torch.softmax(result.log_probs, dim=-1)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple[torch.Tensor, Noise],
                      output: tuple[torch.Tensor, torch.Tensor]) -> None:  # fmt: skip
        z, noise = inputs
        ctx.save_for_backward(z, output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.noise = noise  # type: ignore[attr-defined]

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor, _: torch.Tensor | None
    ) -> tuple[torch.Tensor, None]:
        z, p = ctx.saved_tensors  # type: ignore[attr-defined]
        if torch.is_grad_enabled():  # create_graph: p as a differentiable function of z
            log_p = exact_log_probs(z, ctx.noise).log_probs  # type: ignore[attr-defined]
            p = torch.softmax(log_p, dim=-1)  # Σp = 1 exactly, as perturb_max_probs returns it
        return grad[:, None] * p, None


def expected_max(
    logits: torch.Tensor,
    noise: str | Noise = "normal",
    method: Method | str = "auto",
    num_nodes: int = 32,
    *,
    scale: float = 1.0,
    dim: int = -1,
) -> torch.Tensor:
    """E[max_i(μ_i + σε_i)] along ``dim`` (spec 09 §3: its gradient is p, its Hessian the
    symmetric PSD Jacobian of p).

    ``method="auto"``/``"exact"``: Gumbel σ(logsumexp(μ/σ) + γ) exactly; every other noise by
    the exact shared-grid rule of :mod:`._exact`, E max = σ Σ_i p_i E[t | i wins] in float64,
    with the exact gradient p (a custom autograd function; double backward gives ∂p/∂μ).
    A quadrature rule name gives σ Σ_i Σ_k w_k (z_i + ε_k) ∏_{j≠i} Φ(z_i − z_j + ε_k) (direct
    O(n²K) path, the rule's own error). −inf logits are masked classes. ``scale`` must be > 0.
    """
    logits, dim = _check_logits(logits, dim)
    noise_object = as_noise(noise)
    _check_options(method, "direct", num_nodes, 1.0)
    sigma = _check_scale(scale) * noise_object.scale
    if sigma == 0.0:
        raise ValueError("expected_max needs scale > 0 (at 0 it is max(logits))")
    moved = logits.movedim(dim, -1)
    n = moved.shape[-1]
    flat = moved.reshape(-1, n)
    dtype = _compute_dtype(logits.dtype)
    resolved = "exact" if method == "auto" else method
    if resolved == "exact":
        if noise_object.name == "gumbel":
            gamma = noise_object.expected_value()
            assert gamma is not None
            value = torch.logsumexp(flat.to(dtype) / sigma, dim=-1) + gamma
        elif flat.shape[0] == 0:
            value = flat.new_zeros((0,), dtype=torch.float64)
        else:
            value, _ = _ExpectedMax.apply(flat.to(torch.float64) / sigma, noise_object)  # type: ignore[no-untyped-call]
    else:
        z = flat.to(dtype) / sigma
        finite = torch.isfinite(z.detach())
        if not bool(finite.all()):
            floor = z.detach().masked_fill(~finite, math.inf).amin(-1, keepdim=True)
            z = torch.where(finite, z, floor - _MASK_GAP)
        nodes, log_weights = quadrature_nodes(noise_object, resolved, num_nodes, dtype=dtype,
                                              device=z.device)  # fmt: skip
        sums = _direct_sums(z, noise_object, nodes)  # [B, n, K]
        weights = torch.exp(sums + log_weights).masked_fill(~finite[:, :, None], 0.0)
        value = (weights * (z[:, :, None] + nodes)).sum(dim=(-1, -2))
    return (sigma * value).to(logits.dtype).reshape(moved.shape[:-1])

"""The Fenchel–Young loss of the perturbed max (spec 09 §3 "Gradient structure"; issue 19).

For i.i.d. noise ε with scale σ, the perturbed max F(μ) = E[max_i(μ_i + σε_i)] is convex and its
gradient is the Perturb-Max distribution, ∇F(μ) = p(μ) (spec 09 §3; Berthet et al. 2020,
"Learning with Differentiable Perturbed Optimizers", NeurIPS, §2 and Proposition 2.2). Berthet
et al. §4 train with the Fenchel–Young loss of F (Blondel, Martins & Niculae 2020, "Learning
with Fenchel–Young losses", JMLR, Definition 2)

    L(μ; y) = F(μ) + F*(e_y) − μ_y,      ∇_μ L = p(μ) − e_y.

**Additive constant.** F*(e_y) = sup_μ μ_y − F(μ) = −σE[ε]: max_i(μ_i + σε_i) ≥ μ_y + σε_y gives
μ_y − F(μ) ≤ −σE[ε], with equality in the limit μ_j − μ_y → −∞ for all j ≠ y (monotone
convergence, E|ε| < ∞). :func:`perturb_max_fy_loss` drops that constant and returns

    ℓ(μ; y) = E[max_i(μ_i + σε_i)] − μ_y = L(μ; y) + σE[ε],

so that Gumbel noise gives exactly the cross-entropy plus σγ (γ the Euler–Mascheroni constant):
ℓ = σ·logsumexp(μ/σ) + σγ − μ_y. Its infimum over μ is σE[ε]
(:func:`perturb_max_fy_infimum`: 0 for normal, logistic and uniform noise, σγ for Gumbel, σ for
exponential), because ℓ − σE[ε] = E[max_i(μ_i + σε_i) − (μ_y + σε_y)] ≥ 0. It is attained only
where p_y = 1: never for n ≥ 2 and noise unbounded above or below (normal, logistic, Gumbel,
exponential); for uniform noise on [−½, ½] as soon as μ_y − μ_j ≥ σ for every j ≠ y. With n = 1
the loss is σE[ε] for every μ.

**Gradient.** The backward pass returns exactly ``perturb_max_probs(μ) − onehot(y)`` (times the
incoming gradient), so training needs the probabilities only — never log p of a distant class,
whose relative accuracy is the hard part of the NLL (spec 09 pitfall 2). The value comes from
:func:`expected_max`. Where both are exact (Gumbel, and every noise once the exact quadrature is
the default) the gradient is the true ∇ℓ; with a fixed quadrature rule (``method=...``) it is
p of that rule, which equals ∇ of that rule's E max up to the rule's error. The second
derivative (``create_graph=True``) is the Jacobian ∂p/∂μ of :func:`perturb_max_probs`, the
symmetric PSD Hessian of F (spec 09 C9.7).

**Masked classes.** A logit of −inf removes its class: the loss and p are those of the remaining
classes, and the gradient of a masked logit is 0. The target must not be masked.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from ._noises import Noise, as_noise
from ._probabilities import expected_max, perturb_max_probs

__all__ = ["FY_LOSS_OPTIONS", "perturb_max_fy_infimum", "perturb_max_fy_loss"]

#: keyword arguments :func:`perturb_max_fy_loss` forwards (``method`` and ``num_nodes`` to
#: :func:`expected_max` and :func:`perturb_max_probs`, the others to the latter only)
FY_LOSS_OPTIONS: tuple[str, ...] = ("method", "num_nodes", "algorithm", "tolerance")
_REDUCTIONS = ("mean", "sum", "none")

# (rows, columns): rows of the flattened batch with the same number m of unmasked classes and,
# for each, the m unmasked column indices in increasing order; None: no class is masked
_Groups = list[tuple[torch.Tensor, torch.Tensor]] | None


def _check_scale(scale: object) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(
            f"scale must be a real number σ > 0 (the noise's temperature), got {scale!r}"
        )
    value = float(scale)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"scale must be finite and > 0 (E max needs noise; use a small σ such as 1e-3 for a "
            f"near-hard max), got {value}"
        )
    return value


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(FY_LOSS_OPTIONS))
    if unknown:
        raise TypeError(
            f"perturb_max_fy_loss got unexpected keyword argument(s) {unknown}; it forwards only "
            f"{list(FY_LOSS_OPTIONS)} (probabilities are always renormalised: the gradient of "
            "E max is a distribution)"
        )
    if options.get("method") == "monte-carlo":
        raise ValueError(
            "method='monte-carlo' draws new nodes on every call, so the value and the gradient "
            "would come from different rules; use a deterministic rule (e.g. 'auto')"
        )
    return options


def _check_logits(logits: object) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor [..., n], got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}; convert with .float()")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the classes, last)")
    if logits.shape[-1] == 0:
        raise ValueError(
            f"logits have no classes (shape {tuple(logits.shape)}): need n >= 1 along the last dim"
        )
    return logits


def _check_target(target: object, logits: torch.Tensor) -> torch.Tensor:
    """The target (type, shape, device, range), then the values of the logits."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(
            f"target must be an integer torch.Tensor of class indices, got {type(target).__name__}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"target must hold integer class indices, got dtype {target.dtype}; convert with "
            ".long() (probability targets are not supported)"
        )
    if tuple(target.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal logits.shape[:-1] = "
            f"{tuple(logits.shape[:-1])} (the classes are the last dim of logits)"
        )
    if target.device != logits.device:
        raise ValueError(
            f"target is on {target.device} but logits on {logits.device}; move both to one device"
        )
    values = logits.detach()
    if bool(torch.isnan(values).any()):
        raise ValueError("logits contain NaN; check the model's outputs")
    if bool(torch.isposinf(values).any()):
        raise ValueError(
            "logits contain +inf: use finite logits (−inf is allowed: it masks a class)"
        )
    n = logits.shape[-1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n):
        raise ValueError(
            f"target values must be class indices in [0, {n}), got {int(target.min())}.."
            f"{int(target.max())}"
        )
    return target.long()


def _mask_groups(flat: torch.Tensor) -> _Groups:
    """Rows grouped by their number of finite logits (see ``_Groups``)."""
    finite = torch.isfinite(flat.detach())
    if bool(finite.all()):
        return None
    counts = finite.sum(-1)
    groups = []
    for m in torch.unique(counts).tolist():
        rows = torch.nonzero(counts == m).squeeze(-1)
        # a stable sort of "is masked" puts the m finite columns first, in increasing order
        order = torch.sort((~finite[rows]).to(torch.int8), dim=-1, stable=True).indices
        groups.append((rows, order[:, :m]))
    return groups


def _expected_max(flat: torch.Tensor, groups: _Groups, noise: Noise, sigma: float,
                  options: dict[str, Any]) -> torch.Tensor:  # fmt: skip
    """E max of every row over its finite classes, ``[N]``."""
    method = options.get("method", "auto")
    nodes = options.get("num_nodes", 32)
    if groups is None:
        return expected_max(flat, noise, method, nodes, scale=sigma)
    out = flat.new_empty(flat.shape[0])
    for rows, columns in groups:
        out[rows] = expected_max(flat[rows].gather(1, columns), noise, method, nodes, scale=sigma)
    return out


def _probs(flat: torch.Tensor, groups: _Groups, noise: Noise, sigma: float,
           options: dict[str, Any]) -> torch.Tensor:  # fmt: skip
    """p of every row over its finite classes (0 for masked classes), ``[N, n]``; out of place,
    so differentiable when grad mode is on."""
    if groups is None:
        return perturb_max_probs(flat, noise, scale=sigma, **options)
    out = torch.zeros_like(flat)
    for rows, columns in groups:
        p = perturb_max_probs(flat[rows].gather(1, columns), noise, scale=sigma, **options)
        out = out.index_put((rows[:, None], columns), p)
    return out


class _FenchelYoung(torch.autograd.Function):
    """ℓ = E max − μ_y per row (forward), gradient (p − e_y)·g (backward, twice differentiable
    through :func:`perturb_max_probs` when ``create_graph=True``)."""

    @staticmethod
    def forward(
        ctx: Any,
        flat: torch.Tensor,
        target: torch.Tensor,
        noise: Noise,
        sigma: float,
        options: dict[str, Any],
    ) -> torch.Tensor:
        groups = _mask_groups(flat)
        values = _expected_max(flat, groups, noise, sigma, options)
        values = values - flat.gather(1, target[:, None]).squeeze(1)
        ctx.save_for_backward(flat, target)
        ctx.groups, ctx.noise, ctx.sigma, ctx.options = groups, noise, sigma, options
        return values

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        flat, target = ctx.saved_tensors
        p = _probs(flat, ctx.groups, ctx.noise, ctx.sigma, ctx.options)
        one_hot = torch.zeros_like(p).scatter(1, target[:, None], 1.0)
        return grad[:, None] * (p - one_hot), None, None, None, None


def perturb_max_fy_infimum(noise: str | Noise = "normal", *, scale: float = 1.0) -> float:
    """inf_μ of :func:`perturb_max_fy_loss`: σE[ε] (module docstring; σ = ``scale`` times the
    noise's own scale). 0 for normal, logistic and uniform noise, σγ for Gumbel, σ for
    exponential. Raises ValueError for a noise whose mean is unknown (``expected_value()`` is
    None)."""
    noise_object = as_noise(noise)
    sigma = _check_scale(scale) * noise_object.scale
    mean = noise_object.expected_value()
    if mean is None:
        raise ValueError(
            f"noise {noise_object!r} does not state its mean (expected_value() is None); the "
            "infimum of the loss is σ·E[ε]: implement expected_value() on the noise"
        )
    return sigma * mean


def perturb_max_fy_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    noise: str | Noise = "normal",
    *,
    scale: float = 1.0,
    reduction: Literal["mean", "sum", "none"] = "mean",
    **kwargs: Any,
) -> torch.Tensor:
    """Fenchel–Young loss of the perturbed max, ℓ = E[max_i(μ_i + σε_i)] − μ_y per row
    (Berthet et al. 2020 §4 without the constant F*(e_y) = −σE[ε]; module docstring), with
    gradient exactly ``perturb_max_probs(μ) − onehot(y)``.

    Args:
        logits: floating tensor ``[..., n]``, classes last; −inf masks a class (the loss is that
            of the remaining classes), NaN and +inf are errors.
        target: integer class indices of shape ``logits.shape[:-1]``, on the logits' device, in
            [0, n) and not masked.
        noise: a family name (``"normal"``, ``"gumbel"``, ``"logistic"``, ``"uniform"``,
            ``"exponential"``) or a :class:`Noise` (its ``scale`` multiplies ``scale``).
        scale: σ > 0. Gumbel noise: ℓ = σ·logsumexp(μ/σ) + σγ − μ_y (cross-entropy + γ at σ = 1).
        reduction: ``"mean"`` (over all rows), ``"sum"`` or ``"none"`` (shape
            ``logits.shape[:-1]``).
        **kwargs: ``method`` and ``num_nodes`` (for :func:`expected_max` and
            :func:`perturb_max_probs`), ``algorithm`` and ``tolerance`` (for
            :func:`perturb_max_probs`); anything else is a TypeError.

    The infimum over μ is :func:`perturb_max_fy_infimum` (σE[ε]). Differentiable twice: the
    Hessian is the Perturb-Max Jacobian ∂p/∂μ. Raises TypeError for a non-tensor or non-float
    ``logits``, a non-integer ``target``, a non-numeric ``scale`` or an unknown keyword, and
    ValueError for n = 0, NaN or +inf logits, a shape or device mismatch, a target out of range
    or on a masked class, σ ≤ 0 or non-finite, an unknown reduction or noise.
    """
    logits = _check_logits(logits)
    target = _check_target(target, logits)
    noise_object = as_noise(noise)
    sigma = _check_scale(scale)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    options = _check_options(dict(kwargs))
    n = logits.shape[-1]
    flat = logits.reshape(-1, n)
    flat_target = target.reshape(-1)
    if flat_target.numel() and bool(
        torch.isneginf(flat.detach().gather(1, flat_target[:, None])).any()
    ):
        raise ValueError(
            "a target class is masked (its logit is -inf): the loss would be +inf; unmask the "
            "target or drop the row"
        )
    if flat.shape[0] == 0:
        losses = (flat.sum(-1) * 0.0).reshape(target.shape)
    else:
        losses = _FenchelYoung.apply(flat, flat_target, noise_object, sigma, options)  # type: ignore[no-untyped-call]
        losses = losses.reshape(target.shape)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses

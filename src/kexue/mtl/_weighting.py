"""Loss weightings: combine task losses into the one loss to backpropagate (spec 06).

Every weighting is a small ``nn.Module`` with one protocol (:class:`LossWeighting`):

* ``weighting(losses) -> total`` — ``losses`` a list of scalar tensors (or one 1-D tensor);
  ``total`` a scalar whose gradient is the weighted sum of the task gradients;
* ``weighting.weights`` — the effective per-task weights ∂total/∂Lᵢ of the last call (detached,
  for logging; ``None`` before the first call), ``weighting.last_losses`` the raw loss values.

State lives in buffers and parameters, so ``state_dict``/``load_state_dict`` resume training
(initial-state references, GradNorm and uncertainty-weighting parameters). Learnable weightings
(:class:`UncertaintyWeighting`, :class:`GradNormChen`) expose ``parameters()``: add them to the
optimiser. Weightings that need task gradients (:class:`GradNormalized`, and MGDA in
:mod:`kexue.mtl`) also plug into :func:`kexue.mtl.mtl_backward`, which computes the gradients
once and writes the combined update to ``.grad``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn

from ._checks import (
    LossesLike,
    check_choice,
    check_losses,
    check_n_tasks,
    check_positive_float,
    check_tensor_list,
)
from ._power_mean import _check_gamma, power_mean, power_mean_weights

__all__ = [
    "EqualWeights",
    "FixedWeights",
    "GradNormChen",
    "GradNormalized",
    "InitNormalized",
    "LossWeighting",
    "PowerMean",
    "PriorNormalized",
    "RealTimeNormalized",
    "UncertaintyWeighting",
]


@runtime_checkable
class LossWeighting(Protocol):
    """The common protocol: ``__call__(losses) -> total loss`` and ``weights`` for logging."""

    def __call__(self, losses: LossesLike) -> torch.Tensor: ...

    @property
    def weights(self) -> torch.Tensor | None: ...


def _positive_vector(
    values: Sequence[float] | torch.Tensor, name: str, *, strict: bool
) -> torch.Tensor:
    vector = torch.as_tensor(
        values.detach() if isinstance(values, torch.Tensor) else values, dtype=torch.float64
    ).flatten()
    if vector.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not bool(torch.isfinite(vector).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if strict and bool((vector <= 0).any()):
        raise ValueError(
            f"{name} must be > 0 (they divide the losses), got {vector.tolist()}; a zero "
            "reference means the task's loss was already 0"
        )
    if not strict and bool((vector < 0).any()):
        raise ValueError(f"{name} must be >= 0, got {vector.tolist()}")
    return vector


class _Weighting(nn.Module):
    """Shared bookkeeping: the last effective weights and raw losses (not a mixin: one base)."""

    def __init__(self) -> None:
        super().__init__()
        self._last_weights: torch.Tensor | None = None
        self._last_losses: torch.Tensor | None = None

    @property
    def weights(self) -> torch.Tensor | None:
        """Effective weights ∂total/∂Lᵢ of the last call, detached ``[T]`` (None before a call)."""
        return self._last_weights

    @property
    def last_losses(self) -> torch.Tensor | None:
        """Raw task losses of the last call, detached ``[T]`` (log these, not the total)."""
        return self._last_losses

    def _record(self, weights: torch.Tensor, losses: torch.Tensor) -> None:
        self._last_weights = weights.detach()
        self._last_losses = losses.detach()


class EqualWeights(_Weighting):
    """``L = (1/n) Σᵢ Lᵢ`` — the arithmetic mean, αᵢ = 1/n (spec 06 (w-loss) default)."""

    def forward(self, losses: LossesLike) -> torch.Tensor:
        _, stacked = check_losses(losses)
        n = stacked.shape[0]
        self._record(torch.full_like(stacked.detach(), 1.0 / n), stacked)
        return stacked.mean()


class FixedWeights(_Weighting):
    """``L = Σᵢ αᵢ Lᵢ`` with fixed αᵢ ≥ 0 (spec 06 (w-loss); the tuned baseline of pitfall 6)."""

    alphas: torch.Tensor

    def __init__(self, alphas: Sequence[float] | torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("alphas", _positive_vector(alphas, "alphas", strict=False))

    def forward(self, losses: LossesLike) -> torch.Tensor:
        _, stacked = check_losses(losses, n_tasks=self.alphas.numel())
        alphas = self.alphas.to(stacked.dtype)
        self._record(alphas, stacked)
        return (alphas * stacked).sum()


class InitNormalized(_Weighting):
    """``L = Σᵢ Lᵢ / Lᵢ^(init)`` — initial-state normalisation (spec 06 (init)).

    Scale-invariant per task (C6.2), not translation-invariant (C6.3, pitfall 1). The reference
    is either given (``init_values``, e.g. :func:`kexue.mtl.cross_entropy_init_loss` or
    :func:`kexue.mtl.mse_init_loss`) or estimated as the mean of the first ``n_batches`` loss
    values seen (by :meth:`observe` or by the first calls; until then the running mean is used).
    The reference is a buffer: ``state_dict`` carries it across restarts.
    """

    reference_sum: torch.Tensor
    reference_count: torch.Tensor

    def __init__(
        self,
        n_tasks: int | None = None,
        *,
        init_values: Sequence[float] | torch.Tensor | None = None,
        n_batches: int = 1,
    ) -> None:
        super().__init__()
        if init_values is None and n_tasks is None:
            raise TypeError("give n_tasks (to estimate the references) or init_values")
        self.n_batches = check_n_tasks(n_batches, "n_batches")
        if init_values is not None:
            values = _positive_vector(init_values, "init_values", strict=True)
            if n_tasks is not None and values.numel() != n_tasks:
                raise ValueError(f"init_values has {values.numel()} entries, n_tasks is {n_tasks}")
            self.register_buffer("reference_sum", values)
            self.register_buffer("reference_count", torch.tensor(self.n_batches))
        else:
            assert n_tasks is not None
            size = check_n_tasks(n_tasks)
            self.register_buffer("reference_sum", torch.zeros(size, dtype=torch.float64))
            self.register_buffer("reference_count", torch.tensor(0))

    @property
    def n_tasks(self) -> int:
        return int(self.reference_sum.numel())

    @property
    def reference(self) -> torch.Tensor | None:
        """The current Lᵢ^(init) (mean of the observed batches), or None before any."""
        count = int(self.reference_count)
        return None if count == 0 else self.reference_sum / count

    @torch.no_grad()
    def observe(self, losses: LossesLike) -> None:
        """Add one batch of losses (e.g. under ``torch.no_grad()`` before training) to the mean."""
        _, stacked = check_losses(losses, n_tasks=self.n_tasks)
        self.reference_sum += stacked.detach().to(self.reference_sum)
        self.reference_count += 1

    def reference_for(self, stacked: torch.Tensor) -> torch.Tensor:
        """Observe ``stacked`` while still estimating; return the reference (checked > 0)."""
        if int(self.reference_count) < self.n_batches:
            self.observe(stacked.detach())
        reference = self.reference
        assert reference is not None
        if bool((reference <= 0).any()):
            tasks = torch.nonzero(reference <= 0).flatten().tolist()
            raise ValueError(
                f"initial loss of task(s) {tasks} is 0, so it cannot normalise; give init_values "
                "(e.g. log K for K-class cross-entropy)"
            )
        return reference

    def forward(self, losses: LossesLike) -> torch.Tensor:
        _, stacked = check_losses(losses, n_tasks=self.n_tasks)
        reference = self.reference_for(stacked).to(stacked.dtype)
        self._record(1.0 / reference, stacked)
        return (stacked / reference).sum()


class PriorNormalized(_Weighting):
    """``L = Σᵢ Lᵢ / Lᵢ^(prior)`` — prior-state normalisation (spec 06 (prior)).

    ``prior_values`` come from the helpers (:func:`kexue.mtl.cross_entropy_prior_loss` = label
    entropy, :func:`kexue.mtl.mse_prior_loss` = variance, …). Scale-invariant (C6.2).
    """

    prior: torch.Tensor

    def __init__(self, prior_values: Sequence[float] | torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("prior", _positive_vector(prior_values, "prior_values", strict=True))

    def forward(self, losses: LossesLike) -> torch.Tensor:
        _, stacked = check_losses(losses, n_tasks=self.prior.numel())
        prior = self.prior.to(stacked.dtype)
        self._record(1.0 / prior, stacked)
        return (stacked / prior).sum()


class RealTimeNormalized(_Weighting):
    """``L = Σᵢ Lᵢ / sg(Lᵢ)`` — real-time normalisation (spec 06 (sg)); gradient Σᵢ∇Lᵢ/Lᵢ.

    The value is always n (log ``last_losses`` instead). ``form="clamp"`` divides by
    ``sg(Lᵢ).clamp_min(eps)`` (spec default), ``form="add"`` by ``sg(Lᵢ) + eps`` (the later post's
    form). Same gradient direction as the geometric mean (C6.4); scale-invariant, not
    translation-invariant (C6.2, C6.3).
    """

    def __init__(self, eps: float = 1e-8, form: Literal["clamp", "add"] = "clamp") -> None:
        super().__init__()
        self.eps = check_positive_float(eps, "eps", allow_zero=True)
        self.form = check_choice(form, "form", ("clamp", "add"))

    def forward(self, losses: LossesLike) -> torch.Tensor:
        _, stacked = check_losses(losses, nonnegative=True)
        value = stacked.detach()
        denominator = value.clamp_min(self.eps) if self.form == "clamp" else value + self.eps
        if bool((denominator <= 0).any()):
            raise ValueError("a task loss is 0 and eps=0: set eps > 0")
        self._record(1.0 / denominator, stacked)
        return (stacked / denominator).sum()


class PowerMean(_Weighting):
    """``L(γ) = ((1/n) Σᵢ Lᵢ^γ)^(1/γ)`` — the generalised mean (spec 06 §2, §3).

    γ = 1 arithmetic mean, γ = 0 geometric mean (same direction as real-time normalisation),
    γ → ±∞ the worst/best task; any real γ or ±``inf``. Per-task scale invariance holds only at
    γ = 0 (spec 06 §3, pitfall 5), so ``normalize="init"`` (references as in
    :class:`InitNormalized`: ``reference_values`` or the first ``n_batches`` batches, then
    ``n_tasks`` is needed) or ``"prior"`` (``reference_values`` required) applies L(γ) to
    ``Lᵢ/refᵢ``. ``weights`` are ∂L(γ)/∂Lᵢ (:func:`kexue.mtl.power_mean_weights`).
    """

    def __init__(
        self,
        gamma: float,
        *,
        normalize: Literal["init", "prior"] | None = None,
        n_tasks: int | None = None,
        reference_values: Sequence[float] | torch.Tensor | None = None,
        n_batches: int = 1,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.gamma = _check_gamma(gamma)
        self.eps = check_positive_float(eps, "eps", allow_zero=True)
        if normalize is not None:
            check_choice(normalize, "normalize", ("init", "prior"))
        self.normalize = normalize
        self.reference: InitNormalized | PriorNormalized | None = None
        if normalize == "init":
            self.reference = InitNormalized(
                n_tasks, init_values=reference_values, n_batches=n_batches
            )
        elif normalize == "prior":
            if reference_values is None:
                raise TypeError("normalize='prior' needs reference_values (the prior losses)")
            self.reference = PriorNormalized(reference_values)
        elif reference_values is not None:
            raise ValueError("reference_values is only used with normalize='init' or 'prior'")

    def forward(self, losses: LossesLike) -> torch.Tensor:
        _, stacked = check_losses(losses, nonnegative=True)
        if isinstance(self.reference, InitNormalized):
            check_losses(stacked, n_tasks=self.reference.n_tasks)
            reference = self.reference.reference_for(stacked).to(stacked.dtype)
        elif isinstance(self.reference, PriorNormalized):
            check_losses(stacked, n_tasks=self.reference.prior.numel())
            reference = self.reference.prior.to(stacked.dtype)
        else:
            reference = torch.ones_like(stacked.detach())
        normalized = stacked / reference
        weights = power_mean_weights(normalized, self.gamma, eps=self.eps) / reference
        self._record(weights, stacked)
        return power_mean(normalized, self.gamma, eps=self.eps)


class UncertaintyWeighting(_Weighting):
    """``L = Σᵢ ½e^(−sᵢ)Lᵢ + ½sᵢ`` with learnable sᵢ = log σᵢ² (Kendall et al.; LibMTL form).

    Not from the post (spec 06 §3, pitfall 7): a comparison baseline. At the optimum over s,
    e^(sᵢ) = Lᵢ and the θ-gradient is ½Σᵢ∇Lᵢ/Lᵢ — real-time normalisation's direction (C6.9).
    ``log_vars`` (init ``init``, default −0.5) must be added to the optimiser.
    """

    def __init__(self, n_tasks: int, init: float = -0.5) -> None:
        super().__init__()
        if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init):
            raise ValueError(f"init must be a finite real number, got {init!r}")
        self.log_vars = nn.Parameter(torch.full((check_n_tasks(n_tasks),), float(init)))

    def forward(self, losses: LossesLike) -> torch.Tensor:
        _, stacked = check_losses(losses, n_tasks=self.log_vars.numel())
        s = self.log_vars.to(stacked.dtype)
        precision = 0.5 * torch.exp(-s)
        self._record(precision, stacked)
        return (precision * stacked + 0.5 * s).sum()


def _grad_norms(scalars: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖∇_params Lᵢ‖ for every task (graph retained: the total is backpropagated afterwards)."""
    norms = []
    for loss in scalars:
        if not loss.requires_grad:
            norms.append(torch.zeros((), dtype=torch.float64, device=loss.device))
            continue
        grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
        square = sum(
            (g.detach().to(torch.float64).pow(2).sum() for g in grads if g is not None),
            torch.zeros((), dtype=torch.float64, device=loss.device),
        )
        norms.append(torch.sqrt(square))
    return torch.stack(norms)


class GradNormChen(_Weighting):
    """GradNorm (Chen et al., arXiv 1711.02257) — a comparison baseline, not from the post.

    ``L = Σᵢ wᵢLᵢ`` (wᵢ detached) ``+ Σᵢ |wᵢ·‖∇_W Lᵢ‖ − Ḡ·rᵢ^α|`` where W are ``shared_params``
    (the last shared layer), Ḡ = meanᵢ wᵢ‖∇_W Lᵢ‖, rᵢ = L̃ᵢ/mean L̃, L̃ᵢ = Lᵢ/Lᵢ(0), and the target
    Ḡ·rᵢ^α is a constant. The gradient norms are computed without a second-order graph (their
    dependence on θ is ignored, so the second term only moves w: its w-gradient is
    sign(wᵢnᵢ − targetᵢ)·nᵢ). The task weights ``loss_weights`` (init 1) must be in the optimiser;
    they are clamped to ≥ 1e-6 and renormalised to sum to T at the start of every call (the
    paper renormalises after each step). ``asymmetry`` α = 1.5 is a commonly used default
    [unverified]. The returned total includes the GradNorm term; log ``last_losses``.
    """

    initial_losses: torch.Tensor

    def __init__(
        self, n_tasks: int, shared_params: Iterable[torch.Tensor], asymmetry: float = 1.5
    ) -> None:
        super().__init__()
        size = check_n_tasks(n_tasks)
        self.asymmetry = check_positive_float(asymmetry, "asymmetry", allow_zero=True)
        self._params = check_tensor_list(shared_params, "shared_params")
        self.loss_weights = nn.Parameter(torch.ones(size))
        self.register_buffer("initial_losses", torch.zeros(size, dtype=torch.float64))

    def forward(self, losses: LossesLike) -> torch.Tensor:
        scalars, stacked = check_losses(losses, n_tasks=self.loss_weights.numel())
        n = stacked.shape[0]
        with torch.no_grad():
            self.loss_weights.clamp_(min=1e-6)
            self.loss_weights.mul_(n / self.loss_weights.sum())
            if bool((self.initial_losses == 0).all()):
                if bool((stacked.detach() <= 0).any()):
                    raise ValueError("GradNorm needs positive initial losses Lᵢ(0)")
                self.initial_losses.copy_(stacked.detach().to(torch.float64))
        norms = _grad_norms(scalars, self._params).to(stacked.dtype)
        weights = self.loss_weights.to(stacked.dtype)
        fixed = weights.detach()
        with torch.no_grad():
            ratio = stacked.detach() / self.initial_losses.to(stacked.dtype)
            relative = ratio / ratio.mean()
            target = (fixed * norms).mean() * relative**self.asymmetry
        gradnorm_loss = (weights * norms - target).abs().sum()
        self._record(fixed, stacked)
        return (fixed * stacked).sum() + gradnorm_loss


class GradNormalized(_Weighting):
    """The post's unit-gradient sum: ∇θL = Σᵢ ∇θLᵢ/‖∇θLᵢ‖ (spec 06 (grad), (grad-norm), §3).

    Scale- and translation-invariant (C6.2, C6.3); with two tasks never ascends either task
    (C6.8); with three it can (pitfall 4). Two ways to use it:

    * as a loss: ``weighting(losses)`` returns ``Σᵢ Lᵢ / sg(‖∇Lᵢ‖ + eps)`` (the (grad) form), the
      norms taken over ``norm_params`` (default: ``shared_params``; a subset such as the last
      shared layer is the cheap variant). Heads then receive ∇Lᵢ/‖gᵢ‖ (``scale_heads=True``; the
      loss form cannot leave heads unscaled);
    * in :func:`kexue.mtl.mtl_backward` (``norm_params`` not given): the post's practical variant —
      per-task gradients of the shared parameters, each normalised, summed into ``.grad``
      (``scale_heads=False`` gives heads their raw gradients).

    ``eps`` (default 1e-12 for float64 losses, 1e-8 otherwise) guards ‖gᵢ‖ = 0 (that task then
    contributes nothing).
    """

    def __init__(
        self,
        shared_params: Iterable[torch.Tensor] | None = None,
        *,
        norm_params: Iterable[torch.Tensor] | None = None,
        scale_heads: bool = True,
        eps: float | None = None,
    ) -> None:
        super().__init__()
        self._shared = (
            None if shared_params is None else check_tensor_list(shared_params, "shared_params")
        )
        self._norm = None if norm_params is None else check_tensor_list(norm_params, "norm_params")
        if not isinstance(scale_heads, bool):
            raise TypeError("scale_heads must be a bool")
        self.scale_heads = scale_heads
        self.eps = None if eps is None else check_positive_float(eps, "eps", allow_zero=True)

    @property
    def jacobian_source(self) -> Literal["shared"] | None:
        """``"shared"``: mtl_backward computes per-task shared gradients; None: used as a loss."""
        return "shared" if self._norm is None else None

    @property
    def head_scaling(self) -> Literal["alpha", "none"]:
        return "alpha" if self.scale_heads else "none"

    def _eps(self, dtype: torch.dtype) -> float:
        if self.eps is not None:
            return self.eps
        return 1e-12 if dtype == torch.float64 else 1e-8

    def forward(self, losses: LossesLike) -> torch.Tensor:
        params = self._norm if self._norm is not None else self._shared
        if params is None:
            raise TypeError(
                "GradNormalized needs shared_params (or norm_params) to be used as a loss; "
                "or pass it to kexue.mtl.mtl_backward(aggregator=...)"
            )
        if not self.scale_heads:
            raise ValueError(
                "scale_heads=False cannot be expressed as one loss; use "
                "kexue.mtl.mtl_backward(losses, shared_parameters, aggregator=this)"
            )
        scalars, stacked = check_losses(losses)
        norms = _grad_norms(scalars, params).to(stacked.dtype)
        weights = 1.0 / (norms + self._eps(stacked.dtype))
        self._record(weights, stacked)
        return (weights * stacked).sum()

    def weights_from_gram(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Weights 1/(‖gᵢ‖ + eps) with ‖gᵢ‖ = √M_ii (float64, gram's device)."""
        norms = torch.sqrt(torch.diagonal(gram).to(torch.float64).clamp_min(0.0))
        weights = 1.0 / (norms + self._eps(losses.dtype))
        self._record(weights, losses)
        return weights

"""Sampling and the ``torch.distributions`` citizens (spec 09 §5.2; issue 19 items 4–5).

:func:`perturb_max_sample` draws argmax(μ + σε) exactly, with the tail-patched noise of
:mod:`._sampling` (float32 speed, tails reached to a mass of 2⁻⁷⁴ per side, so classes with
p ≥ 10⁻¹² are drawn; never in float16/bfloat16: pytorch/pytorch#22442, #41663, …).
:func:`straight_through_sample` is the one-hot sample with the straight-through gradient.

:class:`PerturbMaxCategorical` (index-valued, like ``torch.distributions.Categorical``) and
:class:`PerturbMaxOneHotCategorical` (one-hot valued, like ``OneHotCategorical``, with the
straight-through ``rsample`` of ``OneHotCategoricalStraightThrough``) have the Perturb-Max
probabilities p_i = P[argmax(logits + σε) = i] of :func:`kexue.discrete.perturb_max_probs`.

Conventions (shared by both classes):

* ``logits`` is the user's tensor, unchanged (the distribution's parameter: the location of the
  perturbed maximum). Unlike ``Categorical.logits`` it is **not** normalised — for noise other
  than Gumbel, logits − logsumexp(logits) is not log p. The normalised log-probabilities are
  ``log_probs`` (``probs`` = exp(log_probs)).
* Construction is O(1) apart from torch's optional argument validation: ``log_probs`` and
  ``probs`` are ``lazy_property`` values computed on first access and cached; ``expand`` is O(1)
  (expanded views of the logits and of whatever is already cached).
* ``-inf`` logits are masked classes: p = 0 exactly, log p = −inf, never sampled. NaN, +inf and
  rows whose logits are all −inf are refused (ValueError) when arguments are validated (torch's
  default; ``validate_args=False`` skips the O(n) check, as in torch).
* ``kl_divergence`` is registered between these classes and torch's ``Categorical`` /
  ``OneHotCategorical``: Σ p (log p − log q) from the two ``log_probs``, 0 · log 0 = 0, +inf
  where q = 0 < p. It is exact whenever the log-probabilities are (the default ``method="auto"``;
  a quadrature method gives the KL of its own normaliser).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import (
    Categorical,
    Distribution,
    OneHotCategorical,
    constraints,
    register_kl,
)
from torch.distributions.utils import lazy_property

from ._noises import Noise, as_noise
from ._probabilities import ALGORITHMS, METHODS, Algorithm, Method, perturb_max_probs
from ._sampling import check_sample_args

__all__ = [
    "PerturbMaxCategorical",
    "PerturbMaxOneHotCategorical",
    "perturb_max_sample",
    "straight_through_sample",
]


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------
# Validation


def _check_logits_tensor(logits: object) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}; use .float()")
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ValueError(
            f"logits must be [..., n] with n >= 1 classes (last dimension), got shape "
            f"{tuple(logits.shape)}"
        )
    return logits


def _check_logits_values(logits: torch.Tensor) -> None:
    """NaN, +inf and all −inf rows are refused (skipped on 'meta'). The common case costs one
    full sum (finite iff every logit is; 4 µs at 64 × 1,000 where the row-maximum test cost 13);
    a non-finite sum (a mask, NaN, ±inf or an overflow) takes the row-wise test."""
    if logits.device.type == "meta" or logits.numel() == 0:
        return
    detached = logits.detach()
    if math.isfinite(float(detached.sum(dtype=torch.float64 if detached.dtype == torch.float64
                                         else torch.float32))):  # fmt: skip
        return
    row_max = detached.amax(-1)
    if bool(torch.isfinite(row_max).all()):
        return
    if bool(torch.isnan(row_max).any()):
        raise ValueError("logits contain NaN; every logit must be a number (−inf masks a class)")
    if bool((row_max == math.inf).any()):
        raise ValueError("logits contain +inf; use finite logits (−inf masks a class)")
    raise ValueError(
        "logits have a row whose entries are all −inf: at least one class per row must be "
        "possible (−inf masks a class)"
    )


def _check_scale(scale: object) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a real number (the temperature σ), got {scale!r}")
    value = float(scale)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"scale must be finite and >= 0 (σ; 0 gives the argmax limit), got {scale!r}"
        )
    return value


def _check_sample_shape(sample_shape: object) -> tuple[int, ...]:
    if not isinstance(sample_shape, (tuple, list, torch.Size)) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sample_shape
    ):
        raise ValueError(
            f"sample_shape must be a tuple of non-negative ints such as (3,), got {sample_shape!r}"
        )
    return tuple(int(s) for s in sample_shape)


# --------------------------------------------------------------------------------------------
# Functional core


def perturb_max_sample(
    logits: torch.Tensor,
    noise: str | Noise = "normal",
    sample_shape: tuple[int, ...] | torch.Size = (),
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact samples argmax_i(μ_i + σε_i) over the last dimension (spec 09 §5.2): int64
    ``[*sample_shape, *logits.shape[:-1]]``.

    The noise is drawn in float32 (float64 for float64 logits) by ``noise.sample``, the
    tail-patched sampler of :mod:`._sampling`: fp16/bf16 logits give no NaN/inf (C9.9), and the
    noise reaches its tails down to a mass of 2⁻⁷⁴ per side, so every class with p ≥ 10⁻¹² is
    drawn with (up to 2nτ ≈ 10⁻¹⁷) its exact frequency. ``−inf`` logits are masked classes
    (never drawn); ``scale = 0`` gives the argmax of the logits.

    Raises TypeError/ValueError (naming the argument) for non-tensor or integer logits, n = 0,
    NaN/+inf logits or an all −inf row, a negative/NaN/non-numeric ``scale``, a bad
    ``sample_shape``, an unknown ``noise`` or a ``generator`` on another device than the logits.
    """
    logits = _check_logits_tensor(logits)
    noise_object = as_noise(noise)
    sigma = _check_scale(scale)
    shape = (*_check_sample_shape(sample_shape), *logits.shape)
    check_sample_args(shape, generator, torch.float32, logits.device)
    _check_logits_values(logits)
    work = _work_dtype(logits.dtype)
    if sigma == 0.0:
        index = logits.detach().argmax(dim=-1)
        return index.expand(shape[:-1]).clone()
    epsilon = noise_object.sample(shape, generator=generator, dtype=work, device=logits.device)
    if sigma != 1.0:
        epsilon.mul_(sigma)
    return epsilon.add_(logits.detach()).argmax(dim=-1)


def straight_through_sample(
    logits: torch.Tensor,
    probs: torch.Tensor,
    noise: str | Noise = "normal",
    sample_shape: tuple[int, ...] | torch.Size = (),
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One-hot exact sample with the straight-through gradient of ``probs``:
    ``one_hot(argmax(μ + σε)) + p − stopgrad(p)``. The forward value is an exact one-hot sample;
    the backward pass uses ∂p/∂μ, the Perturb-Max Jacobian (the Hessian of E max, symmetric
    PSD, spec 09 §3) — a biased but low-variance estimator of ∂E[f(onehot)]/∂μ. ``probs`` must
    be a floating tensor of the logits' shape (ValueError/TypeError otherwise)."""
    logits = _check_logits_tensor(logits)
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError("probs must be a floating-point tensor (perturb_max_probs(logits))")
    if probs.shape != logits.shape:
        raise ValueError(
            f"probs shape {tuple(probs.shape)} must equal the logits' {tuple(logits.shape)}"
        )
    index = perturb_max_sample(logits, noise, sample_shape, scale=scale, generator=generator)
    hard = F.one_hot(index, logits.shape[-1]).to(probs.dtype)
    return hard + probs - probs.detach()


# --------------------------------------------------------------------------------------------
# Constraints


class _MaskedLogits(constraints.Constraint):
    """Real vectors whose entries are finite or −inf, with at least one finite entry."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        allowed = (value == value) & (value < math.inf)  # no NaN, no +inf
        return allowed.all(-1) & (value > -math.inf).any(-1)

    def __repr__(self) -> str:
        return "MaskedLogits(no NaN or +inf; -inf masks a class; >= 1 finite entry per row)"


masked_logits = _MaskedLogits()


def _check_options(
    method: object, num_nodes: object, scale: object, renormalize: object, algorithm: object
) -> float:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {ALGORITHMS}")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be an int >= 1 (quadrature nodes K), got {num_nodes!r}")
    if not isinstance(renormalize, bool):
        raise TypeError(f"renormalize must be a bool, got {renormalize!r}")
    return _check_scale(scale)


# --------------------------------------------------------------------------------------------
# Distributions


class PerturbMaxCategorical(Distribution):
    """Categorical distribution over class indices with p_i = P[argmax(logits + σε) = i]
    (spec 09 §2, (pi); §5.2).

    Args:
        logits: ``[*batch, n]`` floating point, finite or −inf (a masked class, p = 0); kept as
            given (``.logits``; not normalised, see the module docstring).
        noise, method, num_nodes, scale, renormalize, algorithm: as in
            :func:`kexue.discrete.perturb_max_probs` (σ = ``scale`` ≥ 0; 0 is the argmax limit).
        validate_args: torch's flag: checks the logits (NaN/+inf/all −inf rows refused) and the
            values given to ``log_prob`` (out of support → ValueError).

    ``log_probs``/``probs`` (lazy, cached, differentiable in the logits) come from
    :func:`~kexue.discrete.perturb_max_probs`; ``sample`` is exact (argmax of perturbed logits,
    no quadrature; :func:`perturb_max_sample`); ``log_prob(value)`` gathers ``log_probs``
    with torch's broadcasting (value ``[*sample_shape, *batch]``); ``entropy`` is −Σ p log p with
    0 · log 0 = 0; ``mode`` is the argmax of the logits (= argmax p, condition 3 of §2).
    There is no ``rsample`` (index values are not differentiable): use
    :class:`PerturbMaxOneHotCategorical` for the straight-through estimator.
    """

    arg_constraints = {"logits": masked_logits}  # noqa: RUF012
    has_enumerate_support = True
    has_rsample = False

    def __init__(
        self,
        logits: torch.Tensor,
        noise: str | Noise = "normal",
        method: Method | str = "auto",
        num_nodes: int = 32,
        *,
        scale: float = 1.0,
        renormalize: bool = True,
        algorithm: Algorithm | str = "auto",
        validate_args: bool | None = None,
    ) -> None:
        logits = _check_logits_tensor(logits)
        self.noise = as_noise(noise)
        self.scale = _check_options(method, num_nodes, scale, renormalize, algorithm)
        self.method = method
        self.num_nodes = num_nodes
        self.renormalize = renormalize
        self.algorithm = algorithm
        self.logits = logits
        self._num_events = logits.shape[-1]
        super().__init__(batch_shape=logits.shape[:-1], validate_args=validate_args)

    def _options(self) -> dict[str, Any]:
        return {"noise": self.noise, "method": self.method, "num_nodes": self.num_nodes,
                "scale": self.scale, "renormalize": self.renormalize,
                "algorithm": self.algorithm}  # fmt: skip

    def expand(self, batch_shape: Any, _instance: Any = None) -> PerturbMaxCategorical:
        """O(1): expanded views of the logits and of the cached probabilities (if any); the
        subclass, the options and the validation flag are kept."""
        new: PerturbMaxCategorical = self._get_checked_instance(  # type: ignore[no-untyped-call]
            PerturbMaxCategorical, _instance
        )
        shape = torch.Size(batch_shape)
        event = (self._num_events,)
        for name, value in self._options().items():
            setattr(new, name, value)
        new.logits = self.logits.expand(shape + event)
        for cached in ("log_probs", "probs"):
            if cached in self.__dict__:
                setattr(new, cached, self.__dict__[cached].expand(shape + event))
        new._num_events = self._num_events
        super(PerturbMaxCategorical, new).__init__(shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> Any:
        return constraints.integer_interval(0, self._num_events - 1)  # type: ignore[no-untyped-call]

    @lazy_property
    def log_probs(self) -> torch.Tensor:
        """log p ``[*batch, n]`` (−inf for masked or impossible classes); computed once."""
        return perturb_max_probs(
            self.logits, self.noise, self.method, self.num_nodes, renormalize=self.renormalize,
            scale=self.scale, log=True, algorithm=self.algorithm,
        )  # fmt: skip

    @lazy_property
    def probs(self) -> torch.Tensor:
        """p = exp(log p) ``[*batch, n]`` (exactly 0 for masked classes); computed once."""
        return torch.exp(self.log_probs)

    @property
    def param_shape(self) -> torch.Size:
        return self.logits.shape

    @property
    def mean(self) -> torch.Tensor:
        """NaN (class indices have no meaningful mean), as ``Categorical``."""
        return torch.full(self.batch_shape, math.nan, dtype=self.logits.dtype,
                          device=self.logits.device)  # fmt: skip

    @property
    def variance(self) -> torch.Tensor:
        """NaN, as ``Categorical``."""
        return self.mean

    @property
    def mode(self) -> torch.Tensor:
        """argmax of the logits = argmax of p (order preservation, spec 09 §2 condition 3)."""
        return self.logits.argmax(-1)

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Exact samples argmax(logits + σε): int64 ``[*sample_shape, *batch]``."""
        with torch.no_grad():
            return perturb_max_sample(self.logits, self.noise, tuple(sample_shape),
                                      scale=self.scale)  # fmt: skip

    def _check_value(self, value: object) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"value must be a torch.Tensor of class indices, got {value!r}")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"value must hold class indices (integer dtype), got {value.dtype}")
        if value.device != self.logits.device:
            raise ValueError(
                f"value is on {value.device} but the logits are on {self.logits.device}; move "
                "it with value.to(logits.device)"
            )
        return value

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p_value, ``value`` ``[*sample_shape, *batch]`` broadcast against the batch shape
        (as ``Categorical.log_prob``); out-of-support values raise ValueError with
        ``validate_args``."""
        value = self._check_value(value)
        if self._validate_args:
            self._validate_sample(value)
        index = value.long().unsqueeze(-1)
        try:
            index, log_pmf = torch.broadcast_tensors(index, self.log_probs)  # type: ignore[no-untyped-call]
        except RuntimeError:
            raise ValueError(
                f"value shape {tuple(value.shape)} does not broadcast against the batch shape "
                f"{tuple(self.batch_shape)}"
            ) from None
        result: torch.Tensor = log_pmf.gather(-1, index[..., :1]).squeeze(-1)
        return result

    def entropy(self) -> torch.Tensor:
        """−Σ p log p, with 0 · log 0 = 0."""
        return _entropy(self.log_probs)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """0, …, n − 1 as ``[n, *batch]`` (``[n, 1, …, 1]`` with ``expand=False``)."""
        values = torch.arange(self._num_events, dtype=torch.long, device=self.logits.device)
        values = values.view((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = values.expand((-1, *self.batch_shape))
        return values

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(logits: {tuple(self.logits.shape)}, noise={self.noise!r}, "
            f"method={self.method!r}, num_nodes={self.num_nodes}, scale={self.scale:g}, "
            f"renormalize={self.renormalize}, algorithm={self.algorithm!r})"
        )


class PerturbMaxOneHotCategorical(Distribution):
    """One-hot valued Perturb-Max categorical (``event_shape (n,)``, support one-hot), the
    analogue of ``OneHotCategorical`` (spec 09 §5.2). Arguments as
    :class:`PerturbMaxCategorical`, which it wraps (``.categorical``).

    ``sample`` is an exact one-hot sample (in the logits' dtype); ``rsample`` is the
    straight-through sample of ``OneHotCategoricalStraightThrough``: forward the exact one-hot
    sample, gradient that of ``probs`` (the Perturb-Max Jacobian, symmetric PSD, spec 09 §3).
    ``mean`` = p, ``variance`` = p(1 − p), ``mode`` = one-hot argmax.
    """

    arg_constraints = {"logits": masked_logits}  # noqa: RUF012
    support = constraints.one_hot
    has_enumerate_support = True
    has_rsample = True

    def __init__(
        self,
        logits: torch.Tensor,
        noise: str | Noise = "normal",
        method: Method | str = "auto",
        num_nodes: int = 32,
        *,
        scale: float = 1.0,
        renormalize: bool = True,
        algorithm: Algorithm | str = "auto",
        validate_args: bool | None = None,
    ) -> None:
        self.categorical = PerturbMaxCategorical(
            logits, noise, method, num_nodes, scale=scale, renormalize=renormalize,
            algorithm=algorithm, validate_args=False,
        )  # fmt: skip
        logits = self.categorical.logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape: Any, _instance: Any = None) -> PerturbMaxOneHotCategorical:
        """O(1), as :meth:`PerturbMaxCategorical.expand`."""
        new: PerturbMaxOneHotCategorical = self._get_checked_instance(  # type: ignore[no-untyped-call]
            PerturbMaxOneHotCategorical, _instance
        )
        shape = torch.Size(batch_shape)
        new.categorical = self.categorical.expand(shape)
        super(PerturbMaxOneHotCategorical, new).__init__(shape, self.event_shape,
                                                         validate_args=False)  # fmt: skip
        new._validate_args = self._validate_args
        return new

    @property
    def logits(self) -> torch.Tensor:
        """The user's logits (not normalised)."""
        return self.categorical.logits

    @property
    def log_probs(self) -> torch.Tensor:
        """log p ``[*batch, n]``."""
        return self.categorical.log_probs

    @property
    def probs(self) -> torch.Tensor:
        """p ``[*batch, n]``."""
        return self.categorical.probs

    @property
    def noise(self) -> Noise:
        return self.categorical.noise

    @property
    def scale(self) -> float:
        return self.categorical.scale

    @property
    def param_shape(self) -> torch.Size:
        return self.categorical.param_shape

    @property
    def mean(self) -> torch.Tensor:
        """p."""
        return self.probs

    @property
    def variance(self) -> torch.Tensor:
        """p (1 − p)."""
        return self.probs * (1 - self.probs)

    @property
    def mode(self) -> torch.Tensor:
        """The one-hot argmax."""
        index = self.categorical.mode
        return F.one_hot(index, self.event_shape[0]).to(self.logits.dtype)

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Exact one-hot samples ``[*sample_shape, *batch, n]`` (the logits' dtype)."""
        index = self.categorical.sample(sample_shape)
        return F.one_hot(index, self.event_shape[0]).to(self.logits.dtype)

    def rsample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Straight-through one-hot samples: ``sample() + p − stopgrad(p)``."""
        samples = self.sample(sample_shape)
        probs = self.probs
        return samples + (probs - probs.detach())

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p of the one-hot ``value`` ``[*sample_shape, *batch, n]`` (its argmax)."""
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"value must be a one-hot torch.Tensor, got {value!r}")
        if value.ndim < 1 or value.shape[-1] != self.event_shape[0]:
            raise ValueError(
                f"value must be one-hot [..., {self.event_shape[0]}], got shape "
                f"{tuple(value.shape)}"
            )
        if self._validate_args:
            self._validate_sample(value)
        return self.categorical.log_prob(self.categorical._check_value(value).argmax(-1))

    def entropy(self) -> torch.Tensor:
        """−Σ p log p, with 0 · log 0 = 0."""
        return self.categorical.entropy()

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """The n one-hot vectors, ``[n, *batch, n]`` (``[n, 1, …, 1, n]`` unexpanded)."""
        n = self.event_shape[0]
        values = torch.eye(n, dtype=self.logits.dtype, device=self.logits.device)
        values = values.view((n,) + (1,) * len(self.batch_shape) + (n,))
        if expand:
            values = values.expand((n, *self.batch_shape, n))
        return values

    def __repr__(self) -> str:
        return repr(self.categorical).replace(
            type(self.categorical).__name__, type(self).__name__, 1
        )


# --------------------------------------------------------------------------------------------
# Entropy and KL


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    p = torch.exp(log_p)
    safe = torch.where(p > 0, log_p, torch.zeros_like(log_p))
    return -(p * safe).sum(-1)


def _categorical_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ p (log p − log q) with 0 · log 0 = 0 and +inf where q = 0 < p (batch broadcast)."""
    if log_p.shape[-1] != log_q.shape[-1]:
        raise ValueError(
            f"KL between categoricals of {log_p.shape[-1]} and {log_q.shape[-1]} classes"
        )
    if log_p.device != log_q.device:
        raise ValueError(f"KL between distributions on {log_p.device} and {log_q.device}")
    p = torch.exp(log_p)
    present = p > 0
    safe_p = torch.where(present, log_p, torch.zeros_like(log_p))
    safe_q = torch.where(present, log_q, torch.zeros_like(log_q))
    return (p * (safe_p - safe_q)).sum(-1)


def _kl_perturb_perturb(p: PerturbMaxCategorical, q: PerturbMaxCategorical) -> torch.Tensor:
    return _categorical_kl(p.log_probs, q.log_probs)


def _kl_perturb_categorical(p: PerturbMaxCategorical, q: Categorical) -> torch.Tensor:
    return _categorical_kl(p.log_probs, q.logits)


def _kl_categorical_perturb(p: Categorical, q: PerturbMaxCategorical) -> torch.Tensor:
    return _categorical_kl(p.logits, q.log_probs)


def _kl_onehot_onehot(
    p: PerturbMaxOneHotCategorical, q: PerturbMaxOneHotCategorical
) -> torch.Tensor:
    return _categorical_kl(p.log_probs, q.log_probs)


def _kl_onehot_torch(p: PerturbMaxOneHotCategorical, q: OneHotCategorical) -> torch.Tensor:
    return _categorical_kl(p.log_probs, q.logits)


def _kl_torch_onehot(p: OneHotCategorical, q: PerturbMaxOneHotCategorical) -> torch.Tensor:
    return _categorical_kl(p.logits, q.log_probs)


def _register_kl(p_type: type, q_type: type, function: Any) -> None:
    register_kl(p_type, q_type)(function)  # type: ignore[no-untyped-call]


_register_kl(PerturbMaxCategorical, PerturbMaxCategorical, _kl_perturb_perturb)
_register_kl(PerturbMaxCategorical, Categorical, _kl_perturb_categorical)
_register_kl(Categorical, PerturbMaxCategorical, _kl_categorical_perturb)
_register_kl(PerturbMaxOneHotCategorical, PerturbMaxOneHotCategorical, _kl_onehot_onehot)
_register_kl(PerturbMaxOneHotCategorical, OneHotCategorical, _kl_onehot_torch)
_register_kl(OneHotCategorical, PerturbMaxOneHotCategorical, _kl_torch_onehot)

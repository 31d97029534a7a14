"""Sampling and the ``torch.distributions`` wrapper (spec 09 §5.2).

:func:`perturb_max_sample` draws argmax(μ + σε) exactly (the noise in float32 or float64, never
in float16/bfloat16: pytorch/pytorch#22442, #41663, …). :class:`PerturbMaxCategorical` is a
``torch.distributions.Distribution`` over class indices whose probabilities are the Perturb-Max
probabilities of :func:`kexue.discrete.perturb_max_probs`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from ._noises import Noise, as_noise
from ._probabilities import Algorithm, Method, perturb_max_probs

__all__ = ["PerturbMaxCategorical", "perturb_max_sample", "straight_through_sample"]


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def perturb_max_sample(
    logits: torch.Tensor,
    noise: str | Noise = "normal",
    sample_shape: tuple[int, ...] | torch.Size = (),
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact samples argmax_i(μ_i + σε_i) over the last dimension: int64
    ``[*sample_shape, *logits.shape[:-1]]``. The noise is drawn in float32 (float64 for float64
    logits) with clamped uniforms, so fp16/bf16 logits give no NaN/inf (C9.9)."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.ndim < 1:
        raise TypeError("logits must be a floating-point tensor [..., n]")
    if logits.shape[-1] == 0:
        raise ValueError("logits have no classes (last dimension is 0)")
    noise_object = as_noise(noise)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= 0:
        raise ValueError(f"scale must be a real number >= 0, got {scale!r}")
    work = _work_dtype(logits.dtype)
    shape = (*tuple(sample_shape), *logits.shape)
    epsilon = noise_object.sample(shape, generator=generator, dtype=work, device=logits.device)
    perturbed = logits.detach().to(work) + float(scale) * epsilon
    return perturbed.argmax(dim=-1)


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
    PSD, spec 09 §3) — a biased but low-variance estimator of ∂E[f(onehot)]/∂μ."""
    index = perturb_max_sample(logits, noise, sample_shape, scale=scale, generator=generator)
    hard = F.one_hot(index, logits.shape[-1]).to(probs.dtype)
    return hard + probs - probs.detach()


class PerturbMaxCategorical(Distribution):
    """Categorical distribution with p_i = P[argmax(logits + σε) = i] (spec 09 §5.2).

    ``logits`` ``[*batch, n]`` (finite, floating point); ``noise``, ``method``, ``num_nodes``,
    ``scale``, ``renormalize``, ``algorithm`` as in :func:`kexue.discrete.perturb_max_probs`.
    ``probs``/``log_probs`` are computed once (lazily) and are differentiable in ``logits``;
    ``sample`` is exact (argmax of perturbed logits, no quadrature); ``log_prob(value)`` gathers
    the log-probabilities; ``entropy`` is −Σ p log p with 0 · log 0 = 0. ``rsample`` returns
    **one-hot** vectors ``[*sample_shape, *batch, n]`` with the straight-through estimator of
    :func:`straight_through_sample` (the index-valued ``sample`` has no reparameterisation).
    """

    arg_constraints = {"logits": constraints.real_vector}  # noqa: RUF012
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
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
        if not logits.is_floating_point():
            raise TypeError(f"logits must be floating point, got {logits.dtype}")
        if logits.ndim < 1 or logits.shape[-1] == 0:
            raise ValueError(f"logits must be [..., n] with n >= 1, got {tuple(logits.shape)}")
        if not bool(torch.isfinite(logits.detach()).all()):
            raise ValueError(
                "logits contain NaN or ±inf (mask classes with a large negative value)"
            )
        self.logits = logits
        self.noise = as_noise(noise)
        self.method = method
        self.num_nodes = num_nodes
        self.scale = float(scale)
        self.renormalize = renormalize
        self.algorithm = algorithm
        self._num_events = logits.shape[-1]
        self._log_probs: torch.Tensor | None = None
        # validate the options once (raises for unknown method/algorithm, bad scale, ...)
        self._log_probs = self._compute_log_probs()
        super().__init__(batch_shape=logits.shape[:-1], validate_args=validate_args)

    def _compute_log_probs(self) -> torch.Tensor:
        return perturb_max_probs(
            self.logits, self.noise, self.method, self.num_nodes, renormalize=self.renormalize,
            scale=self.scale, log=True, algorithm=self.algorithm,
        )  # fmt: skip

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> Any:
        return constraints.integer_interval(0, self._num_events - 1)  # type: ignore[no-untyped-call]

    @property
    def log_probs(self) -> torch.Tensor:
        """log p ``[*batch, n]``."""
        if self._log_probs is None:  # pragma: no cover - set in __init__
            self._log_probs = self._compute_log_probs()
        return self._log_probs

    @property
    def probs(self) -> torch.Tensor:
        """p ``[*batch, n]``."""
        return torch.exp(self.log_probs)

    @property
    def param_shape(self) -> torch.Size:
        return self.logits.shape

    def expand(self, batch_shape: Any, _instance: Any = None) -> PerturbMaxCategorical:
        shape = torch.Size(batch_shape)
        return PerturbMaxCategorical(
            self.logits.expand((*shape, self._num_events)), self.noise, self.method,
            self.num_nodes, scale=self.scale, renormalize=self.renormalize,
            algorithm=self.algorithm,
        )  # fmt: skip

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Exact samples argmax(logits + σε): int64 ``[*sample_shape, *batch]``."""
        with torch.no_grad():
            return perturb_max_sample(self.logits, self.noise, tuple(sample_shape),
                                      scale=self.scale)  # fmt: skip

    def rsample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:  # noqa: B008
        """One-hot samples ``[*sample_shape, *batch, n]`` with the straight-through gradient
        of the Perturb-Max probabilities (class docstring)."""
        return straight_through_sample(self.logits, self.probs, self.noise, tuple(sample_shape),
                                       scale=self.scale)  # fmt: skip

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p_value, broadcast against the batch shape."""
        if self._validate_args:
            self._validate_sample(value)
        value = value.long().unsqueeze(-1)
        value, log_pmf = torch.broadcast_tensors(value, self.log_probs)  # type: ignore[no-untyped-call]
        result: torch.Tensor = log_pmf.gather(-1, value[..., :1]).squeeze(-1)
        return result

    def entropy(self) -> torch.Tensor:
        """−Σ p log p, with 0 · log 0 = 0."""
        log_p = self.log_probs
        p = torch.exp(log_p)
        safe = torch.where(p > 0, log_p, torch.zeros_like(log_p))
        return -(p * safe).sum(-1)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        values = torch.arange(self._num_events, dtype=torch.long, device=self.logits.device)
        values = values.view((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = values.expand((-1, *self.batch_shape))
        return values

    @property
    def mean(self) -> torch.Tensor:
        return torch.full(self.batch_shape, float("nan"), dtype=self.logits.dtype,
                          device=self.logits.device)  # fmt: skip

    @property
    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def __repr__(self) -> str:
        return (
            f"PerturbMaxCategorical(logits: {tuple(self.logits.shape)}, noise={self.noise!r}, "
            f"method={self.method!r}, num_nodes={self.num_nodes}, scale={self.scale:g})"
        )

"""Discrete distributions from the reparameterisation viewpoint: Perturb Max (post 9085; spec 09).

p_i = P[argmax(μ + σε) = i] for i.i.d. noise ε is non-negative, sums to 1, preserves the order
of the logits and is invariant to a common shift (the four conditions of spec 09 §2); Gumbel
noise gives softmax exactly, any other noise a new normaliser computed by one-dimensional
quadrature in log space.

* Noise families (:mod:`._noises`): :class:`Gumbel`, :class:`Normal`, :class:`Logistic`,
  :class:`Uniform`, :class:`Exponential` and user-defined ones (:class:`Noise` subclasses or
  :class:`CustomNoise`), each with ``pdf``, ``cdf``, ``log_cdf``, ``icdf``/``quantile``,
  ``sample`` and a ``scale`` (temperature).
* :func:`perturb_max_probs` / :func:`perturb_max_log_probs`: exact for every class and every
  noise by default (closed forms: Gumbel → softmax, n = 2; otherwise the shared-grid rule of
  :mod:`._exact`, checked a posteriori; −inf logits are masked classes), or fixed-node
  quadrature (``"post"``, ``"midpoint"``, ``"gauss-legendre"``, ``"gauss-hermite"``,
  ``"monte-carlo"``), direct O(n²K) or the interpolated many-classes path (§5.1b, O(nM + nK)
  with a stated error bound: :func:`interpolated_log_probs`); differentiable; fp16/bf16 computed
  in float32.
* :func:`perturb_max_nll` (−log p_y), :func:`expected_max` (E max, whose gradient is p),
  :func:`perturb_max_sample` (exact argmax sampling), :func:`straight_through_sample`.
* :class:`PerturbMaxCategorical` and :class:`PerturbMaxOneHotCategorical` (straight-through
  ``rsample``): lazy ``torch.distributions`` citizens with O(1) ``expand``, −inf logits as masked
  classes and ``kl_divergence`` registered against torch's (One-Hot)Categorical; sampling
  reaches the noise tails (classes with p ≥ 1e-12 are drawn; :mod:`._sampling`).
"""

from __future__ import annotations

from ._distribution import (
    PerturbMaxCategorical,
    PerturbMaxOneHotCategorical,
    perturb_max_sample,
    straight_through_sample,
)
from ._losses import FY_LOSS_OPTIONS, perturb_max_fy_infimum, perturb_max_fy_loss
from ._many_classes import (
    InterpolatedLogProbs,
    interpolated_log_probs,
    interpolation_error_bound,
)
from ._noises import (
    NOISES,
    CustomNoise,
    Exponential,
    Gumbel,
    Logistic,
    Noise,
    Normal,
    Uniform,
    as_noise,
)
from ._probabilities import (
    ALGORITHMS,
    INTERPOLATION_MIN_CLASSES,
    METHODS,
    Algorithm,
    Method,
    expected_max,
    perturb_max_log_probs,
    perturb_max_nll,
    perturb_max_probs,
)
from ._quadrature import QUADRATURE_METHODS, quadrature_nodes

__all__ = [
    "ALGORITHMS",
    "FY_LOSS_OPTIONS",
    "INTERPOLATION_MIN_CLASSES",
    "METHODS",
    "NOISES",
    "QUADRATURE_METHODS",
    "Algorithm",
    "CustomNoise",
    "Exponential",
    "Gumbel",
    "InterpolatedLogProbs",
    "Logistic",
    "Method",
    "Noise",
    "Normal",
    "PerturbMaxCategorical",
    "PerturbMaxOneHotCategorical",
    "Uniform",
    "as_noise",
    "expected_max",
    "interpolated_log_probs",
    "interpolation_error_bound",
    "perturb_max_fy_infimum",
    "perturb_max_fy_loss",
    "perturb_max_log_probs",
    "perturb_max_nll",
    "perturb_max_probs",
    "perturb_max_sample",
    "quadrature_nodes",
    "straight_through_sample",
]

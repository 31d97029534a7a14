"""Hubness: k-occurrence, hubness measures, the hubness-prior latent sampler (post 9147; spec 10).

* :func:`k_occurrence`, :func:`k_nearest_neighbours` — exact blocked k-NN / hub values in torch
  (CPU or CUDA, memory O(block·N), ties broken by the smaller index), or faiss
  (:class:`FaissOptions`: flat, IVF, HNSW) for N in the millions; both conventions —
  ``include_self=False`` (the post's, k true neighbours) and ``include_self=True`` (the official
  code's, self + k − 1 neighbours) (spec 10 §3, §7.1);
* :func:`hubness_measures` → :class:`HubnessMeasures` (skewness, anti-hub and hub rates, hub
  occurrence, Robin Hood, O(N log N) Gini, max, top-1% share), the single measures
  :func:`skewness`, :func:`robin_hood_index`, :func:`gini_index`, thresholds :func:`hub_mask` /
  :func:`selection_rate`, and the scikit-learn style estimator :class:`Hubness`
  (``Hubness(k=5).fit(X).score()``) (spec 10 §6);
* :class:`HubnessPriorSampler` — streaming hub selection of latents in Z or in a mapped W space,
  reporting the acceptance rate; baselines :func:`truncate` / :class:`TruncationSampler`
  (truncation trick), :func:`norm_truncate` / :class:`NormTruncationSampler` (smallest norms at a
  matched rate) (spec 10 §7.2-7.3);
* :func:`log_ball_cube_ratio`, :func:`ball_cube_ratio`, :func:`log_unit_ball_volume` — the
  collapsing unit ball (spec 10 §2, §5).
"""

from __future__ import annotations

from ._estimator import HUBNESS_SCORES, Hubness, HubnessScore
from ._measures import (
    CONVENTIONS,
    Convention,
    HubnessMeasures,
    gini_index,
    hub_mask,
    hubness_measures,
    robin_hood_index,
    selection_rate,
    skewness,
)
from ._occurrence import (
    BACKENDS,
    DEFAULT_MEMORY_BUDGET,
    FAISS_INDEXES,
    METRICS,
    Backend,
    FaissIndexType,
    FaissOptions,
    Metric,
    default_block_size,
    k_nearest_neighbours,
    k_occurrence,
)
from ._sampler import (
    HubnessPriorSampler,
    LatentSample,
    LatentSampler,
    NormTruncationSampler,
    TruncationSampler,
    max_hub_value,
    norm_truncate,
    norm_truncation_mask,
    truncate,
)
from ._volume import ball_cube_ratio, log_ball_cube_ratio, log_unit_ball_volume

__all__ = [
    "BACKENDS",
    "CONVENTIONS",
    "DEFAULT_MEMORY_BUDGET",
    "FAISS_INDEXES",
    "HUBNESS_SCORES",
    "METRICS",
    "Backend",
    "Convention",
    "FaissIndexType",
    "FaissOptions",
    "Hubness",
    "HubnessMeasures",
    "HubnessPriorSampler",
    "HubnessScore",
    "LatentSample",
    "LatentSampler",
    "Metric",
    "NormTruncationSampler",
    "TruncationSampler",
    "ball_cube_ratio",
    "default_block_size",
    "gini_index",
    "hub_mask",
    "hubness_measures",
    "k_nearest_neighbours",
    "k_occurrence",
    "log_ball_cube_ratio",
    "log_unit_ball_volume",
    "max_hub_value",
    "norm_truncate",
    "norm_truncation_mask",
    "robin_hood_index",
    "selection_rate",
    "skewness",
    "truncate",
]

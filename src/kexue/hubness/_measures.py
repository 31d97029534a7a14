"""Hubness measures from k-occurrence counts (spec 10 §6), in float64 on the CPU.

Definitions, for counts N_k(x_1..x_N) from n_q neighbour lists of length k (n_q = N for the usual
all-against-all case, so Σ N_k = N·k and the mean is k):

* **skewness** — the standardised third moment E[(N_k − μ)³]/σ³ with population moments (as
  ``scipy.stats.skew`` with ``bias=True``, the k-skewness of scikit-hubness); 0.0 when σ = 0 (all
  counts equal: no hubness) rather than NaN;
* **antihub_rate** — fraction of points with N_k = 0 (scikit-hubness ``antihub_occurrence``);
* **hub_rate** — fraction of points with N_k > h·k (``hub_factor`` h = 2 by default; spec 10 §6);
* **hub_occurrence** — fraction of all neighbour slots occupied by those hubs,
  Σ_{hubs} N_k / Σ N_k;
* **robin_hood** — Σ|N_k − μ| / (2 Σ N_k): the share of occurrences that must be moved for all
  points to be equally popular (= the spec's Σ|N_k − k|/(2ΣN_k), since μ = k);
* **gini** — G = Σ_i (2i − N − 1) N_(i) / (N Σ N_(i)) over ascending order statistics, O(N log N)
  (spec 10 §6); equal to scikit-hubness's Σ_ij|N_i − N_j| / (2N Σ N_k), computed there with O(N²)
  work;
* **max**, **top1_share** (share of Σ N_k held by the ⌈N/100⌉ most popular points) and
  **groupie_ratio** = max / Σ N_k (scikit-hubness's "largest hub").

Parity with scikit-hubness (0.30, ``skhubness.analysis.Hubness``; checked against its public docs
and source, not copied): skewness, Robin Hood, Gini, antihub occurrence and groupie ratio agree by
definition; the hub cut differs at equality — the spec (and scikit-hubness's docstring) say
N_k > h·k, scikit-hubness's code uses ≥; kexue follows the spec.

:func:`hub_mask` applies a sampler threshold in either convention (spec 10 §3, pitfall 2):
``"post"`` keeps N_k > t, ``"official"`` keeps N_k ≥ t.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "CONVENTIONS",
    "Convention",
    "HubnessMeasures",
    "gini_index",
    "hub_mask",
    "hubness_measures",
    "robin_hood_index",
    "selection_rate",
    "skewness",
]

Convention = Literal["post", "official"]
CONVENTIONS: tuple[str, ...] = ("post", "official")

CountsLike = torch.Tensor | npt.NDArray[Any]
Float64Array = npt.NDArray[np.float64]


def _as_counts(counts: object, name: str = "counts") -> Float64Array:
    """A non-empty 1-D array of non-negative integer counts, as float64."""
    if isinstance(counts, torch.Tensor):
        if counts.is_floating_point() or counts.is_complex() or counts.dtype == torch.bool:
            raise TypeError(
                f"{name} must be an integer tensor (k-occurrence counts), got {counts.dtype}"
            )
        array = counts.detach().cpu().numpy()
    elif isinstance(counts, np.ndarray):
        if not np.issubdtype(counts.dtype, np.integer):
            raise TypeError(
                f"{name} must be an integer array (k-occurrence counts), got {counts.dtype}"
            )
        array = counts
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy array of integer counts, got "
            f"{type(counts).__name__}"
        )
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one count per point), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: need at least one point")
    if bool((array < 0).any()):
        raise ValueError(f"{name} contains negative values: k-occurrence counts are >= 0")
    values: Float64Array = array.astype(np.float64)
    return values


def _check_positive_total(values: Float64Array, name: str = "counts") -> float:
    total = float(values.sum())
    if total <= 0:
        raise ValueError(
            f"{name} sum to 0: no neighbour list was counted, the measure is undefined"
        )
    return total


def skewness(counts: CountsLike) -> float:
    """Population skewness of the counts (spec 10 §6); 0.0 when all counts are equal."""
    values = _as_counts(counts)
    centred = values - values.mean()
    variance = float(np.mean(centred**2))
    if variance <= 0:
        return 0.0
    return float(np.mean(centred**3) / variance**1.5)


def robin_hood_index(counts: CountsLike) -> float:
    """Σ|N_k − μ| / (2 Σ N_k) (spec 10 §6); in [0, 1)."""
    values = _as_counts(counts)
    total = _check_positive_total(values)
    return float(np.abs(values - values.mean()).sum() / (2.0 * total))


def gini_index(counts: CountsLike) -> float:
    """Gini coefficient by sorting, O(N log N): Σ_i (2i − N − 1) N_(i) / (N Σ N_(i)).

    Spec 10 §6; equals Σ_ij |N_i − N_j| / (2N Σ N_k).
    """
    values = np.sort(_as_counts(counts))
    total = _check_positive_total(values)
    n = values.size
    weights = 2.0 * np.arange(1, n + 1, dtype=np.float64) - n - 1.0
    return float(np.dot(weights, values) / (n * total))


def _check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(
        threshold, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"threshold must be a real number, got {type(threshold).__name__}")
    value = float(threshold)
    if not math.isfinite(value):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return value


def _check_convention(convention: object) -> str:
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def hub_mask(
    counts: torch.Tensor, threshold: float, convention: Convention = "post"
) -> torch.Tensor:
    """Which points pass a hub threshold: N_k > t (``"post"``) or N_k ≥ t (``"official"``).

    Spec 10 §2-§3 and pitfall 2; the counts must come from the matching convention of
    :func:`k_occurrence` (``include_self=False`` for the post, ``True`` for the official code).
    """
    if not isinstance(counts, torch.Tensor):
        raise TypeError(f"counts must be a torch.Tensor, got {type(counts).__name__}")
    value = _check_threshold(threshold)
    if _check_convention(convention) == "post":
        return counts > value
    return counts >= value


def selection_rate(
    counts: torch.Tensor, threshold: float, convention: Convention = "post"
) -> float:
    """Fraction of points passing the threshold (the hub sampler's acceptance rate; spec 10 §6)."""
    mask = hub_mask(counts, threshold, convention)
    if mask.numel() == 0:
        raise ValueError("counts is empty: need at least one point")
    return float(mask.double().mean())


@dataclasses.dataclass(frozen=True)
class HubnessMeasures:
    """Summary of one k-occurrence distribution (spec 10 §6; definitions in the module docstring).

    ``n`` points, neighbour lists of length ``k``, ``hub_factor`` h; ``mean``/``std`` of N_k
    (population std); rates and shares are fractions in [0, 1].
    """

    n: int
    k: int
    hub_factor: float
    mean: float
    std: float
    skewness: float
    antihub_rate: float
    hub_rate: float
    hub_occurrence: float
    robin_hood: float
    gini: float
    max: int
    top1_share: float
    groupie_ratio: float

    def as_dict(self) -> dict[str, float]:
        """The measures as a plain dict (JSON-ready)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def hubness_measures(counts: CountsLike, k: int, hub_factor: float = 2.0) -> HubnessMeasures:
    """All hubness measures of :class:`HubnessMeasures` from k-occurrence counts (spec 10 §6)."""
    values = _as_counts(counts)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if isinstance(hub_factor, bool) or not isinstance(hub_factor, (int, float)):
        raise TypeError(f"hub_factor must be a real number, got {type(hub_factor).__name__}")
    if not math.isfinite(hub_factor) or hub_factor <= 0:
        raise ValueError(f"hub_factor must be finite and > 0, got {hub_factor!r}")
    total = _check_positive_total(values)
    n = values.size
    hubs = values > hub_factor * k
    top = max(1, math.ceil(n / 100))
    top_values = np.partition(values, n - top)[n - top :]
    return HubnessMeasures(
        n=int(n),
        k=int(k),
        hub_factor=float(hub_factor),
        mean=float(values.mean()),
        std=float(values.std()),
        skewness=skewness(values.astype(np.int64)),
        antihub_rate=float(np.mean(values == 0)),
        hub_rate=float(np.mean(hubs)),
        hub_occurrence=float(values[hubs].sum() / total),
        robin_hood=float(np.abs(values - values.mean()).sum() / (2.0 * total)),
        gini=gini_index(values.astype(np.int64)),
        max=int(values.max()),
        top1_share=float(top_values.sum() / total),
        groupie_ratio=float(values.max() / total),
    )

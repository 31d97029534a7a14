"""``Hubness(k=...).fit(X).score()`` — the scikit-learn style estimator (spec 12 §7.2, spec 10 §6).

A thin wrapper over :func:`k_occurrence` and :func:`hubness_measures`: ``fit`` stores the reference
points, ``score()`` measures hubness of the reference set against itself (self excluded, or
included with ``include_self=True``), ``score(X_query)`` measures it for the neighbour lists of
other query points searched in the reference set (scikit-hubness semantics). After ``score`` the
estimator holds ``k_occurrence_`` (LongTensor) and ``measures_`` (:class:`HubnessMeasures`).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from ._measures import HubnessMeasures, hubness_measures
from ._occurrence import (
    BACKENDS,
    METRICS,
    Backend,
    FaissOptions,
    Metric,
    PointsLike,
    _as_points,
    k_occurrence,
)

__all__ = ["HUBNESS_SCORES", "Hubness", "HubnessScore"]

HubnessScore = Literal[
    "skewness",
    "antihub_rate",
    "hub_rate",
    "hub_occurrence",
    "robin_hood",
    "gini",
    "max",
    "top1_share",
    "groupie_ratio",
    "all",
]
HUBNESS_SCORES: tuple[str, ...] = get_args(HubnessScore)
#: scikit-hubness names accepted as aliases of ``return_value``.
_ALIASES = {
    "k_skewness": "skewness",
    "robinhood": "robin_hood",
    "antihub_occurrence": "antihub_rate",
}


def _check_return_value(value: object) -> str:
    if isinstance(value, str) and value in _ALIASES:
        return _ALIASES[value]
    if not isinstance(value, str) or value not in HUBNESS_SCORES:
        raise ValueError(
            f"return_value must be one of {HUBNESS_SCORES} (or a scikit-hubness alias "
            f"{tuple(_ALIASES)}), got {value!r}"
        )
    return value


class Hubness:
    """Estimate hubness of a data set (spec 10 §6; API of scikit-hubness's ``Hubness``).

    ``k`` neighbours (default 10, as scikit-hubness), ``metric`` ``"sqeuclidean"`` (the Euclidean
    ranking) or ``"cosine"``, ``hub_factor`` h (hubs: N_k > h·k), ``return_value`` the measure
    :meth:`score` returns (``"all"`` → dict), ``include_self``/``block_size``/``backend``/
    ``faiss_options`` as in :func:`k_occurrence`.
    """

    def __init__(
        self,
        k: int = 10,
        *,
        metric: Metric = "sqeuclidean",
        hub_factor: float = 2.0,
        return_value: HubnessScore | str = "skewness",
        include_self: bool = False,
        block_size: int | None = None,
        backend: Backend = "exact",
        faiss_options: FaissOptions | None = None,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.k = k
        self.metric: Metric = metric
        self.hub_factor = hub_factor
        self.return_value = _check_return_value(return_value)
        self.include_self = include_self
        self.block_size = block_size
        self.backend: Backend = backend
        self.faiss_options = faiss_options
        self.reference_: torch.Tensor | None = None
        self.k_occurrence_: torch.Tensor | None = None
        self.measures_: HubnessMeasures | None = None

    def fit(self, X: PointsLike) -> Hubness:
        """Store the reference points (validated: 2-D, non-empty, finite). Returns self."""
        self.reference_ = _as_points(X, "X")
        self.k_occurrence_ = None
        self.measures_ = None
        return self

    def score(
        self, X: PointsLike | None = None, return_value: HubnessScore | str | None = None
    ) -> float | dict[str, float]:
        """The hubness measure ``return_value`` (default: the constructor's) as a float, or a
        dict of all measures for ``"all"``; ``X`` optional query points (see module docstring)."""
        if self.reference_ is None:
            raise RuntimeError("Hubness is not fitted: call fit(X) before score()")
        which = self.return_value if return_value is None else _check_return_value(return_value)
        counts = k_occurrence(
            self.reference_,
            self.k,
            metric=self.metric,
            include_self=self.include_self if X is None else False,
            block_size=self.block_size,
            backend=self.backend,
            queries=X,
            faiss_options=self.faiss_options,
        )
        measures = hubness_measures(counts, self.k, self.hub_factor)
        self.k_occurrence_ = counts
        self.measures_ = measures
        values = measures.as_dict()
        if which == "all":
            return values
        return float(values[which])

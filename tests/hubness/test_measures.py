"""Hubness measures (spec 10 §6): parity with scipy/O(N²) definitions, O(N log N) Gini, conventions
of the threshold, the Hubness estimator and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from kexue.hubness import (
    HUBNESS_SCORES,
    Hubness,
    HubnessMeasures,
    gini_index,
    hub_mask,
    hubness_measures,
    k_occurrence,
    robin_hood_index,
    selection_rate,
    skewness,
)

counts_strategy = st.lists(st.integers(0, 60), min_size=1, max_size=200).filter(
    lambda c: sum(c) > 0
)


def quadratic_gini(values: np.ndarray) -> float:
    """scikit-hubness's O(N²) definition Σ_ij |N_i − N_j| / (2 N Σ N)."""
    values = values.astype(np.float64)
    return float(np.abs(values[:, None] - values[None, :]).sum() / (2 * values.size * values.sum()))


@settings(max_examples=80, deadline=None)
@given(counts=counts_strategy)
def test_gini_sorted_formula_equals_quadratic(counts: list[int]) -> None:
    values = np.array(counts)
    assert math.isclose(gini_index(values), quadratic_gini(values), rel_tol=1e-12, abs_tol=1e-12)
    assert 0.0 <= gini_index(values) < 1.0


@settings(max_examples=80, deadline=None)
@given(counts=counts_strategy)
def test_skewness_equals_scipy_population_skewness(counts: list[int]) -> None:
    values = np.array(counts)
    expected = 0.0 if np.all(values == values[0]) else float(stats.skew(values.astype(float)))
    assert math.isclose(skewness(torch.tensor(values)), expected, rel_tol=1e-9, abs_tol=1e-9)


def test_equal_counts_have_no_hubness() -> None:
    counts = torch.full((50,), 5)
    measures = hubness_measures(counts, 5)
    assert measures.skewness == 0.0
    assert measures.gini == 0.0
    assert measures.robin_hood == 0.0
    assert measures.antihub_rate == 0.0
    assert measures.hub_rate == 0.0
    assert measures.max == 5
    assert math.isclose(measures.top1_share, 5 / 250)


def test_hand_computed_measures() -> None:
    # N = 5, k = 2: total 10, mean 2.
    counts = torch.tensor([0, 0, 1, 4, 5])
    measures = hubness_measures(counts, 2, hub_factor=2.0)  # hubs: N_k > 4 → only the 5
    assert isinstance(measures, HubnessMeasures)
    assert measures.n == 5
    assert measures.k == 2
    assert measures.mean == 2.0
    assert measures.antihub_rate == pytest.approx(0.4)
    assert measures.hub_rate == pytest.approx(0.2)
    assert measures.hub_occurrence == pytest.approx(0.5)
    assert measures.robin_hood == pytest.approx((2 + 2 + 1 + 2 + 3) / 20)
    assert measures.robin_hood == pytest.approx(robin_hood_index(counts))
    assert measures.gini == pytest.approx(quadratic_gini(counts.numpy()))
    assert measures.max == 5
    assert measures.top1_share == pytest.approx(0.5)
    assert measures.groupie_ratio == pytest.approx(0.5)
    assert set(measures.as_dict()) >= {"skewness", "gini", "robin_hood", "hub_occurrence"}


def test_robin_hood_maximal_inequality() -> None:
    counts = np.zeros(100, dtype=np.int64)
    counts[0] = 500  # one point holds everything
    assert robin_hood_index(counts) == pytest.approx(0.99)
    assert gini_index(counts) == pytest.approx(0.99)


def test_hub_mask_conventions() -> None:
    counts = torch.tensor([49, 50, 51])
    assert hub_mask(counts, 50, "post").tolist() == [False, False, True]
    assert hub_mask(counts, 50, "official").tolist() == [False, True, True]
    assert selection_rate(counts, 50, "official") == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("counts", "error", "message"),
    [
        (torch.tensor([], dtype=torch.long), ValueError, "empty"),
        (torch.tensor([1.0, 2.0]), TypeError, "integer"),
        (torch.tensor([[1, 2]]), ValueError, "1-D"),
        (torch.tensor([1, -1]), ValueError, "negative"),
        (torch.tensor([0, 0]), ValueError, "sum to 0"),
        ([1, 2], TypeError, "Tensor"),
    ],
)
def test_bad_counts(counts: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        hubness_measures(counts, 2)  # type: ignore[arg-type]


def test_bad_measure_options() -> None:
    counts = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="k"):
        hubness_measures(counts, 0)
    with pytest.raises(ValueError, match="hub_factor"):
        hubness_measures(counts, 2, hub_factor=0.0)
    with pytest.raises(ValueError, match="convention"):
        hub_mask(counts, 2, "sklearn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        hub_mask(counts, float("nan"))


# ---------------------------------------------------------------------------------------------
# Estimator


def test_estimator_fit_score() -> None:
    points = torch.randn(800, 64, generator=torch.Generator().manual_seed(0))
    estimator = Hubness(k=5)
    assert estimator.fit(points) is estimator
    value = estimator.score()
    counts = k_occurrence(points, 5)
    assert isinstance(value, float)
    assert value == pytest.approx(skewness(counts))
    assert estimator.k_occurrence_ is not None
    assert torch.equal(estimator.k_occurrence_, counts)
    assert estimator.measures_ == hubness_measures(counts, 5)
    everything = estimator.score(return_value="all")
    assert isinstance(everything, dict)
    assert everything["gini"] == pytest.approx(gini_index(counts))
    assert estimator.score(return_value="robinhood") == pytest.approx(robin_hood_index(counts))
    assert set(HUBNESS_SCORES) - {"all"} <= set(everything)


def test_estimator_queries_and_conventions() -> None:
    generator = torch.Generator().manual_seed(1)
    reference, queries = (
        torch.randn(300, 8, generator=generator),
        torch.randn(90, 8, generator=generator),
    )
    estimator = Hubness(k=3, return_value="all").fit(reference)
    result = estimator.score(queries)
    assert isinstance(result, dict)
    assert estimator.k_occurrence_ is not None
    assert int(estimator.k_occurrence_.sum()) == 270
    official = Hubness(k=3, include_self=True).fit(reference)
    official.score()
    assert official.k_occurrence_ is not None
    assert torch.equal(official.k_occurrence_, k_occurrence(reference, 3, include_self=True))


def test_estimator_errors() -> None:
    with pytest.raises(RuntimeError, match="fit"):
        Hubness().score()
    with pytest.raises(ValueError, match="return_value"):
        Hubness(return_value="atkinson")
    with pytest.raises(ValueError, match="metric"):
        Hubness(metric="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        Hubness().fit(torch.tensor([[0.0, float("nan")]] * 3))
    with pytest.raises(ValueError, match="k = 10"):
        Hubness(k=10).fit(torch.randn(10, 3)).score()

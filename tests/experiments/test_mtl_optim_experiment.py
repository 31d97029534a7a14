"""Part 4 of the ``mtl`` experiment (issue 20 item 4): ascent rates under SGD and Adam, and the
NoAscentStep remedy, at a tiny size; the interval helper."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t

import kexue.experiments.mtl_optim as mo
from kexue.report import ExperimentContext, Verdict

TINY = mo.Sizes(
    seeds=2,
    steps=6,
    train=100,
    runs=tuple((m, o) for m in mo.PROMISED for o in mo.OPTIMISERS),
)


def test_optimiser_section_records_rates_and_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mo, "QUICK", TINY)
    ctx = ExperimentContext("mtl", tmp_path, quick=True)
    mo.optimiser_section(ctx)
    claims = {claim.claim_id: claim for claim in ctx.claims}
    assert set(claims) == {"opt-SGD", "opt-Adam", "opt-fix"}
    # Exact statements: SGD applies −ηu, and the guard projects the applied step.
    # With SGD the projection's step is −ηu (exact); MGDA's can ascend where its Gram-form solver
    # reports Pareto stationarity and mtl_backward still applies u (measured, README).
    (mgda_sgd, projection_sgd) = claims["opt-SGD"].checks
    assert projection_sgd.passed is True, projection_sgd
    assert mgda_sgd.passed is not None
    assert claims["opt-fix"].verdict is Verdict.REPRODUCED, claims["opt-fix"]
    (table,) = ctx.tables
    assert len(table.rows) == len(TINY.runs)
    summary = ctx.metadata["optimisers"]
    for method in mo.PROMISED:
        for optimiser in mo.OPTIMISERS:
            if optimiser == "Adam":
                continue
            row = summary[f"{method} / {optimiser}"]
            if optimiser.endswith("(trunk and heads)"):
                assert row["first_order_all_rate"][0] == 0.0
                assert row["max_relative_inner_all"] <= 1e-12
            else:
                assert row["first_order_rate"][0] == 0.0
                assert row["max_relative_inner"] <= 1e-12
    # Cached per run: a second pass recomputes nothing and gives the same table.
    again = ExperimentContext("mtl", tmp_path, quick=True)

    def no_training(*args: object) -> None:
        raise AssertionError("a cached run was recomputed")

    monkeypatch.setattr(mo, "train_measured", no_training)
    mo.optimiser_section(again)
    assert again.tables[0].rows == table.rows


def test_train_measured_counts_adams_first_order_ascents_for_the_projection() -> None:
    from kexue.experiments.mtl import _digits_problem

    problem = _digits_problem(25)
    problem.train = mo._double(problem.train, 200)
    problem.test = mo._double(problem.test, 50)
    method = "primary/auxiliary (digit main)"
    plain = mo.train_measured(problem, method, "Adam", 0)
    guarded = mo.train_measured(problem, method, "Adam + NoAscentStep", 0)
    assert plain["first_order_any"] > 0  # Adam's step leaves the cone (issue 20)
    assert guarded["first_order_any"] == 0
    assert guarded["guard_active_fraction"] > 0
    assert plain["max_relative_inner"] > 1e-6 >= 1e-12 >= guarded["max_relative_inner"]
    assert np.mean(np.log(np.divide(guarded["final_loss"], guarded["initial_loss"]))) < 0
    with pytest.raises(ValueError, match="optimiser"):
        mo.train_measured(problem, method, "Lion", 0)


def test_t_interval_matches_the_student_formula() -> None:
    values = [0.1, 0.3, 0.2, 0.25, 0.15]
    mean, lower, upper = mo.t_interval(values)
    half = student_t.ppf(0.975, 4) * np.std(values, ddof=1) / math.sqrt(5)
    assert mean == pytest.approx(0.2)
    assert (lower, upper) == pytest.approx((0.2 - half, 0.2 + half))
    assert mo.t_interval([0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0)
    assert mo.t_interval([0.5]) == (0.5, -math.inf, math.inf)
    with pytest.raises(ValueError, match="at least one"):
        mo.t_interval([])
    with pytest.raises(ValueError, match="NaN"):
        mo.t_interval([0.1, float("nan")])

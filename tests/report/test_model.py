from __future__ import annotations

import math

import pytest

from kexue.report import (
    Check,
    Claim,
    ExperimentResult,
    Figure,
    Table,
    Verdict,
    check_at_least,
    check_at_most,
    check_close,
    check_equal,
)


def test_verdict_all_some_none_pass() -> None:
    good = check_at_least("a", 1.0, 0.5)
    bad = check_at_most("b", 1.0, 0.5)
    assert Verdict.from_checks([good, good]) is Verdict.REPRODUCED
    assert Verdict.from_checks([good, bad]) is Verdict.PARTIALLY
    assert Verdict.from_checks([bad]) is Verdict.NOT_REPRODUCED
    assert Verdict.from_checks([]) is Verdict.INCONCLUSIVE


def test_nan_measurement_is_inconclusive_not_a_pass() -> None:
    check = check_at_least("accuracy", math.nan, 0.9)
    assert check.passed is None
    assert Verdict.from_checks([check, check_at_least("x", 1.0, 0.0)]) is Verdict.INCONCLUSIVE


def test_check_close_tolerances() -> None:
    assert check_close("x", 1.05, 1.0, abs_tol=0.1).passed is True
    assert check_close("x", 1.2, 1.0, abs_tol=0.1).passed is False
    assert check_close("x", 105.0, 100.0, rel_tol=0.1).passed is True
    with pytest.raises(ValueError, match="positive"):
        check_close("x", 1.0, 1.0)


def test_check_equal_on_lists() -> None:
    assert check_equal("counts", [1, 2], [1, 2]).passed is True
    assert check_equal("counts", [1, 2], [2, 1]).passed is False


def test_result_round_trips_through_json_dict() -> None:
    claim = Claim("C1.1", "statement", (check_at_least("a", 2.0, 1.0),), source="post")
    result = ExperimentResult(
        name="x",
        title="X",
        status="ok",
        summary="s",
        claims=[claim],
        tables=[Table("t", ("a", "b"), ((1, math.inf),))],
        figures=[Figure("f", "f.png", "c")],
        metadata={"k": 1},
        run_config={"mode": "quick"},
    )
    data = result.to_dict()
    assert data["claims"][0]["verdict"] == "reproduced"
    assert data["tables"][0]["rows"][0][1] == "inf"  # JSON has no inf
    again = ExperimentResult.from_dict(data)
    assert again.claims[0].verdict is Verdict.REPRODUCED
    assert again.figures == result.figures
    assert again.verdict_counts()["reproduced"] == 1


def test_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="cells"):
        Table("t", ("a", "b"), ((1,),))


def test_check_serialises_nan_as_string() -> None:
    assert Check("x", math.nan, "> 1", None).to_dict()["measured"] == "nan"

"""The ``perturb-max`` experiment (spec 09) end to end at a tiny size, and its helpers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import kexue.experiments.perturb_max as pm
from kexue.discrete import perturb_max_probs
from kexue.report import Verdict, run_experiments

TINY = dataclasses.replace(
    pm.QUICK,
    quadrature_ks=(10, 30, 100, 1000),
    study_ks=(10,),
    study_classes=(2, 5),
    many_classes=600,
    many_subset=8,
    mc_samples=20_000,
    digits_seeds=2,
    digits_epochs=15,
    digits_train=100,
    digits_normal_nodes=8,
    digits_logistic_nodes=8,
)
TINY_FULL = dataclasses.replace(
    TINY,
    digits_seeds=1,
    image_datasets=("mnist",),
    image_seeds=1,
    image_epochs=1,
    image_batch=64,
    image_nodes=8,
    image_train=256,
    image_test=128,
    timing_nodes=(8,),
)
EXACT = ("C9.6", "C9.3 / §4", "§4 (Gumbel)", "§5.1b", "issue 19 (1)", "C9.8", "C9.4",
         "E9.4 / C9.3 (MC)", "C9.5", "C9.7")  # fmt: skip
FY_CLAIMS = ("E9.2 (Fenchel–Young)", "E9.3 (Fenchel–Young)")
CLAIMS = {*EXACT, "E9.2", "E9.3", *FY_CLAIMS}


def test_perturb_max_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pm, "QUICK", TINY)
    (result,) = run_experiments(["perturb-max"], out=tmp_path, echo=False)
    assert result.status == "ok", result.error
    claims = {claim.claim_id: claim for claim in result.claims}
    assert set(claims) == CLAIMS
    for claim_id in EXACT:  # exact statements: they hold at any size
        assert claims[claim_id].verdict is Verdict.REPRODUCED, claims[claim_id]
    e92 = claims["E9.2"].checks
    assert len(e92) == 2
    assert all("paired test accuracy" in check.description for check in e92)
    # two seeds are below the gate of MIN_PAIRED_SEEDS: inconclusive, the interval still shown
    assert claims["E9.2"].verdict is Verdict.INCONCLUSIVE
    fy = claims["E9.2 (Fenchel–Young)"]
    assert [check.description for check in fy.checks] == [
        "digits: Fenchel–Young − softmax (paired test accuracy)",
        "digits: Fenchel–Young − softmax (paired ECE)",
        "digits: Fenchel–Young − Perturb-Max NLL (paired test accuracy)",
        "digits: Fenchel–Young − Perturb-Max NLL (paired ECE)",
    ]
    assert all(check.passed is None and "95% CI" in check.measured for check in fy.checks)
    assert fy.verdict is Verdict.INCONCLUSIVE
    assert "gate" in fy.checks[0].target
    for claim_id in ("E9.3", "E9.3 (Fenchel–Young)"):  # --full only
        assert claims[claim_id].verdict is Verdict.INCONCLUSIVE
    titles = [table.title for table in result.tables]
    for prefix in ("Quadrature rules for normal noise", "Quadrature accuracy by noise",
                   "The exact default against a per-class",
                   "Logistic noise is not softmax", "Entropy", "Digits, linear"):  # fmt: skip
        assert any(title.startswith(prefix) for title in titles), prefix
    digits = next(t for t in result.tables if t.title.startswith("Digits"))
    assert [row[1] for row in digits.rows] == list(pm.CLASSIFIER_METHODS)
    assert pm.PM_FY in pm.CLASSIFIER_METHODS
    for record in result.metadata["digits"][pm.PM_FY]:
        assert 0.1 < record["accuracy"] <= 1.0
        assert 0.0 <= record["ece"] <= 1.0
    accuracy = result.metadata["exact_accuracy"]
    assert [(r["n"], r["noise"]) for r in accuracy] == [(10, noise) for noise in pm.ACCURACY_NOISES]
    assert all(r["previous_worst"] > 1e-6 for r in accuracy if r["noise"] != "gumbel")
    assert (tmp_path / "perturb-max" / "quadrature_accuracy.png").stat().st_size > 1000
    # a second run resumes from the cache and gives the same numbers
    (again,) = run_experiments(["perturb-max"], out=tmp_path, echo=False)
    assert again.metadata["digits"] == result.metadata["digits"]


def test_perturb_max_full_path_at_tiny_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--full`` code paths: the MLP on MNIST (inconclusive with a reason when MNIST is absent,
    and with one seed the paired interval is undefined) and the normaliser timing table."""
    monkeypatch.setattr(pm, "FULL", TINY_FULL)
    (result,) = run_experiments(["perturb-max"], out=tmp_path, quick=False, echo=False)
    assert result.status == "ok", result.error
    claims = {claim.claim_id: claim for claim in result.claims}
    for claim_id in ("E9.3", "E9.3 (Fenchel–Young)"):
        assert claims[claim_id].verdict is Verdict.INCONCLUSIVE
    if "mnist" in result.metadata:  # one seed: the four FY checks are there, inconclusive
        assert len(claims["E9.3 (Fenchel–Young)"].checks) == 4
        assert len(result.metadata["mnist"][pm.PM_FY]) == 1
    titles = [table.title for table in result.tables]
    assert any(title.startswith("Time of one loss") for title in titles)
    timing = next(t for t in result.tables if t.title.startswith("Time of one loss"))
    assert [row[0] for row in timing.rows] == [pm.SOFTMAX, pm.PM_NORMAL, pm.PM_FY, pm.PM_LOGISTIC]


def test_adaptive_reference_matches_the_library() -> None:
    mu = (0.4, -1.0, 2.2, 0.0)
    for noise, method in (("normal", "gauss-hermite"), ("logistic", "gauss-legendre"),
                          ("gumbel", "exact")):  # fmt: skip
        expected = perturb_max_probs(torch.tensor(mu, dtype=torch.float64), noise, method, 64)
        np.testing.assert_allclose(pm.adaptive_reference(mu, noise), expected.numpy(), atol=1e-10)
    np.testing.assert_allclose(pm.adaptive_reference(pm.MU, "normal"), pm.NORMAL_REFERENCE,
                               atol=5e-7)  # fmt: skip


def test_expected_calibration_error() -> None:
    labels = torch.tensor([0, 1, 1, 0])
    # two samples at confidence 0.9 (one right), two at 0.6 (both right)
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert pm.expected_calibration_error(probs, labels) == pytest.approx(expected)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert pm.expected_calibration_error(perfect, torch.tensor([0, 1])) == 0.0


def test_paired_check_decides_by_the_interval() -> None:
    assert pm.MIN_PAIRED_SEEDS == 5
    assert pm._paired_check("x", [0.01, -0.02, 0.005, 0.0, -0.004]).passed is True
    assert pm._paired_check("x", [0.03, 0.031, 0.029, 0.03, 0.032]).passed is False
    assert pm._paired_check("x", [-0.03, -0.031, -0.029, -0.03, -0.028]).passed is False
    assert pm._paired_check("x", [0.01]).passed is None


def test_paired_check_gate_makes_few_seeds_inconclusive() -> None:
    few = pm._paired_check("x", [0.03, 0.031, 0.029])  # a clear difference, but 3 < 5 seeds
    assert few.passed is None
    assert "95% CI" in few.measured
    assert "3 seeds" in few.measured
    assert "gate" in few.target
    assert "too few" in few.target
    assert pm._paired_check("x", [0.03, 0.031, 0.029], min_seeds=3).passed is False
    assert pm._paired_check("x", []).passed is None


def test_fy_checks_compare_against_softmax_and_the_nll() -> None:
    def records(accuracy: list[float], ece: list[float]) -> list[dict[str, float]]:
        return [{"accuracy": a, "ece": e} for a, e in zip(accuracy, ece, strict=True)]

    base = [0.9, 0.91, 0.92, 0.9, 0.93]
    runs = {
        pm.SOFTMAX: records(base, [0.05] * 5),
        pm.PM_NORMAL: records(base, [0.02, 0.021, 0.019, 0.02, 0.022]),
        pm.PM_FY: records([b + d for b, d in zip(base, [0.01, -0.01, 0.0, 0.005, -0.004],
                                                  strict=True)],
                          [0.02, 0.021, 0.019, 0.02, 0.022]),
    }  # fmt: skip
    checks = pm._fy_checks(runs, "toy")
    assert [check.passed for check in checks] == [True, False, True, True]
    assert checks[1].measured.startswith("-0.0296")  # FY − softmax ECE: FY better calibrated


def test_the_accuracy_helpers_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="noise must be one of"):
        pm.log_space_reference(np.zeros(3), "cauchy", 0)
    with pytest.raises(ValueError, match="mu must be"):
        pm.log_space_reference(np.array([0.0, np.nan]), "normal", 0)
    with pytest.raises(ValueError, match="mu must be"):
        pm.log_space_reference(np.zeros(3), "normal", 3)
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be"):
            pm.make_accuracy_logits(n)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown noise 'cauchy'"):  # from the library call
        pm.exact_accuracy(10, "cauchy")

"""The ``lipschitz`` experiment end to end at a tiny size, and its budget gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from kexue.data import DatasetUnavailableError
from kexue.experiments import lipschitz, load_all
from kexue.report import Verdict, run_experiments

TINY = lipschitz.Sizes(toy_steps=3, toy_batch=16, toy_seeds=1, toy_eval_points=64, mnist_steps=2,
                       mnist_seeds=1, mnist_train_images=256, mnist_eval_samples=64)  # fmt: skip


def test_budget_gate_turns_an_unconverged_comparison_inconclusive() -> None:
    assert lipschitz._budget_gate("modes", 2.0, 6.0).passed is None
    assert lipschitz._budget_gate("modes", float("nan"), 6.0).passed is None
    assert lipschitz._budget_gate("modes", 7.0, 6.0).passed is True
    failing = lipschitz.check_at_least("W1 ratio", 0.5, 2.0)
    unconverged = lipschitz._gated(lipschitz._budget_gate("modes", 2.0, 6.0), [failing])
    assert Verdict.from_checks(unconverged) is Verdict.INCONCLUSIVE
    # A passed gate must not soften a failing claim into "partially reproduced".
    converged = lipschitz._gated(lipschitz._budget_gate("modes", 7.0, 6.0), [failing])
    assert converged == [failing]
    assert Verdict.from_checks(converged) is Verdict.NOT_REPRODUCED


@pytest.mark.needs_data
def test_lipschitz_runs_end_to_end_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_all()
    try:
        from kexue.data import load_mnist

        load_mnist("test")
    except DatasetUnavailableError as error:
        pytest.skip(str(error))
    monkeypatch.setattr(lipschitz, "QUICK", TINY)
    (result,) = run_experiments(["lipschitz"], out=tmp_path, echo=False)
    assert result.status == "ok", result.error
    claims = {claim.claim_id: claim for claim in result.claims}
    assert set(claims) == {"post: Su's variant", "post: GN vs GP", "E1.1: GN/GraN train", "C1.10",
                           "C1.3", "E1.2", "post: GN vs GP (MNIST)"}  # fmt: skip
    # Three generator steps train nothing: every comparison of trained models is gated.
    for claim_id in ("post: Su's variant", "post: GN vs GP", "E1.2", "post: GN vs GP (MNIST)"):
        assert claims[claim_id].verdict is Verdict.INCONCLUSIVE, claims[claim_id].to_dict()
    # The bound ‖∇f̂‖ <= 1 holds for normalised critics whatever their training.
    normalised = [c for c in claims["C1.10"].checks if c.description.startswith("max ‖∇f̂‖")]
    assert len(normalised) == 4
    assert all(c.passed for c in normalised)
    assert {figure.filename for figure in result.figures} >= {
        "toy_samples.png",
        "gradient_norms.png",
        "discontinuity.png",
        "mnist_samples.png",
    }
    for figure in result.figures:
        assert (tmp_path / "lipschitz" / figure.filename).stat().st_size > 1000
    generators = sorted((tmp_path / "lipschitz" / "generators").glob("mnist-*-seed0.pt"))
    assert [p.name for p in generators] == [
        f"mnist-{m}-seed0.pt" for m in sorted(lipschitz.MNIST_METHODS)
    ]
    titles = [table.title for table in result.tables]
    assert "2-D mixtures: exact W1, modes and cost" in titles
    assert len(next(t for t in result.tables if t.title.startswith("2-D")).rows) == 2 * len(
        lipschitz.TOY_METHODS
    )
    # A second run with --force reuses every cached unit and gives the same numbers.
    (again,) = run_experiments(["lipschitz"], out=tmp_path, echo=False, force=True)
    assert [c.to_dict() for c in again.claims] == [c.to_dict() for c in result.claims]

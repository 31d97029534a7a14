from __future__ import annotations

import json
from pathlib import Path

import pytest

from kexue.report import (
    ExperimentContext,
    ResultStore,
    check_at_least,
    get_experiment,
    register_experiment,
    run_experiments,
)

pytestmark = pytest.mark.usefixtures("clean_registry")

CALLS: dict[str, int] = {}


def _register_ok(name: str = "ok-exp") -> None:
    def run(ctx: ExperimentContext) -> None:
        CALLS[name] = CALLS.get(name, 0) + 1
        ctx.add_claim("C0.1", "one is at least zero", [check_at_least("one", 1.0, 0.0)])
        ctx.add_table("numbers", ["a", "b"], [[1, 2.5]])
        ctx.summary = "fine"

    register_experiment(name, title="OK experiment", order=1)(run)


def _register_failing(name: str = "bad-exp") -> None:
    def run(ctx: ExperimentContext) -> None:
        ctx.add_table("before the crash", ["a"], [[1]])
        raise RuntimeError("boom")

    register_experiment(name, title="Failing experiment", order=2)(run)


def test_results_are_stored_and_report_rendered(tmp_path: Path) -> None:
    _register_ok()
    results = run_experiments(["ok-exp"], out=tmp_path, echo=False)
    assert results[0].status == "ok"
    stored = json.loads((tmp_path / "ok-exp" / "result.json").read_text())
    assert stored["claims"][0]["verdict"] == "reproduced"
    html = (tmp_path / "index.html").read_text()
    assert "OK experiment" in html
    assert "reproduced" in html


def test_failure_is_reported_and_does_not_lose_others(tmp_path: Path) -> None:
    _register_ok()
    _register_failing()
    results = run_experiments(["bad-exp", "ok-exp"], out=tmp_path, echo=False)
    assert [r.status for r in results] == ["failed", "ok"]
    assert "RuntimeError: boom" in results[0].error
    assert results[0].tables[0].title == "before the crash"
    html = (tmp_path / "index.html").read_text()
    assert "This experiment failed" in html
    assert "OK experiment" in html


def test_finished_experiment_is_skipped_unless_forced(tmp_path: Path) -> None:
    _register_ok("skip-exp")
    CALLS.pop("skip-exp", None)
    run_experiments(["skip-exp"], out=tmp_path, echo=False)
    run_experiments(["skip-exp"], out=tmp_path, echo=False)
    assert CALLS["skip-exp"] == 1
    run_experiments(["skip-exp"], out=tmp_path, echo=False, quick=False)  # other mode: runs
    assert CALLS["skip-exp"] == 2
    run_experiments(["skip-exp"], out=tmp_path, echo=False, quick=False, force=True)
    assert CALLS["skip-exp"] == 3


def test_failed_experiment_is_retried(tmp_path: Path) -> None:
    _register_failing()
    run_experiments(["bad-exp"], out=tmp_path, echo=False)
    assert not ResultStore(tmp_path).is_done(
        "bad-exp", {"mode": "quick", "seeds": None, "device": "cpu"}
    )


def test_cached_units_survive_a_killed_run(tmp_path: Path) -> None:
    computed: list[int] = []
    kill = [True]

    def run(ctx: ExperimentContext) -> None:
        for seed in ctx.seeds(3):
            value = ctx.cached(f"seed{seed}", lambda seed=seed: computed.append(seed) or seed * 10)
            assert value == seed * 10
            if seed == 1 and kill[0]:
                kill[0] = False
                raise KeyboardInterrupt  # simulated kill after two finished units

    register_experiment("resume-exp", title="Resume")(run)
    with pytest.raises(KeyboardInterrupt):
        run_experiments(["resume-exp"], out=tmp_path, echo=False)
    assert computed == [0, 1]
    assert not (tmp_path / "resume-exp" / "result.json").exists()
    run_experiments(["resume-exp"], out=tmp_path, echo=False)
    assert computed == [0, 1, 2]  # units 0 and 1 were not recomputed


def test_seeds_option_controls_ctx_seeds(tmp_path: Path) -> None:
    seen: list[list[int]] = []
    register_experiment("seeds-exp", title="Seeds")(lambda ctx: seen.append(ctx.seeds(3)))
    run_experiments(["seeds-exp"], out=tmp_path, echo=False)
    run_experiments(["seeds-exp"], out=tmp_path, echo=False, num_seeds=5)
    assert seen == [[0, 1, 2], [0, 1, 2, 3, 4]]


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown experiment"):
        run_experiments(["no-such-experiment"], out=tmp_path, echo=False)
    _register_ok()
    with pytest.raises(ValueError, match="seeds"):
        run_experiments(["ok-exp"], out=tmp_path, echo=False, num_seeds=0)
    with pytest.raises(ValueError, match="CUDA"):
        run_experiments(["ok-exp"], out=tmp_path, echo=False, device="cuda")
    with pytest.raises(ValueError, match="must match"):
        register_experiment("Bad Name", title="x")


def test_registering_a_different_function_twice_fails() -> None:
    _register_ok("dup-exp")
    with pytest.raises(ValueError, match="already registered"):
        register_experiment("dup-exp", title="again")(lambda ctx: None)
    assert get_experiment("dup-exp").title == "OK experiment"

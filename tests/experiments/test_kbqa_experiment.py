"""The ``kbqa`` experiment (spec 05) end to end on the synthetic CI-tier KB at a tiny size."""

from __future__ import annotations

from pathlib import Path

import pytest

import kexue.experiments.kbqa as kbqa_experiment
from kexue.kbqa import synthetic_kb
from kexue.report import Verdict, run_experiments

TINY = kbqa_experiment.Sizes(source="offline", subjects=0, train=300, evaluation=24, steps=30,
                             lr=1e-3, dense_steps=10, ablation_split="test_public")  # fmt: skip


def _tiny_data(sizes: kbqa_experiment.Sizes) -> kbqa_experiment._Data:
    triples, splits = synthetic_kb(0, subjects=60)
    return kbqa_experiment._Data(
        triples,
        {
            "train": splits["train"][: sizes.train],
            "dev": splits["dev"][: sizes.evaluation],
            "test_public": splits["test"][: sizes.evaluation],
            "test_unseen": splits["test_unseen"][: sizes.evaluation],
            "test_unseen_templates": splits["test"][-sizes.evaluation :],
        },
    )


def test_kbqa_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kbqa_experiment, "QUICK", TINY)
    monkeypatch.setattr(kbqa_experiment, "_data", _tiny_data)
    (result,) = run_experiments(["kbqa"], out=tmp_path, echo=False)
    assert result.status == "ok", result.error
    claims = {claim.claim_id: claim for claim in result.claims}
    assert set(claims) == {"C5.3", "C5.5", "C5.6", "C5.7", "C5.8", "C5.9", "E5.6 (memory)",
                           "issue 7 targets"}  # fmt: skip
    # Statements that hold whatever the (tiny) training budget.
    assert claims["C5.5"].verdict is Verdict.REPRODUCED
    assert claims["C5.3"].verdict is Verdict.REPRODUCED
    assert claims["E5.6 (memory)"].verdict is Verdict.REPRODUCED
    validity = claims["issue 7 targets"].checks[0]
    assert validity.passed, validity  # constrained answers are always KB keys
    titles = [table.title for table in result.tables]
    assert titles[0].startswith("The offline KB")
    assert any(title.startswith("Decoding ablations") for title in titles)
    assert (tmp_path / "kbqa" / "decoding_ablations.png").stat().st_size > 1000
    # Trained models are checkpointed where a resumed run finds them.
    assert any((tmp_path / "kbqa" / "checkpoints").glob("seq2seq-*-SPM-*/model.pt"))

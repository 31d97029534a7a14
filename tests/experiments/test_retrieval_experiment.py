"""The ``retrieval`` experiment (spec 04) end to end at a tiny size."""

from __future__ import annotations

from pathlib import Path

import pytest

import kexue.experiments.retrieval as retrieval
from kexue.report import Verdict, run_experiments

# 40 random KBs x 25 decoded hypotheses = 1000 outputs, the spec's minimum for C4.1.
TINY = retrieval.Sizes(sequences=(5000,), timing_repeats=3, validity_kbs=40, exactness_kbs=5)


def test_retrieval_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval, "QUICK", TINY)
    (result,) = run_experiments(["retrieval"], out=tmp_path, echo=False)
    assert result.status == "ok", result.error
    claims = {claim.claim_id: claim for claim in result.claims}
    assert set(claims) == {"C4.1", "C4.6", "C4.7/C4.8", "C4.9", "C4.10", "C4.11"}
    # Exact statements (no timing, no budget): they must hold at any size.
    for claim_id in ("C4.1", "C4.6", "C4.7/C4.8", "C4.9"):
        assert claims[claim_id].verdict is Verdict.REPRODUCED, claims[claim_id]
    storage = result.tables[0]
    kexue_row, dict_row = storage.rows[0], storage.rows[1]
    assert kexue_row[3] < dict_row[3]  # bytes per sequence: flat arrays beat nested dicts
    assert (tmp_path / "retrieval" / "mask_time.png").stat().st_size > 1000


def test_reference_flaw_counts_exactly_the_prefix_keys() -> None:
    flaw = retrieval._reference_flaw(3)
    assert flaw["terminated"] == flaw["keys"]
    assert flaw["keys"] - flaw["reference"] == flaw["prefix_keys"] > 0

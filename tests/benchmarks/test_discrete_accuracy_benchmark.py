"""Smoke test of ``benchmarks/discrete_accuracy.py --quick`` (no timing assertions): every shipped
noise has an accuracy entry against the per-class scipy reference within issue 19's 1e-9, the
speed rows report ratios to ``torch.softmax`` from the same run, and a second run resumes from
the stored entries instead of recomputing them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .conftest import load_benchmark


def test_quick_run(tmp_path: Path) -> None:
    bench = load_benchmark("discrete_accuracy")
    threads = torch.get_num_threads()
    try:
        bench.main(["--quick", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "discrete_accuracy.json").read_text())
    assert result["settings"]["threads"] == 1
    table = result["accuracy"]
    assert {(row["n"], row["noise"]) for row in table} == {
        (n, noise) for n in bench.QUICK_CLASSES for noise in bench.NOISES
    }
    for row in table:
        assert row["exact_worst"] <= 1e-9, row
        assert row["support_mismatches"] == 0, row
    rows = result["rows"]
    assert sum(row["method"] == bench.SOFTMAX for row in rows) == len(bench.QUICK_SPEED_CLASSES)
    for row in rows:
        assert 0 < row["median_ms"] < math.inf
        assert row["baseline"] == bench.SOFTMAX
    partial = list(tmp_path.glob(".discrete_accuracy.*.partial.json"))
    assert len(partial) == 1
    stored = json.loads(partial[0].read_text())
    assert set(stored) == {f"{n}/{noise}" for n in bench.QUICK_CLASSES for noise in bench.NOISES}
    calls = []
    bench.accuracy = lambda n, noise: calls.append((n, noise))  # a resumed run computes nothing
    again = bench.main(["--quick", "--accuracy-only", "--out", str(tmp_path)])
    assert calls == []
    assert again["accuracy"] == table

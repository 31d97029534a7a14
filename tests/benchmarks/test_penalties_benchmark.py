"""Smoke test of ``benchmarks/penalties.py --quick`` (no timing assertions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .conftest import load_benchmark


def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    bench = load_benchmark("penalties")
    threads = torch.get_num_threads()
    try:
        bench.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "penalties.json").read_text())
    assert (tmp_path / "penalties.md").read_text().startswith("# Benchmark `penalties`")
    assert result["settings"]["rounds"] == 2
    methods = [row["method"] for row in result["rows"]]
    assert methods[: len(bench.TRAINING_METHODS)] == list(bench.TRAINING_METHODS)
    assert "naive per-sample loop" in methods
    assert result["agreement"]["passed"] is True
    assert max(result["agreement"]["max_relative_error"].values()) <= 1e-10
    for row in result["rows"]:
        assert 0 < row["median_ms"] < math.inf
        assert 0 < row["ratio"] < math.inf
        assert len(row["rounds_ms"]) == 2
        if row["method"] == row["baseline"]:
            assert row["ratio"] == 1.0
    assert result["anchor"].startswith("anchor not installable")

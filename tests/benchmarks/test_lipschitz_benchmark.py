"""Smoke test of ``benchmarks/lipschitz.py --quick`` (no timing assertions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .conftest import load_benchmark


def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    bench = load_benchmark("lipschitz")
    threads = torch.get_num_threads()
    try:  # one thread: two oversubscribed threads on a busy 2-core machine run ~20x slower
        bench.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "lipschitz.json").read_text())
    assert (tmp_path / "lipschitz.md").read_text().startswith("# Benchmark `lipschitz`")
    assert result["settings"]["rounds"] == 2
    assert result["memory_measure"]
    methods = {(row["group"], row["method"]) for row in result["rows"]}
    for workload in ("dcgan28", "resnet32"):
        for method in bench.CRITIC_METHODS:
            assert (f"{workload} critic step", method) in methods
        for method in ("plain", "gn-fast", "gn-double", "gn-official-hook"):
            assert (f"{workload} generator step", method) in methods
        errors = result["agreement"]["errors"][workload]
        assert set(errors) == {"gn-fast", "gn-double", "gn-official-hook"}
        assert max(errors.values()) <= result["agreement"]["tolerance"]
    for row in result["rows"]:
        assert 0 < row["median_ms"] < math.inf
        assert 0 < row["ratio"] < math.inf
        assert len(row["rounds_ms"]) == 2
        assert row["memory_bytes"] > 0
        if row["method"] == row["baseline"]:
            assert row["ratio"] == 1.0
    assert {check["workload"] for check in result["targets"]} == {"dcgan28", "resnet32"}
    assert all(0 < check["ratio"] < math.inf for check in result["targets"])
    assert {check["passed"] for check in result["targets"]} <= {True, False, None}
    assert result["anchor"]

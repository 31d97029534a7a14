"""Smoke test of ``benchmarks/hubness.py --quick`` on a reduced workload (no timing assertions):
every method runs in its subprocess, the results files have the documented structure, and the
approximate faiss indexes report recall and k-occurrence correlation against the exact result."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from .conftest import load_benchmark


def test_quick_run(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    pytest.importorskip("sklearn")
    bench = load_benchmark("hubness")
    threads = torch.get_num_threads()
    try:
        args = ["--quick", "--sizes", "700,1600", "--dim", "32", "--ann-n", "3000"]
        bench.main([*args, "--threads", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "hubness.json").read_text())
    markdown = (tmp_path / "hubness.md").read_text()
    assert markdown.startswith("# Benchmark `hubness`")
    assert "## Approximate faiss backend" in markdown
    assert "peak RSS increase" in result["memory_measure"]
    assert result["settings"]["threads"] == 1
    methods = [row["method"] for row in result["rows"]]
    assert methods == [*bench.METHODS, *bench.METHODS]
    for row in result["rows"]:
        assert 0 < row["median_ms"] < math.inf
        assert row["memory_bytes"] >= 0
    floors = [row for row in result["rows"] if row["method"] == bench.BASELINE]
    assert all(row["ratio"] == 1.0 for row in floors)
    assert [t["n"] for t in result["targets"]] == [700, 1600]
    exact = [e for e in result["exact"] if e["method"] == "kexue exact"]
    assert all(e["analytic_block_bytes"] == 2 * e["block_size"] * e["n"] * 4 for e in exact)
    ann = {entry["index"]: entry for entry in result["ann"]}
    assert set(ann) == {"exact (kexue)", "ivf", "hnsw"}
    assert ann["exact (kexue)"]["recall"] == 1.0
    for name in ("ivf", "hnsw"):
        assert 0.0 < ann[name]["recall"] <= 1.0
        assert -1.0 <= ann[name]["spearman_k_occurrence"] <= 1.0
    assert ann["hnsw"]["recall"] > 0.8  # a graph index at ef 32 on 3000 points in R^64

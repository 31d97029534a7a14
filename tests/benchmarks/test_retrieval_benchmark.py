"""Smoke test of ``benchmarks/retrieval.py --quick`` on a tiny workload (no timing assertions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from .conftest import load_benchmark


def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    bench = load_benchmark("retrieval")
    threads = torch.get_num_threads()
    try:
        bench.main(["--quick", "--sizes", "3000", "--threads", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "retrieval.json").read_text())
    assert (tmp_path / "retrieval.md").read_text().startswith("# Benchmark `retrieval`")
    groups = {row["group"] for row in result["rows"]}
    for depth in bench.DEPTHS:
        assert f"mask step, {bench.BEAMS} beams, V={bench.VOCAB}, depth {depth}" in groups
    for row in result["rows"]:
        assert 0 < row["median_ms"] < math.inf
        if row["method"] == row["baseline"]:
            assert row["ratio"] == 1.0
    storage = result["storage"]["3000"]
    assert (
        storage["kexue Trie"]["bytes_per_sequence"]
        < storage["nested dict (GENRE Trie)"]["bytes_per_sequence"]
    )
    # Both constrained generate paths return stored keys only.
    assert result["generate_valid_keys"] == {"kexue": "64/64", "hf": "64/64"}

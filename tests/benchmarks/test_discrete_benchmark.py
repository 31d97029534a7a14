"""Smoke test of ``benchmarks/discrete.py --quick`` (no timing assertions): every group and
method is present, the interpolated path agrees with the naive one within its bound, the naive
reference equals the library's direct path, and the memory probe runs in a subprocess."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from kexue.discrete import perturb_max_probs

from .conftest import load_benchmark


def test_quick_run(tmp_path: Path) -> None:
    bench = load_benchmark("discrete")
    threads = torch.get_num_threads()
    try:  # one thread: oversubscribed threads on a busy 2-core machine are much slower
        bench.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "discrete.json").read_text())
    assert (tmp_path / "discrete.md").read_text().startswith("# Benchmark `discrete`")
    assert result["settings"]["rounds"] == 2
    groups = {row["group"] for row in result["rows"]}
    assert len(groups) == 3 * len(bench.QUICK_CLASSES)
    methods = [row["method"] for row in result["rows"]]
    assert methods.count(bench.SOFTMAX) == len(bench.QUICK_CLASSES)
    assert methods.count(bench.PERTURB_MAX) == len(bench.QUICK_CLASSES)
    for sampler in bench.SAMPLERS:
        assert methods.count(sampler) == len(bench.QUICK_CLASSES)
    for row in result["rows"]:
        assert 0 < row["median_ms"] < math.inf
        assert len(row["rounds_ms"]) == 2
        if row["method"] == row["baseline"]:
            assert row["ratio"] == 1.0
    assert result["agreement"]["passed"] is True
    assert result["agreement"]["bound"] <= 1.2e-8


def test_naive_reference_equals_the_direct_path() -> None:
    bench = load_benchmark("discrete")
    logits = bench.make_logits(3, 40).double()
    naive = bench.naive_log_probs(logits)
    direct = perturb_max_probs(logits, "normal", "gauss-hermite", bench.NODES,
                               renormalize=False, log=True, algorithm="direct")  # fmt: skip
    torch.testing.assert_close(naive, direct, rtol=0, atol=1e-12)
    subset = bench.naive_log_probs(logits[:1], 5)
    torch.testing.assert_close(subset, direct[:1, :5], rtol=0, atol=1e-12)


def test_memory_probe_runs_in_a_subprocess() -> None:
    bench = load_benchmark("discrete")
    measured = bench.memory_probe("forward", 2, 50, bench.NAIVE)
    assert measured >= 0

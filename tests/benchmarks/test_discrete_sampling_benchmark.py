"""Smoke test of ``benchmarks/discrete_sampling.py --quick`` (no timing assertions): every group
and method is present, ratios new/old are reported from the same run, and the reach table shows
the new sampler past the old one and past what classes with p ≥ 1e-12 need."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .conftest import load_benchmark


def test_quick_run(tmp_path: Path) -> None:
    bench = load_benchmark("discrete_sampling")
    threads = torch.get_num_threads()
    try:
        bench.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "discrete_sampling.json").read_text())
    assert (
        (tmp_path / "discrete_sampling.md")
        .read_text()
        .startswith("# Benchmark `discrete_sampling`")
    )
    assert result["settings"]["rounds"] == 2
    assert result["settings"]["threads"] == 1
    methods = [row["method"] for row in result["rows"]]
    count = len(bench.QUICK_CLASSES)
    for name in ("gumbel", "normal"):
        for table in (bench.OLD_NOISE, bench.NEW_NOISE, bench.OLD_SAMPLE, bench.NEW_SAMPLE):
            assert methods.count(table[name]) == count
    assert methods.count(bench.CATEGORICAL) == count
    assert methods.count(bench.GUMBEL_SOFTMAX) == count
    for row in result["rows"]:
        assert 0 < row["median_ms"] < math.inf
        if row["method"] == row["baseline"]:
            assert row["ratio"] == 1.0
    assert len(result["ratios_new_over_old"]) == 2 * 2 * count
    reach = result["reach"]
    assert reach["gumbel"]["new"][1] > 34.5 > reach["gumbel"]["old"][1]
    assert reach["normal"]["new"][1] > 7.94 > reach["normal"]["old"][1]
    assert reach["logistic"]["new"][0] < -34.5 < reach["logistic"]["old"][0]


def test_old_sampler_reimplementation_is_the_clamped_one() -> None:
    bench = load_benchmark("discrete_sampling")
    torch.manual_seed(0)
    noise = bench.old_noise("gumbel", (100_000,))
    assert float(noise.max()) <= bench.old_reach("gumbel")[1] + 1e-6
    assert bool(torch.isfinite(noise).all())
    logits = bench.make_logits(3, 7)
    assert bench.old_perturb_max_sample(logits, "normal").shape == (3,)

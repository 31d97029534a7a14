"""Smoke test of ``benchmarks/primary_aux.py --quick`` on a reduced workload (no timing
assertions): the exact solvers match SciPy's NNLS, the post's rule is reported, and the training
step paths agree and satisfy the constraints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .conftest import load_benchmark


def test_quick_run(tmp_path: Path) -> None:
    bench = load_benchmark("primary_aux")
    threads = torch.get_num_threads()
    try:  # one thread: oversubscribed threads on a busy 2-core machine are much slower
        args = ["--quick", "--aux", "1,2,5", "--tasks", "2", "--threads", "1"]
        bench.main([*args, "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "primary_aux.json").read_text())
    markdown = (tmp_path / "primary_aux.md").read_text()
    assert markdown.startswith("# Benchmark `primary_aux`")
    assert "## Projection solvers" in markdown
    assert result["settings"]["rounds"] == 2

    methods = [row["method"] for row in result["rows"]]
    assert methods == [bench.BASELINE, *bench.GRADIENT_METHODS, *bench.HOOKS]
    for row in result["rows"]:
        assert 0 < row["median_ms"] < math.inf
        assert len(row["rounds_ms"]) == 2
    assert len(result["step_targets"]) == len(methods) - 1

    summary = result["solvers"]["summary"]
    assert {(s["n_aux"], s["solver"]) for s in summary if s["solver"] == "kexue closed1"} == {
        (1, "kexue closed1")
    }
    for s in summary:
        assert s["instances"] == len(bench.FAMILIES)
        if s["solver"] in ("kexue kkt", "kexue cyclic", "kexue kkt (Gram form)", "kexue closed1"):
            assert s["suboptimal"] == 0, s
            assert s["stalled"] == 0, s
            assert s["max_gap"] <= bench.GAP_TARGET, s
            assert s["max_kkt"] <= bench.KKT_TARGET, s
            assert s["max_lambda_diff_unique"] <= 1e-9, s
    assert result["solver_targets"]["post_instances"] == 3 * len(bench.FAMILIES)

    agreement = result["step_agreement"]["methods"]
    for name in (
        "PrimaryAuxiliary (params, vmap)",
        "PrimaryAuxiliary (params, loop)",
        "PrimaryAuxiliary (post's rule)",
    ):
        assert agreement[name]["active"] == 1  # the auxiliary task conflicts by construction
        assert agreement[name]["shared_grad_rel_diff"] <= 1e-5
        assert agreement[name]["min_cos_aux"] >= -1e-5

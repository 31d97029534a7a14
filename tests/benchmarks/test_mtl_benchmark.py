"""Smoke test of ``benchmarks/mtl.py --quick`` on a reduced workload (no timing assertions), with
the anchors (LibMTL, torchjd) importable when installed and with their imports blocked (their rows
are then skipped)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from .conftest import load_benchmark

HAVE_ANCHORS = all(importlib.util.find_spec(name) is not None for name in ("LibMTL", "torchjd"))
ANCHOR_MODULES = (
    "LibMTL",
    "LibMTL.architecture",
    "LibMTL.weighting",
    "torchjd",
    "torchjd.aggregation",
    "torchjd.autojac",
)


@pytest.mark.parametrize("anchors", [True, False], ids=["anchors", "no-anchors"])
def test_quick_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anchors: bool) -> None:
    if anchors and not HAVE_ANCHORS:
        pytest.skip("anchors not installed: pip install --no-deps libmtl==1.1.5 torchjd==0.18.0")
    if not anchors:
        for name in ANCHOR_MODULES:
            monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    bench = load_benchmark("mtl")
    threads = torch.get_num_threads()
    try:  # one thread: oversubscribed threads on a busy 2-core machine are much slower
        args = ["--quick", "--tasks", "2", "--solver-tasks", "2,4", "--threads", "1"]
        args += ["--scaling-tasks", "2"]
        bench.main([*args, "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "mtl.json").read_text())
    assert (tmp_path / "mtl.md").read_text().startswith("# Benchmark `mtl`")
    assert result["settings"]["rounds"] == 2

    step_rows = [row for row in result["rows"] if not row["group"].endswith(", T=2")]
    methods = [row["method"] for row in step_rows]
    expected = [bench.BASELINE, *bench.LOSS_WEIGHTINGS, *bench.KEXUE_GRADIENT_METHODS]
    if anchors:
        expected += [*bench.LIBMTL_METHODS, *bench.TORCHJD_METHODS]
    assert methods == expected

    # Part 3: time and peak memory (fresh subprocess per method) on both models.
    scaling = result["scaling"]["table"]
    scaled = [bench.BASELINE, *bench.SCALING_KEXUE]
    if anchors:
        scaled += [*bench.TORCHJD_METHODS, "LibMTL MGDA"]
    assert [t["method"] for t in scaling] == scaled * 2
    assert {t["model"] for t in scaling} == set(result["scaling"]["configs"])
    for cell in scaling:
        assert cell["n_tasks"] == 2
        assert cell["peak_bytes"] >= 0  # the resident-size growth, KiB resolution
        assert cell["time_ratio"] > 0
        if cell["method"] == bench.BASELINE and cell["peak_bytes"] > 0:
            assert cell["memory_ratio"] == 1.0
    for row in step_rows:
        assert 0 < row["median_ms"] < math.inf
        assert len(row["rounds_ms"]) == 2
        if row["method"] == row["baseline"]:
            assert row["ratio"] == 1.0
    assert len(result["step_targets"]) == len(expected) - 1
    assert "Time and peak memory against T" in (tmp_path / "mtl.md").read_text()

    # kexue's default solver reaches the exact optimum on every problem where α is unique.
    summary = result["solvers"]["summary"]
    auto = [s for s in summary if s["solver"] == "kexue auto"]
    assert {(s["dtype"], s["n_tasks"]) for s in auto} == {
        (dtype, n) for dtype in ("float64", "float32") for n in (2, 4)
    }
    for s in auto:
        assert s["failed"] == 0
        assert s["max_alpha_diff_unique"] <= (1e-9 if s["dtype"] == "float64" else 1e-6)
    assert result["solvers"]["reference_max_fw_gap"]["scaled"] <= 1e-12

    # The kexue MGDA paths write the same shared gradient.
    agreement = result["step_agreement"]["methods"]
    for name in ("kexue mgda (params, loop)", "kexue mgda (features)"):
        assert agreement[name]["shared_grad_rel_diff"] <= 1e-5
    solvers = {s["solver"] for s in summary}
    if not anchors:
        assert "LibMTL not importable" in result["anchors"]["libmtl"]
        assert "torchjd not importable" in result["anchors"]["torchjd"]
        assert solvers == {f"kexue {m}" for m in bench.KEXUE_METHODS}
        assert result["libmtl_quirks"] == {}
        assert result["rep_grad_agreement"] == {}
        return
    assert result["anchors"]["libmtl"].startswith("LibMTL 1.1.5")
    assert result["anchors"]["torchjd"].startswith("torchjd 0.18")
    assert {"LibMTL MGDA", "torchjd MGDA", "torchjd MGDA (tight)"} <= solvers
    assert "LibMTL MGDA" in agreement
    assert "torchjd MGDA" in agreement
    assert result["rep_grad_agreement"]["LibMTL MGDA (rep_grad)"][
        "own_solver_diff_batch_summed"
    ] == pytest.approx(0.0, abs=1e-6)

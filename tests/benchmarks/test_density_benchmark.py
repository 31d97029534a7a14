"""Smoke test of ``benchmarks/density.py --quick`` (no timing assertions), with pythae importable
(when installed) and with its import blocked (the rows comparing against it are then skipped)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from kexue.data import DatasetUnavailableError

from .conftest import load_benchmark

HAVE_PYTHAE = importlib.util.find_spec("pythae") is not None


@pytest.mark.needs_data
@pytest.mark.parametrize("pythae", [True, False], ids=["pythae", "no-pythae"])
def test_quick_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pythae: bool) -> None:
    if pythae and not HAVE_PYTHAE:
        pytest.skip("pythae is not installed: pip install --no-deps pythae==0.1.2 'pydantic>=2'")
    if not pythae:
        monkeypatch.setitem(sys.modules, "pythae", None)  # makes `import pythae...` fail
        monkeypatch.setitem(sys.modules, "pythae.models", None)
    bench = load_benchmark("density")
    threads = torch.get_num_threads()
    try:  # one thread: oversubscribed threads on a busy 2-core machine are much slower
        bench.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    except DatasetUnavailableError as error:
        pytest.skip(str(error))
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "density.json").read_text())
    assert (tmp_path / "density.md").read_text().startswith("# Benchmark `density`")
    assert result["settings"]["rounds"] == 2
    assert math.isfinite(result["training"]["final_loss"])
    methods = [row["method"] for row in result["rows"]]
    assert methods[0] == "kexue"
    for row in result["rows"]:
        assert 0 < row["median_ms"] < math.inf
        assert len(row["rounds_ms"]) == 2
    for counts in result["sample_counts"]:
        assert counts["kexue_decoder_rows"] == counts["num_samples"]
        assert counts["kexue_encoder_rows"] == 1
    if not pythae:
        assert methods == ["kexue"]
        assert "pythae not importable" in result["anchor"]
        assert "skipped" in result["equality"]
        assert "skipped" in result["dropped_samples"]
        return
    assert len(methods) == 3
    assert result["anchor"].startswith("pythae ")
    equality = result["equality"]
    assert equality["passed"]
    assert equality["max_abs_error"] <= equality["tolerance"]
    assert equality["kexue_nll_property"] == pytest.approx(-equality["kexue_mean_log_p"])
    assert math.isfinite(equality["own_rng_difference_in_se"])
    for counts in result["sample_counts"]:
        k, batch = counts["num_samples"], counts["pythae_batch_size"]
        assert counts["pythae_decoder_rows"] == (k // batch * batch if k > batch else batch)
    dropped = result["dropped_samples"]
    assert dropped["max_abs_pythae_minus_kexue_at_kept"] <= 1e-10
    assert dropped["max_abs_pythae_minus_kexue_at_K"] > 1e-6

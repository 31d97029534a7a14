"""Smoke test of ``benchmarks/density_dreg.py --quick`` (issue 21 item 3): both estimators train
and are evaluated, the paired interval is reported, and a rerun resumes from the partial file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from kexue.data import DatasetUnavailableError

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def test_quick_run_and_resume(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("density_dreg", ROOT / "density_dreg.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        result = module.main(["--quick", "--out", str(tmp_path)])
    except DatasetUnavailableError as error:
        pytest.skip(str(error))
    summary = result["summary"]["K5"]
    assert len(summary["nll_iwae"]) == len(summary["nll_dreg"]) == 2
    low, high = summary["difference_interval"]
    assert low <= summary["difference_mean"] <= high
    assert {row["method"] for row in result["rows"]} == {"iwae", "dreg"}
    again = module.main(["--quick", "--out", str(tmp_path)])  # every run read back
    assert again["summary"] == result["summary"]

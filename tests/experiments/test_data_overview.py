from __future__ import annotations

from pathlib import Path

import pytest

from kexue.data import DatasetUnavailableError
from kexue.experiments import load_all
from kexue.report import Verdict, run_experiments


@pytest.mark.needs_data
def test_data_overview_runs_end_to_end(tmp_path: Path) -> None:
    load_all()
    try:
        from kexue.data import load_fashion_mnist, load_mnist

        load_mnist("test")
        load_fashion_mnist("test")
    except DatasetUnavailableError as error:
        pytest.skip(str(error))
    (result,) = run_experiments(["data-overview"], out=tmp_path, echo=False)
    assert result.status == "ok", result.error
    assert {claim.claim_id for claim in result.claims} >= {
        "11§3.1",
        "11§3.2",
        "11§6-mnist",
        "11§6-fashion_mnist",
        "11§6-fd",
    }
    failed = [c.claim_id for c in result.claims if c.verdict is not Verdict.REPRODUCED]
    assert not failed, [c.to_dict() for c in result.claims if c.claim_id in failed]
    for figure in result.figures:
        assert (tmp_path / "data-overview" / figure.filename).stat().st_size > 1000
    assert len(result.figures) >= 5
    html = (tmp_path / "index.html").read_text()
    assert "Offline data and in-domain metrics" in html
    assert result.metadata["licences"]["mnist"].startswith("MNIST")

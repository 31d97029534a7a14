"""The ``density`` experiment end to end at a tiny size."""

from __future__ import annotations

from pathlib import Path

import pytest

from kexue.data import DatasetUnavailableError
from kexue.experiments import density, load_all
from kexue.report import Verdict, run_experiments

TINY = density.Sizes(oracle_repetitions=30, mnist_epochs=1, mnist_train_images=500,
                     mnist_seeds=1, test_points=20,
                     eval_samples=100, variance_epochs=5)  # fmt: skip


@pytest.mark.needs_data
def test_density_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_all()
    try:
        from kexue.data import load_mnist

        load_mnist("test")
    except DatasetUnavailableError as error:
        pytest.skip(str(error))
    monkeypatch.setattr(density, "QUICK", TINY)
    (result,) = run_experiments(["density"], out=tmp_path, echo=False)
    assert result.status == "ok", result.error
    claims = {claim.claim_id: claim for claim in result.claims}
    assert set(claims) == {"C2.3", "C2.4", "C2.5", "C2.7", "C2.2"}
    # Exact-posterior and oracle claims do not depend on any training budget.
    assert claims["C2.3"].verdict is Verdict.REPRODUCED
    assert claims["C2.4"].verdict is Verdict.REPRODUCED
    titles = [table.title for table in result.tables]
    assert any(title.startswith("MNIST test NLL") for title in titles)
    mnist = next(t for t in result.tables if t.title.startswith("MNIST test NLL"))
    assert [row[0] for row in mnist.rows] == ["VAE", "IWAE M=5", "IWAE M=50"]
    assert (tmp_path / "density" / "bound_ladder.png").stat().st_size > 1000
    assert result.metadata["binarization"].startswith("train: dynamic")

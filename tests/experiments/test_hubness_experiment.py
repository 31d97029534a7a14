"""The ``hubness`` experiment (spec 10) end to end at a tiny size: claims, tables and figures,
the MNIST part with a tiny VAE (always) and a reused DCGAN file, the E10.3 confidence gate,
resumption, and its helpers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from kexue.data import DatasetUnavailableError
from kexue.experiments import hubness, load_all
from kexue.gan import DCGANGenerator28
from kexue.report import Verdict, run_experiments
from kexue.utils import save_checkpoint

TINY = hubness.Sizes(points=1500, dims=(2, 16, 128), seeds=1, ks=(5,), uniform=False,
                     official_dims=(128,), toy_steps=20, toy_seeds=1, samples=120,
                     pool_size=1000, thresholds=(10, 20), psis=(0.5, 0.7),
                     mnist_train_steps=0, vae_images=300, vae_epochs=1, vae_hidden=(32,),
                     vae_seeds=1)  # fmt: skip
TINY_FULL = hubness.Sizes(points=800, dims=(2, 64, 512), seeds=2, ks=(5, 10), uniform=True,
                          official_dims=(2, 64, 512), toy_steps=10, toy_seeds=1, samples=80,
                          pool_size=600, thresholds=(10,), psis=(0.5,),
                          mnist_train_steps=0, vae_images=200, vae_epochs=1, vae_hidden=(16,),
                          vae_seeds=1)  # fmt: skip
CLAIMS = {"C10.1", "C10.5", "C10.6", "C10.7", "C10.8", "C10.10 (toy)", "E10.3 (MNIST)"}


def _mnist_available() -> bool:
    try:
        from kexue.data import load_mnist

        load_mnist("test")
    except DatasetUnavailableError:
        return False
    return True


def test_hubness_runs_end_to_end_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_all()
    monkeypatch.setattr(hubness, "QUICK", TINY)
    (result,) = run_experiments(["hubness"], out=tmp_path, echo=False)
    assert result.status == "ok", result.error
    claims = {claim.claim_id: claim for claim in result.claims}
    assert set(claims) == CLAIMS
    # Exact statements hold at any size.
    assert claims["C10.1"].verdict is Verdict.REPRODUCED
    # 20 generator steps train nothing: the toy comparison is gated; a VAE trained one epoch on
    # 300 images draws no recognisable digits: E10.3 is gated too (or MNIST is absent).
    assert claims["C10.10 (toy)"].verdict is Verdict.INCONCLUSIVE
    assert claims["E10.3 (MNIST)"].verdict is Verdict.INCONCLUSIVE
    if _mnist_available():
        mnist = next(t for t in result.tables if t.title.startswith("MNIST (VAE"))
        assert "mnist-vae-z64-h32-n300-e1-seed0.pt" in mnist.caption
        assert [row[0] for row in mnist.rows] == labels_of(result, "Toy GAN")
        gate = claims["E10.3 (MNIST)"].checks[0]
        assert gate.description.startswith("budget sufficient: VAE")
        assert "VAE not converged" in claims["E10.3 (MNIST)"].note
        assert (
            tmp_path / "hubness" / "generators" / "mnist-vae-z64-h32-n300-e1-seed0.pt"
        ).is_file()
        for figure in ("mnist_frontier.png", "mnist_vae_samples.png"):
            assert (tmp_path / "hubness" / figure).stat().st_size > 1000
    # The table follows the spec's layout, one row per dimension.
    table = next(t for t in result.tables if t.title.startswith("Hubness vs dimension: N(0"))
    assert [row[0] for row in table.rows] == list(TINY.dims)
    toy = next(t for t in result.tables if t.title.startswith("Toy GAN"))
    labels = [row[0] for row in toy.rows]
    assert labels[0] == "random"
    assert {"hub t=10", "hub t=20", "norm-trunc @ t=20 rate", "trunc ψ=0.5"} <= set(labels)
    for figure in ("hubness_vs_dimension.png", "toy_frontier.png", "toy_samples.png"):
        assert (tmp_path / "hubness" / figure).stat().st_size > 1000
    # A second run with --force recomputes and gives the same numbers (everything is seeded);
    # a run without --force reuses the cached units.
    (again,) = run_experiments(["hubness"], out=tmp_path, echo=False, force=True)
    assert [c.to_dict() for c in again.claims] == [c.to_dict() for c in result.claims]


@pytest.mark.needs_data
def test_hubness_reuses_an_mnist_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_all()
    try:
        from kexue.data import load_mnist

        load_mnist("test")
    except DatasetUnavailableError as error:
        pytest.skip(str(error))
    torch.manual_seed(0)
    generator = DCGANGenerator28(latent_dim=64)
    path = tmp_path / "lipschitz" / "generators" / "mnist-gp-seed0.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, {"state_dict": generator.state_dict(), "config": {"latent_dim": 64}})
    monkeypatch.setattr(hubness, "QUICK", TINY)
    (result,) = run_experiments(["hubness"], out=tmp_path, echo=False)
    assert result.status == "ok", result.error
    mnist = next(t for t in result.tables if t.title.startswith("MNIST (DCGAN"))
    assert "mnist-gp-seed0.pt" in mnist.caption
    assert "reused from the lipschitz experiment" in mnist.caption
    assert [row[0] for row in mnist.rows] == labels_of(result, "Toy GAN")
    # Neither an untrained DCGAN nor a 1-epoch VAE draws digits: both skipped, inconclusive.
    claim = next(c for c in result.claims if c.claim_id == "E10.3 (MNIST)")
    assert claim.verdict is Verdict.INCONCLUSIVE
    assert "DCGAN not converged" in claim.note
    assert {check.description for check in claim.checks} == {
        "budget sufficient: VAE: random-latent classifier confidence",
        "budget sufficient: DCGAN: random-latent classifier confidence",
    }
    assert (tmp_path / "hubness" / "mnist_frontier.png").stat().st_size > 1000


def labels_of(result: Any, prefix: str) -> list[str]:
    """The first column of ``result``'s table whose title starts with ``prefix``."""
    return [row[0] for row in next(t for t in result.tables if t.title.startswith(prefix)).rows]


def _fake_generator(
    family: str, confidence: float, hub: tuple[float, float, float], norm: tuple[float, float]
) -> hubness.MnistGenerator:
    """One run with random latents at (precision 0.6, recall 0.5, ``confidence``) and hub /
    norm-truncation points given as (precision, recall[, confidence])."""
    samplers = {
        "random": {"precision": 0.6, "recall": 0.5, "confidence": confidence},
        "hub t=50": {"precision": hub[0], "recall": hub[1], "confidence": hub[2]},
        "norm-trunc @ t=50 rate": {"precision": norm[0], "recall": norm[1], "confidence": 0.9},
    }
    return hubness.MnistGenerator(family, [{"samplers": samplers, "generator": family}], "test")


def test_mnist_gate_skips_unconverged_generators() -> None:
    converged = _fake_generator("VAE", 0.85, (0.8, 0.3, 0.9), (0.78, 0.32))
    garbage = _fake_generator("DCGAN", 0.2, (0.1, 0.9, 0.1), (0.9, 0.1))
    checks, skipped = hubness._mnist_claim_checks([converged, garbage], 0.9, (10, 50))
    # Only the converged generator's checks (and the Z overlap) count; the DCGAN is skipped.
    assert all(check.description.startswith(("VAE", "Z overlap")) for check in checks)
    assert all(check.passed for check in checks)
    assert len(checks) == 1 + 5
    assert skipped == ["DCGAN not converged (random-latent confidence 0.200 < 0.8), skipped"]
    # A generator that passes the gate but where hub and norm truncation differ by more than 0.05
    # fails the hub ≈ norm check; recall above random fails "lower than random".
    different = _fake_generator("VAE", 0.9, (0.8, 0.6, 0.95), (0.6, 0.2))
    checks, _ = hubness._mnist_claim_checks([different], 0.9, (50,))
    failed = {check.description for check in checks if check.passed is False}
    assert failed == {
        "VAE: precision hub t=50 vs norm-trunc @ t=50 rate",
        "VAE: recall hub t=50 vs norm-trunc @ t=50 rate",
        "VAE: hub t=50 recall lower than random",
    }
    # No generator passes: the gates are returned and none is decided (-> inconclusive).
    checks, skipped = hubness._mnist_claim_checks([garbage], 0.9, (50,))
    assert [check.passed for check in checks] == [None]
    assert len(skipped) == 1
    # NaN confidence never passes the gate.
    checks, _ = hubness._mnist_claim_checks(
        [_fake_generator("VAE", math.nan, (0.8, 0.3, 0.9), (0.8, 0.3))], 0.9, (50,)
    )
    assert [check.passed for check in checks] == [None]


def test_vae_decoder_mean_images_in_unit_range(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = hubness._vae_model((8,))
    path = tmp_path / "vae.pt"
    save_checkpoint(path, {"state_dict": model.state_dict(),
                           "config": {"latent_dim": 64, "hidden": [8]}})  # fmt: skip
    generator = hubness._image_generator("vae", path)
    with torch.no_grad():
        images = generator(torch.randn(5, 64) * 100)  # huge latents still give probabilities
    assert images.shape == (5, 28, 28)
    assert float(images.min()) >= 0.0
    assert float(images.max()) <= 1.0
    assert bool(torch.isfinite(images).all())


def test_hubness_full_path_at_tiny_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--full`` code paths: several seeds, k = 10, uniform data, the extra table."""
    load_all()
    monkeypatch.setattr(hubness, "FULL", TINY_FULL)
    (result,) = run_experiments(["hubness"], out=tmp_path, quick=False, echo=False)
    assert result.status == "ok", result.error
    extra = next(t for t in result.tables if t.title.startswith("Hubness vs dimension: other k"))
    assert extra.columns[1] == "Gaussian skewness (k = 10)"
    assert [row[0] for row in extra.rows] == list(TINY_FULL.dims)
    c105 = next(c for c in result.claims if c.claim_id == "C10.5")
    assert any("(seed 1)" in check.description for check in c105.checks)


def test_frontier_interpolation_and_gate() -> None:
    frontier = [(0.2, 0.9), (0.4, 0.7), (0.3, 0.8)]
    assert hubness._frontier_recall(frontier, 0.35) == pytest.approx(0.75)
    assert hubness._frontier_recall(frontier, 0.5) == pytest.approx(0.7)  # nearest end point
    assert hubness._frontier_recall(frontier, 0.1) == pytest.approx(0.9)
    assert math.isnan(hubness._frontier_recall([], 0.5))
    assert hubness._budget_gate("modes", 2.0, 3.0).passed is None
    assert hubness._budget_gate("modes", 3.0, 3.0).passed is True
    assert hubness._mean_of([None, 1.0, 3.0]) == 2.0
    assert math.isnan(hubness._mean_of([None]))

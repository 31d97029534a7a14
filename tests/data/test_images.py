"""Image loaders (spec 11 §3): canonical MNIST / Fashion-MNIST facts, digits, names, IDX reader."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from kexue.data import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    MNIST_TEST_LABEL_COUNTS,
    MNIST_TRAIN_LABEL_COUNTS,
    LabelledImages,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    normalize_dataset_name,
    read_idx,
)
from kexue.data._idx import find_idx_file

IdxWriter = Callable[[Path, np.ndarray], Path]

# ------------------------------------------------------------------------------------- MNIST


@pytest.mark.needs_data
def test_mnist_train_is_canonical(mnist_train: LabelledImages) -> None:
    images, labels = mnist_train
    assert images.shape == (60000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    assert tuple(np.bincount(labels)) == MNIST_TRAIN_LABEL_COUNTS
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert int(images.min()) == 0
    assert int(images.max()) == 255
    assert len(mnist_train) == 60000
    assert (mnist_train.name, mnist_train.split, mnist_train.max_value) == ("mnist", "train", 255)
    assert "CC BY-SA" in mnist_train.licence


@pytest.mark.needs_data
def test_mnist_test_is_canonical(mnist_test: LabelledImages) -> None:
    assert mnist_test.images.shape == (10000, 28, 28)
    assert mnist_test.images.dtype == np.uint8
    assert mnist_test.labels.dtype == np.int64
    assert np.bincount(mnist_test.labels, minlength=10).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    assert tuple(np.bincount(mnist_test.labels)) == MNIST_TEST_LABEL_COUNTS
    assert int(mnist_test.images.min()) == 0
    assert int(mnist_test.images.max()) == 255


@pytest.mark.needs_data
def test_mnist_arrays_are_read_only_and_shared(mnist_train: LabelledImages) -> None:
    assert not mnist_train.images.flags.writeable
    assert not mnist_train.labels.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        mnist_train.images[0, 0, 0] = 1
    again = load_mnist("train")
    np.testing.assert_array_equal(again.labels, mnist_train.labels)


@pytest.mark.needs_data
def test_fashion_mnist_is_balanced(
    fashion_train: LabelledImages, fashion_test: LabelledImages
) -> None:
    assert fashion_train.images.shape == (60000, 28, 28)
    assert fashion_test.images.shape == (10000, 28, 28)
    assert fashion_train.images.dtype == fashion_test.images.dtype == np.uint8
    assert fashion_train.labels.dtype == np.int64
    assert np.bincount(fashion_train.labels).tolist() == [6000] * 10
    assert np.bincount(fashion_test.labels).tolist() == [1000] * 10
    assert int(fashion_train.images.max()) == 255
    assert fashion_train.name == "fashion_mnist"
    assert "Zalando" in fashion_train.licence
    assert len(FASHION_MNIST_CLASSES) == 10
    assert DATASETS["fashion_mnist"].class_names == FASHION_MNIST_CLASSES


@pytest.mark.needs_data
@pytest.mark.parametrize("name", ["mnist", "MNIST", " Mnist "])
def test_load_dataset_by_name_mnist(name: str, mnist_test: LabelledImages) -> None:
    data = load_dataset(name, "test")
    assert data.name == "mnist"
    np.testing.assert_array_equal(data.labels, mnist_test.labels)


@pytest.mark.needs_data
@pytest.mark.parametrize("name", ["fashion_mnist", "Fashion-MNIST", "fashion-mnist"])
def test_load_dataset_by_name_fashion(name: str, fashion_test: LabelledImages) -> None:
    data = load_dataset(name, "test")
    assert data.name == "fashion_mnist"
    np.testing.assert_array_equal(data.labels, fashion_test.labels)


# ------------------------------------------------------------------------------------ digits


def test_digits_all() -> None:
    data = load_digits()
    assert data.images.shape == (1797, 8, 8)
    assert data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64
    assert int(data.images.max()) == 16
    assert int(data.images.min()) == 0
    assert data.max_value == 16
    assert data.split == "all"
    assert set(np.unique(data.labels).tolist()) == set(range(10))


def test_digits_train_test_split() -> None:
    everything = load_digits("all")
    train, test = load_digits("train"), load_digits("test")
    assert len(train) == 1437
    assert len(test) == 360
    np.testing.assert_array_equal(np.concatenate([train.images, test.images]), everything.images)
    np.testing.assert_array_equal(np.concatenate([train.labels, test.labels]), everything.labels)
    assert load_dataset("digits", "test").images.shape == (360, 8, 8)


def test_to_tensor_ranges() -> None:
    data = load_digits("test")
    unit = data.to_tensor()
    assert unit.shape == (360, 1, 8, 8)
    assert unit.dtype == torch.float32
    assert float(unit.min()) == 0.0
    assert float(unit.max()) == 1.0
    symmetric = data.to_tensor("symmetric")
    assert float(symmetric.min()) == -1.0
    assert float(symmetric.max()) == 1.0
    torch.testing.assert_close(symmetric, unit * 2 - 1)
    with pytest.raises(ValueError, match="value_range"):
        data.to_tensor("bytes")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ bad names


def test_unknown_dataset_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="cifar10") as info:
        load_dataset("cifar10")
    for name in ("digits", "fashion_mnist", "mnist"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="available"):
        normalize_dataset_name("svhn")


@pytest.mark.parametrize("name", [None, 3, b"mnist", ["mnist"]])
def test_non_string_dataset_name(name: object) -> None:
    with pytest.raises(TypeError, match="str"):
        normalize_dataset_name(name)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        load_dataset(name)  # type: ignore[arg-type]


def test_wrong_split() -> None:
    with pytest.raises(ValueError, match="split"):
        load_mnist("all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        load_digits("val")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", "all")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", 0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-1, 0, 7], dtype=np.int8),
        np.array([[1, -2], [300000, 4]], dtype=np.int32),
        np.array([0.5, -1.25], dtype=np.float32),
        np.array([1e300, -2.0], dtype=np.float64),
        np.array([-3, 1000], dtype=np.int16),
    ],
)
def test_read_idx_round_trip(
    tmp_path: Path, idx_writer: IdxWriter, array: np.ndarray, suffix: str
) -> None:
    path = idx_writer(tmp_path / f"array-idx{suffix}", array)
    result = read_idx(path)
    np.testing.assert_array_equal(result, array)
    assert result.shape == array.shape
    assert result.dtype.isnative
    assert result.dtype.kind == array.dtype.kind
    assert result.flags.writeable


def test_read_idx_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x00\x08\x01" + np.array([2], ">i4").tobytes() + b"\x00\x00")
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + np.array([2], ">i4").tobytes() + b"\x00\x00")
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x03" + np.array([2, 3], ">i4").tobytes())
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize("delta", [-1, 1])
def test_read_idx_size_mismatch(tmp_path: Path, idx_writer: IdxWriter, delta: int) -> None:
    path = idx_writer(tmp_path / "data", np.zeros((4, 5), dtype=np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:delta] if delta < 0 else raw + b"\x00")
    with pytest.raises(ValueError, match="corrupt"):
        read_idx(path)


def test_read_idx_truncated_or_corrupt_gzip(tmp_path: Path, idx_writer: IdxWriter) -> None:
    path = idx_writer(tmp_path / "data.gz", np.arange(1000, dtype=np.uint8).reshape(10, 100))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + np.array([9], ">i4").tobytes()))
    with pytest.raises(ValueError, match="corrupt"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent")


def test_find_idx_file_variants(tmp_path: Path) -> None:
    stem = "train-images-idx3-ubyte"
    assert find_idx_file(tmp_path, stem) is None
    dotted = tmp_path / "train-images.idx3-ubyte.gz"
    dotted.write_bytes(b"")
    assert find_idx_file(tmp_path, stem) == dotted
    plain = tmp_path / stem
    plain.write_bytes(b"")
    assert find_idx_file(tmp_path, stem) == plain


def test_images_to_tensor_ranges_and_bad_input() -> None:
    from kexue.data import images_to_tensor

    images = np.array([[[0, 255]]], dtype=np.uint8)
    assert torch.equal(images_to_tensor(images), torch.tensor([[[[0.0, 1.0]]]]))
    assert torch.equal(
        images_to_tensor(images, value_range="symmetric"), torch.tensor([[[[-1.0, 1.0]]]])
    )
    digits = np.array([[[0, 16]]], dtype=np.uint8)
    assert torch.equal(images_to_tensor(digits, max_value=16), torch.tensor([[[[0.0, 1.0]]]]))
    with pytest.raises(ValueError, match="value_range"):
        images_to_tensor(images, value_range="bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        images_to_tensor(images[0])
    with pytest.raises(ValueError, match="max_value"):
        images_to_tensor(images, max_value=0)

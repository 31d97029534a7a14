"""Fixtures for the data tests: real datasets (skipped with the install command when absent),
an isolated cache directory, hidden sources, and an IDX writer."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kexue.data import (
    DatasetUnavailableError,
    LabelledImages,
    _images,
    clear_memory_cache,
    load_fashion_mnist,
    load_mnist,
    set_data_dir,
)

_IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _IDX_CODES[np.dtype(big_endian)]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=big_endian).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload, compresslevel=1))
    else:
        path.write_bytes(payload)
    return path


def load_or_skip(loader: Callable[..., LabelledImages], *args: Any) -> LabelledImages:
    """Call a dataset loader; skip the test with the install command when the data is missing."""
    try:
        return loader(*args)
    except DatasetUnavailableError as error:
        pytest.skip(f"dataset not installed: {error}")


@pytest.fixture(scope="session")
def mnist_train() -> LabelledImages:
    return load_or_skip(load_mnist, "train")


@pytest.fixture(scope="session")
def mnist_test() -> LabelledImages:
    return load_or_skip(load_mnist, "test")


@pytest.fixture(scope="session")
def fashion_train() -> LabelledImages:
    return load_or_skip(load_fashion_mnist, "train")


@pytest.fixture(scope="session")
def fashion_test() -> LabelledImages:
    return load_or_skip(load_fashion_mnist, "test")


@pytest.fixture(scope="session")
def mnist_idx_dir(
    tmp_path_factory: pytest.TempPathFactory,
    mnist_train: LabelledImages,
    mnist_test: LabelledImages,
) -> Path:
    """``<data dir>/mnist/``: the real MNIST written back as IDX files (raw and .gz mixed)."""
    directory = tmp_path_factory.mktemp("mnist_idx") / "mnist"
    directory.mkdir()
    write_idx(directory / "train-images-idx3-ubyte", mnist_train.images)
    write_idx(directory / "train-labels-idx1-ubyte.gz", mnist_train.labels.astype(np.uint8))
    write_idx(directory / "t10k-images-idx3-ubyte.gz", mnist_test.images)
    write_idx(directory / "t10k-labels-idx1-ubyte", mnist_test.labels.astype(np.uint8))
    return directory


@pytest.fixture
def idx_writer() -> Callable[[Path, np.ndarray], Path]:
    return write_idx


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache directory in ``KEXUE_CACHE``, no user data directory, no arrays in memory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("KEXUE_CACHE", str(cache))
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    set_data_dir(None)
    clear_memory_cache()
    yield cache
    set_data_dir(None)
    clear_memory_cache()


@pytest.fixture
def without_sources(isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hide every raw source: no ``pureml`` package, no Debian Fashion-MNIST directory."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pureml" or name.startswith("pureml."):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(_images, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "no-such-directory")
    return isolated_cache

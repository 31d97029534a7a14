"""Classifier-based scores in the in-domain feature space (spec 11 §6, steps 3, 5 and 7)."""

from __future__ import annotations

import functools
from typing import Literal, overload

import numpy as np
import torch

from ._extractor import _check_dataset, _load_split, extract_features, load_extractor
from ._frechet import feature_moments, frechet_distance_from_moments
from ._validation import as_float64_matrix, check_int

__all__ = ["classifier_score", "in_domain_fid", "reference_moments"]


def _score(probabilities: np.ndarray) -> float:
    marginal = probabilities.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(
            probabilities > 0, probabilities * (np.log(probabilities) - np.log(marginal)), 0.0
        )
    return float(np.exp(terms.sum(axis=1).mean()))


@overload
def classifier_score(probabilities: np.ndarray | torch.Tensor, *, splits: None = None) -> float: ...


@overload
def classifier_score(
    probabilities: np.ndarray | torch.Tensor, *, splits: int
) -> tuple[float, float]: ...


def classifier_score(
    probabilities: np.ndarray | torch.Tensor, *, splits: int | None = None
) -> float | tuple[float, float]:
    """Inception-Score analogue :math:`\\exp(\\mathbb E_x \\mathrm{KL}(p(y|x)\\Vert p(y)))` with the
    in-domain classifier (spec 11 §6, step 5).

    :math:`p(y)` is the mean of the rows. The score ranges from 1 (every sample gets the same
    prediction) to ``C`` (confident predictions, balanced over the ``C`` classes). It is not
    comparable to published Inception Scores.

    Args:
        probabilities: ``(N, C)`` rows of class probabilities (e.g. from
            :func:`class_probabilities`), non-negative, each summing to 1.
        splits: ``None`` (default) scores all rows at once and returns a float; an int
            ``1 <= splits <= N`` scores that many near-equal consecutive chunks and returns
            ``(mean, std)`` over them, as in the usual Inception-Score protocol (10 splits).

    Raises:
        TypeError: non-array input or a non-int ``splits``.
        ValueError: non-2-D input, empty input, NaN/inf, negative entries or rows not summing to
            1 (tolerance 1e-4), ``splits`` out of range.
    """
    p = as_float64_matrix(probabilities, "probabilities")
    if (p < -1e-9).any() or not np.allclose(p.sum(axis=1), 1.0, rtol=0.0, atol=1e-4):
        raise ValueError(
            "probabilities must be non-negative rows summing to 1; pass softmax outputs "
            "(e.g. kexue.metrics.class_probabilities), not logits"
        )
    p = np.clip(p, 0.0, 1.0)
    if splits is None:
        return _score(p)
    splits = check_int(splits, "splits", minimum=1)
    if splits > p.shape[0]:
        raise ValueError(f"splits must be in [1, {p.shape[0]}] (the number of rows), got {splits}")
    values = [_score(chunk) for chunk in np.array_split(p, splits)]
    return float(np.mean(values)), float(np.std(values))


def _check_reference(reference: str, name: str) -> Literal["train", "test"]:
    if reference == "train":
        return "train"
    if reference == "test":
        return "test"
    raise ValueError(f"{name} must be 'train' or 'test', got {reference!r}")


@functools.lru_cache(maxsize=8)
def _cached_reference_moments(
    dataset: str, split: Literal["train", "test"]
) -> tuple[np.ndarray, np.ndarray]:
    real = _load_split(dataset, split)
    mean, covariance = feature_moments(extract_features(load_extractor(dataset), real.images))
    mean.setflags(write=False)
    covariance.setflags(write=False)
    return mean, covariance


def reference_moments(dataset: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(128,)`` and covariance ``(128, 128)`` of the in-domain features of a real split.

    Computed once per ``(dataset, split)`` and process, then served from memory (spec 11 §6, step
    3: the reference set is the full 10k test split). The arrays are read-only.

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        split: ``"test"`` (default, the spec's reference) or ``"train"``.

    Raises:
        ValueError: unknown dataset or split.
        kexue.data.DatasetUnavailableError: the dataset package is not installed.
    """
    return _cached_reference_moments(_check_dataset(dataset), _check_reference(split, "split"))


def in_domain_fid(
    dataset: str,
    generated_images: np.ndarray | torch.Tensor,
    *,
    reference: str = "test",
    batch_size: int = 1000,
) -> float:
    """FID (in-domain LeNet features) of generated 28×28 images against a real split (spec 11 §6,
    steps 3 and 7).

    This is the Fréchet distance between Gaussian fits of the 128-d penultimate features of
    kexue's shipped LeNet classifier for ``dataset``. It is **not** Inception FID and is **not
    comparable to published FID numbers**; label it "FID (in-domain LeNet features)". The value
    depends on the number of generated images (biased upwards for small N): the spec uses 10k
    generated images against the 10k test images, and comparisons need equal N.

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        generated_images: uint8 ``(N, 28, 28)`` in 0..255 or float ``(N, [1,] 28, 28)`` in [0, 1]
            (map tanh outputs with ``(x + 1) / 2``), ``N >= 2``.
        reference: real split to compare with, ``"test"`` (default) or ``"train"``; its moments
            are cached in memory per process.
        batch_size: images per forward pass.

    Raises:
        TypeError, ValueError: bad images or arguments (see :func:`extract_features`).
        kexue.data.DatasetUnavailableError: the dataset package is not installed.
    """
    key = _check_dataset(dataset)
    mean_real, covariance_real = reference_moments(key, _check_reference(reference, "reference"))
    features = extract_features(load_extractor(key), generated_images, batch_size=batch_size)
    if features.shape[0] < 2:
        raise ValueError("in_domain_fid needs at least 2 generated images (10k recommended)")
    mean_fake, covariance_fake = feature_moments(features)
    return frechet_distance_from_moments(mean_real, covariance_real, mean_fake, covariance_fake)

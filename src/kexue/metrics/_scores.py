"""Classifier-based scores in the in-domain feature space (spec 11 §6, steps 3 and 5)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ._extractor import _check_dataset, extract_features, load_extractor
from ._frechet import feature_moments, frechet_distance_from_moments
from ._validation import as_float64_matrix

__all__ = ["classifier_score", "in_domain_fid", "reference_moments"]


def classifier_score(
    probabilities: np.ndarray | torch.Tensor, *, splits: int = 1
) -> float | tuple[float, float]:
    """Inception-Score analogue :math:`\\exp(\\mathbb E_x \\mathrm{KL}(p(y|x)\\Vert p(y)))`.

    ``probabilities``: ``(N, C)`` rows of class probabilities from the in-domain classifier. With
    ``splits > 1`` the score is computed on that many equal chunks and ``(mean, std)`` is returned.
    Ranges from 1 (every sample gets the same prediction) to C (confident and class-balanced).
    """
    p = as_float64_matrix(probabilities, "probabilities")
    if (p < -1e-9).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probabilities must be non-negative rows summing to 1 (apply softmax)")
    if not isinstance(splits, int) or not 1 <= splits <= p.shape[0]:
        raise ValueError(f"splits must be an int in [1, {p.shape[0]}], got {splits!r}")
    p = np.clip(p, 0.0, 1.0)

    def score(chunk: np.ndarray) -> float:
        marginal = chunk.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(chunk > 0, chunk * (np.log(chunk) - np.log(marginal)), 0.0)
        return float(np.exp(terms.sum(axis=1).mean()))

    if splits == 1:
        return score(p)
    values = [score(chunk) for chunk in np.array_split(p, splits)]
    return float(np.mean(values)), float(np.std(values))


@functools.lru_cache(maxsize=8)
def reference_moments(dataset: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the real ``split``'s in-domain features (cached per process)."""
    from ..data import load_dataset

    key = _check_dataset(dataset)
    real = load_dataset(key, split)
    return feature_moments(extract_features(load_extractor(key), real.images))


def in_domain_fid(
    dataset: str, generated_images: np.ndarray | torch.Tensor, *, reference: str = "test"
) -> float:
    """FID (in-domain LeNet features) of generated 28x28 images against the real ``reference``
    split.

    This is the Fréchet distance in the 128-d features of kexue's shipped LeNet classifier for
    ``dataset`` ("mnist" or "fashion_mnist"); it is **not** Inception FID and is not comparable to
    published FIDs. Images: uint8 ``(N, 28, 28)`` or float in [0, 1]; use about 10k for stable
    numbers
    (spec 11 §6 uses 10k generated vs the 10k test images).
    """
    key = _check_dataset(dataset)
    mean_real, covariance_real = reference_moments(key, reference)
    mean_fake, covariance_fake = feature_moments(
        extract_features(load_extractor(key), generated_images)
    )
    return frechet_distance_from_moments(mean_real, covariance_real, mean_fake, covariance_fake)

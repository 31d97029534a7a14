"""Fréchet distance between Gaussian fits of two feature sets (spec 11 §6, step 3).

.. math:: \\mathrm{FD} = \\Vert\\mu_a-\\mu_b\\Vert^2 + \\operatorname{Tr}\\big(\\Sigma_a+\\Sigma_b
          - 2(\\Sigma_a\\Sigma_b)^{1/2}\\big),

with :math:`\\operatorname{Tr}(\\Sigma_a\\Sigma_b)^{1/2}=\\sum_i\\sqrt{\\lambda_i}`,
:math:`\\lambda_i` the
eigenvalues (clipped at 0) of the symmetric PSD matrix
:math:`\\Sigma_a^{1/2}\\Sigma_b\\Sigma_a^{1/2}` —
more stable than ``scipy.linalg.sqrtm`` of the non-symmetric product. Everything in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validation import as_float64_matrix

__all__ = ["feature_moments", "frechet_distance", "frechet_distance_from_moments"]


def feature_moments(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``(N, D)`` features, float64 (N >= 2)."""
    array = as_float64_matrix(features, "features", min_rows=2)
    mean = array.mean(axis=0)
    centred = array - mean
    covariance = centred.T @ centred / (array.shape[0] - 1)
    return mean, covariance


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    root: np.ndarray = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    return root


def frechet_distance_from_moments(
    mean_a: np.ndarray, covariance_a: np.ndarray, mean_b: np.ndarray, covariance_b: np.ndarray
) -> float:
    """Fréchet distance between N(mean_a, covariance_a) and N(mean_b, covariance_b)."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    covariance_a = np.asarray(covariance_a, np.float64)
    covariance_b = np.asarray(covariance_b, np.float64)
    dim = mean_a.shape[0] if mean_a.ndim == 1 else -1
    if mean_a.ndim != 1 or mean_b.shape != mean_a.shape:
        raise ValueError(
            f"means must be 1-D of equal length, got {mean_a.shape} and {mean_b.shape}"
        )
    for name, covariance in (("covariance_a", covariance_a), ("covariance_b", covariance_b)):
        if covariance.shape != (dim, dim):
            raise ValueError(f"{name} must have shape ({dim}, {dim}), got {covariance.shape}")
    if not all(np.isfinite(x).all() for x in (mean_a, mean_b, covariance_a, covariance_b)):
        raise ValueError("moments contain NaN or infinite values")
    root_a = _symmetric_sqrt(covariance_a)
    middle = root_a @ covariance_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    difference = mean_a - mean_b
    value = float(
        difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2 * trace_sqrt
    )
    return max(value, 0.0)  # rounding can give -1e-12 for identical inputs


def frechet_distance(
    features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor
) -> float:
    """Fréchet distance between Gaussian fits of ``(N_a, D)`` and ``(N_b, D)`` feature sets.

    Computed in float64; ``FD(X, X) == 0``. In kexue's image experiments the features are the 128-d
    in-domain LeNet features, and the result is labelled "FID (in-domain)".
    """
    mean_a, covariance_a = feature_moments(features_a)
    mean_b, covariance_b = feature_moments(features_b)
    if mean_a.shape != mean_b.shape:
        raise ValueError(
            f"feature dimensions differ: {mean_a.shape[0]} vs {mean_b.shape[0]}; "
            "extract both sets with the same extractor"
        )
    return frechet_distance_from_moments(mean_a, covariance_a, mean_b, covariance_b)

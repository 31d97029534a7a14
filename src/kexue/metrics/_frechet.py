"""Fréchet distance between Gaussian fits of two feature sets (spec 11 §6, step 3).

.. math:: \\mathrm{FD} = \\Vert\\mu_a-\\mu_b\\Vert^2 + \\operatorname{Tr}\\big(\\Sigma_a+\\Sigma_b
          - 2(\\Sigma_a\\Sigma_b)^{1/2}\\big),

with :math:`\\operatorname{Tr}(\\Sigma_a\\Sigma_b)^{1/2}=\\sum_i\\sqrt{\\lambda_i}`, where
:math:`\\lambda_i` are the eigenvalues (clipped at 0) of the symmetric positive semi-definite
matrix :math:`\\Sigma_a^{1/2}\\Sigma_b\\Sigma_a^{1/2}`. This matrix is similar to
:math:`\\Sigma_a\\Sigma_b`, so the traces agree, and a symmetric eigendecomposition is more stable
than ``scipy.linalg.sqrtm`` of the non-symmetric product (no complex parts, no failure on
singular covariances). Everything is computed in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validation import as_float64_array, as_float64_matrix

__all__ = ["feature_moments", "frechet_distance", "frechet_distance_from_moments"]


def feature_moments(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature set (spec 11 §6, step 3).

    Args:
        features: ``(N, D)`` numpy array or torch tensor, ``N >= 2``, finite.

    Returns:
        ``(mean, covariance)``: float64 arrays of shapes ``(D,)`` and ``(D, D)`` (the covariance
        divides by ``N - 1``).
    """
    return _moments(features, "features")


def _moments(features: np.ndarray | torch.Tensor, name: str) -> tuple[np.ndarray, np.ndarray]:
    array = as_float64_matrix(features, name, min_rows=2)
    mean = array.mean(axis=0)
    centred = array - mean
    covariance = centred.T @ centred / (array.shape[0] - 1)
    return mean, covariance


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Principal square root of a symmetric PSD matrix (negative eigenvalues clipped to 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    root: np.ndarray = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    return root


def _check_moments(
    mu: np.ndarray | torch.Tensor, cov: np.ndarray | torch.Tensor, suffix: str
) -> tuple[np.ndarray, np.ndarray]:
    mean = as_float64_array(mu, f"mu_{suffix}")
    covariance = as_float64_array(cov, f"cov_{suffix}")
    if mean.ndim != 1 or mean.shape[0] == 0:
        raise ValueError(f"mu_{suffix} must be a non-empty 1-D mean vector, got shape {mean.shape}")
    dim = mean.shape[0]
    if covariance.shape != (dim, dim):
        raise ValueError(
            f"cov_{suffix} must have shape ({dim}, {dim}) to match mu_{suffix}, got "
            f"{covariance.shape}"
        )
    if not (np.isfinite(mean).all() and np.isfinite(covariance).all()):
        raise ValueError(f"mu_{suffix} or cov_{suffix} contains NaN or infinite values")
    scale = max(float(np.abs(covariance).max()), 1.0)
    if not np.allclose(covariance, covariance.T, rtol=1e-6, atol=1e-9 * scale):
        raise ValueError(f"cov_{suffix} is not symmetric; pass a covariance matrix")
    return mean, covariance


def frechet_distance_from_moments(
    mu_a: np.ndarray | torch.Tensor,
    cov_a: np.ndarray | torch.Tensor,
    mu_b: np.ndarray | torch.Tensor,
    cov_b: np.ndarray | torch.Tensor,
) -> float:
    """Fréchet (2-Wasserstein squared) distance between ``N(mu_a, cov_a)`` and ``N(mu_b, cov_b)``.

    Spec 11 §6, step 3: the trace of :math:`(\\Sigma_a\\Sigma_b)^{1/2}` is the sum of square roots
    of the clipped eigenvalues of :math:`\\Sigma_a^{1/2}\\Sigma_b\\Sigma_a^{1/2}`; float64
    throughout. Rounding can make the exact value 0 come out as about ``-1e-12``; the result is
    clipped at 0. For (near-)singular covariances the square root turns eigenvalue rounding of
    order ``eps·||S||²`` into errors of order ``sqrt(eps)·||S||`` (about ``1e-8`` relative to the
    covariance scale), which bounds the attainable accuracy and symmetry in that case.

    Args:
        mu_a, mu_b: means, shape ``(D,)``.
        cov_a, cov_b: symmetric positive semi-definite covariances, shape ``(D, D)``.

    Raises:
        ValueError: on mismatched shapes, non-symmetric covariances or NaN/inf entries.
    """
    mean_a, covariance_a = _check_moments(mu_a, cov_a, "a")
    mean_b, covariance_b = _check_moments(mu_b, cov_b, "b")
    if mean_a.shape != mean_b.shape:
        raise ValueError(
            f"dimensions differ: mu_a has {mean_a.shape[0]} entries, mu_b {mean_b.shape[0]}; "
            "compute both moments in the same feature space"
        )
    root_a = _symmetric_sqrt(covariance_a)
    middle = root_a @ covariance_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    difference = mean_a - mean_b
    value = float(
        difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2 * trace_sqrt
    )
    return max(value, 0.0)


def frechet_distance(
    features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor
) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (spec 11 §6, step 3).

    Args:
        features_a: ``(N_a, D)`` features, ``N_a >= 2`` (numpy array or torch tensor).
        features_b: ``(N_b, D)`` features, ``N_b >= 2``, same ``D``.

    Returns:
        The distance as a Python float (float64 computation); ``frechet_distance(x, x) == 0``.
        With kexue's in-domain LeNet features this is "FID (in-domain LeNet features)", not
        comparable to published Inception FIDs. The estimate is biased upwards for small N;
        compare values only at equal sample sizes (spec 11 §6 uses 10k vs 10k).

    Raises:
        TypeError: for non-array or non-numeric input.
        ValueError: for non-2-D input, fewer than 2 rows, different ``D``, or NaN/inf values.
    """
    mean_a, covariance_a = _moments(features_a, "features_a")
    mean_b, covariance_b = _moments(features_b, "features_b")
    if mean_a.shape != mean_b.shape:
        raise ValueError(
            f"feature dimensions differ: {mean_a.shape[0]} vs {mean_b.shape[0]}; "
            "extract both sets with the same extractor"
        )
    return frechet_distance_from_moments(mean_a, covariance_a, mean_b, covariance_b)

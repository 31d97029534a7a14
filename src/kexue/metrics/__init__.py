"""Sample-quality metrics (spec 11 §6; spec 01 §10 E1.1; spec 10 §12).

* :func:`frechet_distance`, :func:`frechet_distance_from_moments`, :func:`feature_moments` —
  Fréchet distance between Gaussian fits, float64, eigenvalue form (spec 11 §6 step 3).
* :func:`kernel_distance` — KID-style unbiased MMD² with the cubic kernel (spec 11 §6 step 4).
* :func:`classifier_score` — Inception-Score analogue (spec 11 §6 step 5).
* :func:`precision_recall` — improved precision/recall with k-NN balls, k = 3 (spec 10 §12).
* :func:`w1_exact`, :func:`mode_stats` — exact empirical W1 and mode coverage for the 2-D toy
  mixtures (spec 01 E1.1).
* :func:`load_extractor`, :func:`extract_features`, :func:`class_probabilities`,
  :func:`in_domain_fid`, :func:`reference_moments` — the shipped in-domain LeNet extractors for
  MNIST and Fashion-MNIST (spec 11 §6 steps 1-2); retrain with
  ``python -m kexue.metrics.train_extractor`` / ``kexue metrics train-extractor``.

No package ships Inception weights, so image metrics use kexue's LeNet classifiers: results are
"FID (in-domain LeNet features)" and are **not comparable** to published Inception FIDs.
"""

from __future__ import annotations

from ._extractor import (
    EXTRACTOR_DATASETS,
    FEATURE_DIM,
    InDomainClassifier,
    class_probabilities,
    extract_features,
    extractor_metadata,
    extractor_weights_path,
    load_extractor,
)
from ._frechet import feature_moments, frechet_distance, frechet_distance_from_moments
from ._kernel import kernel_distance
from ._modes import ModeStats, mode_stats
from ._precision_recall import PrecisionRecall, precision_recall
from ._scores import classifier_score, in_domain_fid, reference_moments
from ._wasserstein import w1_exact

__all__ = [
    "EXTRACTOR_DATASETS",
    "FEATURE_DIM",
    "InDomainClassifier",
    "ModeStats",
    "PrecisionRecall",
    "class_probabilities",
    "classifier_score",
    "extract_features",
    "extractor_metadata",
    "extractor_weights_path",
    "feature_moments",
    "frechet_distance",
    "frechet_distance_from_moments",
    "in_domain_fid",
    "kernel_distance",
    "load_extractor",
    "mode_stats",
    "precision_recall",
    "reference_moments",
    "w1_exact",
]

"""Metrics (spec 11 §6; spec 01 E1.1): Fréchet distance, in-domain extractors and scores, kernel
distance, improved precision/recall, exact W1, mode statistics for toy mixtures.

Image metrics use kexue's shipped LeNet classifiers (MNIST, Fashion-MNIST) instead of Inception,
which no package ships: results are "FID (in-domain)" and not comparable to published FIDs.
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

"""In-domain feature extractors: LeNet classifiers trained on real MNIST / Fashion-MNIST (spec 11
§6).

No package ships Inception weights, so kexue measures sample quality in the 128-d penultimate
features
of a small classifier trained on the real training split. Weights ship inside the package with their
test accuracy and provenance (``weights/<dataset>_lenet.json``). Distances computed in this space
are
"FID (in-domain LeNet features)": **not** comparable to Inception FIDs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "EXTRACTOR_DATASETS",
    "FEATURE_DIM",
    "InDomainClassifier",
    "class_probabilities",
    "extract_features",
    "extractor_metadata",
    "extractor_weights_path",
    "load_extractor",
]

#: Datasets with a shipped extractor.
EXTRACTOR_DATASETS = ("mnist", "fashion_mnist")
#: Dimension of the penultimate features.
FEATURE_DIM = 128


class InDomainClassifier(nn.Module):
    """LeNet-style classifier for 28x28 grey images: two 5x5 conv + max-pool blocks, two FC layers.

    ``features(x)`` returns the 128-d penultimate activations (after ReLU) used for FID/KID and
    precision/recall; ``forward(x)`` returns the 10 class logits. Input: float ``(N, 1, 28, 28)`` in
    [0, 1].
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5)  # 28 -> 24 -> pool 12
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)  # 12 -> 8 -> pool 4
        self.fc1 = nn.Linear(64 * 4 * 4, feature_dim)
        self.fc2 = nn.Linear(feature_dim, num_classes)
        self.dropout = nn.Dropout(0.3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        features: torch.Tensor = F.relu(self.fc1(x.flatten(1)))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc2(self.dropout(self.features(x)))
        return logits


def _check_dataset(dataset: str) -> str:
    if not isinstance(dataset, str):
        raise TypeError(f"dataset must be a str, got {type(dataset).__name__}")
    key = dataset.strip().lower().replace("-", "_")
    if key not in EXTRACTOR_DATASETS:
        raise ValueError(
            f"no in-domain extractor for {dataset!r}; available: {', '.join(EXTRACTOR_DATASETS)}"
        )
    return key


def extractor_weights_path(dataset: str) -> Path:
    """Path of the shipped weights ``weights/<dataset>_lenet.pt``."""
    key = _check_dataset(dataset)
    return Path(str(importlib.resources.files("kexue.metrics") / "weights" / f"{key}_lenet.pt"))


def extractor_metadata(dataset: str) -> dict[str, Any]:
    """The JSON record next to the weights: test accuracy, training settings, sha256, command."""
    path = extractor_weights_path(dataset).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(
            f"no extractor record at {path}; retrain with `kexue metrics train-extractor "
            f"--dataset {_check_dataset(dataset)}`"
        )
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=4)
def _load_cpu(dataset: str) -> InDomainClassifier:
    path = extractor_weights_path(dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"no extractor weights at {path}; retrain with `kexue metrics train-extractor "
            f"--dataset {dataset}`"
        )
    expected = extractor_metadata(dataset).get("sha256")
    actual = _sha256(path)
    if expected != actual:
        raise ValueError(
            f"extractor weights {path} have sha256 {actual}, but the record says {expected}: "
            "the file was modified; reinstall kexue or retrain and record it"
        )
    model = InDomainClassifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def load_extractor(dataset: str, device: str | torch.device = "cpu") -> InDomainClassifier:
    """The frozen, eval-mode classifier for ``"mnist"`` or ``"fashion_mnist"`` (checksum
    verified)."""
    model = _load_cpu(_check_dataset(dataset))
    target = torch.device(device)
    return model if target.type == "cpu" else _copy_to(model, target)


def _copy_to(model: InDomainClassifier, device: torch.device) -> InDomainClassifier:
    clone = InDomainClassifier().to(device)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    clone.requires_grad_(False)
    return clone


def _as_image_batch(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N,28,28)/(N,1,28,28) in 0..255, or float in [0,1] -> float32 (N,1,28,28)."""
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8:  # convert in numpy: works for read-only arrays, no warning
            images = images.astype(np.float32) / np.float32(255.0)
        tensor = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, torch.Tensor):
        tensor = images.detach()
    else:
        raise TypeError(
            f"images must be a numpy array or torch tensor, got {type(images).__name__}"
        )
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    if tensor.ndim != 4 or tuple(tensor.shape[1:]) != (1, 28, 28):
        raise ValueError(
            f"images must have shape (N, 28, 28) or (N, 1, 28, 28), got {tuple(images.shape)}"
        )
    if tensor.shape[0] == 0:
        raise ValueError("images is empty")
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if not tensor.is_floating_point():
        raise TypeError(
            f"images must be uint8 (0..255) or floating point in [0, 1], got {tensor.dtype}"
        )
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise ValueError("images contain NaN or infinite values")
    low, high = float(tensor.min()), float(tensor.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"float images must lie in [0, 1] (got [{low:.3g}, {high:.3g}]); "
            "map [-1, 1] outputs with (x + 1) / 2 first"
        )
    return tensor.clamp(0.0, 1.0)


@torch.no_grad()
def _batched(
    model: InDomainClassifier,
    images: np.ndarray | torch.Tensor,
    batch_size: int,
    head: bool,
) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch = _as_image_batch(images)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, batch.shape[0], batch_size):
        chunk = batch[start : start + batch_size].to(device)
        out = model(chunk).softmax(dim=1) if head else model.features(chunk)
        outputs.append(out.double().cpu())
    model.train(was_training)
    return torch.cat(outputs).numpy()


def extract_features(
    model: InDomainClassifier, images: np.ndarray | torch.Tensor, *, batch_size: int = 1000
) -> np.ndarray:
    """128-d penultimate features, float64 ``(N, 128)``.

    ``images``: uint8 ``(N, 28, 28)`` (0..255) or float ``(N, [1,] 28, 28)`` in [0, 1].
    """
    return _batched(model, images, batch_size, head=False)


def class_probabilities(
    model: InDomainClassifier, images: np.ndarray | torch.Tensor, *, batch_size: int = 1000
) -> np.ndarray:
    """Softmax class probabilities, float64 ``(N, 10)``; same inputs as :func:`extract_features`."""
    return _batched(model, images, batch_size, head=True)

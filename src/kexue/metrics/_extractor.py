"""In-domain feature extractors: LeNet classifiers trained on real MNIST / Fashion-MNIST (spec 11
§6, steps 1-2).

No package ships Inception weights, so kexue measures sample quality in the 128-d penultimate
features of a small classifier trained on the real training split. The weights ship inside the
package (``weights/<dataset>_lenet.pt``, float32 ``state_dict``) with a JSON record of their test
accuracy, training settings, provenance, retraining command and sha256, which :func:`load_extractor`
verifies. Distances computed in this space are "FID (in-domain LeNet features)": **not**
comparable to Inception FIDs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._validation import check_int

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
        """Penultimate 128-d activations (after ReLU) of float images ``(N, 1, 28, 28)``."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        features: torch.Tensor = F.relu(self.fc1(x.flatten(1)))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)`` (dropout is active only in training mode)."""
        logits: torch.Tensor = self.fc2(self.dropout(self.features(x)))
        return logits


def _load_split(dataset: str, split: Literal["train", "test"]) -> Any:
    """The real ``split`` of ``dataset`` through ``kexue.data`` (``.images`` uint8, ``.labels``)."""
    from ..data import load_fashion_mnist, load_mnist

    loader = load_mnist if _check_dataset(dataset) == "mnist" else load_fashion_mnist
    return loader(split)


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
    """Path of the shipped weights ``weights/<dataset>_lenet.pt`` (the file may be missing).

    ``dataset``: ``"mnist"`` or ``"fashion_mnist"`` (``"fashion-mnist"`` and upper case accepted).
    """
    key = _check_dataset(dataset)
    return Path(str(importlib.resources.files("kexue.metrics") / "weights" / f"{key}_lenet.pt"))


def extractor_metadata(dataset: str) -> dict[str, Any]:
    """The JSON record next to the weights (spec 11 §6, step 2).

    Keys include ``test_accuracy``, ``train_settings``, ``torch``, ``date``, ``command`` (the exact
    retraining command) and ``sha256`` of the ``.pt`` file.

    Raises:
        FileNotFoundError: the record is missing (the message says how to retrain).
    """
    path = extractor_weights_path(dataset).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(
            f"no extractor record at {path}; {_retrain_hint(_check_dataset(dataset))}"
        )
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _retrain_hint(dataset: str) -> str:
    return (
        f"retrain with `kexue metrics train-extractor --dataset {dataset}` (or `python -m "
        f"kexue.metrics.train_extractor --dataset {dataset}`), or reinstall kexue"
    )


@functools.lru_cache(maxsize=4)
def _verified_state(dataset: str) -> dict[str, torch.Tensor]:
    """The shipped ``state_dict`` of ``dataset`` after checking its sha256 (cached per process)."""
    path = extractor_weights_path(dataset)
    if not path.is_file():
        raise FileNotFoundError(f"no extractor weights at {path}; {_retrain_hint(dataset)}")
    expected = extractor_metadata(dataset).get("sha256")
    actual = _sha256(path)
    if expected != actual:
        raise ValueError(
            f"extractor weights {path} have sha256 {actual}, but the record says {expected}: "
            f"the file was modified or does not belong to its record; {_retrain_hint(dataset)}"
        )
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def load_extractor(dataset: str, device: str | torch.device = "cpu") -> InDomainClassifier:
    """The shipped in-domain classifier for ``dataset``, frozen and in eval mode (spec 11 §6).

    The weights' sha256 is checked against the JSON record on first use (then cached per
    process); every call returns a fresh model, so modifying one does not affect later calls.

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        device: where the returned model lives.

    Raises:
        FileNotFoundError: weights or record missing (the message names the retraining command).
        ValueError: unknown dataset, or the weights do not match the recorded sha256.
    """
    model = InDomainClassifier()
    model.load_state_dict(_verified_state(_check_dataset(dataset)))
    model.eval()
    model.requires_grad_(False)
    return model.to(torch.device(device))


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
    if not isinstance(model, InDomainClassifier):
        raise TypeError(
            f"model must be an InDomainClassifier (use kexue.metrics.load_extractor(dataset)), "
            f"got {type(model).__name__}"
        )
    batch_size = check_int(batch_size, "batch_size", minimum=1)
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
    """128-d penultimate (post-ReLU) features of ``model``, float64 ``(N, 128)`` (spec 11 §6).

    Args:
        model: an :class:`InDomainClassifier`, normally from :func:`load_extractor`; it is run in
            eval mode (its mode is restored afterwards) on its own device.
        images: uint8 ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in 0..255 (numpy or torch), or float
            of the same shapes in [0, 1] (map tanh outputs with ``(x + 1) / 2``).
        batch_size: images per forward pass.

    Raises:
        TypeError: wrong model, container or dtype (e.g. int64 images).
        ValueError: wrong shape, empty input, NaN/inf, or float values outside [0, 1].
    """
    return _batched(model, images, batch_size, head=False)


def class_probabilities(
    model: InDomainClassifier, images: np.ndarray | torch.Tensor, *, batch_size: int = 1000
) -> np.ndarray:
    """Softmax class probabilities of ``model``, float64 ``(N, 10)``, rows summing to 1.

    Same arguments and errors as :func:`extract_features`; feed the result to
    :func:`classifier_score` (spec 11 §6, step 5) or compare its argmax with labels.
    """
    return _batched(model, images, batch_size, head=True)

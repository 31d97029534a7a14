"""MultiMNIST, MultiFashion and Multi-(Fashion+MNIST) (spec 11 §5).

The standard multi-task benchmarks of Sener & Koltun (2018) and Lin et al. (2019). Each example
overlays two 28x28 images on a ``canvas_size x canvas_size`` canvas (36 by default): one at the
top-left corner, the other at the bottom-right corner, so that they overlap; the canvas is the
pixel-wise maximum of the two, optionally resized (bilinear with antialiasing) to ``output_size``
(28 by default). Task L is the class of the top-left image, task R the class of the bottom-right.

The construction is deterministic for a seed and vectorised (60k examples in about a second on 2
cores). Indices are drawn without replacement within each pass over a source (a fresh permutation
per pass), so with ``num_examples = len(source)`` every source image appears once on each side.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from ._images import LabelledImages, images_to_tensor, load_fashion_mnist, load_mnist

__all__ = [
    "MULTI_MNIST_VARIANTS",
    "MultiDigitImages",
    "load_multi_mnist",
    "make_multi_mnist",
    "normalize_multi_variant",
]

#: ``load_multi_mnist`` variants: (top-left source, bottom-right source) dataset names.
MULTI_MNIST_VARIANTS: dict[str, tuple[str, str]] = {
    "mnist": ("mnist", "mnist"),
    "fashion": ("fashion_mnist", "fashion_mnist"),
    "fashion_mnist": ("mnist", "fashion_mnist"),
}
_VARIANT_ALIASES = {
    "multi_mnist": "mnist",
    "multimnist": "mnist",
    "multi_fashion": "fashion",
    "multifashion": "fashion",
    "fashion+mnist": "fashion_mnist",
    "multi_fashion_mnist": "fashion_mnist",
    "multi_fashion+mnist": "fashion_mnist",
}
_SOURCE_SIZE = 28
_CHUNK = 8192  # examples resized at a time (bounds the float32 working memory to ~40 MB)


@dataclasses.dataclass(frozen=True, eq=False)
class MultiDigitImages:
    """Two-task image data. Unpacks as ``images, labels_left, labels_right = data``.

    Attributes:
        images: ``uint8`` array ``(N, H, W)``.
        labels_left: ``int64`` ``(N,)``, class of the top-left image (task L).
        labels_right: ``int64`` ``(N,)``, class of the bottom-right image (task R).
        variant: ``"mnist"`` (MultiMNIST), ``"fashion"`` (MultiFashion), ``"fashion_mnist"``
            (Multi-(Fashion+MNIST): MNIST top-left, Fashion bottom-right), or ``"<left>+<right>"``.
        split: the source split (``"train"`` / ``"test"``).
        seed: the seed that chose the pairs.
        source: how the data was built, with the sources of the underlying images.
        indices_left, indices_right: ``int64`` ``(N,)`` indices of the chosen images in the sources.
        licence: the licence(s) of the underlying images.
        canvas_size: side of the composition canvas.
        max_value: the largest possible pixel value (255).
    """

    images: np.ndarray
    labels_left: np.ndarray
    labels_right: np.ndarray
    variant: str
    split: str
    seed: int
    source: str
    indices_left: np.ndarray
    indices_right: np.ndarray
    licence: str = ""
    canvas_size: int = 36
    max_value: int = 255

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.images
        yield self.labels_left
        yield self.labels_right

    def __len__(self) -> int:
        return int(self.labels_left.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """Both tasks' labels as an ``int64`` array ``(N, 2)``: columns L, R."""
        return np.stack([self.labels_left, self.labels_right], axis=1)

    def to_tensor(self, value_range: Literal["unit", "symmetric"] = "unit") -> Any:
        """Images as a float32 torch tensor ``(N, 1, H, W)`` in [0, 1] (``unit``) or [-1, 1]."""
        return images_to_tensor(self.images, self.max_value, value_range)

    def label_tensors(self) -> tuple[Any, Any]:
        """``(labels_left, labels_right)`` as int64 torch tensors."""
        import torch

        return torch.from_numpy(self.labels_left.copy()), torch.from_numpy(self.labels_right.copy())


def _check_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def _check_source(data: object, role: str) -> LabelledImages:
    if not isinstance(data, LabelledImages):
        raise TypeError(
            f"{role} must be a LabelledImages (e.g. load_mnist()), got {type(data).__name__}"
        )
    images, labels = data.images, data.labels
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError(
            f"{role} images must be a uint8 array, got {getattr(images, 'dtype', None)}"
        )
    if images.ndim != 3 or images.shape[1:] != (_SOURCE_SIZE, _SOURCE_SIZE):
        raise ValueError(f"{role} images must have shape (N, 28, 28), got {images.shape}")
    if images.shape[0] < 1:
        raise ValueError(f"{role} holds no images")
    if (
        not isinstance(labels, np.ndarray)
        or labels.shape != (images.shape[0],)
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise ValueError(
            f"{role} labels must be an integer array of shape ({images.shape[0]},), "
            f"got {getattr(labels, 'dtype', None)} {getattr(labels, 'shape', None)}"
        )
    return data


def _draw_indices(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """``count`` indices into ``range(size)``: consecutive permutations, truncated."""
    passes = -(-count // size)
    return np.concatenate([rng.permutation(size) for _ in range(passes)])[:count].astype(np.int64)


def _variant_name(left: LabelledImages, right: LabelledImages | None) -> str:
    right_name = left.name if right is None else right.name
    for variant, names in MULTI_MNIST_VARIANTS.items():
        if names == (left.name, right_name):
            return variant
    return left.name if right is None else f"{left.name}+{right.name}"


def _resize(canvas: np.ndarray, output_size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as functional

    out = np.empty((canvas.shape[0], output_size, output_size), dtype=np.uint8)
    with torch.no_grad():
        for start in range(0, canvas.shape[0], _CHUNK):
            block = torch.from_numpy(canvas[start : start + _CHUNK]).to(torch.float32)
            resized = functional.interpolate(
                block.unsqueeze(1),
                size=(output_size, output_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
            resized = resized.squeeze(1).round_().clamp_(0.0, 255.0).to(torch.uint8)
            out[start : start + _CHUNK] = resized.numpy()
    return out


def make_multi_mnist(
    left: LabelledImages,
    right: LabelledImages | None = None,
    *,
    num_examples: int | None = None,
    seed: int = 0,
    canvas_size: int = 36,
    output_size: int | None = 28,
) -> MultiDigitImages:
    """Overlay pairs of 28x28 images into two-task examples (see the module docstring).

    Args:
        left: source of the top-left images (e.g. ``load_mnist("train")``).
        right: source of the bottom-right images; ``None`` uses ``left`` (MultiMNIST /
            MultiFashion). MNIST left and Fashion-MNIST right give Multi-(Fashion+MNIST).
        num_examples: how many examples (default ``len(left)``).
        seed: seed of the numpy generator that picks the pairs (non-negative int).
        canvas_size: side of the canvas (>= 28); the images overlap when it is < 56.
        output_size: side of the returned images (bilinear, antialiased, rounded to uint8), or
            ``None`` to return the canvas itself.

    Returns:
        :class:`MultiDigitImages` with the images, both labels and the chosen source indices.
    """
    left = _check_source(left, "left")
    if right is not None:
        right = _check_source(right, "right")
        if right.split != left.split:
            raise ValueError(
                f"left and right come from different splits ({left.split!r} vs {right.split!r}); "
                "mixing splits would leak test images into training"
            )
    second = left if right is None else right
    seed = _check_int(seed, "seed", 0)
    canvas_size = _check_int(canvas_size, "canvas_size", _SOURCE_SIZE)
    if output_size is not None:
        output_size = _check_int(output_size, "output_size", 1)
    count = len(left) if num_examples is None else _check_int(num_examples, "num_examples", 1)

    rng = np.random.default_rng(seed)
    indices_left = _draw_indices(rng, len(left), count)
    indices_right = _draw_indices(rng, len(second), count)

    canvas = np.zeros((count, canvas_size, canvas_size), dtype=np.uint8)
    canvas[:, :_SOURCE_SIZE, :_SOURCE_SIZE] = left.images[indices_left]
    offset = canvas_size - _SOURCE_SIZE
    corner = canvas[:, offset:, offset:]
    np.maximum(corner, second.images[indices_right], out=corner)
    if output_size is not None and output_size != canvas_size:
        images = _resize(canvas, output_size)
    else:
        images = canvas

    variant = _variant_name(left, right)
    sources = left.source if right is None else f"left: {left.source}; right: {right.source}"
    licences = dict.fromkeys([left.licence, second.licence])
    size_text = "canvas" if output_size is None else f"{output_size}x{output_size}"
    return MultiDigitImages(
        images=images,
        labels_left=np.asarray(left.labels, dtype=np.int64)[indices_left],
        labels_right=np.asarray(second.labels, dtype=np.int64)[indices_right],
        variant=variant,
        split=left.split,
        seed=seed,
        source=(
            f"multi-{variant} (seed {seed}, {canvas_size}x{canvas_size} canvas, {size_text}) "
            f"built from {sources}"
        ),
        indices_left=indices_left,
        indices_right=indices_right,
        licence="; ".join(licence for licence in licences if licence),
        canvas_size=canvas_size,
        max_value=255,
    )


def normalize_multi_variant(variant: str) -> str:
    """Canonical MultiMNIST variant name (``"Multi-Fashion+MNIST"`` → ``"fashion_mnist"``)."""
    if not isinstance(variant, str):
        raise TypeError(f"variant must be a str, got {type(variant).__name__}")
    key = variant.strip().lower().replace("-", "_").replace(" ", "_")
    key = _VARIANT_ALIASES.get(key, key)
    if key not in MULTI_MNIST_VARIANTS:
        raise ValueError(
            f"unknown MultiMNIST variant {variant!r}; valid: {', '.join(MULTI_MNIST_VARIANTS)}"
        )
    return key


def load_multi_mnist(
    split: Literal["train", "test"] = "train",
    variant: str = "mnist",
    *,
    num_examples: int | None = None,
    seed: int = 0,
    canvas_size: int = 36,
    output_size: int | None = 28,
) -> MultiDigitImages:
    """Build MultiMNIST (``"mnist"``), MultiFashion (``"fashion"``) or Multi-(Fashion+MNIST)
    (``"fashion_mnist"``: MNIST top-left, Fashion-MNIST bottom-right) from the offline sources.

    Raises:
        DatasetUnavailableError: MNIST or Fashion-MNIST is not installed (message: install command).
        ValueError: bad ``split``/``variant`` or builder arguments.
    """
    key = normalize_multi_variant(variant)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    loaders = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}
    left_name, right_name = MULTI_MNIST_VARIANTS[key]
    left = loaders[left_name](split)
    right = None if right_name == left_name else loaders[right_name](split)
    return make_multi_mnist(
        left,
        right,
        num_examples=num_examples,
        seed=seed,
        canvas_size=canvas_size,
        output_size=output_size,
    )

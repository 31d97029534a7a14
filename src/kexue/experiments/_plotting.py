"""Small plotting helpers shared by experiments (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from typing import Any

import numpy as np


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, with a clear error if missing."""
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install 'kexue[report]'") from error
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: np.ndarray, rows: int, columns: int, *, pad: int = 1) -> np.ndarray:
    """Tile ``rows*columns`` images ``(N, H, W)`` into one array with ``pad`` pixels between
    them."""
    if images.ndim != 3:
        raise ValueError(f"image_grid needs (N, H, W) images, got shape {images.shape}")
    count, height, width = images.shape
    if count < rows * columns:
        raise ValueError(f"image_grid needs {rows * columns} images, got {count}")
    grid = np.zeros((rows * (height + pad) + pad, columns * (width + pad) + pad), dtype=np.float64)
    for index in range(rows * columns):
        row, column = divmod(index, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[top : top + height, left : left + width] = images[index]
    return grid


def plot_trajectories(axis: Any, paths: Any) -> None:
    """Draw 2-D optimisation paths on ``axis``: a line per path, a dot at its start and a cross
    at its end (the toy figures of the multi-task experiments)."""
    for path in paths:
        array = np.asarray(path)
        axis.plot(array[:, 0], array[:, 1], linewidth=0.8, color="tab:blue")
        axis.plot(array[0, 0], array[0, 1], "o", markersize=2.5, color="tab:blue")
        axis.plot(array[-1, 0], array[-1, 1], "x", markersize=4, color="tab:red")


def frame_toy_axis(axis: Any, title: str, extent: float = 2.1) -> None:
    """Title, the square [−extent, extent]² view with equal aspect, and the legend of a 2-D toy
    panel (call after every labelled artist is drawn)."""
    axis.set_title(title)
    axis.set_xlim(-extent, extent)
    axis.set_ylim(-extent, extent)
    axis.set_aspect("equal")
    axis.legend(fontsize=7, loc="lower right")

"""kexue: PyTorch implementations of nine Scientific Spaces (kexue.fm) posts, with reproductions.

Importing ``kexue`` is cheap: subpackages (``kexue.data``, ``kexue.metrics``, ``kexue.report``,
...) are imported on first use, never eagerly.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

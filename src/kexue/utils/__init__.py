"""Shared conventions: seeding, devices, atomic writes, resumable checkpoints, typed configs,
progress."""

from __future__ import annotations

from ._checkpoint import Checkpointer, load_checkpoint, save_checkpoint
from ._config import Config
from ._device import resolve_device
from ._io import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from ._progress import progress, progress_enabled
from ._schedule import warmup_cosine_lr
from ._seed import make_generator, seed_everything

__all__ = [
    "Checkpointer",
    "Config",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_checkpoint",
    "make_generator",
    "progress",
    "progress_enabled",
    "read_json",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "warmup_cosine_lr",
]

"""Resumable checkpoints used by every trainer.

``save_checkpoint`` writes atomically (temp file + rename), so a run killed at any moment
leaves the last
complete checkpoint. ``Checkpointer`` wraps the usual loop: restore if a checkpoint exists,
save every
``every`` steps and at the end, and remember which step work resumes from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_open

__all__ = ["Checkpointer", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Atomically ``torch.save`` a mapping (model/optimizer ``state_dict``s, step, RNG states,
    ...)."""
    if not isinstance(state, Mapping):
        raise TypeError(f"checkpoint state must be a mapping, got {type(state).__name__}")
    with atomic_open(path, "wb") as handle:
        torch.save(dict(state), handle)
    return Path(path)


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only`` safe loading)."""
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no checkpoint at {target}")
    state = torch.load(target, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{target} does not hold a checkpoint mapping")
    return state


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng_state(state: Mapping[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Save/restore a training loop's objects by name, atomically, every ``every`` steps.

    Example::

        checkpointer = Checkpointer(run_dir / "checkpoint.pt", every=500,
                                    generator=generator, critic=critic, optimizer_g=opt_g)
        start = checkpointer.restore()            # 0 on a fresh run
        for step in range(start, total_steps):
            ...
            checkpointer.maybe_save(step + 1)     # saves when (step + 1) % every == 0
        checkpointer.save(total_steps)

    Any object with ``state_dict``/``load_state_dict`` (modules, optimizers, schedulers) and any
    ``torch.Generator`` can be registered. The torch RNG state
    is saved
    too, so a resumed run draws the same random numbers as an uninterrupted one.
    """

    def __init__(self, path: str | os.PathLike[str], *, every: int = 1000, **objects: Any) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        for name, obj in objects.items():
            if isinstance(obj, torch.Generator):
                continue  # saved through get_state/set_state
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise TypeError(
                    f"{name!r} has no state_dict/load_state_dict and is not a torch.Generator; "
                    "cannot checkpoint it"
                )
        self.path = Path(path)
        self.every = every
        self.objects = dict(objects)

    def exists(self) -> bool:
        return self.path.is_file()

    def remove(self) -> None:
        """Delete the checkpoint (e.g. once the final artefact is written)."""
        self.path.unlink(missing_ok=True)

    def restore(self, *, map_location: str | torch.device | None = "cpu") -> int:
        """Load every registered object's state if a checkpoint exists; return the step to
        resume from."""
        if not self.exists():
            return 0
        state = load_checkpoint(self.path, map_location=map_location)
        missing = sorted(set(self.objects) - set(state.get("objects", {})))
        if missing:
            raise ValueError(
                f"checkpoint {self.path} lacks state for {missing}; delete it to restart"
            )
        for name, obj in self.objects.items():
            if isinstance(obj, torch.Generator):
                obj.set_state(state["objects"][name])
            else:
                obj.load_state_dict(state["objects"][name])
        _restore_rng_state(state.get("rng", {}))
        return int(state["step"])

    def save(self, step: int, **extra: Any) -> Path:
        """Write a checkpoint for ``step`` (plus any JSON-like ``extra`` values) atomically."""
        state = {
            "step": int(step),
            "objects": {
                name: obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
                for name, obj in self.objects.items()
            },
            "rng": _rng_state(),
            "extra": extra,
        }
        return save_checkpoint(self.path, state)

    def maybe_save(self, step: int, **extra: Any) -> bool:
        """Save when ``step`` is a multiple of ``every``; return whether it saved."""
        if step > 0 and step % self.every == 0:
            self.save(step, **extra)
            return True
        return False

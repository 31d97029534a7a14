"""Training a latent-variable model as a density estimator (spec 02 §3.2, §7), with binarisation
protocols (pitfall 6), seeded, resumable per epoch, with a progress bar."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..utils import Checkpointer, Config, atomic_write_json, make_generator, progress, read_json
from ._estimators import GRADIENT_ESTIMATORS
from ._objectives import check_data, iwae_loss, multi_sample_vae_loss, vae_loss

__all__ = ["DensityTrainingConfig", "binarize", "train_density_model"]

Objective = Literal["vae", "iwae", "multi-sample-vae"]
Binarization = Literal["dynamic", "fixed", "none"]


def binarize(intensities: torch.Tensor, seed: int | torch.Generator) -> torch.Tensor:
    """Bernoulli pixels with ``P(1) = intensity`` (intensities in [0, 1]); a fixed ``seed`` gives
    the "fixed binarisation" protocol, a fresh draw per epoch the "dynamic" one (pitfall 6)."""
    intensities = check_data(intensities, "intensities")
    if intensities.min() < 0 or intensities.max() > 1:
        raise ValueError("intensities must lie in [0, 1]; divide uint8 images by 255 first")
    generator = seed if isinstance(seed, torch.Generator) else make_generator(seed)
    return torch.bernoulli(intensities, generator=generator)


@dataclasses.dataclass
class DensityTrainingConfig(Config):
    """Hyper-parameters of :func:`train_density_model`.

    ``objective``: ``vae`` (one sample, analytic KL), ``iwae`` (``num_samples`` importance samples)
    or ``multi-sample-vae``; ``gradient_estimator`` (``iwae``, ``dreg``, ``stl``; IWAE only) as in
    :func:`~kexue.density.iwae_loss`. Adam with ``eps = 1e-4`` as in the IWAE paper.
    ``binarization``: ``dynamic`` resamples binary pixels every epoch from the intensities,
    ``fixed`` uses one draw (seeded), ``none`` trains on the data as given.
    """

    objective: Objective = "vae"
    num_samples: int = 1
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    adam_eps: float = 1e-4
    binarization: Binarization = "dynamic"
    seed: int = 0
    gradient_estimator: str = "iwae"

    def __post_init__(self) -> None:
        if self.objective not in ("vae", "iwae", "multi-sample-vae"):
            raise ValueError(f"objective must be vae, iwae or multi-sample-vae: {self.objective!r}")
        if self.binarization not in ("dynamic", "fixed", "none"):
            raise ValueError(f"binarization must be dynamic, fixed or none: {self.binarization!r}")
        for name in ("num_samples", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.objective == "vae" and self.num_samples != 1:
            raise ValueError("objective 'vae' uses one sample; use 'iwae' or 'multi-sample-vae'")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(
                f"gradient_estimator must be one of {list(GRADIENT_ESTIMATORS)}, got "
                f"{self.gradient_estimator!r}"
            )
        if self.gradient_estimator != "iwae" and self.objective != "iwae":
            raise ValueError(
                f"gradient_estimator={self.gradient_estimator!r} estimates the IWAE bound's "
                "gradient: use objective='iwae'"
            )


def train_density_model(
    model: nn.Module,
    data: torch.Tensor,
    config: DensityTrainingConfig,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` (a :class:`~kexue.density.LatentVariableModel` module) on ``data [N, D]``.

    With ``run_dir`` a checkpoint is written after every epoch (atomically) and a killed run
    resumes at the last finished epoch with identical results. Returns the per-epoch history
    (mean training loss), also written to ``run_dir/history.json``.
    """
    data = check_data(data, "data")
    if data.ndim != 2:
        raise ValueError(f"data must be [N, D] (flatten images first), got {tuple(data.shape)}")
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    generator = make_generator(config.seed)
    history: list[dict[str, float]] = []
    checkpointer = None
    start = 0
    if run_dir is not None:
        directory = Path(run_dir)
        directory.mkdir(parents=True, exist_ok=True)
        checkpointer = Checkpointer(directory / "checkpoint.pt", every=1, model=model,
                                    optimizer=optimizer, generator=generator)  # fmt: skip
        start = checkpointer.restore()
        if start and (directory / "history.json").is_file():
            history = list(read_json(directory / "history.json"))[:start]
    fixed = (
        binarize(data, make_generator(config.seed + 1)) if config.binarization == "fixed" else None
    )
    epochs = progress(range(start, config.epochs), desc=f"{config.objective}-{config.num_samples}",
                      unit="epoch", disable=None if show_progress else True, initial=start,
                      total=config.epochs)  # fmt: skip
    model.train()
    for epoch in epochs:
        if config.binarization == "dynamic":
            epoch_data = binarize(data, generator)
        else:
            epoch_data = fixed if fixed is not None else data
        order = torch.randperm(len(data), generator=generator)
        total, count = 0.0, 0
        for begin in range(0, len(order), config.batch_size):
            batch = epoch_data[order[begin : begin + config.batch_size]].to(device)
            loss = _loss(model, batch, config)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        history.append({"epoch": epoch + 1, "loss": total / count})
        if checkpointer is not None and run_dir is not None:
            checkpointer.save(epoch + 1)
            atomic_write_json(Path(run_dir) / "history.json", history)
    model.eval()
    return history


def _loss(model: nn.Module, batch: torch.Tensor, config: DensityTrainingConfig) -> torch.Tensor:
    if config.objective == "vae":
        return vae_loss(model, batch)  # type: ignore[arg-type]
    if config.objective == "iwae":
        return iwae_loss(model, batch, config.num_samples,  # type: ignore[arg-type]
                         gradient_estimator=config.gradient_estimator)  # fmt: skip
    return multi_sample_vae_loss(model, batch, config.num_samples)  # type: ignore[arg-type]

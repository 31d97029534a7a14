"""Adversarial losses on critic scores (spec 01 §5.4): means over the batch.

====== ================================================ ==========================
name   critic (D) loss                                   generator (G) loss
====== ================================================ ==========================
wgan   mean(s_fake) − mean(s_real)                        −mean(s_fake)
hinge  mean relu(1 − s_real) + mean relu(1 + s_fake)      −mean(s_fake)
ns     mean softplus(−s_real) + mean softplus(s_fake)     mean softplus(−s_fake)
bce01  BCE of (s+1)/2 ∈ [0, 1] (real → 1, fake → 0)       BCE of (s_fake+1)/2 → 1
====== ================================================ ==========================

``bce01`` needs scores in [-1, 1] (a GN critic); the official generator loss omits the (s+1)/2 map,
which kexue applies in both losses.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional as F

__all__ = ["LOSSES", "LossName", "critic_loss", "generator_loss"]

LossName = Literal["wgan", "hinge", "ns", "bce01"]
LOSSES: tuple[str, ...] = ("wgan", "hinge", "ns", "bce01")


def _check(name: str, *scores: torch.Tensor) -> None:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; use one of {LOSSES}")
    for score in scores:
        if not isinstance(score, torch.Tensor) or score.ndim != 1 or score.numel() == 0:
            raise ValueError("scores must be non-empty 1-D tensors [B] (one score per sample)")
    if name == "bce01":
        for score in scores:
            if bool((score.detach().abs() > 1 + 1e-6).any()):
                raise ValueError(
                    "the bce01 loss needs scores in [-1, 1] (a GN-normalised critic); "
                    "use 'ns' for unbounded scores"
                )


def _probability(score: torch.Tensor) -> torch.Tensor:
    return ((score + 1) / 2).clamp(0.0, 1.0)


def critic_loss(
    name: LossName, scores_real: torch.Tensor, scores_fake: torch.Tensor
) -> torch.Tensor:
    """The critic's loss (to minimise) from per-sample scores of real and fake batches."""
    _check(name, scores_real, scores_fake)
    if name == "wgan":
        return scores_fake.mean() - scores_real.mean()
    if name == "hinge":
        return F.relu(1 - scores_real).mean() + F.relu(1 + scores_fake).mean()
    if name == "ns":
        return F.softplus(-scores_real).mean() + F.softplus(scores_fake).mean()
    real = _probability(scores_real)
    fake = _probability(scores_fake)
    return F.binary_cross_entropy(real, torch.ones_like(real)) + F.binary_cross_entropy(
        fake, torch.zeros_like(fake)
    )


def generator_loss(name: LossName, scores_fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss (to minimise) from the critic's scores of generated samples."""
    _check(name, scores_fake)
    if name in ("wgan", "hinge"):
        return -scores_fake.mean()
    if name == "ns":
        return F.softplus(-scores_fake).mean()
    fake = _probability(scores_fake)
    return F.binary_cross_entropy(fake, torch.ones_like(fake))

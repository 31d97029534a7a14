"""Hubness-prior latent sampling and its baselines (spec 10 §2, §3, §7.2, §7.3).

:class:`HubnessPriorSampler` streams pools of ``pool_size`` latents from the prior, optionally maps
them into a generator's W space (``mapping``), computes the pool's hub values in that space
(:func:`k_occurrence`, k = 5 by default) and keeps the latents passing the threshold, until ``n``
are collected (spec 10 §7.2). Two conventions (spec 10 §3, pitfalls 1-2):

* ``"post"`` — k true neighbours, self excluded, keep N_k > t (the post's ``s > t``);
* ``"official"`` — self included in the k slots (scikit-learn ``kneighbors_graph(X)``), keep
  N_k ≥ t; equivalent to N_{k−1}^{excl} ≥ t − 1.

A threshold that no point can pass raises at construction: the largest possible hub value is
pool_size − 1 (post) and 1 + (pool_size − 1) = pool_size for k ≥ 2, 1 for k = 1 (official).
The sample reports the acceptance rate (accepted / drawn over all pools), the number of pools and
the wall time. Hub selection is a pure function of each pool, so results depend on ``pool_size``
(spec 10 pitfall 4).

Baselines (spec 10 §7.3): :func:`truncate` (StyleGAN's w' = w̄ + ψ(w − w̄), w̄ the given centre or the
sample mean as in the official Colab), :class:`TruncationSampler`, :func:`norm_truncation_mask` /
:func:`norm_truncate` (keep the smallest-norm fraction: the radial part of hub selection) and
:class:`NormTruncationSampler` (same pools, matched acceptance rate).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable

import torch

from ._measures import CONVENTIONS, Convention, hub_mask
from ._occurrence import METRICS, Metric, _check_int, k_occurrence

__all__ = [
    "HubnessPriorSampler",
    "LatentSample",
    "LatentSampler",
    "NormTruncationSampler",
    "TruncationSampler",
    "max_hub_value",
    "norm_truncate",
    "norm_truncation_mask",
    "truncate",
]

#: A prior: ``(n, generator) -> Tensor[n, latent_dim]``.
LatentSampler = Callable[[int, torch.Generator | None], torch.Tensor]
Mapping = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class LatentSample:
    """Latents drawn by a sampler.

    ``z`` (n, latent_dim) prior latents; ``w`` their images under the mapping (the selection or
    truncation space) or None without one; ``scores`` the per-latent selection score (hub value for
    the hubness prior, ‖·‖ for norm truncation; None for truncation); ``acceptance_rate`` accepted /
    drawn; ``pools`` pools drawn; ``drawn`` latents drawn; ``seconds`` wall time; ``complete``
    False when ``max_pools`` ran out first (only with ``on_shortfall="warn"``).
    """

    z: torch.Tensor
    w: torch.Tensor | None
    scores: torch.Tensor | None
    acceptance_rate: float
    pools: int
    drawn: int
    seconds: float
    complete: bool = True

    @property
    def latents(self) -> torch.Tensor:
        """What a generator consumes: ``w`` when a mapping was used, else ``z``."""
        return self.z if self.w is None else self.w


def _check_latent_dim(latent_dim: object) -> int:
    return _check_int(latent_dim, "latent_dim", minimum=1)


def _standard_normal(latent_dim: int, device: torch.device) -> LatentSampler:
    def draw(n: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(n, latent_dim, generator=generator, device=device)

    return draw


def _draw(
    latent_sampler: LatentSampler,
    count: int,
    generator: torch.Generator | None,
    latent_dim: int,
    mapping: Mapping | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    z = latent_sampler(count, generator)
    if not isinstance(z, torch.Tensor) or z.shape != (count, latent_dim):
        raise ValueError(
            f"latent_sampler must return a tensor of shape ({count}, {latent_dim}), got "
            f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}"
        )
    if not bool(torch.isfinite(z).all()):
        raise ValueError("latent_sampler returned NaN or infinite values")
    if mapping is None:
        return z, None
    with torch.no_grad():
        w = mapping(z)
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[0] != count:
        raise ValueError(
            f"mapping must return a tensor of shape ({count}, m), got "
            f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}"
        )
    if not bool(torch.isfinite(w).all()):
        raise ValueError("mapping returned NaN or infinite values")
    return z, w.detach()


def max_hub_value(pool_size: int, k: int, convention: Convention = "post") -> int:
    """The largest hub value any point of a pool can reach (spec 10 §5): N − 1 (post; needs
    k ≥ 1), N for the official convention with k ≥ 2 (self + all others), 1 with k = 1."""
    _check_int(pool_size, "pool_size", minimum=2)
    _check_int(k, "k", minimum=1)
    if convention == "post":
        return pool_size - 1
    if convention == "official":
        return pool_size if k >= 2 else 1
    raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _finalise(
    z_parts: list[torch.Tensor],
    w_parts: list[torch.Tensor],
    score_parts: list[torch.Tensor],
    n: int,
    *,
    drawn: int,
    accepted: int,
    pools: int,
    start: float,
    complete: bool,
) -> LatentSample:
    z = torch.cat(z_parts)[:n]
    w = torch.cat(w_parts)[:n] if w_parts else None
    scores = torch.cat(score_parts)[:n] if score_parts else None
    return LatentSample(
        z=z,
        w=w,
        scores=scores,
        acceptance_rate=accepted / drawn if drawn else 0.0,
        pools=pools,
        drawn=drawn,
        seconds=time.perf_counter() - start,
        complete=complete,
    )


def _shortfall(sampler: str, collected: int, n: int, pools: int, rate: float, mode: str) -> None:
    message = (
        f"{sampler}: only {collected} of {n} latents after max_pools = {pools} pools "
        f"(acceptance rate {rate:.3%}); lower the threshold, enlarge pool_size or raise max_pools"
    )
    if mode == "raise":
        raise RuntimeError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


class _PoolSampler:
    """Shared pool-streaming machinery of the selection samplers."""

    def __init__(
        self,
        latent_dim: int,
        pool_size: int,
        latent_sampler: LatentSampler | None,
        mapping: Mapping | None,
        max_pools: int,
        device: torch.device | str | None,
        on_shortfall: str,
    ) -> None:
        self.latent_dim = _check_latent_dim(latent_dim)
        self.pool_size = _check_int(pool_size, "pool_size", minimum=2)
        self.max_pools = _check_int(max_pools, "max_pools", minimum=1)
        if on_shortfall not in ("raise", "warn"):
            raise ValueError(f"on_shortfall must be 'raise' or 'warn', got {on_shortfall!r}")
        self.on_shortfall = on_shortfall
        self.device = torch.device("cpu" if device is None else device)
        if latent_sampler is not None and not callable(latent_sampler):
            raise TypeError(
                "latent_sampler must be a callable (n, generator) -> Tensor[n, latent_dim]"
            )
        if mapping is not None and not callable(mapping):
            raise TypeError("mapping must be a callable z -> w (e.g. a mapping network)")
        self.latent_sampler: LatentSampler = latent_sampler or _standard_normal(
            self.latent_dim, self.device
        )
        self.mapping = mapping

    def _select(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> LatentSample:
        """Stream pools until ``n`` latents pass the selection (see the class docstring)."""
        n = _check_int(n, "n", minimum=1)
        start = time.perf_counter()
        z_parts: list[torch.Tensor] = []
        w_parts: list[torch.Tensor] = []
        score_parts: list[torch.Tensor] = []
        collected = drawn = pools = 0
        while collected < n and pools < self.max_pools:
            z, w = _draw(
                self.latent_sampler, self.pool_size, generator, self.latent_dim, self.mapping
            )
            mask, scores = self._select(z if w is None else w)
            pools += 1
            drawn += self.pool_size
            z_parts.append(z[mask])
            if w is not None:
                w_parts.append(w[mask])
            score_parts.append(scores[mask])
            collected += int(mask.sum())
        complete = collected >= n
        if not complete:
            _shortfall(
                type(self).__name__, collected, n, pools, collected / drawn, self.on_shortfall
            )
        return _finalise(
            z_parts,
            w_parts,
            score_parts,
            n,
            drawn=drawn,
            accepted=collected,
            pools=pools,
            start=start,
            complete=complete,
        )


class HubnessPriorSampler(_PoolSampler):
    """Keep latents whose hub value within their pool passes ``threshold`` (spec 10 §7.2).

    ``latent_dim``; ``k`` (5), ``threshold`` t (50), ``pool_size`` N (10 000) and ``convention``
    (``"post"``: N_k > t self excluded; ``"official"``: N_k ≥ t self included); ``latent_sampler``
    any prior ``(n, generator) -> Tensor[n, latent_dim]`` (default standard normal on ``device``);
    ``mapping`` z → w (hub values are then computed in W and the sample carries w, as the official
    code does in StyleGAN's W space); ``metric`` of the k-NN search; ``max_pools`` before giving up
    (``on_shortfall="raise"`` → RuntimeError, ``"warn"`` → RuntimeWarning and a short sample).
    """

    def __init__(
        self,
        latent_dim: int,
        k: int = 5,
        threshold: float = 50,
        pool_size: int = 10_000,
        convention: Convention = "post",
        *,
        latent_sampler: LatentSampler | None = None,
        mapping: Mapping | None = None,
        metric: Metric = "sqeuclidean",
        max_pools: int = 100,
        block_size: int | None = None,
        device: torch.device | str | None = None,
        on_shortfall: str = "raise",
    ) -> None:
        super().__init__(
            latent_dim, pool_size, latent_sampler, mapping, max_pools, device, on_shortfall
        )
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.k = _check_int(k, "k", minimum=1)
        limit = self.pool_size - 1 if convention == "post" else self.pool_size
        if self.k > limit:
            raise ValueError(
                f"k = {self.k} is too large for pool_size = {self.pool_size} ({convention})"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a real number, got {type(threshold).__name__}")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        maximum = max_hub_value(self.pool_size, self.k, convention)
        impossible = threshold >= maximum if convention == "post" else threshold > maximum
        if impossible:
            rule = "N_k > t" if convention == "post" else "N_k >= t"
            raise ValueError(
                f"threshold {threshold} can never be passed: the largest possible hub value in a "
                f"pool of {self.pool_size} with k = {self.k} ({convention} convention) is "
                f"{maximum} "
                f"and the rule is {rule}; lower the threshold or enlarge pool_size"
            )
        self.threshold = float(threshold)
        self.convention: Convention = convention
        self.metric: Metric = metric
        self.block_size = block_size

    def hub_values(self, points: torch.Tensor) -> torch.Tensor:
        """Hub values of a pool in this sampler's convention (LongTensor)."""
        return k_occurrence(
            points,
            self.k,
            metric=self.metric,
            include_self=self.convention == "official",
            block_size=self.block_size,
        )

    def _select(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = self.hub_values(points)
        return hub_mask(counts, self.threshold, self.convention), counts


def truncate(w: torch.Tensor, psi: float = 0.7, center: torch.Tensor | None = None) -> torch.Tensor:
    """The truncation trick w' = w̄ + ψ(w − w̄) (spec 10 §7.3).

    ``center`` w̄ of shape (m,) (e.g. StyleGAN's tracked mean, or 0 for z' = ψz in a centred Z);
    None → the sample mean of ``w`` (as the official Colab's ``get_trunca``).
    """
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[0] == 0:
        raise ValueError("w must be a non-empty tensor of shape (n, m)")
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not math.isfinite(psi):
        raise ValueError(f"psi must be a finite real number, got {psi!r}")
    if center is None:
        center = w.mean(dim=0)
    elif center.shape != (w.shape[1],):
        raise ValueError(f"center must have shape ({w.shape[1]},), got {tuple(center.shape)}")
    return center + psi * (w - center)


def norm_truncation_mask(
    z: torch.Tensor, rate: float, center: torch.Tensor | None = None
) -> torch.Tensor:
    """Mask of the ⌈rate·n⌉ rows with the smallest ‖z − center‖ (center None → the origin);
    ties by the smaller index (spec 10 §7.3, norm truncation)."""
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] == 0:
        raise ValueError("z must be a non-empty tensor of shape (n, m)")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise ValueError(f"rate must be in (0, 1], got {rate!r}")
    offset = z if center is None else z - center
    norms = torch.linalg.vector_norm(offset, dim=1)
    keep = max(1, math.ceil(rate * z.shape[0] - 1e-9))
    order = torch.sort(norms, stable=True).indices[:keep]
    mask = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    mask[order] = True
    return mask


def norm_truncate(z: torch.Tensor, rate: float, center: torch.Tensor | None = None) -> torch.Tensor:
    """The rows kept by :func:`norm_truncation_mask`, in their original order."""
    return z[norm_truncation_mask(z, rate, center)]


class NormTruncationSampler(_PoolSampler):
    """Keep the ``rate`` fraction of smallest-norm latents of each pool (spec 10 §7.3).

    Use it at the hub sampler's measured acceptance rate to isolate the radial component of hub
    selection (spec 10 §5). With a ``mapping`` the norm is ‖w − w̄_pool‖ in W (pool mean centre),
    otherwise ‖z‖.
    """

    def __init__(
        self,
        latent_dim: int,
        rate: float,
        pool_size: int = 10_000,
        *,
        latent_sampler: LatentSampler | None = None,
        mapping: Mapping | None = None,
        max_pools: int = 100,
        device: torch.device | str | None = None,
        on_shortfall: str = "raise",
    ) -> None:
        super().__init__(
            latent_dim, pool_size, latent_sampler, mapping, max_pools, device, on_shortfall
        )
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        self.rate = float(rate)

    def _select(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        center = points.mean(dim=0) if self.mapping is not None else None
        mask = norm_truncation_mask(points, self.rate, center)
        offset = points if center is None else points - center
        return mask, torch.linalg.vector_norm(offset, dim=1)


class TruncationSampler:
    """Random latents followed by the truncation trick (spec 10 §7.3): in Z, z' = center + ψ(z −
    center); with a ``mapping``, w' = w̄ + ψ(w − w̄) in W. ``center`` None → the sample mean of the
    batch drawn (the official Colab's choice); pass zeros for z' = ψz."""

    def __init__(
        self,
        latent_dim: int,
        psi: float = 0.7,
        *,
        latent_sampler: LatentSampler | None = None,
        mapping: Mapping | None = None,
        center: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.latent_dim = _check_latent_dim(latent_dim)
        if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not math.isfinite(psi):
            raise ValueError(f"psi must be a finite real number, got {psi!r}")
        self.psi = float(psi)
        self.device = torch.device("cpu" if device is None else device)
        self.latent_sampler: LatentSampler = latent_sampler or _standard_normal(
            self.latent_dim, self.device
        )
        self.mapping = mapping
        self.center = center

    def sample(self, n: int, generator: torch.Generator | None = None) -> LatentSample:
        """Draw ``n`` latents and truncate them (acceptance rate 1)."""
        n = _check_int(n, "n", minimum=1)
        start = time.perf_counter()
        z, w = _draw(self.latent_sampler, n, generator, self.latent_dim, self.mapping)
        if w is None:
            z = truncate(z, self.psi, self.center)
        else:
            w = truncate(w, self.psi, self.center)
        return LatentSample(
            z=z,
            w=w,
            scores=None,
            acceptance_rate=1.0,
            pools=1,
            drawn=n,
            seconds=time.perf_counter() - start,
        )

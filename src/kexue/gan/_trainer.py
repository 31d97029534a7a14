"""WGAN training loop over any :mod:`kexue.lipschitz` constraint (spec 01 §5.2–5.5, §6, §10 E1.1).

One training *step* is one generator step preceded by ``n_critic`` critic steps:

* critic step (§5.2): real batch, ``fake = G(z)`` without a graph; real and fake are scored in
  **one** concatenated batch (``constraint.scores(critic, cat([real, fake]))``, as the official GN
  code does; for per-sample critics this is identical to scoring them separately), then
  ``critic_loss + penalty``, optimiser step, ``constraint.after_critic_step`` (e.g. clipping);
* generator step (§5.3): ``fake = G(z)``, ``constraint.generator_backward`` fills G's gradients
  only (GN's ``fast`` step by default), optimiser step, EMA update of a copy of G (§6).

Optimisers (§5.5, §6, E1.1): Adam(β = (0, 0.9)) with TTUR rates 2e-4 (critic) / 1e-4 (generator);
for weight clipping, RMSprop with lr 5e-5 (Arjovsky et al. 2017) unless the config says otherwise.

Distributed data parallel (``torchrun``): see :class:`WGANTrainer`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..lipschitz import (
    CONSTRAINTS,
    LOSSES,
    LipschitzConstraint,
    LossName,
    critic_loss,
    make_constraint,
)
from ..utils import (
    Checkpointer,
    Config,
    atomic_write_json,
    load_checkpoint,
    make_generator,
    progress,
    read_json,
    resolve_device,
    save_checkpoint,
)

__all__ = [
    "DataSampler",
    "WGANConfig",
    "WGANTrainer",
    "critic_step_backward",
    "derive_seed",
    "tensor_sampler",
]

DataSampler = Callable[[int, torch.Generator], torch.Tensor]
"""``(batch_size, torch.Generator) -> real batch [batch_size, ...]``."""

OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop")


@dataclasses.dataclass
class WGANConfig(Config):
    """Hyper-parameters of :class:`WGANTrainer` (defaults: spec 01 E1.1, the 2-D toy).

    ``None`` means "the per-constraint default": optimiser ``rmsprop`` for ``clip`` and ``adam``
    otherwise; learning rates 5e-5 / 5e-5 with RMSprop and 2e-4 (critic) / 1e-4 (generator) with
    Adam (TTUR). ``batch_size`` is per process (under DDP the union batch is
    ``world_size * batch_size``); ``generator_batch_size`` defaults to ``batch_size``.
    ``generator_steps`` is the default number of training steps (= generator steps).
    ``ema_decay = 0`` makes the EMA generator a copy of G.
    """

    constraint: str = "gn"
    constraint_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    loss: str = "wgan"
    n_critic: int = 5
    batch_size: int = 256
    generator_batch_size: int | None = None
    optimizer: str | None = None
    lr_critic: float | None = None
    lr_generator: float | None = None
    betas: tuple[float, float] = (0.0, 0.9)
    generator_steps: int = 5000
    ema_decay: float = 0.999
    latent_dim: int = 2
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.constraint not in CONSTRAINTS:
            raise ValueError(
                f"unknown constraint {self.constraint!r}; choose from {sorted(CONSTRAINTS)}"
            )
        if not isinstance(self.constraint_options, dict):
            raise TypeError("constraint_options must be a dict of constructor options")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {LOSSES}")
        for name in (
            "n_critic",
            "batch_size",
            "generator_steps",
            "latent_dim",
            "checkpoint_every",
            "log_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.generator_batch_size is not None and (
            isinstance(self.generator_batch_size, bool)
            or not isinstance(self.generator_batch_size, int)
            or self.generator_batch_size < 1
        ):
            raise ValueError(
                f"generator_batch_size must be an int >= 1 or None, got "
                f"{self.generator_batch_size!r}"
            )
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {OPTIMIZERS} or None, got {self.optimizer!r}"
            )
        for name in ("lr_critic", "lr_generator"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite float or None, got {value!r}")
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas must be two floats in [0, 1), got {self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")

    @property
    def resolved_optimizer(self) -> str:
        """``optimizer``, or the per-constraint default (RMSprop for clipping, else Adam)."""
        if self.optimizer is not None:
            return self.optimizer
        return "rmsprop" if self.constraint == "clip" else "adam"

    @property
    def resolved_lr_critic(self) -> float:
        if self.lr_critic is not None:
            return self.lr_critic
        return 5e-5 if self.resolved_optimizer == "rmsprop" else 2e-4

    @property
    def resolved_lr_generator(self) -> float:
        if self.lr_generator is not None:
            return self.lr_generator
        return 5e-5 if self.resolved_optimizer == "rmsprop" else 1e-4

    @property
    def resolved_generator_batch_size(self) -> int:
        return self.batch_size if self.generator_batch_size is None else self.generator_batch_size


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (e.g. rank and stream name) by SHA-256,
    so that streams of different ranks/purposes are independent and reproducible."""
    text = ":".join(str(part) for part in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def tensor_sampler(data: torch.Tensor) -> DataSampler:
    """A :data:`DataSampler` drawing rows of ``data`` uniformly with replacement.

    ``data`` is ``[N, ...]`` (e.g. images ``[N, 1, 28, 28]`` in [−1, 1]); the sampled batch stays on
    ``data``'s device (indices are drawn on the CPU generator).
    """
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
    if data.ndim < 2 or data.shape[0] == 0:
        raise ValueError(f"data must be a non-empty batch [N, ...], got shape {tuple(data.shape)}")
    if not data.is_floating_point():
        raise TypeError(f"data must be floating point, got {data.dtype}")

    def sample(batch_size: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(data.shape[0], (batch_size,), generator=generator)
        return data[index.to(data.device)]

    return sample


def critic_step_backward(
    constraint: LipschitzConstraint,
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    loss: str,
    step: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The critic loss of spec 01 §5.2 on one (real, fake) pair, back-propagated (``.backward()``).

    Real and fake are scored in one concatenated batch and split; the constraint's penalty (if
    any) is added. ``critic`` may be a ``DistributedDataParallel`` wrapper: only ``.backward()``
    touches parameter gradients, so DDP's gradient all-reduce applies. Returns the detached
    adversarial loss and penalty.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real batch {tuple(real.shape)} and generated batch {tuple(fake.shape)} must have the "
            "same shape (check the data sampler, batch sizes and the generator's output shape)"
        )
    batch = real.shape[0]
    scores = constraint.scores(critic, torch.cat([real, fake]))
    adversarial = critic_loss(cast(LossName, loss), scores[:batch], scores[batch:])
    penalty = constraint.penalty(critic, real, fake, step)
    total = adversarial if penalty is None else adversarial + penalty
    torch.autograd.backward(total)
    return adversarial.detach(), None if penalty is None else penalty.detach()


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


class WGANTrainer:
    """Seeded, resumable WGAN trainer over a named Lipschitz constraint (spec 01 §5, §6, E1.1).

    Args:
        generator: ``G``, mapping ``[B, latent_dim]`` latents to samples shaped like real data.
        critic: ``D`` (no BatchNorm); ``constraint.prepare_critic`` is applied once here (e.g.
            spectral norm registration), so use ``trainer.critic`` afterwards.
        data_sampler: ``(batch_size, torch.Generator) -> real batch`` (e.g.
            ``eight_gaussians().sample`` or :func:`tensor_sampler`).
        config: :class:`WGANConfig`.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` ...
        run_dir: where ``checkpoint.pt``, ``history.json`` and ``config.json`` live; ``None``
            disables checkpointing. An existing checkpoint there is restored at construction.

    Determinism: the data, latent and "global" streams are ``torch.Generator`` objects seeded from
    ``config.seed`` (and the rank). Inside a step, torch's global CPU RNG (used e.g. by the GP
    interpolation weights) runs on the trainer's own saved state and the caller's state is restored
    afterwards, so models built after ``seed_everything(seed)`` give identical parameters for the
    same seed whatever else runs in the process. Checkpoints hold G, D, both optimisers, the EMA
    generator and all three streams, so a killed run resumes bit-identically. (Random operations
    on CUDA tensors inside the models are not covered by the streams.)

    Distributed (``torchrun``): when ``torch.distributed`` is initialised, G and D are wrapped in
    ``DistributedDataParallel`` (gradients averaged over ranks by DDP's own all-reduce; the
    double-backward paths of GP/GN only differentiate w.r.t. inputs with ``autograd.grad`` and
    accumulate parameter gradients with a single ``.backward()``, which DDP supports). Each rank
    draws its own data/latent/global-RNG streams; the generator step uses the unwrapped critic
    (it only back-propagates into ``G(z)``). Only rank 0 writes files; the per-rank RNG states are
    gathered into rank 0's checkpoint so that resuming with the same world size is exact.
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        data_sampler: DataSampler,
        config: WGANConfig | None = None,
        device: str | torch.device = "cpu",
        run_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(generator, nn.Module) or not isinstance(critic, nn.Module):
            raise TypeError("generator and critic must be torch.nn.Module instances")
        if not callable(data_sampler):
            raise TypeError("data_sampler must be a callable (batch_size, torch.Generator)")
        self.config = config if config is not None else WGANConfig()
        if not isinstance(self.config, WGANConfig):
            raise TypeError(f"config must be a WGANConfig, got {type(self.config).__name__}")
        self.device = resolve_device(device)
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0
        self.data_sampler = data_sampler
        self.run_dir = None if run_dir is None else Path(run_dir)

        self.constraint = make_constraint(self.config.constraint, **self.config.constraint_options)
        generator = generator.to(self.device).train()
        critic = self.constraint.prepare_critic(critic.to(self.device)).train()
        self.generator: nn.Module = generator
        self.critic: nn.Module = critic
        self.generator_ema: nn.Module = copy.deepcopy(generator).eval().requires_grad_(False)

        self._g: nn.Module = generator
        self._d: nn.Module = critic
        self.frozen_critic_parameters: list[str] = []
        if self.distributed:
            self.frozen_critic_parameters = self._freeze_unreached_critic_parameters()
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Plain DDP (find_unused_parameters=False, static_graph=False): both alternatives
            # insert a sink whose backward runs inside the inner autograd.grad of GP/GN and
            # reduces too early (measured: wrong parameter updates); see _freeze_... for `su`.
            self._g = DistributedDataParallel(generator, device_ids=ids)
            self._d = DistributedDataParallel(critic, device_ids=ids)

        self.optimizer_g, self.optimizer_d = self._make_optimizers()
        self.data_rng = make_generator(derive_seed(self.config.seed, "data", self.rank))
        self.latent_rng = make_generator(derive_seed(self.config.seed, "latent", self.rank))
        # The state torch's global CPU RNG has inside this trainer's steps (e.g. GP's α): swapped
        # in and out around every step, so trainers do not disturb each other or the caller.
        self.global_rng = make_generator(derive_seed(self.config.seed, "global", self.rank))

        self.step = 0
        self.history: list[dict[str, float]] = []
        self._seconds = 0.0
        self._saved_step = -1
        self.checkpointer: Checkpointer | None = None
        if self.run_dir is not None:
            self.checkpointer = Checkpointer(
                self.run_dir / "checkpoint.pt",
                every=self.config.checkpoint_every,
                generator=self.generator,
                critic=self.critic,
                generator_ema=self.generator_ema,
                optimizer_g=self.optimizer_g,
                optimizer_d=self.optimizer_d,
                data_rng=self.data_rng,
                latent_rng=self.latent_rng,
                global_rng=self.global_rng,
            )
            self._restore()

    # ------------------------------------------------------------------ setup

    def _freeze_unreached_critic_parameters(self) -> list[str]:
        """Freeze critic parameters that the critic loss cannot reach (DDP only).

        Some constraints never differentiate every parameter: Su's variant ⟨g/‖g‖, x⟩ does not
        depend on the last layer's bias at all (spec 01 §4). Single-process training leaves such a
        parameter's ``.grad`` at None, so the optimiser never moves it; DDP instead waits for its
        gradient forever ("Expected to have finished reduction"). A dry critic step on a copy
        (probe batch from a separate stream, global RNG state preserved) finds them structurally
        (``grad is None``, not merely zero), and they get ``requires_grad_(False)``: the same
        trajectory as a single process. Returns their names.
        """
        probe_critic = copy.deepcopy(self.critic)
        probe_rng = make_generator(derive_seed(self.config.seed, "probe"))
        with torch.random.fork_rng(devices=[]):
            real = self._sample_checked(2, probe_rng)
            critic_step_backward(
                self.constraint, probe_critic, real, real.clone() + 0.01, self.config.loss, 0
            )
        unreached = [
            name
            for name, parameter in probe_critic.named_parameters()
            if parameter.requires_grad and parameter.grad is None
        ]
        parameters = dict(self.critic.named_parameters())
        for name in unreached:
            parameters[name].requires_grad_(False)
        return unreached

    def _make_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        config = self.config
        g_params = list(self.generator.parameters())
        d_params = list(self.critic.parameters())
        if not g_params or not d_params:
            raise ValueError("generator and critic must both have parameters")
        if config.resolved_optimizer == "rmsprop":
            return (
                torch.optim.RMSprop(g_params, lr=config.resolved_lr_generator),
                torch.optim.RMSprop(d_params, lr=config.resolved_lr_critic),
            )
        return (
            torch.optim.Adam(g_params, lr=config.resolved_lr_generator, betas=config.betas),
            torch.optim.Adam(d_params, lr=config.resolved_lr_critic, betas=config.betas),
        )

    def _restore(self) -> None:
        assert self.checkpointer is not None
        if not self.checkpointer.exists():
            return
        self.step = self.checkpointer.restore(map_location=self.device)
        self._saved_step = self.step
        extra = load_checkpoint(self.checkpointer.path).get("extra", {})
        self.history = [dict(entry) for entry in extra.get("history", [])]
        self._seconds = float(extra.get("seconds", 0.0))
        rank_states = extra.get("rank_states")
        if self.distributed:
            if rank_states is not None and len(rank_states) == self.world_size:
                state = rank_states[self.rank]
                self.data_rng.set_state(state["data"])
                self.latent_rng.set_state(state["latent"])
                self.global_rng.set_state(state["global"])
            else:
                warnings.warn(
                    "checkpoint was written with a different world size; per-rank random streams "
                    "are re-derived from the seed and step (the run is not bit-identical to an "
                    "uninterrupted one)",
                    stacklevel=2,
                )
                for name, rng in (
                    ("data", self.data_rng),
                    ("latent", self.latent_rng),
                    ("global", self.global_rng),
                ):
                    rng.manual_seed(derive_seed(self.config.seed, name, self.rank, self.step))

    # --------------------------------------------------------------- sampling

    def _latent(self, batch_size: int) -> torch.Tensor:
        z = torch.randn(batch_size, self.config.latent_dim, generator=self.latent_rng)
        return z.to(self.device)

    def _real(self, batch_size: int) -> torch.Tensor:
        return self._sample_checked(batch_size, self.data_rng)

    def _sample_checked(self, batch_size: int, rng: torch.Generator) -> torch.Tensor:
        real = self.data_sampler(batch_size, rng)
        if not isinstance(real, torch.Tensor):
            raise TypeError(f"data_sampler must return a tensor, got {type(real).__name__}")
        if real.ndim < 2 or real.shape[0] != batch_size:
            raise ValueError(
                f"data_sampler returned shape {tuple(real.shape)} for batch_size={batch_size}; "
                "it must return [batch_size, ...]"
            )
        return real.to(self.device)

    # --------------------------------------------------------------- training

    def critic_step(self, critic_step_index: int) -> float:
        """One critic update (spec 01 §5.2); returns the loss (adversarial + penalty)."""
        batch = self.config.batch_size
        real = self._real(batch)
        with torch.no_grad():
            fake = self._g(self._latent(batch))
        self.optimizer_d.zero_grad(set_to_none=True)
        adversarial, penalty = critic_step_backward(
            self.constraint, self._d, real, fake, self.config.loss, critic_step_index
        )
        self.optimizer_d.step()
        self.constraint.after_critic_step(self.critic)
        value = adversarial if penalty is None else adversarial + penalty
        return float(value)

    def generator_step(self) -> float:
        """One generator update (spec 01 §5.3) and the EMA update; returns the loss."""
        z = self._latent(self.config.resolved_generator_batch_size)
        self.optimizer_g.zero_grad(set_to_none=True)
        fake = self._g(z)
        # The unwrapped critic: the generator loss only back-propagates into G(z), the critic's
        # parameters receive nothing, so DDP must not expect a critic gradient reduction.
        value = self.constraint.generator_backward(
            self.critic, fake, cast(LossName, self.config.loss)
        )
        self.critic.zero_grad(set_to_none=True)
        self.optimizer_g.step()
        self._update_ema()
        return float(value)

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        for ema, param in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            if decay == 0.0:
                ema.copy_(param)
            else:
                ema.lerp_(param, 1.0 - decay)
        for ema_buffer, buffer in zip(
            self.generator_ema.buffers(), self.generator.buffers(), strict=True
        ):
            ema_buffer.copy_(buffer)

    def _mean_over_ranks(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return (tensor / self.world_size).tolist()

    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """Train until ``steps`` generator steps in total (default ``config.generator_steps``).

        Resumes from ``self.step`` (restored from the checkpoint). Every ``log_every`` steps (and
        at the last) appends ``{step, critic_loss, generator_loss, seconds}`` to the history
        (critic loss averaged over the step's critic updates; under DDP also over ranks); the
        history is written to ``run_dir/history.json``. Returns the history.
        """
        total = self.config.generator_steps if steps is None else steps
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"steps must be a non-negative int, got {steps!r}")
        if self.is_main and self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.config.save(self.run_dir / "config.json")
        bar = progress(
            total=total,
            initial=min(self.step, total),
            desc=f"wgan-{self.config.constraint}",
            disable=None if self.is_main else True,
        )
        try:
            while self.step < total:
                started = time.perf_counter()
                with torch.random.fork_rng(devices=[]):
                    torch.set_rng_state(self.global_rng.get_state())
                    critic_losses = [
                        self.critic_step(self.step * self.config.n_critic + i)
                        for i in range(self.config.n_critic)
                    ]
                    generator_value = self.generator_step()
                    self.global_rng.set_state(torch.get_rng_state())
                self._seconds += time.perf_counter() - started
                self.step += 1
                bar.update(1)
                if self.step % self.config.log_every == 0 or self.step == total:
                    critic_value, generator_value = self._mean_over_ranks(
                        [sum(critic_losses) / len(critic_losses), generator_value]
                    )
                    entry = {
                        "step": self.step,
                        "critic_loss": critic_value,
                        "generator_loss": generator_value,
                        "seconds": self._seconds,
                    }
                    self.history.append(entry)
                    bar.set_postfix(d=f"{critic_value:.4f}", g=f"{generator_value:.4f}")
                    if not (math.isfinite(critic_value) and math.isfinite(generator_value)):
                        warnings.warn(
                            f"non-finite WGAN loss at step {self.step}: {entry}", stacklevel=2
                        )
                if self.step % self.config.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            bar.close()
        if self._saved_step != self.step:
            self.save_checkpoint()
        return self.history

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` and ``history.json`` (rank 0; all ranks must call it)."""
        if self.checkpointer is None or self.run_dir is None:
            return
        own = {
            "data": self.data_rng.get_state(),
            "latent": self.latent_rng.get_state(),
            "global": self.global_rng.get_state(),
        }
        rank_states: list[Any] = [own]
        if self.distributed:
            rank_states = [None] * self.world_size
            dist.all_gather_object(rank_states, own)
        self._saved_step = self.step
        if not self.is_main:
            return
        self.checkpointer.save(
            self.step,
            history=self.history,
            seconds=self._seconds,
            rank_states=rank_states,
            world_size=self.world_size,
        )
        atomic_write_json(self.run_dir / "history.json", self.history)

    # -------------------------------------------------------------- outputs

    @torch.no_grad()
    def sample(
        self, n: int, ema: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` generated samples (on the CPU) from the EMA generator (``ema=True``) or raw G.

        The latents come from ``generator`` or, by default, a fresh stream seeded from
        ``config.seed`` (the training streams are not touched). G is evaluated in eval mode.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        rng = (
            generator
            if generator is not None
            else make_generator(derive_seed(self.config.seed, "sample"))
        )
        model = self.generator_ema if ema else self.generator
        was_training = model.training
        model.eval()
        try:
            chunks = []
            for start in range(0, n, 4096):
                size = min(4096, n - start)
                z = torch.randn(size, self.config.latent_dim, generator=rng).to(self.device)
                chunks.append(model(z).detach().cpu())
        finally:
            model.train(was_training)
        return torch.cat(chunks)

    def save_generator(self, path: str | os.PathLike[str], ema: bool = True) -> Path:
        """Atomically save the (EMA) generator's ``state_dict`` with the config."""
        model = self.generator_ema if ema else self.generator
        state = {
            "state_dict": _unwrap(model).state_dict(),
            "config": self.config.to_dict(),
            "ema": ema,
            "step": self.step,
        }
        return save_checkpoint(path, state)

    def load_history(self) -> list[dict[str, float]]:
        """The history saved in ``run_dir/history.json`` (empty if none)."""
        if self.run_dir is None or not (self.run_dir / "history.json").is_file():
            return []
        return cast(list[dict[str, float]], read_json(self.run_dir / "history.json"))

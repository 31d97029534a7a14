"""Run under ``torchrun --nproc_per_node=N``: DDP WGAN steps equal single-process union-batch steps.

For each constraint, every rank builds the same :class:`WGANTrainer` (so the DDP wrapping and the
freezing of unreachable critic parameters are the trainer's own), takes two critic steps on its
own slice of a fixed batch, and one generator step on its own slice of a fixed latent batch. Rank 0
repeats the same steps in a single process on the union batch (penalty terms are averaged over the
per-rank slices with the same random interpolation weights). Gradients are compared in float64;
rank 0 writes ``{constraint: {"critic": max|Δgrad|, "generator": max|Δgrad|}}`` as JSON to argv[1].
"""

from __future__ import annotations

import copy
import gc
import json
import sys

import torch
from torch import distributed as dist

from kexue.gan import MLPCritic, MLPGenerator, WGANConfig, WGANTrainer, critic_step_backward
from kexue.lipschitz import critic_loss

CASES: dict[str, dict[str, object]] = {
    "none": {},
    "sn": {},
    "gp": {},
    "r1": {},
    "gn": {},
    "gn-double": {"generator_mode": "double"},
    "gran": {},
    "su": {},
}


def _max_difference(first: list[torch.Tensor | None], second: list[torch.Tensor | None]) -> float:
    worst = 0.0
    for a, b in zip(first, second, strict=True):
        if a is None and b is None:
            continue
        if a is None or b is None:
            return float("inf")
        worst = max(worst, (a - b).abs().max().item())
    return worst


def main() -> None:
    dist.init_process_group("gloo")
    _compare()  # the DDP modules die with this frame, before gloo is torn down
    gc.collect()
    dist.barrier()  # no rank tears gloo down while another is still working
    dist.destroy_process_group()


def _compare() -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_default_dtype(torch.float64)
    batch = 6
    results: dict[str, dict[str, float]] = {}
    for case, options in CASES.items():
        constraint = case.split("-")[0]
        torch.manual_seed(0)
        generator, critic = MLPGenerator(hidden=(16, 16)), MLPCritic(hidden=(16, 16))
        config = WGANConfig(
            constraint=constraint,
            constraint_options=dict(options),
            batch_size=batch,
            n_critic=1,
            ema_decay=0.0,
        )
        trainer = WGANTrainer(
            generator, critic, lambda n, g: torch.randn(n, 2, generator=g), config
        )
        reference_critic = copy.deepcopy(trainer.critic)
        reference_generator = copy.deepcopy(trainer.generator)
        data = torch.Generator().manual_seed(1)
        real = torch.randn(2, world, batch, 2, generator=data)
        fake = torch.randn(2, world, batch, 2, generator=data)
        latent = torch.randn(world, batch, 2, generator=data)
        critic_difference = 0.0
        for iteration in range(2):
            # DDP: each rank its slice; global RNG (GP's α) seeded per rank and iteration.
            torch.manual_seed(100 + 10 * iteration + rank)
            trainer.critic.zero_grad(set_to_none=True)
            critic_step_backward(
                trainer.constraint,
                trainer._d,
                real[iteration, rank],
                fake[iteration, rank],
                "wgan",
                iteration,
            )
            ddp_grads = [p.grad for p in trainer.critic.parameters()]
            # single process, union batch
            reference_critic.zero_grad(set_to_none=True)
            if constraint in ("gp", "r1"):  # random α: average per-rank penalties
                for r in range(world):
                    torch.manual_seed(100 + 10 * iteration + r)
                    x_r, x_f = real[iteration, r], fake[iteration, r]
                    scores = trainer.constraint.scores(reference_critic, torch.cat([x_r, x_f]))
                    loss = critic_loss("wgan", scores[:batch], scores[batch:])
                    penalty = trainer.constraint.penalty(reference_critic, x_r, x_f, iteration)
                    assert penalty is not None
                    ((loss + penalty) / world).backward()
            else:
                x_r, x_f = real[iteration].reshape(-1, 2), fake[iteration].reshape(-1, 2)
                scores = trainer.constraint.scores(reference_critic, torch.cat([x_r, x_f]))
                critic_loss("wgan", scores[: world * batch], scores[world * batch :]).backward()
            reference_grads = [p.grad for p in reference_critic.parameters()]
            critic_difference = max(critic_difference, _max_difference(ddp_grads, reference_grads))
            with torch.no_grad():  # identical SGD updates so iteration 2 starts from new weights
                for module in (trainer.critic, reference_critic):
                    for parameter in module.parameters():
                        if parameter.grad is not None:
                            parameter -= 0.05 * parameter.grad
        # generator step: DDP G, unwrapped critic (as in WGANTrainer.generator_step)
        trainer.generator.zero_grad(set_to_none=True)
        fake_rank = trainer._g(latent[rank])
        trainer.constraint.generator_backward(trainer.critic, fake_rank, "wgan")
        ddp_grads = [p.grad for p in trainer.generator.parameters()]
        reference_generator.zero_grad(set_to_none=True)
        union = reference_generator(latent.reshape(-1, 2))
        trainer.constraint.generator_backward(reference_critic, union, "wgan")
        reference_grads = [p.grad for p in reference_generator.parameters()]
        results[case] = {
            "critic": critic_difference,
            "generator": _max_difference(ddp_grads, reference_grads),
            "frozen": float(len(trainer.frozen_critic_parameters)),
        }
    if rank == 0:
        with open(sys.argv[1], "w", encoding="utf-8") as handle:
            json.dump(results, handle)


if __name__ == "__main__":
    main()

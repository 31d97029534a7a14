"""Command line WGAN training (spec 01 §10 E1.1 toy mixtures, E1.4 images).

Single process::

    python -m kexue.gan.train --constraint gn --data 8gaussians --steps 200 --run-dir runs/gn

Data parallel on CPU (gloo) or GPUs (nccl), one process per device::

    torchrun --standalone --nproc_per_node=2 -m kexue.gan.train --constraint gp \\
        --data 8gaussians --steps 200 --run-dir runs/gp-ddp

Re-running the same command with the same ``--run-dir`` resumes from ``checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from torch import nn

from ..lipschitz import CONSTRAINTS, LOSSES
from ..utils import resolve_device, seed_everything
from ._architectures import (
    ACTIVATIONS,
    DCGANCritic28,
    DCGANGenerator28,
    MLPCritic,
    MLPGenerator,
    MLPImageCritic,
    MLPImageGenerator,
)
from ._trainer import DataSampler, WGANConfig, WGANTrainer, tensor_sampler

__all__ = ["build_parser", "main"]

TOY_DATA = ("8gaussians", "25gaussians")
IMAGE_DATA = ("digits", "mnist", "fashion_mnist")


def _option(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kexue.gan.train",
        description=(
            "Train a WGAN with a Lipschitz constraint on a toy mixture or an offline image set "
            "(spec 01 E1.1/E1.4). Works under torchrun (DDP; --batch-size is per process). "
            "Re-running with the same --run-dir resumes from its checkpoint."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--constraint",
        default="gn",
        choices=sorted(CONSTRAINTS),
        help="Lipschitz constraint of the critic",
    )
    parser.add_argument(
        "--constraint-option",
        action="append",
        default=[],
        type=_option,
        metavar="KEY=VALUE",
        help="constraint constructor option (JSON value), repeatable, e.g. "
        'generator_mode="double" or eps=1e-4',
    )
    parser.add_argument("--loss", default="wgan", choices=LOSSES, help="adversarial loss")
    parser.add_argument(
        "--data",
        default="8gaussians",
        choices=TOY_DATA + IMAGE_DATA,
        help="training data (images come from the offline datasets, spec 11)",
    )
    parser.add_argument(
        "--arch",
        default="mlp",
        choices=("mlp", "dcgan"),
        help="image architecture (28×28 data only for dcgan)",
    )
    parser.add_argument(
        "--activation",
        default="relu",
        choices=ACTIVATIONS,
        help="toy critic activation (E1.2 ablation)",
    )
    parser.add_argument(
        "--subset", type=int, default=10000, help="number of training images used (image data)"
    )
    parser.add_argument("--steps", type=int, default=5000, help="generator steps")
    parser.add_argument("--n-critic", type=int, default=5, help="critic steps per G step")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="per-process batch (default 256 toy, 64 images)",
    )
    parser.add_argument(
        "--optimizer",
        choices=("adam", "rmsprop"),
        default=None,
        help="default: rmsprop for clip, adam otherwise",
    )
    parser.add_argument(
        "--lr-critic", type=float, default=None, help="default 2e-4 (adam) / 5e-5 (rmsprop)"
    )
    parser.add_argument(
        "--lr-generator", type=float, default=None, help="default 1e-4 (adam) / 5e-5 (rmsprop)"
    )
    parser.add_argument("--ema-decay", type=float, default=0.999, help="0 disables the EMA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument(
        "--run-dir",
        type=Path,
        required=True,
        help="directory for checkpoint.pt, history.json, config.json",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--backend",
        default=None,
        choices=("gloo", "nccl"),
        help="torch.distributed backend under torchrun (default: nccl on CUDA, gloo otherwise)",
    )
    return parser


def _models(args: argparse.Namespace, data: torch.Tensor | None) -> tuple[nn.Module, nn.Module]:
    if data is None:
        return MLPGenerator(latent_dim=2), MLPCritic(activation=args.activation)
    shape = tuple(data.shape[1:])
    features = int(data[0].numel())
    if args.arch == "dcgan":
        if shape != (1, 28, 28):
            raise SystemExit(f"--arch dcgan needs 28×28 images, {args.data} has shape {shape}")
        return DCGANGenerator28(latent_dim=64), DCGANCritic28()
    return (
        MLPImageGenerator(latent_dim=64, out_shape=shape),
        MLPImageCritic(in_features=features),
    )


def _sampler(args: argparse.Namespace) -> tuple[DataSampler, torch.Tensor | None]:
    if args.data in TOY_DATA:
        from ..data import eight_gaussians, twenty_five_gaussians

        mixture = eight_gaussians() if args.data == "8gaussians" else twenty_five_gaussians()
        return (lambda n, rng: mixture.sample(n, rng)), None
    from ..data import images_to_tensor, load_dataset

    dataset = load_dataset(args.data, "train")
    images = dataset.images[: args.subset]
    tensor = images_to_tensor(images, dataset.max_value, value_range="symmetric")
    return tensor_sampler(tensor), tensor


def _init_distributed(args: argparse.Namespace) -> torch.device:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(args.device)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        backend = args.backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend)
        return device
    return resolve_device(args.device)


def _train(args: argparse.Namespace, device: torch.device) -> None:
    seed_everything(args.seed)
    sampler, data = _sampler(args)
    generator, critic = _models(args, data)
    config = WGANConfig(
        constraint=args.constraint,
        constraint_options=dict(args.constraint_option),
        loss=args.loss,
        n_critic=args.n_critic,
        batch_size=args.batch_size or (256 if data is None else 64),
        optimizer=args.optimizer,
        lr_critic=args.lr_critic,
        lr_generator=args.lr_generator,
        generator_steps=args.steps,
        ema_decay=args.ema_decay,
        latent_dim=2 if data is None else 64,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
    )
    trainer = WGANTrainer(generator, critic, sampler, config, device, args.run_dir)
    history = trainer.train()
    if trainer.is_main:
        trainer.save_generator(args.run_dir / "generator_ema.pt", ema=True)
        summary = {
            "run_dir": str(args.run_dir),
            "steps": trainer.step,
            "world_size": trainer.world_size,
            "last": history[-1] if history else None,
        }
        print(json.dumps(summary), file=sys.stdout, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = _init_distributed(args)
    finished = False
    try:
        _train(args, device)  # the DDP modules die with this frame, before gloo is torn down
        finished = True
    finally:
        if dist.is_initialized():
            # Release gloo work objects while the interpreter is fully alive and let every rank
            # arrive before any destroys the group: otherwise a rank can abort at exit with
            # "terminate called without an active exception" (pytorch/pytorch#190489).
            gc.collect()
            if finished:
                dist.barrier()
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

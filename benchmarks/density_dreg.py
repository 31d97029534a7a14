"""IWAE vs DReG training on MNIST at equal epochs (issue 21 item 3; spec 02 §3.2, C2.7).

``python benchmarks/density_dreg.py [--quick] [--threads N (default 1)] [--seeds S (default 3)]``

The IWAE paper's one-stochastic-layer architecture (784-200-200-50, tanh, Bernoulli decoder)
trained with the IWAE bound (K = 5 and K = 50) and Adam (1e-3, eps 1e-4, batch 100) on the first
``--train`` MNIST images (dynamic binarisation), once with the standard gradient estimator and
once with DReG (:func:`kexue.density.iwae_loss`, ``gradient_estimator="dreg"``), from the same
initialisation and data order per seed. Evaluated by ``log_likelihood`` with M = 1000 on the first
``--test`` test images (fixed binarisation): mean NLL, and the paired difference
NLL(DReG) − NLL(IWAE) per seed with a 95 % t interval over seeds. Also the wall time per
training run (one process, interleaved by seed). Results stored as they finish (resumable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _harness when run as a script

from _harness import Row, Settings, add_common_args, settings_from_args, write_results
from kexue.data import load_mnist
from kexue.density import (
    DensityTrainingConfig,
    binarize,
    iwae_architecture,
    log_likelihood,
    train_density_model,
)
from kexue.utils import atomic_write_json, read_json

NAME = "density_dreg"
ESTIMATORS = ("iwae", "dreg")


def data(train: int, test: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = load_mnist("train")
    held_out = load_mnist("test")
    x = torch.tensor(np.asarray(images.images[:train]), dtype=torch.float32).reshape(train, -1)
    y = torch.tensor(np.asarray(held_out.images[:test]), dtype=torch.float32).reshape(test, -1)
    y = binarize(y / 255.0, torch.Generator().manual_seed(0))
    return x / 255.0, y


def run_one(samples: int, estimator: str, seed: int, epochs: int, train: torch.Tensor,
            test: torch.Tensor) -> dict[str, Any]:  # fmt: skip
    torch.manual_seed(seed)
    model = iwae_architecture(1)
    config = DensityTrainingConfig(objective="iwae", num_samples=samples, epochs=epochs,
                                   batch_size=100, lr=1e-3, seed=seed,
                                   gradient_estimator=estimator)  # fmt: skip
    started = time.perf_counter()
    history = train_density_model(model, train, config, show_progress=False)
    seconds = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        estimate = log_likelihood(model.double(), test.double(), 1000, seed=seed)
    flagged = estimate.unreliable if estimate.unreliable is not None else torch.zeros(1)
    return {"nll": estimate.nll, "seconds": seconds, "final_loss": history[-1]["loss"],
            "unreliable_fraction": float(flagged.double().mean())}  # fmt: skip


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t interval of the mean (NaN bounds for fewer than 2)."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if len(array) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array)))
    return mean, mean - half, mean + half


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    defaults = Settings(rounds=1, min_run_time=0.0)
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    add_common_args(parser, defaults)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.set_defaults(threads=1)
    args = parser.parse_args(argv)
    settings = settings_from_args(args, defaults)
    if settings.quick:
        args.seeds, args.train, args.test, args.epochs = 2, 300, 20, 1
    config = {"seeds": args.seeds, "train": args.train, "test": args.test, "epochs": args.epochs}
    sample_sizes = (5,) if settings.quick else (5, 50)
    partial = settings.out / f".{NAME}.{'quick' if settings.quick else 'full'}.partial.json"
    stored: dict[str, Any] = read_json(partial) if partial.is_file() else {}
    if stored.get("config") != config:
        stored = {"config": config, "runs": {}}  # a changed configuration starts afresh
    train, test = data(args.train, args.test)
    run_one(5, "dreg", 0, 1, train[:200], test[:4])  # warm-up (lazy initialisation), not stored
    for samples in sample_sizes:
        for seed in range(args.seeds):
            for estimator in ESTIMATORS:  # interleaved by seed
                key = f"K{samples}/{estimator}/seed{seed}"
                if key not in stored["runs"]:
                    stored["runs"][key] = run_one(samples, estimator, seed, args.epochs, train,
                                                  test)  # fmt: skip
                    atomic_write_json(partial, stored)
    rows, summary, notes = [], {}, []
    for samples in sample_sizes:
        runs = {e: [stored["runs"][f"K{samples}/{e}/seed{s}"] for s in range(args.seeds)]
                for e in ESTIMATORS}  # fmt: skip
        base = float(np.median([r["seconds"] for r in runs["iwae"]])) * 1e3
        for estimator in ESTIMATORS:
            times = [r["seconds"] * 1e3 for r in runs[estimator]]
            median = float(np.median(times))
            rows.append(Row(f"MNIST IWAE K = {samples}, one training run", estimator, "iwae",
                            median, 0.0, median / base, 0, times))  # fmt: skip
        difference = [d["nll"] - i["nll"] for d, i in zip(runs["dreg"], runs["iwae"], strict=True)]
        mean, low, high = t_interval(difference)
        summary[f"K{samples}"] = {
            "nll_iwae": [r["nll"] for r in runs["iwae"]],
            "nll_dreg": [r["nll"] for r in runs["dreg"]],
            "difference_mean": mean, "difference_interval": [low, high],
            "unreliable_fraction": {e: float(np.mean([r["unreliable_fraction"] for r in runs[e]]))
                                    for e in ESTIMATORS},
        }  # fmt: skip
        notes.append(
            f"K = {samples}: test NLL IWAE {np.mean(summary[f'K{samples}']['nll_iwae']):.2f}, "
            f"DReG {np.mean(summary[f'K{samples}']['nll_dreg']):.2f} nats; paired difference "
            f"DReG − IWAE {mean:+.2f} [{low:+.2f}, {high:+.2f}] (95 % t, {args.seeds} seeds)."
        )
    notes.insert(0, f"{args.epochs} epochs on {args.train} training images, M = 1000 on "
                 f"{args.test} test images; time per training run (ms), one process.")  # fmt: skip
    extra = {"config": config, "summary": summary}
    json_path, md_path = write_results(NAME, rows, dataclasses.replace(settings), extra, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    return json.loads(json_path.read_text())


if __name__ == "__main__":
    main()

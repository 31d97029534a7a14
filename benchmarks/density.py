"""Benchmark of ``kexue.density.log_likelihood`` against pythae's ``get_nll`` (spec 02 §3.3, E2.6).

``python benchmarks/density.py [--quick] [--device cuda] [--threads N (default 1)] [--rounds R]``

One VAE (MLP 784-200-200-50, tanh, Bernoulli decoder: the IWAE paper's one-layer architecture),
trained briefly with kexue's ``vae_loss`` on statically binarised MNIST, is seen by kexue through
:class:`BenchVAE` and by pythae as a ``pythae.models.VAE`` (``reconstruction_loss="bce"``) whose
encoder and decoder wrap the same modules; the decoder hands pythae ``sigmoid(logits)`` because
pythae's BCE takes probabilities. pythae drops the Gaussian constants of encoder and prior; they
cancel, so kexue's full ``torch.distributions`` densities give the same log-weights.

1. Equality (float64): each test point alone through pythae's ``get_nll`` with ``torch.randn_like``
   replaced by kexue's per-point noise stream, against kexue's ``log p̂`` (tolerance 1e-5); and
   pythae with its own RNG against kexue within Monte-Carlo error.
2. Samples used: decoder and encoder rows per point, counted by forward hooks.
3. Timing (float32, interleaved ``blocked_autorange``): kexue (default chunking) against
   ``get_nll`` with batch ``K/10`` and ``K``, under ``torch.no_grad`` (``get_nll`` does not
   disable autograd itself).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.metadata
import itertools
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _harness when run as a script

from _harness import (
    Row,
    Settings,
    Step,
    add_common_args,
    measure,
    settings_from_args,
    write_results,
)
from kexue.data import load_mnist
from kexue.density import log_likelihood, standard_normal, vae_loss
from kexue.density._likelihood import _derived_seed  # kexue's per-point noise seeds

NAME = "density"
TOLERANCE = 1e-5
SEED = 0


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


class BenchVAE(nn.Module):
    """MLP VAE following kexue's protocol; ``encoder_net``/``decoder_net`` are shared with pythae.

    ``encode(x) = N(mu, exp(log_var / 2))`` from ``encoder_net(x) = [mu, log_var]`` (pythae's
    parametrisation), ``decode(z) = Bernoulli(logits=decoder_net(z))``, ``prior() = N(0, I)``.
    """

    def __init__(self, in_features: int = 784, hidden: int = 200, latent_dim: int = 50) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder_net = _mlp([in_features, hidden, hidden, 2 * latent_dim])
        self.decoder_net = _mlp([latent_dim, hidden, hidden, in_features])

    def encode(self, x: torch.Tensor) -> Distribution:
        mu, log_var = self.encoder_net(x).chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)

    def decode(self, z: torch.Tensor) -> Distribution:
        return Independent(Bernoulli(logits=self.decoder_net(z), validate_args=False), 1)

    def prior(self) -> Distribution:
        return standard_normal(self.latent_dim, like=next(self.parameters()))


def load_pythae() -> tuple[Any, str]:
    """``(pythae.models module, status)``, or ``(None, reason)`` when pythae cannot be imported."""
    try:
        import pythae.models
    except ImportError as error:
        return None, (
            f"pythae not importable ({error}); pythae rows skipped. Install: pip install "
            "--no-deps pythae==0.1.2 'pydantic>=2'"
        )
    return pythae.models, f"pythae {importlib.metadata.version('pythae')}"


def as_pythae(model: BenchVAE, models: Any) -> Any:
    """A ``pythae.models.VAE`` (bce) whose encoder and decoder wrap ``model``'s networks."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = model.encoder_net

        def forward(self, x: torch.Tensor) -> Any:
            mu, log_var = self.net(x).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = model.decoder_net

        def forward(self, z: torch.Tensor) -> Any:
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    in_features = model.encoder_net[0].in_features
    config = models.VAEConfig(
        input_dim=(in_features,), latent_dim=model.latent_dim, reconstruction_loss="bce"
    )
    return models.VAE(config, encoder=Encoder(), decoder=Decoder()).eval()


def binarised_mnist(n_train: int, n_test: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """First ``n_train``/``n_test`` MNIST images, flattened, statically binarised (seeds 0, 1)."""
    parts, source = [], ""
    for index, (split, count) in enumerate((("train", n_train), ("test", n_test))):
        generator = torch.Generator().manual_seed(SEED + index)
        images = load_mnist(split)  # type: ignore[arg-type]
        source = images.source
        intensities = images.to_tensor("unit")[:count].flatten(1)
        parts.append(torch.bernoulli(intensities, generator=generator))
    return parts[0], parts[1], source


def train(model: BenchVAE, data: torch.Tensor, epochs: int, batch: int = 100) -> float:
    """Adam 1e-3 on kexue's ``vae_loss`` (analytic KL); returns the last epoch's mean loss."""
    torch.manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses: list[float] = []
    for _ in range(epochs):
        losses.clear()
        shuffled = data[torch.randperm(len(data))]
        for start in range(0, len(data), batch):
            loss = vae_loss(model, shuffled[start : start + batch])
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            losses.append(float(loss.detach()))
    return sum(losses) / len(losses)


@contextlib.contextmanager
def kexue_noise(
    point: int, num_samples: int, latent_dim: int, dtype: torch.dtype
) -> Iterator[None]:
    """Replace ``torch.randn_like`` (pythae's only noise source) by kexue's stream for ``point``."""
    generator = torch.Generator().manual_seed(_derived_seed(SEED, point))
    noise = torch.randn((num_samples, latent_dim), generator=generator, dtype=dtype)
    offset = 0

    def randn_like(like: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal offset
        block = noise[offset : offset + like.shape[0]]
        if block.shape != like.shape:
            raise RuntimeError(f"noise stream exhausted: {tuple(like.shape)} at row {offset}")
        offset += like.shape[0]
        return block.to(like)

    with mock.patch.object(torch, "randn_like", randn_like):
        yield


def check_equality(
    model: BenchVAE, vae: Any, x: torch.Tensor, num_samples: int, batch: int
) -> dict[str, Any]:
    """Per-point kexue vs pythae (shared noise) in float64, plus pythae's own RNG vs kexue."""
    kexue = log_likelihood(model, x, num_samples, seed=SEED)
    values = []
    with torch.no_grad():
        for n in range(len(x)):
            with kexue_noise(n, num_samples, model.latent_dim, x.dtype):
                values.append(vae.get_nll(x[n : n + 1], n_samples=num_samples, batch_size=batch))
        torch.manual_seed(SEED)
        own_rng = float(vae.get_nll(x, n_samples=num_samples, batch_size=batch))
    pythae = torch.tensor(values, dtype=torch.float64)
    error = float((pythae - kexue.log_likelihood).abs().max())
    kexue_mean = float(kexue.log_likelihood.mean())
    # two independent estimates of the same mean: SE of the difference ~ sqrt(2) x kexue's
    se = math.sqrt(2 * float(kexue.standard_error.square().sum())) / len(x)
    return {
        "points": len(x),
        "num_samples": num_samples,
        "pythae_batch_size": batch,
        "max_abs_error": error,
        "tolerance": TOLERANCE,
        "passed": error <= TOLERANCE,
        "kexue_mean_log_p": kexue_mean,
        "pythae_mean_log_p": float(pythae.mean()),
        "pythae_own_rng_mean_log_p": own_rng,
        "own_rng_difference_in_se": (own_rng - kexue_mean) / se,
        "kexue_nll_property": kexue.nll,
        "pythae_get_nll_return_value": own_rng,
    }


def dropped_samples(
    model: BenchVAE, vae: Any, x: torch.Tensor, num_samples: int, batch: int
) -> dict[str, Any]:
    """pythae's ``get_nll(K, batch)`` on kexue's noise against kexue at ``K`` and at the number of
    samples pythae keeps (``torch.randn`` draws of ``(K, d)`` and of ``(kept, d)`` share their
    first rows here, so equality shows which samples pythae used)."""
    kept = num_samples // batch * batch
    with torch.no_grad():
        values = []
        for n in range(len(x)):
            with kexue_noise(n, num_samples, model.latent_dim, x.dtype):
                values.append(vae.get_nll(x[n : n + 1], n_samples=num_samples, batch_size=batch))
    pythae = torch.tensor(values, dtype=torch.float64)
    full, used = (
        log_likelihood(model, x, k, seed=SEED).log_likelihood for k in (num_samples, kept)
    )
    return {
        "points": len(x),
        "num_samples": num_samples,
        "pythae_batch_size": batch,
        "max_abs_pythae_minus_kexue_at_kept": float((pythae - used).abs().max()),
        "max_abs_pythae_minus_kexue_at_K": float((pythae - full).abs().max()),
    }


def count_rows(
    model: BenchVAE, vae: Any, x: torch.Tensor, num_samples: int, batch: int
) -> dict[str, Any]:
    """Decoder and encoder input rows per point, for kexue and (if given) pythae's ``get_nll``."""
    counts: dict[str, Any] = {"num_samples": num_samples, "pythae_batch_size": batch}
    rows = {"decoder": 0, "encoder": 0}

    def hook(name: str, width: int) -> Any:
        def count(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            rows[name] += inputs[0].numel() // width

        return count

    handles = [
        model.decoder_net.register_forward_pre_hook(hook("decoder", model.latent_dim)),
        model.encoder_net.register_forward_pre_hook(hook("encoder", x.shape[-1])),
    ]
    runs: dict[str, Step] = {"kexue": lambda: log_likelihood(model, x, num_samples, seed=SEED)}
    if vae is not None:
        runs["pythae"] = lambda: vae.get_nll(x, n_samples=num_samples, batch_size=batch)
    with torch.no_grad():
        for name, run in runs.items():
            rows.update(decoder=0, encoder=0)
            run()
            counts.update({f"{name}_{key}_rows": value for key, value in rows.items()})
    for handle in handles:
        handle.remove()
    return counts


def timing_steps(model: BenchVAE, vae: Any, x: torch.Tensor, num_samples: int) -> dict[str, Step]:
    """Zero-argument estimator calls on ``x`` with ``num_samples`` proposals per point."""
    steps: dict[str, Step] = {"kexue": lambda: log_likelihood(model, x, num_samples, seed=SEED)}

    def pythae_step(batch: int) -> Step:
        def step() -> None:
            with torch.no_grad():
                vae.get_nll(x, n_samples=num_samples, batch_size=batch)

        return step

    if vae is not None:
        for batch in (num_samples // 10, num_samples):
            steps[f"pythae get_nll batch {batch}"] = pythae_step(batch)
    return steps


def _format(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _table(records: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown: one column per record when several, else a quantity/value table."""
    if len(records) == 1:
        items = records[0].items()
        return [
            "| quantity | value |",
            "|---|---:|",
            *(f"| {k} | {_format(v)} |" for k, v in items),
        ]
    keys = list(records[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys)]
    return lines + ["| " + " | ".join(_format(r[k]) for k in keys) + " |" for r in records]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write ``<out>/density.{json,md}``, print the table; return the JSON."""
    defaults = Settings(rounds=5, min_run_time=0.5)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, defaults)
    parser.set_defaults(threads=1)  # two threads on a busy 2-core machine ran ~50x slower
    settings = settings_from_args(parser.parse_args(argv), defaults)
    quick, device = settings.quick, settings.device
    models, anchor = load_pythae()
    n_train, epochs = (1000, 1) if quick else (60000, 5)
    train_x, test_x, source = binarised_mnist(n_train, 100)
    torch.manual_seed(SEED)
    model = BenchVAE()
    started = time.perf_counter()
    final_loss = train(model, train_x, epochs)
    training = {"images": n_train, "epochs": epochs, "batch": 100, "final_loss": final_loss}
    training["seconds"] = time.perf_counter() - started
    model64 = copy.deepcopy(model).double()  # equality and counts on the CPU (kexue's streams)
    vae = None if models is None else as_pythae(model, models)
    vae64 = None if models is None else as_pythae(model64, models)

    equality: dict[str, Any] = {"skipped": anchor}
    dropped: dict[str, Any] = {"skipped": anchor}
    if vae64 is not None:
        points, k, batch = (20, 100, 50) if quick else (100, 1000, 100)
        equality = check_equality(model64, vae64, test_x[:points].double(), k, batch)
        dropped = dropped_samples(model64, vae64, test_x[: 2 if quick else 10].double(), 5000, 3000)
    counts = [
        count_rows(model, vae, test_x[:1], k, b) for k, b in ((5000, 3000), (130, 100), (50, 100))
    ]
    points, k = (10, 100) if quick else (100, 1000)
    group = f"log-likelihood, {points} points x K={k} (float32)"
    model = copy.deepcopy(model).to(device)
    vae = None if models is None else as_pythae(model, models)
    steps = timing_steps(model, vae, test_x[:points].to(device), k)
    rows: list[Row] = measure(group, steps, "kexue", settings)

    notes = [
        f"Anchor: {anchor}. Data: {source}, static binarisation (seeds {SEED}, {SEED + 1}); "
        f"model trained {epochs} epoch(s) on {n_train} images with kexue's vae_loss "
        f"({training['seconds']:.1f} s, final loss {final_loss:.2f}). "
        "Memory is 0: neither estimator records autograd.",
        "",
        "## Equality (float64, pythae fed kexue's per-point noise via `torch.randn_like`)",
        "",
        *_table([equality]),
        "",
        "`get_nll` returns the mean log-likelihood (negative) under the name nll; kexue's "
        "`.nll` is its negative (positive for discrete data).",
        "",
        "## Samples used per point (rows through the decoder / encoder, forward hooks)",
        "",
        *_table(counts),
        "",
        "## Which samples pythae used (float64, kexue's noise stream)",
        "",
        *_table([dropped]),
    ]
    extra: dict[str, Any] = {
        "anchor": anchor,
        "data": source,
        "training": training,
        "equality": equality,
    }
    extra.update(sample_counts=counts, dropped_samples=dropped)
    json_path, md_path = write_results(NAME, rows, settings, extra, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    return {"rows": [dataclasses.asdict(row) for row in rows], **extra}


if __name__ == "__main__":
    main()

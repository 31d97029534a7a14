"""``primary-aux``: post 8907 (primary and auxiliary tasks); spec 08.

One task is the goal, the others must not get worse to first order: the update is the projection
of the main gradient onto the cone {u : ⟨u, gᵢ⟩ ≥ 0} (:func:`kexue.mtl.primary_auxiliary_direction`,
:class:`kexue.mtl.PrimaryAuxiliary`). Parts (each finished unit of work is cached, so a killed run
resumes where it stopped):

1. Noisy labels (spec 08 E8.1, E8.2): the loss on abundant noisily labelled data is the main task,
   the loss on a small clean set the auxiliary one. Noisy only, noisy + clean summed, the GCS
   cosine gate, GGLM per-sample loss masking and the post's projection (one auxiliary task: the
   closed form (gamma), which is also what the post's literal rule computes — checked in training).
   Digits (1,300 noisy / 100 clean / 397 test, MLP 64-128-10) with full-batch GD (E8.1);
   ``--full`` adds minibatches (the E8.2 protocol at digits scale), softmax regression, the clean
   set split into 10 per-class auxiliary tasks (exact solver vs the post's rule) and MNIST (20k
   images, 40 % and 60 % noise, 500 clean, MLP 784-256-10, minibatch 256, 5 epochs; E8.2).
2. L2 without a coefficient (E8.3, C8.8): over-parameterised softmax regression on 2,000 random
   ReLU features of digits (200 training images); no regularisation, weight decay tuned on a dev
   split, and :class:`kexue.mtl.L2AsAuxiliary` (coupled with SGD, decoupled with Adam); the ‖θ‖
   trajectories and the measured per-step growth bound.
3. The 2-D toy (E8.4, C8.7): main-only GD, summed GD and the projection from a grid of starts.
4. Solver study (E8.5, C8.3, C8.4): the post's literal coordinate rule against the exact rules
   (KKT selection, cyclic) and SciPy's NNLS on random instances; the §4 stall instance.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DatasetUnavailableError, load_digits, load_mnist
from ..mtl import (
    GradCosine,
    L2AsAuxiliary,
    PrimaryAuxiliary,
    PrimaryAuxInfo,
    PrimaryAuxSolver,
    gglm_mask,
    mtl_backward,
    per_sample_gradients,
    primary_auxiliary_direction,
)
from ..report import (
    Check,
    ExperimentContext,
    check_at_least,
    check_at_most,
    check_close,
    check_equal,
    register_experiment,
)
from ..utils import seed_everything
from ._plotting import frame_toy_axis, plot_trajectories, pyplot
from ._tables import format_mean_std

EPS64 = float(np.finfo(np.float64).eps)


@dataclasses.dataclass(frozen=True)
class Sizes:
    noisy_seeds: int
    noisy_full_batch_steps: int
    noisy_minibatch_steps: int  # 0: the minibatch regime is not run
    noisy_models: tuple[str, ...]  # "mlp" (64-64-10), "softmax" (softmax regression)
    per_class: bool  # the clean set as 10 per-class auxiliary tasks (kkt vs the post's rule)
    identity_steps: int  # one auxiliary task: solver="post" vs the closed form, in training
    mnist: bool
    mnist_noisy: int
    mnist_clean: int
    mnist_test: int
    mnist_epochs: int
    mnist_rates: tuple[float, ...]
    l2_seeds: int
    l2_steps: int
    l2_init_scales: tuple[float, ...]
    toy_grid: int
    toy_steps: int
    solver_instances: int


QUICK = Sizes(
    noisy_seeds=3,
    noisy_full_batch_steps=1000,
    noisy_minibatch_steps=0,
    noisy_models=("mlp",),
    per_class=False,
    identity_steps=200,
    mnist=False,
    mnist_noisy=20_000,
    mnist_clean=500,
    mnist_test=10_000,
    mnist_epochs=5,
    mnist_rates=(0.4, 0.6),
    l2_seeds=1,
    l2_steps=400,
    l2_init_scales=(1.0, 3.0),
    toy_grid=5,
    toy_steps=4000,
    solver_instances=1000,
)
FULL = Sizes(
    noisy_seeds=5,
    noisy_full_batch_steps=2000,
    noisy_minibatch_steps=4000,
    noisy_models=("mlp", "softmax"),
    per_class=True,
    identity_steps=1000,
    mnist=True,
    mnist_noisy=20_000,
    mnist_clean=500,
    mnist_test=10_000,
    mnist_epochs=5,
    mnist_rates=(0.4, 0.6),
    l2_seeds=5,
    l2_steps=2000,
    l2_init_scales=(1.0, 3.0, 10.0),
    toy_grid=9,
    toy_steps=6000,
    solver_instances=2000,
)


def _check_paired_gain(description: str, summary: dict[str, Any]) -> Check:
    """A paired gain over seeds decided by its 95 % Student-t interval: reproduced when the whole
    interval is above 0, not reproduced when it is below 0, inconclusive when it contains 0 (a
    mean gain of +0.001 ± 0.038 over 3 seeds is noise, not an improvement)."""
    mean, std, count = summary["diff_mean"], summary["diff_std"], summary["seeds"]
    if count < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return Check(description, mean, "95% CI > 0 (needs ≥ 2 seeds)", None)
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.975, count - 1)) * std / math.sqrt(count)
    lower, upper = mean - half, mean + half
    passed = True if lower > 0 else False if upper < 0 else None
    return Check(description, f"{mean:+.3f} (95% CI {lower:+.3f} … {upper:+.3f})", "95% CI > 0",
                 passed)  # fmt: skip


def _check_positive(description: str, measured: float) -> Check:
    """``measured > 0`` (strict: identical runs do not count as an improvement)."""
    passed = None if not math.isfinite(measured) else bool(measured > 0)
    return Check(description, measured, "> 0", passed)


# --------------------------------------------------------------------------------------------
# Part 1: noisy labels (E8.1, E8.2).

NOISY = "noisy only"
SUMMED = "noisy + clean (sum)"
GCS = "GCS (cosine gate)"
GGLM = "GGLM (per-sample masking)"
PROJECTION = "projection (post, 1 clean task)"
CLEAN = "clean only"
PER_CLASS_KKT = "projection, 10 per-class clean tasks (exact)"
PER_CLASS_POST = "projection, 10 per-class clean tasks (post's rule)"
NOISY_METHODS = (NOISY, SUMMED, GCS, GGLM, PROJECTION, CLEAN)
CLASSES = 10
DIGITS_HIDDEN = 128
FULL_BATCH_LR = 0.5  # digits, full batch (MLP and softmax regression)
MINIBATCH_LR = 0.2  # digits, minibatch 64
DIGITS_BATCH = 64


@dataclasses.dataclass(frozen=True)
class NoisyData:
    noisy_x: torch.Tensor
    noisy_y: torch.Tensor
    flipped: torch.Tensor  # bool: the label was corrupted
    clean_x: torch.Tensor
    clean_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclasses.dataclass(frozen=True)
class NoisySetting:
    """One training protocol: ``batch`` None = full-batch GD on the noisy set; the clean loss is
    always on the whole clean set (spec 08 pitfall 4)."""

    dataset: str  # "digits" or "mnist"
    model: str  # "mlp" or "softmax"
    hidden: int
    batch: int | None
    steps: int
    lr: float
    rate: float

    @property
    def label(self) -> str:
        model = f"MLP {self.hidden}" if self.model == "mlp" else "softmax regression"
        regime = "full batch" if self.batch is None else f"minibatch {self.batch}"
        return f"{self.dataset}, {model}, {regime}, {self.rate:.0%} noise"


def corrupt_labels(labels: torch.Tensor, rate: float, rng: np.random.Generator) -> torch.Tensor:
    """Symmetric label noise: exactly round(rate·N) labels, chosen at random, are replaced by a
    uniformly drawn *different* class. Returns the bool mask of corrupted labels."""
    count = len(labels)
    flipped = np.zeros(count, dtype=bool)
    flipped[rng.choice(count, size=round(rate * count), replace=False)] = True
    return torch.from_numpy(flipped)


def _apply_noise(
    labels: torch.Tensor, flipped: torch.Tensor, rng: np.random.Generator
) -> torch.Tensor:
    offsets = torch.from_numpy(rng.integers(1, CLASSES, size=len(labels)))
    return torch.where(flipped, (labels + offsets) % CLASSES, labels)


def digits_noisy_data(seed: int, rate: float) -> NoisyData:
    """Digits split by ``seed``: 1,300 noisy training images, 100 clean, 397 test (spec E8.1)."""
    data = load_digits("all")
    images = torch.from_numpy(data.images.reshape(len(data.images), -1).astype(np.float32) / 16.0)
    labels = torch.from_numpy(data.labels)
    rng = np.random.default_rng(seed)
    order = torch.from_numpy(rng.permutation(len(labels)))
    train, clean, test = order[:1300], order[1300:1400], order[1400:]
    flipped = corrupt_labels(labels[train], rate, rng)
    noisy = _apply_noise(labels[train], flipped, rng)
    return NoisyData(
        images[train], noisy, flipped, images[clean], labels[clean], images[test], labels[test]
    )


def mnist_noisy_data(seed: int, rate: float, sizes: Sizes) -> NoisyData:
    """MNIST: ``mnist_noisy`` noisy and ``mnist_clean`` clean images from the training set (split
    by ``seed``), the first ``mnist_test`` test images (spec E8.2)."""
    train, test = load_mnist("train"), load_mnist("test")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train.labels))
    noisy_index = order[: sizes.mnist_noisy]
    clean_index = order[sizes.mnist_noisy : sizes.mnist_noisy + sizes.mnist_clean]

    def images(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.reshape(len(array), -1).astype(np.float32) / 255.0)

    labels = torch.from_numpy(train.labels[noisy_index].astype(np.int64))
    flipped = corrupt_labels(labels, rate, rng)
    return NoisyData(
        images(train.images[noisy_index]),
        _apply_noise(labels, flipped, rng),
        flipped,
        images(train.images[clean_index]),
        torch.from_numpy(train.labels[clean_index].astype(np.int64)),
        images(test.images[: sizes.mnist_test]),
        torch.from_numpy(test.labels[: sizes.mnist_test].astype(np.int64)),
    )


def _build_model(setting: NoisySetting, inputs: int) -> nn.Module:
    if setting.model == "softmax":
        return nn.Linear(inputs, CLASSES)
    return nn.Sequential(
        nn.Linear(inputs, setting.hidden), nn.ReLU(), nn.Linear(setting.hidden, CLASSES)
    )


def per_sample_inner(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, direction: Sequence[torch.Tensor]
) -> torch.Tensor:
    """⟨∇θ ℓ_b, v⟩ for every sample b of the batch in one forward-mode pass (a JVP of the
    per-sample losses along v): the inner products GGLM thresholds, without forming the [B, d]
    per-sample gradients."""
    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach() for name, p in model.named_parameters()}
    tangents = {name: v.detach() for name, v in zip(names, direction, strict=True)}

    def losses(weights: dict[str, torch.Tensor]) -> torch.Tensor:
        out = torch.func.functional_call(model, weights, (inputs,))
        return F.cross_entropy(out, targets, reduction="none")

    outputs = torch.func.jvp(losses, (params,), (tangents,))
    inner: torch.Tensor = outputs[1]
    return inner


def train_noisy(
    data: NoisyData, setting: NoisySetting, method: str, seed: int, *, log_points: int = 10
) -> dict[str, Any]:
    """Train one model with one method (plain SGD: the projection's guarantee is for GD steps).

    Returns test accuracy (final and at ``log_points`` steps), the share of corrupted training
    labels the model reproduces (memorisation), the final clean loss, the time per step, and per
    method: the share of steps with an active constraint (projection), of steps where the GCS gate
    was open, the mean share of kept samples (GGLM), stalled solver calls (per-class), and for GGLM
    the disagreements of its forward-mode mask with the library's
    :func:`kexue.mtl.per_sample_gradients` + :func:`kexue.mtl.gglm_mask` at the first step.
    """
    seed_everything(seed)
    model = _build_model(setting, data.noisy_x.shape[1])
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=setting.lr)
    aggregator: Any = None
    if method == PROJECTION:
        aggregator = PrimaryAuxiliary()  # one auxiliary task: the closed form (gamma)
    elif method == PER_CLASS_KKT:
        aggregator = PrimaryAuxiliary(solver="kkt")
    elif method == PER_CLASS_POST:
        aggregator = PrimaryAuxiliary(solver="post", max_iter=30_000)
    elif method == GCS:
        aggregator = GradCosine()
    elif method not in (NOISY, SUMMED, GGLM, CLEAN):
        raise ValueError(f"unknown method {method!r}")
    classes = [k for k in range(CLASSES) if bool((data.clean_y == k).any())]
    count = data.noisy_x.shape[0]
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(count, generator=generator)
    cursor = 0
    log_at = np.linspace(0, setting.steps - 1, log_points).round().astype(int).tolist()
    curve: list[float] = []
    elapsed = 0.0
    gate_open = stalled = 0
    kept: list[float] = []
    mask_mismatches: int | None = None

    def test_accuracy() -> float:
        with torch.no_grad():
            return float((model(data.test_x).argmax(dim=1) == data.test_y).double().mean())

    for step in range(setting.steps):
        if setting.batch is None:
            batch_x, batch_y = data.noisy_x, data.noisy_y
        else:
            if cursor + setting.batch > count:
                order = torch.randperm(count, generator=generator)
                cursor = 0
            index = order[cursor : cursor + setting.batch]
            cursor += setting.batch
            batch_x, batch_y = data.noisy_x[index], data.noisy_y[index]
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        if method == CLEAN:
            F.cross_entropy(model(data.clean_x), data.clean_y).backward()  # type: ignore[no-untyped-call]
        elif method == GGLM:
            clean_loss = F.cross_entropy(model(data.clean_x), data.clean_y)
            clean_grad = torch.autograd.grad(clean_loss, params)
            inner = per_sample_inner(model, batch_x, batch_y, clean_grad)
            mask = inner > 0
            if step == 0:
                size = min(64, batch_x.shape[0])
                grads = per_sample_gradients(model, F.cross_entropy, batch_x[:size], batch_y[:size])
                flat = torch.cat([g.reshape(-1) for g in clean_grad])
                library = gglm_mask(grads, flat)
                mask_mismatches = int((library != mask[:size]).sum())
            losses = F.cross_entropy(model(batch_x), batch_y, reduction="none")
            masked = (losses * mask).sum() / mask.sum().clamp_min(1)
            masked.backward()  # type: ignore[no-untyped-call]
            kept.append(float(mask.double().mean()))
        else:
            main = F.cross_entropy(model(batch_x), batch_y)
            if method == NOISY:
                main.backward()  # type: ignore[no-untyped-call]
            elif method == SUMMED:
                (main + F.cross_entropy(model(data.clean_x), data.clean_y)).backward()  # type: ignore[no-untyped-call]
            elif method in (PROJECTION, GCS):
                clean = F.cross_entropy(model(data.clean_x), data.clean_y)
                result = mtl_backward([main, clean], params, aggregator=aggregator)
                if method == GCS:
                    assert result.weights is not None
                    gate_open += int(float(result.weights[1]) > 0)
            else:  # the clean set as one auxiliary task per class
                per_sample = F.cross_entropy(model(data.clean_x), data.clean_y, reduction="none")
                auxiliary = [per_sample[data.clean_y == k].mean() for k in classes]
                result = mtl_backward([main, *auxiliary], params, aggregator=aggregator)
                assert isinstance(result.info, PrimaryAuxInfo)
                stalled += int(result.info.stalled)
        optimizer.step()
        elapsed += time.perf_counter() - started
        if step in log_at:
            curve.append(test_accuracy())
    with torch.no_grad():
        predicted = model(data.noisy_x).argmax(dim=1)
        flipped = data.flipped
        memorised = float((predicted[flipped] == data.noisy_y[flipped]).double().mean())
        clean_loss_value = float(F.cross_entropy(model(data.clean_x), data.clean_y))
    record: dict[str, Any] = {
        "test_accuracy": curve[-1],
        "curve": curve,
        "curve_steps": log_at,
        "memorised": memorised,
        "clean_loss": clean_loss_value,
        "seconds_per_step": elapsed / setting.steps,
    }
    if isinstance(aggregator, PrimaryAuxiliary):
        record["active_fraction"] = aggregator.active_fraction
        record["stalled_steps"] = stalled
    if method == GCS:
        record["gate_open_fraction"] = gate_open / setting.steps
    if method == GGLM:
        record["kept_fraction"] = float(np.mean(kept))
        record["mask_mismatches"] = mask_mismatches
    return record


def post_identity(data: NoisyData, setting: NoisySetting, seed: int) -> dict[str, Any]:
    """Train twice from the same start with one auxiliary task: the default solver (the closed
    form (gamma)) and the post's literal rule. Returns max |Δθ| at the end and the share of steps
    with an active constraint (the comparison is vacuous without one)."""
    finals: list[torch.Tensor] = []
    active: list[float] = []
    solvers: tuple[PrimaryAuxSolver, ...] = ("auto", "post")
    for solver in solvers:
        seed_everything(seed)
        model = _build_model(setting, data.noisy_x.shape[1])
        params = list(model.parameters())
        optimizer = torch.optim.SGD(params, lr=setting.lr)
        strategy = PrimaryAuxiliary(solver=solver)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(setting.steps):
            size = setting.batch or DIGITS_BATCH
            index = torch.randint(0, data.noisy_x.shape[0], (size,), generator=generator)
            optimizer.zero_grad(set_to_none=True)
            main = F.cross_entropy(model(data.noisy_x[index]), data.noisy_y[index])
            clean = F.cross_entropy(model(data.clean_x), data.clean_y)
            mtl_backward([main, clean], params, aggregator=strategy)
            optimizer.step()
        finals.append(torch.cat([p.detach().reshape(-1) for p in params]))
        active.append(strategy.active_fraction)
    return {
        "max_abs_diff": float((finals[0] - finals[1]).abs().max()),
        "active_fraction": active[0],
    }


def _noisy_grid(
    ctx: ExperimentContext,
    prefix: str,
    setting: NoisySetting,
    methods: Sequence[str],
    seeds: Sequence[int],
    load: Any,
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    cache: dict[int, NoisyData] = {}

    def compute(method: str, seed: int) -> dict[str, Any]:
        if seed not in cache:
            cache.clear()
            cache[seed] = load(seed)
        return train_noisy(cache[seed], setting, method, seed)

    work = [(seed, method) for seed in seeds for method in methods]
    for seed, method in ctx.progress(work, desc=f"{ctx.name}: {prefix}"):
        key = (
            f"{prefix}/{setting.label}/{setting.steps} steps, lr {setting.lr:g}/{method}/seed{seed}"
        )
        runs.setdefault(method, []).append(ctx.cached(key, partial(compute, method, seed)))
    return runs


def _noisy_rows(
    setting: NoisySetting, runs: dict[str, list[dict[str, Any]]]
) -> tuple[list[list[str]], dict[str, dict[str, Any]]]:
    """Table rows and a summary per method: accuracy mean/std, paired difference to noisy-only."""
    base = np.array([r["test_accuracy"] for r in runs[NOISY]])
    rows: list[list[str]] = []
    summary: dict[str, dict[str, Any]] = {}
    for method, records in runs.items():
        accuracy = np.array([r["test_accuracy"] for r in records])
        diff = accuracy - base
        extra: dict[str, Any] = {
            key: float(np.mean([r[key] for r in records]))
            for key in ("active_fraction", "gate_open_fraction", "kept_fraction")
            if key in records[0]
        }
        summary[method] = {
            "accuracy_mean": float(accuracy.mean()),
            "accuracy_std": float(accuracy.std(ddof=1)) if len(accuracy) > 1 else 0.0,
            "diff_mean": float(diff.mean()),
            "diff_std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
            "seeds": len(diff),
            "memorised": float(np.mean([r["memorised"] for r in records])),
            "seconds_per_step": float(np.median([r["seconds_per_step"] for r in records])),
            **extra,
        }
        s = summary[method]
        rows.append(
            [
                setting.label,
                method,
                format_mean_std(accuracy.tolist(), 3),
                "0 (reference)" if method == NOISY else format_mean_std(diff.tolist(), 3),
                f"{100 * s['memorised']:.1f}",
                _activity_summary(records),
                f"{1e3 * s['seconds_per_step']:.2f}",
            ]
        )
    return rows, summary


def _activity_summary(records: list[dict[str, Any]]) -> str:
    for key, word in (("active_fraction", "active"), ("gate_open_fraction", "gate open"),
                      ("kept_fraction", "kept")):  # fmt: skip
        if key in records[0]:
            values = [100 * r[key] for r in records]
            text = f"{word} {np.mean(values):.0f}% ({min(values):.0f}-{max(values):.0f})"
            if key == "active_fraction" and "stalled_steps" in records[0]:
                text += f", {sum(r['stalled_steps'] for r in records)} stalled calls"
            return text
    return "—"


NOISY_COLUMNS = [
    "setting", "method", "test accuracy", "paired Δ vs noisy only", "corrupted labels memorised %",
    "constraint active / gate open / samples kept", "ms per step",
]  # fmt: skip


def _digits_settings(sizes: Sizes) -> list[NoisySetting]:
    settings = []
    for model in sizes.noisy_models:
        settings.append(
            NoisySetting("digits", model, DIGITS_HIDDEN, None, sizes.noisy_full_batch_steps,
                         FULL_BATCH_LR, 0.4)
        )  # fmt: skip
        if sizes.noisy_minibatch_steps:
            settings.append(
                NoisySetting("digits", model, DIGITS_HIDDEN, DIGITS_BATCH,
                             sizes.noisy_minibatch_steps, MINIBATCH_LR, 0.4)
            )  # fmt: skip
    return settings


def _noisy_section(ctx: ExperimentContext, sizes: Sizes) -> None:
    seeds = ctx.seeds(sizes.noisy_seeds)
    rows: list[list[str]] = []
    summaries: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[list[float]]]] = {}
    mismatches: list[int] = []
    e81: list[Check] = []
    e81_mb: list[Check] = []
    for setting in _digits_settings(sizes):
        methods = list(NOISY_METHODS)
        if sizes.per_class and setting.batch is not None:
            methods += [PER_CLASS_KKT, PER_CLASS_POST]
        load = partial(digits_noisy_data, rate=setting.rate)
        runs = _noisy_grid(ctx, "digits", setting, methods, seeds, load)
        setting_rows, summary = _noisy_rows(setting, runs)
        rows += setting_rows
        summaries[setting.label] = summary
        curves[setting.label] = {m: [r["curve"] for r in rs] for m, rs in runs.items()}
        curves[setting.label]["steps"] = [[float(s) for s in runs[NOISY][0]["curve_steps"]]]
        mismatches += [int(r["mask_mismatches"]) for r in runs[GGLM]]
        target = e81 if setting.batch is None else e81_mb
        model = "MLP" if setting.model == "mlp" else "softmax"
        target += [
            _check_paired_gain(f"{model}: projection − noisy only (paired test accuracy)",
                            summary[PROJECTION]),
            _check_paired_gain(f"{model}: GGLM − noisy only (paired test accuracy)",
                            summary[GGLM]),
        ]  # fmt: skip
    ctx.metadata["noisy_digits"] = summaries
    ctx.add_table(
        f"Noisy labels on digits: test accuracy ({len(seeds)} seeds, mean ± std)",
        NOISY_COLUMNS,
        rows,
        caption="1,300 training images with 40% symmetric noise (exactly 520 labels replaced by a "
        "uniformly drawn other class), a clean set of 100, 397 test images; split and noise drawn "
        f"per seed. MLP 64-{DIGITS_HIDDEN}-10 (and softmax regression with --full), plain SGD: "
        f"full batch lr {FULL_BATCH_LR:g}, {sizes.noisy_full_batch_steps} steps"
        + (
            f"; minibatch {DIGITS_BATCH} lr {MINIBATCH_LR:g}, {sizes.noisy_minibatch_steps} steps"
            if sizes.noisy_minibatch_steps
            else " (the minibatch regime runs with --full)"
        )
        + "; the clean loss always on the whole clean set (pitfall 4). "
        "Paired Δ: per-seed difference to noisy only (same split, noise and initialisation). "
        "Projection: PrimaryAuxiliary through mtl_backward, main = noisy loss, auxiliary = clean "
        "loss (one auxiliary task: the closed form (gamma)); 'active': steps with λ > 0. GCS adds "
        "the clean gradient when cos(g_noisy, g_clean) > 0. GGLM trains on the noisy samples "
        "whose gradient has a positive inner product with the clean gradient (mask mean loss; "
        "inner products by a forward-mode JVP, equal to kexue.mtl.per_sample_gradients + gglm_mask "
        f"at the first step: {sum(mismatches)} disagreements over {len(mismatches)} runs). "
        "'Memorised': share of corrupted training labels the final model predicts."
        + (
            " Per-class rows (minibatch regime): the clean loss of each class as its own "
            "auxiliary task (10 constraints), solved exactly (kkt) or by the post's literal rule "
            "(up to 30,000 coordinate updates); 'stalled calls': steps in which the post's rule "
            "stopped at a fixed point that is not the projection."
            if sizes.per_class and sizes.noisy_minibatch_steps
            else ""
        ),
    )
    _noisy_figure(ctx, curves)
    ctx.add_claim(
        "E8.1",
        "Noisy labels, full-batch GD on digits: the post's projection and GGLM beat training on "
        "the noisy labels alone ((3) and (4) > (1)).",
        e81,
        source="spec 08 E8.1 (expected)",
        note=_noisy_note(summaries, full_batch=True),
    )
    if not e81_mb:
        e81_mb = [Check("minibatch runs", "not run in --quick", "run with --full", None)]
    ctx.add_claim(
        "E8.1 (minibatch)",
        f"The same with minibatches of {DIGITS_BATCH} noisy images and the whole clean set per "
        "step (the E8.2 protocol at digits scale).",
        e81_mb,
        source="spec 08 E8.1, E8.2 (expected)",
        note=_noisy_note(summaries, full_batch=False)
        if sizes.noisy_minibatch_steps
        else "The minibatch regime runs only with --full.",
    )
    _post_identity(ctx, sizes)
    _mnist_section(ctx, sizes, seeds)


def _noisy_note(summaries: dict[str, dict[str, Any]], *, full_batch: bool) -> str:
    parts = []
    for label, summary in summaries.items():
        if ("full batch" in label) != full_batch:
            continue
        methods = ", ".join(
            f"{m} {s['accuracy_mean']:.3f}" for m, s in summary.items() if m != NOISY
        )
        parts.append(
            f"{label}: noisy only {summary[NOISY]['accuracy_mean']:.3f}; {methods}; the "
            "projection's constraint was active in "
            f"{100 * summary[PROJECTION]['active_fraction']:.1f}% of steps"
        )
    return ". ".join(parts) + (
        ". The projection changes the update only in the steps where the noisy gradient would "
        "raise the clean loss to first order (λ > 0); in all other steps it is noisy-only "
        "training. The memorisation column of the table shows how much of the corrupted labels "
        "each method ends up fitting."
    )


def _noisy_figure(ctx: ExperimentContext, curves: dict[str, dict[str, list[list[float]]]]) -> None:
    plt = pyplot()
    labels = list(curves)
    figure, axes = plt.subplots(1, len(labels), figsize=(5.2 * len(labels), 4.2), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        steps = curves[label]["steps"][0]
        for method, values in curves[label].items():
            if method == "steps":
                continue
            mean = np.mean(np.asarray(values), axis=0)
            style = "--" if method in (CLEAN, PER_CLASS_POST) else "-"
            ax.plot(steps, mean, style, marker="o", markersize=2.5, label=method)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.legend(fontsize=6.5, loc="lower right")
    ctx.save_figure(
        figure,
        "noisy_digits",
        title="Noisy labels on digits: test accuracy during training",
        caption="Noisy-only training first learns the signal, then fits the corrupted labels and "
        "loses test accuracy; the methods differ in how much of that they prevent.",
    )


def _post_identity(ctx: ExperimentContext, sizes: Sizes) -> None:
    setting = NoisySetting(
        "digits", "mlp", DIGITS_HIDDEN, DIGITS_BATCH, sizes.identity_steps, MINIBATCH_LR, 0.4
    )
    result = ctx.cached(
        f"digits/post identity/{sizes.identity_steps}",
        lambda: post_identity(digits_noisy_data(0, 0.4), setting, 0),
    )
    ctx.add_claim(
        "post rule, n = 1",
        "With one auxiliary task the post's literal coordinate rule is the closed form (gamma): "
        "training with solver='post' is identical to the default.",
        [check_at_most("max |θ_post − θ_default| after training", result["max_abs_diff"], 0.0),
         check_at_least("share of steps with an active constraint (the comparison is not "
                        "vacuous)", result["active_fraction"], 0.01)],
        source="spec 08 §2 (the n = 1 formula), §4",
        note=f"Digits MLP 64-{DIGITS_HIDDEN}-10, minibatch {DIGITS_BATCH}, "
        f"{sizes.identity_steps} steps, seed 0.",
    )  # fmt: skip


def _mnist_section(ctx: ExperimentContext, sizes: Sizes, seeds: Sequence[int]) -> None:
    if not sizes.mnist:
        ctx.add_claim(
            "E8.2",
            "Noisy labels at larger scale (MNIST, 40% and 60% noise): the projection and GGLM "
            "beat noisy-only training.",
            [Check("MNIST runs", "not run in --quick", "run with --full", None)],
            source="spec 08 E8.2 (expected)",
            note="MNIST (20k noisy, 500 clean, MLP 784-256-10, 5 epochs) runs only with --full.",
        )
        return
    try:
        load_mnist("test")
    except DatasetUnavailableError as error:
        ctx.add_claim(
            "E8.2",
            "Noisy labels at larger scale (MNIST, 40% and 60% noise): the projection and GGLM "
            "beat noisy-only training.",
            [Check("MNIST available", "no", "installed", None)],
            source="spec 08 E8.2 (expected)",
            note=str(error),
        )
        return
    steps = sizes.mnist_epochs * math.ceil(sizes.mnist_noisy / 256)
    rows: list[list[str]] = []
    checks: list[Check] = []
    summaries: dict[str, dict[str, Any]] = {}
    # the post's rule is compared on digits only: it may run to its 30,000-update cap per step
    methods = list(NOISY_METHODS) + ([PER_CLASS_KKT] if sizes.per_class else [])
    for rate in sizes.mnist_rates:
        setting = NoisySetting("mnist", "mlp", 256, 256, steps, 0.1, rate)
        load = partial(mnist_noisy_data, rate=rate, sizes=sizes)
        runs = _noisy_grid(ctx, "mnist", setting, methods, seeds, load)
        setting_rows, summary = _noisy_rows(setting, runs)
        rows += setting_rows
        summaries[setting.label] = summary
        checks += [
            _check_paired_gain(f"{rate:.0%} noise: projection − noisy only (paired test accuracy)",
                            summary[PROJECTION]),
            _check_paired_gain(f"{rate:.0%} noise: GGLM − noisy only (paired test accuracy)",
                            summary[GGLM]),
        ]  # fmt: skip
    ctx.metadata["noisy_mnist"] = summaries
    ctx.add_table(
        f"Noisy labels on MNIST: test accuracy ({len(seeds)} seeds, mean ± std)",
        NOISY_COLUMNS,
        rows,
        caption=f"{sizes.mnist_noisy} MNIST training images with symmetric noise, "
        f"{sizes.mnist_clean} clean images, {sizes.mnist_test} test images; MLP 784-256-10, SGD lr "
        f"0.1, minibatch 256, {sizes.mnist_epochs} epochs ({steps} steps); the clean loss on the "
        "whole clean set every step. Methods as in the digits table"
        + (
            "; the per-class variant with the exact solver only (the post's rule, which may run to "
            "its 30,000-update cap in a step, is compared on digits)."
            if sizes.per_class
            else "."
        ),
    )
    ctx.add_claim(
        "E8.2",
        "Noisy labels at larger scale (MNIST, 40% and 60% noise): the projection and GGLM beat "
        "noisy-only training.",
        checks,
        source="spec 08 E8.2 (expected by analogy with E8.1)",
        note=". ".join(
            f"{label}: "
            + ", ".join(f"{m} {s['accuracy_mean']:.4f}" for m, s in summary.items())
            + f"; projection active in {100 * summary[PROJECTION]['active_fraction']:.1f}% of "
            "steps"
            for label, summary in summaries.items()
        )
        + ".",
    )


# --------------------------------------------------------------------------------------------
# Part 2: L2 regularisation without a coefficient (E8.3, C8.8).

L2_FEATURES = 2000
L2_TRAIN = 200
L2_DEV = 300
L2_SGD_LR = 1.0
L2_ADAM_LR = 0.01
SGD_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
ADAMW_DECAYS = (1e-2, 1e-1, 1.0, 10.0)
L2_LOG_POINTS = 40


def random_feature_data(seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random ReLU features of digits (float64): φ = relu(xW + c) with W ~ N(0, 1/64),
    c ~ N(0, 1), d = 2000, standardised with the training statistics and divided by √d; split
    (by ``seed``) into 200 training, 300 dev and 1,297 test images."""
    data = load_digits("all")
    images = torch.from_numpy(data.images.reshape(len(data.images), -1) / 16.0)
    labels = torch.from_numpy(data.labels)
    generator = torch.Generator().manual_seed(10_000 + seed)
    weight = torch.randn(64, L2_FEATURES, generator=generator, dtype=torch.float64) / 8.0
    shift = torch.randn(L2_FEATURES, generator=generator, dtype=torch.float64)
    features = torch.relu(images @ weight + shift)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    train = order[:L2_TRAIN]
    mean, std = features[train].mean(dim=0), features[train].std(dim=0) + 1e-6
    features = (features - mean) / std / math.sqrt(L2_FEATURES)
    splits = {
        "train": train,
        "dev": order[L2_TRAIN : L2_TRAIN + L2_DEV],
        "test": order[L2_TRAIN + L2_DEV :],
    }
    return {name: (features[index], labels[index]) for name, index in splits.items()}


@dataclasses.dataclass(frozen=True)
class L2Method:
    name: str
    optimizer: str  # "sgd" or "adam"
    decay: float = 0.0  # weight decay on the weights (SGD: coupled; Adam: AdamW, decoupled)
    fix: bool = False  # L2AsAuxiliary (SGD: coupled, Adam: decoupled)
    init_scale: float = 1.0


def train_l2(
    data: dict[str, tuple[torch.Tensor, torch.Tensor]], method: L2Method, seed: int, steps: int
) -> dict[str, Any]:
    """Full-batch training of softmax regression (weights θ [10, d] and a bias; only θ is
    regularised). Records dev/test accuracy, ‖θ‖ at ``L2_LOG_POINTS`` steps and, for the fix,
    the per-step growth of ‖θ‖² against its bound: coupled SGD (C8.8) Δ‖θ‖² ≤ η²‖u‖², decoupled
    Adam Δ‖θ‖² ≤ ‖Δθ‖², both in units of ε‖θ‖² beyond the bound (float64 rounding); and the
    number of steps without a conflict where the fix changed the gradient (should be 0)."""
    torch.manual_seed(seed)
    model = nn.Linear(L2_FEATURES, CLASSES).double()
    with torch.no_grad():
        model.weight.mul_(method.init_scale)
    groups = [
        {"params": [model.weight], "weight_decay": method.decay},
        {"params": [model.bias], "weight_decay": 0.0},
    ]
    optimizer: torch.optim.Optimizer
    if method.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=L2_SGD_LR)
    else:
        optimizer = torch.optim.AdamW(groups, lr=L2_ADAM_LR)
    fix = None
    if method.fix:
        fix = L2AsAuxiliary(model, "coupled" if method.optimizer == "sgd" else "decoupled")
    train_x, train_y = data["train"]
    log_at = set(np.linspace(0, steps, L2_LOG_POINTS).round().astype(int).tolist())
    norms: list[list[float]] = []
    worst_excess = -math.inf  # (Δ‖θ‖² − bound) / (ε‖θ‖²)
    budget = 0.0  # Σ bound: the second-order growth the fix allows
    start_sq = float(model.weight.detach().pow(2).sum())
    changed_without_conflict = 0
    theta = model.weight
    for step in range(steps + 1):
        if step in log_at:
            norms.append([float(step), float(theta.detach().norm())])
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(train_x), train_y).backward()  # type: ignore[no-untyped-call]
        before_sq = float(theta.detach().pow(2).sum())
        if fix is None:
            optimizer.step()
            continue
        if method.optimizer == "sgd":
            assert theta.grad is not None
            raw = theta.grad.detach().clone()
            gamma = fix.project_gradients()
            if gamma == 0.0 and not torch.equal(raw, theta.grad):
                changed_without_conflict += 1
            bound = L2_SGD_LR**2 * float(theta.grad.detach().pow(2).sum())
            optimizer.step()
        else:
            start = theta.detach().clone()
            fix.step(optimizer)
            bound = float((theta.detach() - start).pow(2).sum())
        growth = float(theta.detach().pow(2).sum()) - before_sq
        budget += bound
        excess = (growth - bound * (1 + 1e-10)) / (EPS64 * max(before_sq, 1e-300))
        worst_excess = max(worst_excess, excess)

    def accuracy(split: str) -> float:
        x, y = data[split]
        with torch.no_grad():
            return float((model(x).argmax(dim=1) == y).double().mean())

    record: dict[str, Any] = {
        "dev": accuracy("dev"),
        "test": accuracy("test"),
        "norms": norms,
    }
    if fix is not None:
        record.update(
            growth=float(theta.detach().pow(2).sum()) - start_sq,
            budget=budget,
            worst_excess_eps=worst_excess,
            changed_without_conflict=changed_without_conflict,
            active_fraction=fix.active_steps / max(fix.steps, 1),
        )
    return record


def _l2_methods(sizes: Sizes) -> list[L2Method]:
    methods = [L2Method("SGD, no regularisation", "sgd")]
    methods += [L2Method(f"SGD, weight decay {d:g}", "sgd", decay=d) for d in SGD_DECAYS]
    methods += [
        L2Method(f"SGD + L2-aux coupled, init ×{s:g}", "sgd", fix=True, init_scale=s)
        for s in sizes.l2_init_scales
    ]
    methods += [L2Method("Adam, no regularisation", "adam")]
    methods += [L2Method(f"AdamW, weight decay {d:g}", "adam", decay=d) for d in ADAMW_DECAYS]
    methods += [
        L2Method(f"Adam + L2-aux decoupled, init ×{s:g}", "adam", fix=True, init_scale=s)
        for s in sizes.l2_init_scales
    ]
    return methods


def _l2_section(ctx: ExperimentContext, sizes: Sizes) -> None:
    seeds = ctx.seeds(sizes.l2_seeds)
    methods = _l2_methods(sizes)
    runs: dict[str, list[dict[str, Any]]] = {}
    cache: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}

    def compute(method: L2Method, seed: int) -> dict[str, Any]:
        if seed not in cache:
            cache.clear()
            cache[seed] = random_feature_data(seed)
        return train_l2(cache[seed], method, seed, sizes.l2_steps)

    work = [(seed, method) for seed in seeds for method in methods]
    for seed, method in ctx.progress(work, desc=f"{ctx.name}: L2"):
        key = f"l2/{method.name}/steps{sizes.l2_steps}/seed{seed}"
        runs.setdefault(method.name, []).append(ctx.cached(key, partial(compute, method, seed)))

    def mean(name: str, split: str) -> float:
        return float(np.mean([r[split] for r in runs[name]]))

    tuned = {
        "sgd": max((m.name for m in methods if m.optimizer == "sgd" and m.decay > 0),
                   key=lambda name: mean(name, "dev")),
        "adam": max((m.name for m in methods if m.optimizer == "adam" and m.decay > 0),
                    key=lambda name: mean(name, "dev")),
    }  # fmt: skip
    rows = []
    for method in methods:
        records = runs[method.name]
        first = np.mean([r["norms"][0][1] for r in records])
        last = np.mean([r["norms"][-1][1] for r in records])
        label = method.name + (" (tuned on dev)" if method.name in tuned.values() else "")
        rows.append(
            [
                label,
                format_mean_std([r["dev"] for r in records]),
                format_mean_std([r["test"] for r in records]),
                f"{first:.2f}",
                f"{last:.2f}",
                f"{100 * np.mean([r['active_fraction'] for r in records]):.0f}%"
                if method.fix
                else "—",
            ]
        )
    ctx.add_table(
        f"L2 without a coefficient: softmax regression on {L2_FEATURES} random ReLU features of "
        f"digits ({len(seeds)} seed(s))",
        ["method", "dev accuracy", "test accuracy", "‖θ‖ at start", f"‖θ‖ after {sizes.l2_steps} "
         "steps", "steps with a conflict (fix active)"],
        rows,
        caption=f"{L2_TRAIN} training images (d = {L2_FEATURES} ≫ N), {L2_DEV} dev, the rest "
        f"test; full batch, float64; SGD lr {L2_SGD_LR:g}, Adam/AdamW lr {L2_ADAM_LR:g}; θ = the "
        "weight matrix (the bias is neither decayed nor constrained). Weight-decay grids: SGD "
        f"{list(SGD_DECAYS)} (coupled, the gradient of λ/2‖θ‖²), AdamW {list(ADAMW_DECAYS)}; the "
        "tuned row is the best mean dev accuracy. L2-aux: kexue.mtl.L2AsAuxiliary, coupled "
        "(gradient g → g + relu(−⟨g,θ⟩)/‖θ‖²·θ before SGD) or decoupled (the same on Adam's "
        "update). 'init ×s': PyTorch's default initialisation of θ multiplied by s — the fix "
        "keeps ‖θ‖ at its initial value to first order, so the initial norm acts as the "
        "coefficient it removes.",
    )  # fmt: skip
    coupled = f"SGD + L2-aux coupled, init ×{sizes.l2_init_scales[0]:g}"
    decoupled = f"Adam + L2-aux decoupled, init ×{sizes.l2_init_scales[0]:g}"
    coupled_runs, decoupled_runs = runs[coupled], runs[decoupled]
    ctx.metadata["l2"] = {
        "tuned": tuned,
        "summary": {name: {"dev": mean(name, "dev"), "test": mean(name, "test")} for name in runs},
    }
    ctx.add_claim(
        "C8.8",
        "L2 as an auxiliary task with coupled SGD: every step grows ‖θ‖² by at most η²‖u‖² "
        "(u the corrected gradient); without a conflict the gradient is unchanged. Decoupled "
        "(Adam): the growth is at most ‖Δθ‖².",
        [check_at_most("coupled SGD: max over steps of (Δ‖θ‖² − η²‖u‖²(1+1e-10)) / (ε‖θ‖²)",
                       max(r["worst_excess_eps"] for r in coupled_runs), 16.0),
         check_equal("coupled SGD: steps without a conflict whose gradient changed",
                     sum(r["changed_without_conflict"] for r in coupled_runs), 0),
         check_at_most("decoupled Adam: max over steps of (Δ‖θ‖² − ‖Δθ‖²(1+1e-10)) / (ε‖θ‖²)",
                       max(r["worst_excess_eps"] for r in decoupled_runs), 16.0)],
        source="spec 08 §5.3, C8.8",
        note="Measured in training (float64; ε = 2.2e-16): the excess over the bound is in units "
        "of the rounding of ‖θ‖². Share of steps with a conflict (the correction active): "
        f"coupled {100 * np.mean([r['active_fraction'] for r in coupled_runs]):.0f}%, decoupled "
        f"{100 * np.mean([r['active_fraction'] for r in decoupled_runs]):.0f}%. Total growth "
        "‖θ_T‖² − ‖θ_0‖² against the summed bounds (the second-order drift the fix permits): "
        f"coupled {np.mean([r['growth'] for r in coupled_runs]):.3g} of "
        f"{np.mean([r['budget'] for r in coupled_runs]):.3g}, decoupled "
        f"{np.mean([r['growth'] for r in decoupled_runs]):.3g} of "
        f"{np.mean([r['budget'] for r in decoupled_runs]):.3g}.",
    )  # fmt: skip

    def ratio(name: str) -> float:
        return float(np.mean([r["norms"][-1][1] / r["norms"][0][1] for r in runs[name]]))

    ctx.add_claim(
        "E8.3",
        "L2 regularisation without λ keeps ‖θ‖ flat to first order and beats no regularisation "
        "(coupled with SGD, decoupled with Adam).",
        [check_at_most("coupled SGD fix: ‖θ_T‖ / ‖θ_0‖", ratio(coupled), 1.1),
         check_at_most("decoupled Adam fix: ‖θ_T‖ / ‖θ_0‖", ratio(decoupled), 1.1),
         _check_positive("coupled SGD fix − SGD without regularisation (test accuracy)",
                         mean(coupled, "test") - mean("SGD, no regularisation", "test")),
         _check_positive("decoupled Adam fix − Adam without regularisation (test accuracy)",
                         mean(decoupled, "test") - mean("Adam, no regularisation", "test"))],
        source="spec 08 E8.3 (expected)",
        note=f"Default initialisation. ‖θ_T‖/‖θ_0‖ without regularisation: SGD "
        f"{ratio('SGD, no regularisation'):.1f}, Adam {ratio('Adam, no regularisation'):.1f}. "
        f"Test accuracy: SGD none {mean('SGD, no regularisation', 'test'):.3f}, tuned "
        f"{tuned['sgd']} {mean(tuned['sgd'], 'test'):.3f}, fix "
        + ", ".join(f"init ×{s:g} {mean(f'SGD + L2-aux coupled, init ×{s:g}', 'test'):.3f}"
                    for s in sizes.l2_init_scales)
        + f"; Adam none {mean('Adam, no regularisation', 'test'):.3f}, tuned {tuned['adam']} "
        f"{mean(tuned['adam'], 'test'):.3f}, fix "
        + ", ".join(f"init ×{s:g} {mean(f'Adam + L2-aux decoupled, init ×{s:g}', 'test'):.3f}"
                    for s in sizes.l2_init_scales)
        + ". The fix pins ‖θ‖ near its initial value: whether it beats no regularisation depends "
        "on that value, i.e. the coefficient reappears as the initialisation scale.",
    )  # fmt: skip
    _l2_figure(ctx, runs, methods, tuned)


def _l2_figure(
    ctx: ExperimentContext,
    runs: dict[str, list[dict[str, Any]]],
    methods: Sequence[L2Method],
    tuned: dict[str, str],
) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for ax, optimizer in zip(axes, ("sgd", "adam"), strict=True):
        for method in methods:
            if method.optimizer != optimizer:
                continue
            if method.decay > 0 and method.name != tuned[optimizer]:
                continue
            trajectory = np.mean([np.asarray(r["norms"]) for r in runs[method.name]], axis=0)
            style = "-" if method.fix else "--"
            label = method.name + (" (tuned)" if method.name == tuned[optimizer] else "")
            ax.plot(trajectory[:, 0], trajectory[:, 1], style, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("‖θ‖ (mean over seeds)")
        ax.set_title("SGD (coupled fix)" if optimizer == "sgd" else "Adam (decoupled fix)")
        ax.legend(fontsize=7)
    ctx.save_figure(
        figure,
        "l2_norms",
        title="L2 without a coefficient: ‖θ‖ during training",
        caption="Without regularisation ‖θ‖ grows as the training set is separated; weight decay "
        "shrinks it to a λ-dependent level; the auxiliary-task fix holds it at its initial value "
        "(up to the second-order drift η²‖u‖² per step).",
    )


# --------------------------------------------------------------------------------------------
# Part 3: the 2-D toy (E8.4, C8.7).

TOY_A = (-1.0, 0.0)
TOY_B = (1.0, 0.0)
TOY_LR = 1e-3
TOY_RULES = ("main-only GD", "summed GD", "projection")


def toy_direction(x: torch.Tensor, rule: str) -> torch.Tensor:
    """Update directions u for a batch of points ``x`` [S, 2] (float64): L₀ = ‖x − a‖² (main),
    L₁ = ‖x − b‖² (auxiliary). The projection is formula (gamma), vectorised over the points
    (γ = 0 where ‖g₁‖² < 1e-30, as the library does); checked against
    :func:`kexue.mtl.primary_auxiliary_direction` along the trajectories."""
    a = torch.tensor(TOY_A, dtype=torch.float64)
    b = torch.tensor(TOY_B, dtype=torch.float64)
    g0, g1 = 2 * (x - a), 2 * (x - b)
    if rule == "main-only GD":
        return g0
    if rule == "summed GD":
        return g0 + g1
    inner = (g0 * g1).sum(dim=1)
    sq = (g1 * g1).sum(dim=1)
    gamma = torch.where(sq > 1e-30, torch.relu(-inner) / torch.where(sq > 1e-30, sq, 1.0), 0.0)
    return g0 + gamma[:, None] * g1


def toy_losses(x: torch.Tensor) -> torch.Tensor:
    """[S, 2]: (L₀, L₁) per point."""
    a = torch.tensor(TOY_A, dtype=torch.float64)
    b = torch.tensor(TOY_B, dtype=torch.float64)
    return torch.stack([((x - a) ** 2).sum(dim=1), ((x - b) ** 2).sum(dim=1)], dim=1)


def simulate_toy(grid: int, steps: int, rule: str) -> dict[str, Any]:
    axis = np.linspace(-2.0, 2.0, grid)
    starts = torch.tensor([(x, y) for x in axis for y in axis], dtype=torch.float64)
    x = starts.clone()
    losses = toy_losses(x)
    paths = [x.tolist()]
    worst_rise = [0.0, 0.0]  # max per-step rise of L₀, L₁ divided by η²
    first_order = [0, 0]  # starts where L₀ / L₁ rose by more than η²‖u‖² at some step
    rose = torch.zeros(len(starts), 2, dtype=torch.bool)
    max_u_sq = 0.0
    library_diff = 0.0
    check_every = max(1, steps // 10)
    for step in range(steps):
        u = toy_direction(x, rule)
        if rule == "projection" and step % check_every == 0:
            for point, direction in zip(x, u, strict=True):
                g0 = 2 * (point - torch.tensor(TOY_A, dtype=torch.float64))
                g1 = 2 * (point - torch.tensor(TOY_B, dtype=torch.float64))
                reference, _, _ = primary_auxiliary_direction(g0, g1[None])
                assert reference is not None
                library_diff = max(library_diff, float((reference - direction).abs().max()))
        u_sq = (u * u).sum(dim=1)
        max_u_sq = max(max_u_sq, float(u_sq.max()))
        x = x - TOY_LR * u
        new = toy_losses(x)
        rise = new - losses
        for task in range(2):
            worst_rise[task] = max(worst_rise[task], float(rise[:, task].max()) / TOY_LR**2)
        rose |= rise > TOY_LR**2 * u_sq[:, None] * (1 + 1e-9) + 1e-14
        losses = new
        if step % 50 == 49:
            paths.append(x.tolist())
    first_order = [int(rose[:, 0].sum()), int(rose[:, 1].sum())]
    end = x
    segment_x = end[:, 0].clamp(TOY_A[0], TOY_B[0])
    distance = torch.hypot(end[:, 0] - segment_x, end[:, 1])
    return {
        "paths": np.asarray(paths).transpose(1, 0, 2).tolist(),  # [starts, points, 2]
        "max_rise_over_eta_sq": worst_rise,
        "starts_first_order_rise": first_order,
        "max_u_sq": max_u_sq,
        "library_max_diff": library_diff,
        "max_end_distance_to_segment": float(distance.max()),
        "starts": len(starts),
    }


def _toy_section(ctx: ExperimentContext, sizes: Sizes) -> None:
    results = {
        rule: ctx.cached(f"toy/{rule}/grid{sizes.toy_grid}/steps{sizes.toy_steps}",
                         partial(simulate_toy, sizes.toy_grid, sizes.toy_steps, rule))
        for rule in TOY_RULES
    }  # fmt: skip
    # The spec's worked point x = (0, 0.5): g₀ = (2, 1), g₁ = (−2, 1), ⟨g₀, g₁⟩ = −3.
    point = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    g0 = 2 * (point[0] - torch.tensor(TOY_A, dtype=torch.float64))
    g1 = 2 * (point[0] - torch.tensor(TOY_B, dtype=torch.float64))
    main_step = point - TOY_LR * toy_direction(point, "main-only GD")
    l1_rise = float(toy_losses(main_step)[0, 1] - toy_losses(point)[0, 1])
    u, lam, _ = primary_auxiliary_direction(g0, g1[None])
    assert u is not None
    projection = results["projection"]
    ctx.add_claim(
        "C8.7",
        "Along the projected trajectory neither L₁ nor L₀ rises by more than Cη² per step "
        "(C = max‖u‖²); main-only GD from (0, 0.5) raises L₁ by ≈ 3η in its first step, where the "
        "projection has γ = 3/5, u = (0.8, 1.6), ⟨u, g₁⟩ = 0.",
        [check_at_most("projection: max per-step rise of L₁ / (η² max‖u‖²)",
                       projection["max_rise_over_eta_sq"][1] / projection["max_u_sq"], 1.0),
         check_at_most("projection: max per-step rise of L₀ / (η² max‖u‖²)",
                       projection["max_rise_over_eta_sq"][0] / projection["max_u_sq"], 1.0),
         check_equal("projection: starts where L₁ rose by more than η²‖u‖² in some step",
                     projection["starts_first_order_rise"][1], 0),
         check_close("main-only GD at (0, 0.5): first-step rise of L₁ / η", l1_rise / TOY_LR,
                     3.0, abs_tol=0.01),
         check_close("library γ at (0, 0.5)", float(lam[0]), 0.6, abs_tol=1e-15),
         check_at_most("library u at (0, 0.5): max |u − (0.8, 1.6)|",
                       float((u - torch.tensor([0.8, 1.6], dtype=torch.float64)).abs().max()),
                       1e-15),
         check_at_most("library ⟨u, g₁⟩ at (0, 0.5) (absolute)", abs(float(u @ g1)), 1e-15),
         check_at_most("vectorised (gamma) vs primary_auxiliary_direction along the "
                       "trajectories: max |Δu|", projection["library_max_diff"], 1e-12)],
        source="spec 08 C8.7, E8.4",
        note=f"{projection['starts']} starts on a {sizes.toy_grid}×{sizes.toy_grid} grid of "
        f"[−2, 2]², η = {TOY_LR:g}, {sizes.toy_steps} steps. Starts where a loss rose to first "
        "order (by more than η²‖u‖²) at some step, L₀ / L₁: "
        + "; ".join(f"{rule} {r['starts_first_order_rise'][0]} / {r['starts_first_order_rise'][1]}"
                    for rule, r in results.items())
        + ".",
    )  # fmt: skip
    rows = [
        [rule, f"{r['starts_first_order_rise'][0]}/{r['starts']}",
         f"{r['starts_first_order_rise'][1]}/{r['starts']}",
         f"{r['max_rise_over_eta_sq'][0]:.3g}", f"{r['max_rise_over_eta_sq'][1]:.3g}",
         f"{r['max_end_distance_to_segment']:.2e}"]
        for rule, r in results.items()
    ]  # fmt: skip
    ctx.add_table(
        "2-D toy: L₀ = ‖x − a‖² (main), L₁ = ‖x − b‖² (auxiliary), a = (−1, 0), b = (1, 0)",
        ["rule", "starts where L₀ rose to first order", "starts where L₁ rose to first order",
         "max per-step rise of L₀ / η²", "max per-step rise of L₁ / η²",
         "max end distance to the segment [a, b]"],
        rows,
        caption="'Rose to first order': a step raised the loss by more than η²‖u‖² (the "
        "second-order term). Main-only GD walks straight to a and raises L₁ on the way from "
        "many starts; summed GD walks straight to the midpoint (0, 0) and raises L₀ or L₁ from "
        "some starts; the projection moves towards a only as far as L₁ allows and stops on the "
        "segment [a, b].",
    )  # fmt: skip
    plt = pyplot()
    figure, axes = plt.subplots(1, len(TOY_RULES), figsize=(5 * len(TOY_RULES), 4.6), sharey=True)
    for ax, rule in zip(axes, TOY_RULES, strict=True):
        plot_trajectories(ax, results[rule]["paths"])
        ax.plot(*TOY_A, "s", color="black", label="a (main minimum)")
        ax.plot(*TOY_B, "^", color="black", label="b (auxiliary minimum)")
        frame_toy_axis(ax, rule)
    ctx.save_figure(
        figure,
        "toy_trajectories",
        title="2-D toy: trajectories from a grid of starts",
        caption="Dots: starts, crosses: end points. The projection keeps L₁ from rising: it "
        "approaches a along circles around b (level sets of L₁) and stops on the segment [a, b].",
    )


# --------------------------------------------------------------------------------------------
# Part 4: solver study (E8.5, C8.3, C8.4).

STALL_G0 = (1.0, 0.0)
STALL_G = ((-3.0, -3.0), (-2.0, -1.0))
STUDY_SOLVERS: tuple[PrimaryAuxSolver, ...] = ("kkt", "cyclic", "post")
STUDY_MAX_ITER = 30_000
OPTIMAL_GAP = 1e-10  # (‖u‖² − ‖u*‖²)/‖g₀‖²


def solver_study(instances: int) -> dict[str, Any]:
    """Random instances (spec 08 §4): n ∈ [2, 7], d ∈ [2, 11] uniform, standard normal g₀ and G,
    instance i drawn from seed i. Every solver against ``scipy.optimize.nnls(Gᵀ, −g₀)``."""
    from scipy.optimize import nnls

    records: dict[str, dict[str, list[float]]] = {
        s: {"gap": [], "iterations": [], "us": [], "stalled": [], "situation": [],
            "feasibility": [], "complementarity": [], "main": [], "lambda_diff": []}
        for s in STUDY_SOLVERS
    }  # fmt: skip
    nnls_us: list[float] = []
    for seed in range(instances):
        rng = np.random.default_rng(seed)
        n, d = int(rng.integers(2, 8)), int(rng.integers(2, 12))
        g0, grads = rng.standard_normal(d), rng.standard_normal((n, d))
        started = time.perf_counter()
        lam_ref, _ = nnls(grads.T, -g0)
        nnls_us.append(1e6 * (time.perf_counter() - started))
        u_ref = g0 + lam_ref @ grads
        ref, scale = float(u_ref @ u_ref), float(g0 @ g0)
        unique = int(np.linalg.matrix_rank(grads)) == n
        g0_t, grads_t = torch.from_numpy(g0), torch.from_numpy(grads)
        for solver in STUDY_SOLVERS:
            started = time.perf_counter()
            u_t, lam_t, info = primary_auxiliary_direction(
                g0_t, grads_t, solver=solver, max_iter=STUDY_MAX_ITER
            )
            elapsed = 1e6 * (time.perf_counter() - started)
            assert u_t is not None
            u, lam = u_t.numpy(), lam_t.numpy()
            s = grads @ u
            record = records[solver]
            record["gap"].append((float(u @ u) - ref) / scale)
            record["iterations"].append(info.iterations)
            record["us"].append(elapsed)
            record["stalled"].append(float(info.stalled))
            # spec 08 §4's situation: every sᵢ ≥ 0 but some λⱼ > 0 has sⱼ > 0
            record["situation"].append(
                float(info.stalled and s.min() >= -1e-12 and bool(((lam > 0) & (s > 1e-12)).any()))
            )
            record["feasibility"].append(float(s.min()))
            record["complementarity"].append(float(np.abs(lam * s).max()))
            record["main"].append(abs(float(u @ g0) - float(u @ u)))
            record["lambda_diff"].append(float(np.abs(lam - lam_ref).max()) if unique else math.nan)
    summary: dict[str, Any] = {"instances": instances, "nnls_median_us": float(np.median(nnls_us))}
    for name, record in records.items():
        gaps = np.asarray(record["gap"])
        iterations = np.asarray(record["iterations"])
        lambda_diff = np.asarray(record["lambda_diff"])
        summary[name] = {
            "suboptimal": int((gaps > OPTIMAL_GAP).sum()),
            "suboptimal_1e6": int((gaps > 1e-6).sum()),
            "stalled": int(sum(record["stalled"])),
            "situation": int(sum(record["situation"])),
            "max_gap": float(gaps.max()),
            "min_gap": float(gaps.min()),
            "iterations_median": float(np.median(iterations)),
            "iterations_p90": float(np.percentile(iterations, 90)),
            "iterations_max": int(iterations.max()),
            "median_us": float(np.median(record["us"])),
            "min_inner": float(min(record["feasibility"])),
            "max_complementarity": float(max(record["complementarity"])),
            "max_main_identity": float(max(record["main"])),
            "max_lambda_diff_unique": float(np.nanmax(lambda_diff))
            if np.isfinite(lambda_diff).any()
            else math.nan,
            "unique_instances": int(np.isfinite(lambda_diff).sum()),
        }
    return summary


def _solver_section(ctx: ExperimentContext, sizes: Sizes) -> None:
    g0 = torch.tensor(STALL_G0, dtype=torch.float64)
    grads = torch.tensor(STALL_G, dtype=torch.float64)
    u_post, lam_post, info_post = primary_auxiliary_direction(g0, grads, solver="post")
    u_kkt, lam_kkt, info_kkt = primary_auxiliary_direction(g0, grads)
    assert u_post is not None
    assert u_kkt is not None

    def max_diff(value: torch.Tensor, expected: Sequence[float]) -> float:
        return float((value - torch.tensor(expected, dtype=torch.float64)).abs().max())

    ctx.add_claim(
        "C8.4",
        "On g₀ = (1, 0), g₁ = (−3, −3), g₂ = (−2, −1) the post's literal rule stops at "
        "λ = (1/6, 1/10), ‖u‖² = 9/20 (feasible, not the projection); the exact default returns "
        "λ = (0, 2/5), ‖u‖² = 1/5.",
        [check_at_most("post: max |λ − (1/6, 1/10)|", max_diff(lam_post, (1 / 6, 1 / 10)), 1e-15),
         check_close("post: ‖u‖²", float(u_post @ u_post), 9 / 20, rel_tol=1e-14),
         check_equal("post: reported stalled", info_post.stalled, True),
         check_at_most("default (kkt): max |λ − (0, 2/5)|", max_diff(lam_kkt, (0.0, 0.4)), 1e-14),
         check_close("default (kkt): ‖u‖²", float(u_kkt @ u_kkt), 1 / 5, rel_tol=1e-13)],
        source="spec 08 §4, C8.4",
        note=f"post: {info_post.iterations} coordinate updates, then a fixed point; default: "
        f"solver {info_kkt.solver}, {info_kkt.iterations} updates.",
    )  # fmt: skip
    study = ctx.cached(
        f"solvers/instances{sizes.solver_instances}",
        partial(solver_study, sizes.solver_instances),
    )
    count = study["instances"]
    rows = []
    for solver in STUDY_SOLVERS:
        s = study[solver]
        rows.append(
            [
                "post's rule (literal)" if solver == "post" else f"{solver} (exact)",
                f"{s['suboptimal']} ({100 * s['suboptimal'] / count:.1f}%)",
                f"{s['suboptimal_1e6']}",
                f"{s['stalled']} ({s['situation']} in the §4 situation)",
                f"{s['max_gap']:.1e}",
                f"{s['iterations_median']:.0f} / {s['iterations_p90']:.0f} / {s['iterations_max']}",
                f"{s['max_lambda_diff_unique']:.1e}",
                f"{s['median_us']:.0f}",
            ]
        )
    rows.append(["scipy.optimize.nnls (reference)", "—", "—", "—", "0", "—", "0",
                 f"{study['nnls_median_us']:.0f}"])  # fmt: skip
    ctx.add_table(
        f"Solver study: {count} random instances (n ∈ [2, 7], d ∈ [2, 11], standard normal)",
        ["solver", f"suboptimal (gap > {OPTIMAL_GAP:g})", "gap > 1e-6", "stalled",
         "max gap (‖u‖² − ‖u*‖²)/‖g₀‖²", "coordinate updates median / p90 / max",
         f"max |λ − λ_nnls| (rank G = n: {study['kkt']['unique_instances']} instances)",
         "median µs"],
        rows,
        caption=f"Reference u* from scipy.optimize.nnls(Gᵀ, −g₀). Up to {STUDY_MAX_ITER} "
        "coordinate updates. kkt/cyclic end with an active-set Newton step (exact on the "
        "support), so they need few updates; the post's rule stops at the first fixed point of "
        "its selection τ = argminᵢ sᵢ ('stalled' when that point violates the KKT conditions; the "
        "§4 situation: all sᵢ ≥ 0 while some λⱼ > 0 has sⱼ > 0). Times include the library's "
        "input checks and diagnostics.",
    )  # fmt: skip
    post = study["post"]
    kkt, cyclic = study["kkt"], study["cyclic"]
    ctx.add_claim(
        "E8.5 / C8.3",
        "The exact rules (KKT selection, cyclic) match SciPy's NNLS on random instances (KKT "
        "conditions to 1e-10), while the post's literal rule ends suboptimal in a sizeable share "
        "of them (spec: ≈ 26%).",
        [check_at_most("kkt: instances with gap > 1e-10 (share)", kkt["suboptimal"] / count, 0.005),
         check_at_most("kkt: max gap", kkt["max_gap"], 1e-6),
         check_at_most("cyclic: instances with gap > 1e-10 (share)", cyclic["suboptimal"] / count,
                       0.005),
         check_at_most("cyclic: max gap", cyclic["max_gap"], 1e-6),
         check_at_least("kkt: min ⟨u, gᵢ⟩", kkt["min_inner"], -1e-10),
         check_at_most("kkt: max |λᵢ⟨u, gᵢ⟩|", kkt["max_complementarity"], 1e-10),
         check_at_most("kkt: max |⟨u, g₀⟩ − ‖u‖²|", kkt["max_main_identity"], 1e-10),
         check_at_least("post's rule: share of instances with gap > 1e-10",
                        post["suboptimal"] / count, 0.10)],
        source="spec 08 §4, E8.5, C8.3",
        note=f"Post's rule: {post['suboptimal']}/{count} = {100 * post['suboptimal'] / count:.1f}% "
        f"suboptimal ({post['stalled']} stalled, {post['situation']} of them in the §4 situation); "
        "the spec measured 524/2000 ≈ 26% (its entry distribution is not stated; standard normal "
        f"here). kkt: {kkt['suboptimal']} suboptimal, iterations median "
        f"{kkt['iterations_median']:.0f}, max {kkt['iterations_max']}; cyclic: "
        f"{cyclic['suboptimal']}, median {cyclic['iterations_median']:.0f}, max "
        f"{cyclic['iterations_max']}.",
    )  # fmt: skip
    ctx.metadata["solver_study"] = study


def run(ctx: ExperimentContext) -> None:
    sizes = QUICK if ctx.quick else FULL
    ctx.metadata["sizes"] = dataclasses.asdict(sizes)
    _solver_section(ctx, sizes)
    _toy_section(ctx, sizes)
    _l2_section(ctx, sizes)
    _noisy_section(ctx, sizes)
    ctx.summary = (
        "The post treats one task as the goal and the others as constraints: the update is the "
        "main gradient projected onto the cone where no auxiliary loss rises to first order, "
        "whose dual is non-negative least squares (one auxiliary task: a closed form). We check "
        "the solvers (the post's own coordinate rule can stall; the exact default does not), "
        "the 2-D toy, L2 regularisation as an auxiliary task without a coefficient, and the "
        "noisy-label recipe (noisy data as the main task, a small clean set as the auxiliary) "
        "against summing the losses, the GCS gate and GGLM loss masking."
    )


register_experiment(
    "primary-aux",
    title="Multi-task learning: primary and auxiliary tasks",
    post="8907",
    spec="08",
    description="Noisy labels with a small clean set (digits; MNIST with --full), L2 "
    "regularisation without a coefficient on random features, the 2-D toy, and a solver study "
    "of the post's coordinate rule against exact NNLS.",
    quick_minutes=0.75,
    order=65,
)(run)

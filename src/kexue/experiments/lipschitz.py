"""``lipschitz``: post 8757 (gradient normalisation for WGAN critics), spec 01 E1.1–E1.4.

Parts (each unit of work is cached, so a killed run resumes where it stopped):

1. 2-D mixtures (8-Gaussian ring, 25-Gaussian grid): none, clip, SN, GP, GN, GraN (two ε),
   GraN-simple and Su's variant; exact W1, modes covered, high-quality fraction, time per G step,
   gradient norms of the (normalised) critic at real, fake and interpolated points (C1.10).
2. Discontinuity of a trained GN critic: heat maps of f and f̂ with linear-region boundaries, and the
   jump-vs-step table (C1.3).
3. Activation ablation under GN: ReLU, LeakyReLU, ELU, Softplus.
4. MNIST 28x28: GN vs GP vs SN vs clip with the same generator and budget: FID (in-domain LeNet
   features), improved precision/recall, sample grids, wall time; generators are kept for reuse.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from functools import partial
from typing import Any, cast

import numpy as np
import torch

from ..data import eight_gaussians, load_mnist, twenty_five_gaussians
from ..data.synthetic import GaussianMixture2D
from ..gan import (
    DCGANCritic28,
    DCGANGenerator28,
    MLPCritic,
    MLPGenerator,
    WGANConfig,
    WGANTrainer,
    tensor_sampler,
)
from ..lipschitz import (
    NORMALIZATION_METHODS,
    NormalizationMethod,
    critic_gradient_norms,
    line_jumps,
    linear_region_ids,
    normalize_gradient,
)
from ..metrics import (
    class_probabilities,
    classifier_score,
    extract_features,
    in_domain_fid,
    load_extractor,
    mode_stats,
    precision_recall,
    w1_exact,
)
from ..report import (
    Check,
    ExperimentContext,
    check_at_least,
    check_at_most,
    register_experiment,
)
from ..utils import make_generator
from ._plotting import image_grid, pyplot


@dataclasses.dataclass(frozen=True)
class ToyMethod:
    label: str
    constraint: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def normalization(self) -> NormalizationMethod | None:
        if self.constraint in NORMALIZATION_METHODS:
            return cast(NormalizationMethod, self.constraint)
        return None


TOY_METHODS = (
    ToyMethod("none", "none"),
    ToyMethod("clip", "clip"),
    ToyMethod("SN", "sn"),
    ToyMethod("GP", "gp"),
    ToyMethod("GN", "gn"),
    ToyMethod("GraN ε=1e-4", "gran", (("eps", 1e-4),)),
    ToyMethod("GraN ε=1e-8", "gran", (("eps", 1e-8),)),
    ToyMethod("GraN-simple", "gran-simple"),
    ToyMethod("Su's variant", "su"),
)
ACTIVATIONS = ("relu", "leaky_relu", "elu", "softplus", "softplus20")
MNIST_CRITIC_CHANNELS = 32
MNIST_METHODS = ("gn", "gp", "sn", "clip")


@dataclasses.dataclass(frozen=True)
class Sizes:
    toy_steps: int
    toy_batch: int
    toy_seeds: int
    toy_eval_points: int
    mnist_steps: int
    mnist_seeds: int
    mnist_train_images: int
    mnist_eval_samples: int


# QUICK is CI-sized (a few minutes on 2 cores): the generators do not converge, and the claims that
# compare trained models are gated (see `_budget_gate`) and come out "inconclusive". FULL follows
# spec 01 E1.1/E1.4 (5k toy G steps at batch 256, 10k MNIST G steps, 3 seeds): hours on 2 cores.
QUICK = Sizes(toy_steps=500, toy_batch=64, toy_seeds=1, toy_eval_points=1024, mnist_steps=150,
              mnist_seeds=1, mnist_train_images=10000, mnist_eval_samples=2000)  # fmt: skip
FULL = Sizes(toy_steps=5000, toy_batch=256, toy_seeds=3, toy_eval_points=1024, mnist_steps=10000,
             mnist_seeds=3, mnist_train_images=10000, mnist_eval_samples=10000)  # fmt: skip


def _mixtures() -> dict[str, GaussianMixture2D]:
    return {"8gaussians": eight_gaussians(), "25gaussians": twenty_five_gaussians()}


def _toy_config(method: ToyMethod, steps: int, batch: int, seed: int) -> WGANConfig:
    return WGANConfig(
        constraint=method.constraint,
        constraint_options=dict(method.options),
        loss="wgan",
        n_critic=5,
        batch_size=batch,
        lr_critic=2e-4,
        lr_generator=1e-4,
        betas=(0.0, 0.9),
        generator_steps=steps,
        ema_decay=0.0,
        latent_dim=2,
        seed=seed,
        checkpoint_every=max(steps // 4, 1),
        log_every=max(steps // 20, 1),
    )


def _gradient_norm_summary(norms: torch.Tensor) -> dict[str, float]:
    values = norms.double()
    return {
        "median": float(values.median()),
        "max": float(values.max()),
        "mean_squared_deviation_from_1": float((values - 1).pow(2).mean()),
    }


def _train_toy(
    ctx: ExperimentContext,
    mixture: GaussianMixture2D,
    method: ToyMethod,
    seed: int,
    sizes: Sizes,
    activation: str = "relu",
) -> dict[str, Any]:
    steps, points = sizes.toy_steps, sizes.toy_eval_points
    name = f"toy-{mixture.name}-{method.constraint}-{method.label}-{activation}-b{sizes.toy_batch}"
    run_dir = ctx.checkpoint_dir / f"{name}-n{steps}-s{seed}".replace(" ", "_")
    torch.manual_seed(seed)
    generator = MLPGenerator(latent_dim=2, hidden=(128, 128), out_features=2)
    critic = MLPCritic(in_features=2, hidden=(256, 256), activation=activation)
    config = _toy_config(method, steps, sizes.toy_batch, seed)

    def sample_real(n: int, stream: torch.Generator) -> torch.Tensor:
        return mixture.sample(n, stream)

    trainer = WGANTrainer(generator, critic, sample_real, config, device=ctx.device,
                          run_dir=run_dir)  # fmt: skip
    started = time.perf_counter()
    history = trainer.train()
    seconds = time.perf_counter() - started
    evaluation = make_generator(10_000 + seed)
    real = mixture.sample(points, evaluation)
    fake = trainer.sample(points, ema=False).detach().cpu()
    floor = w1_exact(real, mixture.sample(points, evaluation))
    run_dir.mkdir(parents=True, exist_ok=True)
    np.save(run_dir / "samples.npy", fake.numpy())
    stats = mode_stats(fake, mixture.centers, mixture.std)
    alpha = torch.rand(points, 1, generator=evaluation)
    interpolates = alpha * real + (1 - alpha) * fake
    # float64 copy: the bound ‖∇f̂‖ <= 1 is exact, so measure it without float32 rounding.
    trained = copy.deepcopy(trainer.critic).cpu().double()
    real, fake, interpolates = real.double(), fake.double(), interpolates.double()
    torch.save(trainer.critic.state_dict(), run_dir / "final_critic.pt")
    places = {"real": real, "fake": fake, "interpolated": interpolates}
    raw_norms = {place: critic_gradient_norms(trained, x, method.normalization)
                 for place, x in places.items()}  # fmt: skip
    real_norms, fake_norms, interpolated_norms = (v.numpy() for v in raw_norms.values())
    np.savez(run_dir / "gradient_norms.npz", real=real_norms, fake=fake_norms,
             interpolated=interpolated_norms)  # fmt: skip
    norms = {place: _gradient_norm_summary(values) for place, values in raw_norms.items()}
    return {
        "w1": w1_exact(fake, real),
        "w1_floor": floor,
        "modes_covered": stats.modes_covered,
        "num_modes": stats.num_modes,
        "high_quality_fraction": stats.high_quality_fraction,
        "seconds_per_generator_step": seconds / max(steps, 1),
        "gradient_norms": norms,
        "final_critic_loss": float(history[-1]["critic_loss"]) if history else float("nan"),
        "critic_state": str(run_dir / "final_critic.pt"),
        "samples": str(run_dir / "samples.npy"),
        "gradient_norm_values": str(run_dir / "gradient_norms.npz"),
    }


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([run[key] for run in runs]))


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std()) if array.size > 1 else 0.0


def _budget_gate(description: str, measured: float, threshold: float) -> Check:
    """A precondition for claims that compare *trained* models.

    Passes when the training budget produced a usable model (``measured >= threshold``); otherwise
    its outcome is ``None``, which makes the claim "inconclusive" instead of a false verdict (e.g.
    under ``--quick``, where no generator converges).
    """
    reached = bool(np.isfinite(measured) and measured >= threshold)
    return Check(f"budget sufficient: {description}", measured, f">= {threshold:g}",
                 True if reached else None)  # fmt: skip


def _gated(gate: Check, checks: list[Check]) -> list[Check]:
    """``checks`` alone when the budget gate passed (so it cannot soften a failing claim into
    "partially reproduced"); ``[gate, *checks]`` (→ inconclusive) when it did not."""
    return checks if gate.passed else [gate, *checks]


ToyResults = dict[tuple[str, str], list[dict[str, Any]]]


def _toy_gate(results: ToyResults, dataset: str) -> Check:
    labels = sorted({label for d, label in results if d == dataset})
    best = max(_mean(results[(dataset, label)], "modes_covered") for label in labels)
    modes = results[(dataset, labels[0])][0]["num_modes"]
    return _budget_gate(f"{dataset}: best method covers >= 75% of the {modes} modes", best,
                        0.75 * modes)  # fmt: skip


def _toy_section(ctx: ExperimentContext, sizes: Sizes) -> ToyResults:
    seeds = ctx.seeds(sizes.toy_seeds)
    mixtures = _mixtures()
    results: ToyResults = {}
    units = [(d, m, s) for d in mixtures for m in TOY_METHODS for s in seeds]
    for dataset, method, seed in ctx.progress(units, desc="lipschitz toy"):
        key = f"toy/{dataset}/{method.label}/seed{seed}/steps{sizes.toy_steps}/b{sizes.toy_batch}"
        result = ctx.cached(key, partial(_train_toy, ctx, mixtures[dataset], method, seed, sizes))
        results.setdefault((dataset, method.label), []).append(result)
    rows = []
    for (dataset, label), runs in results.items():
        w1 = _mean_std([r["w1"] for r in runs])
        rows.append([
            dataset, label, f"{w1[0]:.3f} ± {w1[1]:.3f}", runs[0]["w1_floor"],
            f"{_mean(runs, 'modes_covered'):.1f}/{runs[0]['num_modes']}",
            _mean(runs, "high_quality_fraction"), 1000 * _mean(runs, "seconds_per_generator_step"),
        ])  # fmt: skip
    ctx.add_table(
        "2-D mixtures: exact W1, modes and cost",
        ["data", "method", "W1 (mean ± std)", "W1 real-vs-real floor", "modes covered",
         "high-quality fraction", "ms per G step (5 D steps)"],
        rows,
        caption=f"{len(seeds)} seed(s), {sizes.toy_steps} generator steps, batch "
        f"{sizes.toy_batch}, n_critic 5, Adam(0, 0.9), lr D 2e-4 / G 1e-4 (clip: RMSprop 5e-5). W1 "
        f"between {sizes.toy_eval_points} generated and as many real points by exact assignment. A "
        "mode is covered with >= 1% of samples within 3σ; high quality = within 3σ of a centre.",
    )  # fmt: skip
    norm_rows = []
    for (dataset, label), runs in results.items():
        if dataset == "8gaussians":
            norms = runs[0]["gradient_norms"]
            norm_rows.append([label] + [norms[place][stat] for place in ("real", "fake",
                              "interpolated") for stat in ("median", "max")])  # fmt: skip
    ctx.add_table(
        "Gradient norms of the trained critic (8 Gaussians, first seed)",
        ["method", "real median", "real max", "fake median", "fake max", "interp. median",
         "interp. max"],
        norm_rows,
        caption="‖∇ₓ f̂‖ for normalised critics (GN, GraN, GraN-simple, Su), ‖∇ₓ f‖ otherwise.",
    )  # fmt: skip
    _toy_figure(ctx, results)
    _gradient_norm_figure(ctx, results)
    return results


def _gradient_norm_figure(ctx: ExperimentContext, results: ToyResults) -> None:
    plt = pyplot()
    labels = ("GN", "GraN ε=1e-8", "GP", "clip")
    figure, axes = plt.subplots(1, len(labels), figsize=(3.4 * len(labels), 3.0))
    for axis, label in zip(axes, labels, strict=True):
        values = np.load(results[("8gaussians", label)][0]["gradient_norm_values"])
        for place in ("real", "fake", "interpolated"):
            axis.hist(values[place], bins=40, alpha=0.5, label=place)
        axis.axvline(1.0, color="k", linewidth=0.8)
        axis.set_title(label)
        axis.set_xlabel("‖∇f̂‖ (normalised)" if label.startswith(("GN", "GraN")) else "‖∇f‖")
    axes[0].legend(fontsize=7)
    ctx.save_figure(figure, "gradient_norms", title="Input-gradient norms of trained toy critics",
                    caption="8 Gaussians, first seed; C1.10: GN/GraN stay ≤ 1 everywhere, GP "
                    "concentrates near 1 at interpolates, clipping is far below 1.")  # fmt: skip


def _toy_figure(ctx: ExperimentContext, results: ToyResults) -> None:
    plt = pyplot()
    labels = [method.label for method in TOY_METHODS]
    figure, axes = plt.subplots(2, len(labels), figsize=(2.1 * len(labels), 4.4))
    for row, dataset in enumerate(_mixtures()):
        mixture = _mixtures()[dataset]
        for column, label in enumerate(labels):
            axis = axes[row, column]
            samples = np.load(results[(dataset, label)][0]["samples"])
            axis.scatter(mixture.centers[:, 0], mixture.centers[:, 1], s=12, c="tab:red")
            axis.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4, c="k")
            limit = 3.0 if dataset == "8gaussians" else 5.5
            axis.set_xlim(-limit, limit)
            axis.set_ylim(-limit, limit)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(label, fontsize=8)
    ctx.save_figure(figure, "toy_samples", title="Generated samples on the 2-D mixtures (seed 0)",
                    caption="Black: generator samples; red: mixture centres.")  # fmt: skip


def _toy_claims(ctx: ExperimentContext, results: ToyResults) -> None:
    def mean(dataset: str, label: str, key: str) -> float:
        return _mean(results[(dataset, label)], key)

    datasets = sorted({d for d, _ in results})
    su_checks: list[Check] = []
    gn_gp_checks: list[Check] = []
    for d in datasets:
        gate = _toy_gate(results, d)
        su_ratio = mean(d, "Su's variant", "w1") / mean(d, "GN", "w1")
        su_checks += _gated(gate, [check_at_least(f"{d}: W1(Su) / W1(GN)", su_ratio, 2.0)])
        gn, gp = mean(d, "GN", "w1"), mean(d, "GP", "w1")
        gn_gp_checks += _gated(gate, [Check(f"{d}: W1(GN) >= W1(GP)", f"{gn:.3f} vs {gp:.3f}",
                                            "GN not better", gn >= gp)])  # fmt: skip
    ctx.add_claim(
        "post: Su's variant",
        "Su's 'theoretically equivalent' variant <g/‖g‖, x> works extremely badly (极差).",
        su_checks, source="post 8757; spec 01 §7.2",
        note="Operationalised as: Su's W1 to the data is at least twice GN's.",
    )  # fmt: skip
    ctx.add_claim(
        "post: GN vs GP", "In the author's experiments GN was not better than GP.", gn_gp_checks,
        source="post 8757", note="Operationalised as: GN's mean W1 to the data >= GP's.",
    )  # fmt: skip
    ctx.add_claim(
        "E1.1: GN/GraN train",
        "GN and GraN critics train a generator that covers the 8-Gaussian ring (>= 7 of 8 modes).",
        [check_at_least(f"8gaussians: modes covered by {label}",
                        mean("8gaussians", label, "modes_covered"), 7.0)
         for label in ("GN", "GraN ε=1e-8")],
        source="spec 01 E1.1 (expected)",
        note="Not gated: failing to cover the ring within the budget is itself the measurement.",
    )  # fmt: skip
    checks = []
    for label in ("GN", "GraN ε=1e-4", "GraN ε=1e-8", "GraN-simple"):
        worst = max(r["gradient_norms"][place]["max"] for d in datasets for r in results[(d, label)]
                    for place in ("real", "fake", "interpolated"))  # fmt: skip
        checks.append(check_at_most(f"max ‖∇f̂‖ of {label} at real/fake/interpolated", worst,
                                    1 + 1e-6))  # fmt: skip
    deviations = [r["gradient_norms"]["interpolated"]["mean_squared_deviation_from_1"]
                  for d in datasets for r in results[(d, "GP")]]  # fmt: skip
    checks.append(check_at_most("GP: mean (‖∇f‖−1)² at interpolates", float(np.mean(deviations)),
                                0.1))  # fmt: skip
    clip = [r["gradient_norms"]["real"]["median"] for d in datasets for r in results[(d, "clip")]]
    checks.append(check_at_most("clip: median ‖∇f‖ at real points", float(np.median(clip)), 0.5))
    ctx.add_claim(
        "C1.10", "On trained toy critics GN/GraN keep ‖∇f̂‖ ≤ 1 at every point; GP keeps the "
        "interpolate norms near 1 on average; a clipped critic has gradient norms well below 1.",
        checks, source="spec 01 §8",
    )  # fmt: skip


def _discontinuity_section(ctx: ExperimentContext, results: ToyResults) -> None:
    plt = pyplot()
    state = torch.load(results[("8gaussians", "GN")][0]["critic_state"], weights_only=True)
    critic = MLPCritic(in_features=2, hidden=(256, 256), activation="relu")
    critic.load_state_dict(state)
    critic = critic.double().eval()
    size = 301
    axis_values = torch.linspace(-3, 3, size, dtype=torch.float64)
    grid = torch.cartesian_prod(axis_values, axis_values).flip(1)  # rows = y, columns = x
    output = normalize_gradient(critic, grid, "gn", create_graph=False)
    ids = linear_region_ids(critic, grid).reshape(size, size).numpy()
    boundary = np.zeros((size, size), dtype=bool)
    boundary[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    boundary[1:, :] |= ids[1:, :] != ids[:-1, :]
    figure, axes = plt.subplots(1, 2, figsize=(11, 5))
    coordinates = np.linspace(-3, 3, size)
    for axis, values, title in ((axes[0], output.f, "raw critic f"),
                                (axes[1], output.f_hat, "GN critic f̂ = f/(‖∇f‖+|f|)")):  # fmt: skip
        image = axis.imshow(values.detach().reshape(size, size).numpy(), extent=(-3, 3, -3, 3),
                            origin="lower", cmap="coolwarm")  # fmt: skip
        axis.contour(coordinates, coordinates, boundary.astype(float), levels=[0.5], colors="k",
                     linewidths=0.2)  # fmt: skip
        axis.set_title(title)
        figure.colorbar(image, ax=axis, shrink=0.8)
    ctx.save_figure(figure, "discontinuity", title="A trained GN critic over the plane",
                    caption="Left: the raw critic f (continuous). Right: the normalised f̂, which "
                    "jumps across linear-region boundaries (black lines: activation-pattern "
                    "changes).")  # fmt: skip
    start = torch.tensor([-2.5, -1.0], dtype=torch.float64)
    direction = torch.nn.functional.normalize(torch.tensor([1.0, 0.37], dtype=torch.float64), dim=0)
    rows = []
    jumps = {}
    for step in (6e-3, 6e-4, 6e-5, 6e-6):
        jump = line_jumps(critic, start, direction, step)
        jumps[step] = jump
        rows.append([step, jump.largest_jump_f, jump.largest_jump_f_hat,
                     jump.largest_difference_quotient_f_hat])  # fmt: skip
    ctx.add_table("Largest jump along a line vs sampling step (trained GN critic)",
                  ["step", "largest |Δf|", "largest |Δf̂|", "largest |Δf̂|/|Δx|"], rows,
                  caption="Line x(s) = (−2.5, −1) + s·v, s ∈ [−3, 3], v ∝ (1, 0.37).")  # fmt: skip
    ctx.add_claim(
        "C1.3", "The GN critic is discontinuous (only piecewise 1-Lipschitz): its largest jump "
        "does not shrink with the sampling step, while the raw critic's shrinks in proportion.",
        [check_at_least("largest |Δf̂| at step 6e-6 / at 6e-3",
                        jumps[6e-6].largest_jump_f_hat / jumps[6e-3].largest_jump_f_hat, 0.5),
         check_at_least("largest |Δf| at step 6e-3 / at 6e-6",
                        jumps[6e-3].largest_jump_f / max(jumps[6e-6].largest_jump_f, 1e-300),
                        100.0),
         check_at_least("largest |Δf̂|/|Δx| at step 6e-6",
                        jumps[6e-6].largest_difference_quotient_f_hat, 1e3)],
        source="post 8757 (the main objection); spec 01 §7.1, §8",
    )  # fmt: skip


def _ablation_section(ctx: ExperimentContext, sizes: Sizes, results: ToyResults) -> None:
    mixture = eight_gaussians()
    runs: dict[str, list[dict[str, Any]]] = {"relu": results[("8gaussians", "GN")]}
    for activation in ctx.progress(ACTIVATIONS[1:], desc="lipschitz ablation"):
        # The fast generator step is exact only for piecewise-linear critics (C1.8): smooth
        # activations get the exact double-backprop step, so the ablation measures GN itself.
        exact_step = (("generator_mode", "double"),)
        method = ToyMethod("GN", "gn", () if activation == "leaky_relu" else exact_step)
        runs[activation] = [
            ctx.cached(f"ablation/{activation}/seed{seed}/steps{sizes.toy_steps}"
                       f"/b{sizes.toy_batch}",
                       partial(_train_toy, ctx, mixture, method, seed, sizes, activation))
            for seed in ctx.seeds(sizes.toy_seeds)
        ]  # fmt: skip
    w1 = {activation: _mean(r, "w1") for activation, r in runs.items()}
    rows = [[activation, w1[activation], _mean(r, "modes_covered"),
             _mean(r, "high_quality_fraction")] for activation, r in runs.items()]  # fmt: skip
    ctx.add_table("Activation ablation under GN (8 Gaussians)",
                  ["critic activation", "W1", "modes covered", "high-quality fraction"], rows,
                  caption="softplus20 = Softplus(β=20), a smooth near-ReLU. The ReLU row is the GN "
                  "run of the main table.")  # fmt: skip
    best_modes = max(_mean(r, "modes_covered") for r in runs.values())
    best_smooth = min(w1["elu"], w1["softplus"], w1["softplus20"])
    ctx.add_claim(
        "E1.2", "GN relies on piecewise linearity: smooth activations (ELU, Softplus) degrade it, "
        "mirroring the official CIFAR-10 ablation.",
        _gated(_budget_gate("best activation covers >= 6 of 8 modes", best_modes, 6.0),
               [check_at_least("best smooth W1 / best piecewise-linear W1",
                               best_smooth / min(w1["relu"], w1["leaky_relu"]), 1.0)]),
        source="spec 01 E1.2 and §9 (official ablation)",
    )  # fmt: skip


def _train_mnist(ctx: ExperimentContext, method: str, seed: int, sizes: Sizes) -> dict[str, Any]:
    images = load_mnist("train").to_tensor("symmetric")[: sizes.mnist_train_images]
    torch.manual_seed(seed)
    generator = DCGANGenerator28(latent_dim=64)
    critic = DCGANCritic28(channels=MNIST_CRITIC_CHANNELS)
    config = WGANConfig(
        constraint=method, constraint_options={}, loss="wgan", n_critic=5, batch_size=64,
        lr_critic=None if method == "clip" else 2e-4,
        lr_generator=None if method == "clip" else 2e-4,
        betas=(0.0, 0.9), generator_steps=sizes.mnist_steps, ema_decay=0.999, latent_dim=64,
        seed=seed, checkpoint_every=max(sizes.mnist_steps // 5, 1),
        log_every=max(sizes.mnist_steps // 20, 1),
    )  # fmt: skip
    run_dir = ctx.checkpoint_dir / f"mnist-{method}-n{sizes.mnist_steps}-s{seed}"
    trainer = WGANTrainer(generator, critic, tensor_sampler(images), config, device=ctx.device,
                          run_dir=run_dir)  # fmt: skip
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    kept = ctx.directory / "generators" / f"mnist-{method}-seed{seed}.pt"
    kept.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_generator(kept)
    samples = trainer.sample(sizes.mnist_eval_samples, ema=True).detach().cpu()
    generated = ((samples.clamp(-1, 1) + 1) / 2).squeeze(1)
    extractor = load_extractor("mnist")
    fake_features = extract_features(extractor, generated)
    test = load_mnist("test")
    real_features = extract_features(extractor, test.images[: sizes.mnist_eval_samples])
    pr = precision_recall(real_features, fake_features, k=3)
    grid_path = ctx.directory / f"mnist-{method}-seed{seed}.npy"
    np.save(grid_path, (generated[:64].numpy() * 255).astype(np.uint8))
    return {
        "fid_in_domain": in_domain_fid("mnist", generated),
        "precision": pr.precision,
        "recall": pr.recall,
        "classifier_score": classifier_score(class_probabilities(extractor, generated)),
        "seconds": seconds,
        "seconds_per_generator_step": seconds / max(sizes.mnist_steps, 1),
        "generator_checkpoint": str(kept),
        "grid": str(grid_path),
    }


def _mnist_section(ctx: ExperimentContext, sizes: Sizes) -> None:
    plt = pyplot()
    results: dict[str, list[dict[str, Any]]] = {}
    for method in ctx.progress(MNIST_METHODS, desc="lipschitz mnist"):
        results[method] = [
            ctx.cached(f"mnist/{method}/seed{seed}/steps{sizes.mnist_steps}",
                       partial(_train_mnist, ctx, method, seed, sizes))
            for seed in ctx.seeds(sizes.mnist_seeds)
        ]  # fmt: skip
    rows = []
    for method, runs in results.items():
        fid = _mean_std([r["fid_in_domain"] for r in runs])
        rows.append([method, f"{fid[0]:.1f} ± {fid[1]:.1f}", _mean(runs, "precision"),
                     _mean(runs, "recall"), _mean(runs, "classifier_score"),
                     _mean(runs, "seconds"),
                     1000 * _mean(runs, "seconds_per_generator_step")])  # fmt: skip
    ctx.add_table(
        "MNIST: same DCGAN generator and budget, different critic constraints",
        ["constraint", "FID (in-domain LeNet)", "precision (k=3)", "recall (k=3)",
         "classifier score (max 10)", "training seconds", "ms per G step (5 D steps)"],
        rows,
        caption=f"{len(next(iter(results.values())))} seed(s), {sizes.mnist_steps} generator "
        f"steps, n_critic 5, batch 64, {sizes.mnist_train_images} training images, DCGAN critic "
        f"with {MNIST_CRITIC_CHANNELS} channels; {sizes.mnist_eval_samples} samples of the EMA "
        "generator vs the test split. FID (in-domain) uses kexue's LeNet features and is not "
        "comparable to Inception FID. Precision counts samples inside the real k-NN balls, so "
        "a collapsed generator whose one output lands in a large ball scores 1.0: read it with "
        "recall. Generators are kept under generators/ for the hubness "
        "experiment.",
    )  # fmt: skip
    figure, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.4))
    for axis, (method, runs) in zip(np.atleast_1d(axes), results.items(), strict=True):
        images = np.load(runs[0]["grid"])
        axis.imshow(image_grid(images[:36].astype(np.float64) / 255, 6, 6), cmap="gray_r")
        axis.set_title(method)
        axis.set_axis_off()
    ctx.save_figure(figure, "mnist_samples", title="MNIST samples (EMA generator, seed 0)")
    gn, gp = _mean(results["gn"], "fid_in_domain"), _mean(results["gp"], "fid_in_domain")
    best_score = max(_mean(runs, "classifier_score") for runs in results.values())
    ctx.add_claim(
        "post: GN vs GP (MNIST)", "GN is not better than GP (the post's experience).",
        _gated(_budget_gate("best classifier score (recognisable digits)", best_score, 5.0),
               [Check("FID(GN) >= FID(GP)", f"{gn:.1f} vs {gp:.1f}", "GN not better", gn >= gp)]),
        source="post 8757",
    )  # fmt: skip


def run(ctx: ExperimentContext) -> None:
    sizes = QUICK if ctx.quick else FULL
    ctx.metadata["sizes"] = dataclasses.asdict(sizes)
    results = _toy_section(ctx, sizes)
    _toy_claims(ctx, results)
    _discontinuity_section(ctx, results)
    _ablation_section(ctx, sizes, results)
    _mnist_section(ctx, sizes)
    ctx.summary = (
        "Gradient normalisation divides the critic by its input-gradient norm. The post argues "
        "that the result is discontinuous (only piecewise 1-Lipschitz), that Su's 'equivalent' "
        "variant fails, and that GN was no better than GP in his runs. Below: what we measure on "
        "toy mixtures and MNIST, with the discontinuity made visible. Under --quick no generator "
        "converges; claims comparing trained models are then marked inconclusive by a budget "
        "check rather than decided."
    )


register_experiment(
    "lipschitz",
    title="WGAN critics: clipping, SN, GP and gradient normalisation (GN, GraN)",
    post="8757",
    spec="01",
    description="Toy mixtures with nine critic constraints, the discontinuity of a trained GN "
    "critic, an activation ablation, and MNIST with GN/GP/SN/clip.",
    quick_minutes=3.5,
    order=10,
)(run)

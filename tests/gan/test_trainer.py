"""WGANTrainer / WGANConfig (spec 01 §5.2–5.5, §6, E1.1): every constraint trains, determinism,
bit-identical resume after a kill, EMA, clipping, config round trip, clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kexue.data import eight_gaussians
from kexue.gan import (
    DCGANCritic28,
    DCGANGenerator28,
    MLPCritic,
    MLPGenerator,
    WGANConfig,
    WGANTrainer,
    derive_seed,
    tensor_sampler,
)
from kexue.utils import load_checkpoint, read_json, seed_everything

MIXTURE = eight_gaussians()


def toy_sampler(n: int, generator: torch.Generator) -> torch.Tensor:
    return MIXTURE.sample(n, generator)


def small_config(**changes) -> WGANConfig:
    options = {"batch_size": 16, "n_critic": 2, "log_every": 1, "checkpoint_every": 2}
    options.update(changes)
    return WGANConfig(**options)


def make_trainer(config: WGANConfig | None = None, run_dir=None, *, model_seed=None, sampler=None):
    config = config or small_config()
    seed_everything(config.seed if model_seed is None else model_seed)
    generator = MLPGenerator(hidden=(16, 16))
    critic = MLPCritic(hidden=(16, 16))
    return WGANTrainer(generator, critic, sampler or toy_sampler, config, "cpu", run_dir)


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.mark.parametrize("constraint", ["none", "clip", "sn", "gp", "gn", "gran", "su"])
def test_every_constraint_trains_with_finite_losses(constraint, tmp_path):
    trainer = make_trainer(small_config(constraint=constraint), tmp_path)
    before = state(trainer.generator)
    history = trainer.train(3)
    assert [entry["step"] for entry in history] == [1, 2, 3]
    for entry in history:
        assert set(entry) == {"step", "critic_loss", "generator_loss", "seconds"}
        assert math.isfinite(entry["critic_loss"])
        assert math.isfinite(entry["generator_loss"])
    after = state(trainer.generator)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "checkpoint.pt").is_file()
    assert read_json(tmp_path / "history.json") == history
    assert WGANConfig.load(tmp_path / "config.json") == trainer.config


def test_same_seed_same_parameters_and_different_seed_differs():
    first = make_trainer(small_config(constraint="gp", seed=3))
    second = make_trainer(small_config(constraint="gp", seed=3))
    other = make_trainer(small_config(constraint="gp", seed=4))
    for trainer in (first, second, other):
        trainer.train(3)
    assert_same_state(state(first.critic), state(second.critic))
    assert_same_state(state(first.generator), state(second.generator))
    assert_same_state(state(first.generator_ema), state(second.generator_ema))
    assert not torch.equal(state(first.critic)["net.0.weight"], state(other.critic)["net.0.weight"])


class Killed(Exception):
    pass


@pytest.mark.parametrize("constraint", ["gp", "sn"])
def test_resume_after_kill_is_bit_identical(constraint, tmp_path):
    config = small_config(constraint=constraint, checkpoint_every=2)
    reference = make_trainer(config, tmp_path / "reference")
    reference.train(6)

    calls = {"n": 0}

    def dying_sampler(n: int, generator: torch.Generator) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 4 * config.n_critic + 1:  # dies during step 5, after the step-4 save
            raise Killed
        return toy_sampler(n, generator)

    victim = make_trainer(config, tmp_path / "run", sampler=dying_sampler)
    with pytest.raises(Killed):
        victim.train(6)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 4

    # fresh process state: different model init and global RNG; everything comes from the file
    torch.manual_seed(12345)
    resumed = make_trainer(config, tmp_path / "run", model_seed=999)
    assert resumed.step == 4
    history = resumed.train(6)
    for name in ("generator", "critic", "generator_ema"):
        assert_same_state(state(getattr(reference, name)), state(getattr(resumed, name)))
    for name in ("optimizer_g", "optimizer_d"):
        ref_state = getattr(reference, name).state_dict()["state"]
        new_state = getattr(resumed, name).state_dict()["state"]
        for key in ref_state:
            for field in ref_state[key]:
                assert torch.equal(ref_state[key][field], new_state[key][field])
    drop = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert drop(history) == drop(reference.history)
    assert torch.equal(resumed.data_rng.get_state(), reference.data_rng.get_state())


def test_ema_differs_from_generator_and_equals_it_without_decay():
    trainer = make_trainer(small_config(ema_decay=0.999))
    trainer.train(3)
    ema, raw = state(trainer.generator_ema), state(trainer.generator)
    assert not torch.equal(ema["net.0.weight"], raw["net.0.weight"])
    assert not trainer.generator_ema.training
    assert all(not p.requires_grad for p in trainer.generator_ema.parameters())
    assert not torch.equal(trainer.sample(8, ema=True), trainer.sample(8, ema=False))

    plain = make_trainer(small_config(ema_decay=0.0))
    plain.train(3)
    assert_same_state(state(plain.generator_ema), state(plain.generator))
    assert torch.equal(plain.sample(8, ema=True), plain.sample(8, ema=False))


def test_clip_clamps_parameters_and_uses_rmsprop():
    config = small_config(constraint="clip", constraint_options={"clip_value": 0.02})
    assert config.resolved_optimizer == "rmsprop"
    assert config.resolved_lr_critic == pytest.approx(5e-5)
    trainer = make_trainer(config)
    assert isinstance(trainer.optimizer_d, torch.optim.RMSprop)
    for parameter in trainer.critic.parameters():  # clipped at construction
        assert parameter.abs().max() <= 0.02
    trainer.train(2)
    params = torch.cat([p.detach().flatten() for p in trainer.critic.parameters()])
    assert params.abs().max() <= 0.02
    assert (params.abs() == 0.02).any()  # the clamp is active, not vacuous

    adam = small_config(constraint="clip", optimizer="adam")
    assert adam.resolved_optimizer == "adam"
    assert small_config().resolved_optimizer == "adam"
    assert small_config().resolved_lr_critic == pytest.approx(2e-4)
    assert small_config().resolved_lr_generator == pytest.approx(1e-4)


def test_real_and_fake_scored_in_one_concatenated_batch():
    trainer = make_trainer(small_config(constraint="none", n_critic=1, generator_batch_size=5))
    sizes: list[int] = []
    trainer.critic.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
    trainer.train(1)
    assert sizes == [32, 5]  # critic step: 16 real + 16 fake in one call; G step: 5


def test_config_json_round_trip(tmp_path):
    config = WGANConfig(
        constraint="gran",
        constraint_options={"eps": 1e-4, "K": 2.0},
        loss="hinge",
        betas=(0.5, 0.99),
        generator_batch_size=32,
        optimizer="adam",
        lr_critic=1e-3,
    )
    again = WGANConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.betas, tuple)
    config.save(tmp_path / "c.json")
    assert WGANConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="unknown WGANConfig field"):
        WGANConfig.from_dict({"n_critics": 5})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"constraint": "lipschitz"}, "unknown constraint"),
        ({"loss": "l2"}, "unknown loss"),
        ({"n_critic": 0}, "n_critic"),
        ({"batch_size": 0}, "batch_size"),
        ({"generator_batch_size": 0}, "generator_batch_size"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"lr_critic": -1.0}, "lr_critic"),
        ({"betas": (0.0, 1.5)}, "betas"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_config_raises(changes, match):
    with pytest.raises(ValueError, match=match):
        WGANConfig(**changes)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="bad options"):
        make_trainer(small_config(constraint="gp", constraint_options={"lambda_": 3}))
    wrong_batch = make_trainer(sampler=lambda n, g: MIXTURE.sample(n + 1, g))
    with pytest.raises(ValueError, match="batch_size=16"):
        wrong_batch.train(1)
    wrong_shape = make_trainer(sampler=lambda n, g: torch.randn(n, 3, generator=g))
    with pytest.raises(ValueError, match="same shape"):
        wrong_shape.train(1)
    seed_everything(0)
    batchnorm_critic = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="couples"):
        WGANTrainer(MLPGenerator(), batchnorm_critic, toy_sampler, small_config())
    with pytest.raises(TypeError, match="WGANConfig"):
        WGANTrainer(MLPGenerator(), MLPCritic(), toy_sampler, {"n_critic": 5})  # type: ignore[arg-type]
    trainer = make_trainer()
    with pytest.raises(ValueError, match="steps"):
        trainer.train(-1)
    with pytest.raises(ValueError, match="positive"):
        trainer.sample(0)


def test_tensor_sampler_and_image_training(tmp_path):
    images = torch.rand(20, 1, 28, 28) * 2 - 1
    sampler = tensor_sampler(images)
    batch = sampler(6, torch.Generator().manual_seed(0))
    assert batch.shape == (6, 1, 28, 28)
    assert torch.equal(batch, sampler(6, torch.Generator().manual_seed(0)))
    assert all(any(torch.equal(row, image) for image in images) for row in batch)
    with pytest.raises(ValueError, match="non-empty"):
        tensor_sampler(torch.empty(0, 3))
    with pytest.raises(TypeError, match="floating"):
        tensor_sampler(torch.zeros(3, 2, dtype=torch.int64))

    seed_everything(0)
    config = WGANConfig(constraint="gn", batch_size=4, n_critic=1, latent_dim=8, log_every=1)
    trainer = WGANTrainer(
        DCGANGenerator28(latent_dim=8, channels=4),
        DCGANCritic28(channels=4),
        sampler,
        config,
        "cpu",
        tmp_path,
    )
    history = trainer.train(2)
    assert math.isfinite(history[-1]["critic_loss"])
    assert trainer.sample(3).shape == (3, 1, 28, 28)
    path = trainer.save_generator(tmp_path / "g.pt")
    saved = load_checkpoint(path)
    restored = DCGANGenerator28(latent_dim=8, channels=4)
    restored.load_state_dict(saved["state_dict"])
    assert saved["config"] == config.to_dict()
    assert_same_state(state(restored), state(trainer.generator_ema))


def test_sampling_is_reproducible_and_leaves_training_streams_alone():
    trainer = make_trainer()
    trainer.train(1)
    data_state = trainer.data_rng.get_state()
    first = trainer.sample(10)
    assert torch.equal(first, trainer.sample(10))
    assert first.shape == (10, 2)
    assert first.device.type == "cpu"
    assert torch.equal(trainer.data_rng.get_state(), data_state)
    assert trainer.generator.training  # restored after eval-mode sampling


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "data", 0) == derive_seed(0, "data", 0)
    assert derive_seed(0, "data", 0) != derive_seed(0, "data", 1)
    assert 0 <= derive_seed(2**62, "x") < 2**63

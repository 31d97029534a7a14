"""The conventions torch's own distribution tests check (torch/testing/_internal/distributions.py
and test/distributions/test_distributions.py: sample shapes, support, validate_args, expand,
enumerate_support, entropy, pickling), run on kexue's Perturb-Max distributions and — as a control
that proves each check meaningful — on torch's Categorical and OneHotCategorical (spec 09 §5.2;
issue 19 item 4). Masked (−inf) logits are part of the grid."""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable

import pytest
import torch
from torch.distributions import Categorical, Distribution, OneHotCategorical

from kexue.discrete import PerturbMaxCategorical, PerturbMaxOneHotCategorical

F64 = torch.float64
N = 5
Factory = Callable[[torch.Tensor], Distribution]

FACTORIES: dict[str, Factory] = {
    "torch.Categorical": lambda x: Categorical(logits=x, validate_args=True),
    "torch.OneHotCategorical": lambda x: OneHotCategorical(logits=x, validate_args=True),
    "PerturbMaxCategorical(normal)": lambda x: PerturbMaxCategorical(x, validate_args=True),
    "PerturbMaxCategorical(gumbel)": lambda x: PerturbMaxCategorical(
        x, "gumbel", validate_args=True
    ),
    "PerturbMaxCategorical(logistic, σ=0.5)": lambda x: PerturbMaxCategorical(
        x, "logistic", scale=0.5, validate_args=True
    ),
    "PerturbMaxOneHotCategorical(normal)": lambda x: PerturbMaxOneHotCategorical(
        x, validate_args=True
    ),
    "PerturbMaxOneHotCategorical(uniform)": lambda x: PerturbMaxOneHotCategorical(
        x, "uniform", validate_args=True
    ),
}
BATCH_SHAPES = [(), (4,), (2, 3)]
SAMPLE_SHAPES = [(), (3,), (2, 3)]
LOGITS = ["finite", "masked"]


def make_logits(batch: tuple[int, ...], kind: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(len(batch))
    logits = torch.randn((*batch, N), dtype=F64, generator=generator)
    if kind == "masked":  # classes 1 and 3 impossible in every row
        logits[..., 1] = -math.inf
        logits[..., 3] = -math.inf
    return logits


def one_hot_valued(dist: Distribution) -> bool:
    return dist.event_shape == (N,)


@pytest.fixture(params=list(FACTORIES))
def factory(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


@pytest.fixture(params=BATCH_SHAPES, ids=str)
def batch(request: pytest.FixtureRequest) -> tuple[int, ...]:
    return tuple(request.param)


@pytest.fixture(params=LOGITS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_shapes_and_support_of_samples(factory: Factory, batch: tuple[int, ...], kind: str) -> None:
    torch.manual_seed(0)
    dist = factory(make_logits(batch, kind))
    assert dist.batch_shape == batch
    assert dist.event_shape in ((), (N,))
    assert dist.param_shape == (*batch, N)  # type: ignore[attr-defined]
    for sample_shape in SAMPLE_SHAPES:
        sample = dist.sample(torch.Size(sample_shape))
        assert sample.shape == (*sample_shape, *batch, *dist.event_shape)
        assert bool(dist.support.check(sample).all())
        log_p = dist.log_prob(sample)
        assert log_p.shape == (*sample_shape, *batch)
        assert bool(torch.isfinite(log_p).all())  # masked classes are never drawn
    torch.testing.assert_close(dist.probs.sum(-1), torch.ones(batch, dtype=F64))  # type: ignore[attr-defined]


def test_validate_args_rejects_values_outside_the_support(
    factory: Factory, batch: tuple[int, ...]
) -> None:
    dist = factory(make_logits(batch, "finite"))
    if one_hot_valued(dist):
        bad_values = [torch.zeros(N, dtype=F64), 2 * torch.eye(N, dtype=F64)[0]]
    else:
        bad_values = [torch.tensor(N), torch.tensor(-1), torch.tensor(0.5)]
    for bad in bad_values:
        with pytest.raises(ValueError, match="support"):
            dist.log_prob(bad)


def test_validate_args_rejects_bad_parameters(factory: Factory) -> None:
    for bad in ([0.0, math.nan, 1.0, 2.0, 3.0], [[-math.inf] * N]):
        with pytest.raises(ValueError, match="logits"):
            factory(torch.tensor(bad, dtype=F64))


def test_expand(factory: Factory, batch: tuple[int, ...], kind: str) -> None:
    dist = factory(make_logits(batch, kind))
    new_batch = (7, *batch)
    expanded = dist.expand(torch.Size(new_batch))
    assert type(expanded) is type(dist)
    assert expanded.batch_shape == new_batch
    assert expanded.event_shape == dist.event_shape
    assert expanded._validate_args == dist._validate_args
    torch.testing.assert_close(expanded.probs, dist.probs.expand(*new_batch, N))  # type: ignore[attr-defined]
    assert expanded.sample((2,)).shape == (2, *new_batch, *dist.event_shape)
    bad = torch.zeros(N, dtype=F64) if one_hot_valued(dist) else torch.tensor(N)
    with pytest.raises(ValueError, match="support"):  # the validation flag is really kept
        expanded.log_prob(bad)


def test_log_prob_broadcasts_like_torch(factory: Factory, batch: tuple[int, ...]) -> None:
    dist = factory(make_logits(batch, "finite"))
    values = dist.enumerate_support(expand=False)  # [N, 1, …, 1, *event]
    log_p = dist.log_prob(values)
    assert log_p.shape == (N, *batch)
    probs = dist.probs  # type: ignore[attr-defined]
    torch.testing.assert_close(log_p.exp(), probs.movedim(-1, 0))


def test_enumerate_support(factory: Factory, batch: tuple[int, ...], kind: str) -> None:
    dist = factory(make_logits(batch, kind))
    assert dist.has_enumerate_support
    full = dist.enumerate_support()
    assert full.shape == (N, *batch, *dist.event_shape)
    compact = dist.enumerate_support(expand=False)
    assert compact.shape == (N, *(1,) * len(batch), *dist.event_shape)
    assert bool(dist.support.check(full).all())
    total = dist.log_prob(full).exp().sum(0)
    torch.testing.assert_close(total, torch.ones(batch, dtype=F64))


def test_entropy_is_minus_sum_p_log_p(factory: Factory, batch: tuple[int, ...], kind: str) -> None:
    dist = factory(make_logits(batch, kind))
    log_p = dist.log_prob(dist.enumerate_support())
    p = log_p.exp()
    expected = -(p * torch.where(p > 0, log_p, torch.zeros_like(log_p))).sum(0)
    entropy = dist.entropy()
    assert entropy.shape == batch
    torch.testing.assert_close(entropy, expected)
    assert bool((entropy >= 0).all())


def test_mean_variance_mode(factory: Factory, batch: tuple[int, ...]) -> None:
    dist = factory(make_logits(batch, "finite"))
    probs = dist.probs  # type: ignore[attr-defined]
    if one_hot_valued(dist):
        torch.testing.assert_close(dist.mean, probs)
        torch.testing.assert_close(dist.variance, probs * (1 - probs))
    else:
        assert bool(dist.mean.isnan().all())
        assert bool(dist.variance.isnan().all())
    mode = dist.mode
    assert mode.shape == (*batch, *dist.event_shape)
    assert bool(dist.support.check(mode).all())
    index = mode.argmax(-1) if one_hot_valued(dist) else mode
    assert torch.equal(index, probs.argmax(-1))


def test_rsample_is_consistent_with_has_rsample(factory: Factory, batch: tuple[int, ...]) -> None:
    logits = make_logits(batch, "finite").requires_grad_(True)
    dist = factory(logits)
    if not dist.has_rsample:
        with pytest.raises(NotImplementedError):
            dist.rsample()
        return
    sample = dist.rsample((3,))
    assert sample.shape == (3, *batch, *dist.event_shape)
    assert bool(dist.support.check(sample.detach()).all())
    assert bool(torch.isfinite(dist.log_prob(sample)).all())
    (sample * torch.arange(N, dtype=F64)).sum().backward()
    assert logits.grad is not None
    assert bool(torch.isfinite(logits.grad).all())


def test_pickle_and_deepcopy(factory: Factory, batch: tuple[int, ...]) -> None:
    dist = factory(make_logits(batch, "finite"))
    for clone in (pickle.loads(pickle.dumps(dist)), copy.deepcopy(dist)):
        assert type(clone) is type(dist)
        assert clone.batch_shape == dist.batch_shape
        torch.testing.assert_close(clone.probs, dist.probs)  # type: ignore[attr-defined]

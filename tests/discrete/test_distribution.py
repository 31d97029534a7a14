"""PerturbMaxCategorical, sampling, the NLL and the expected maximum (spec 09 §3, §5.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.distributions import Categorical, Distribution, OneHotCategorical, kl_divergence

from kexue.discrete import (
    PerturbMaxCategorical,
    PerturbMaxOneHotCategorical,
    expected_max,
    perturb_max_nll,
    perturb_max_probs,
    perturb_max_sample,
    straight_through_sample,
)

from .conftest import MU

F64 = torch.float64


def test_distribution_basics() -> None:
    logits = torch.tensor([MU, [0.0, 0.0, 0.0, 0.0, 5.0]], dtype=F64)
    dist = PerturbMaxCategorical(logits, "normal", num_nodes=30)
    assert isinstance(dist, Distribution)
    assert dist.batch_shape == (2,)
    assert dist.event_shape == ()
    torch.testing.assert_close(dist.probs, perturb_max_probs(logits, num_nodes=30))
    value = torch.tensor([3, 4])
    torch.testing.assert_close(dist.log_prob(value), dist.log_probs[[0, 1], value])
    assert dist.log_prob(torch.tensor(0)).shape == (2,)
    assert dist.sample((7,)).shape == (7, 2)
    assert dist.enumerate_support().shape == (5, 2)
    assert dist.mode.tolist() == [3, 4]
    assert dist.expand((3, 2)).batch_shape == (3, 2)
    assert "PerturbMaxCategorical" in repr(dist)


def test_gumbel_distribution_equals_categorical() -> None:
    logits = torch.randn(3, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    ours, reference = PerturbMaxCategorical(logits, "gumbel"), Categorical(logits=logits)
    torch.testing.assert_close(ours.probs, reference.probs)
    torch.testing.assert_close(ours.entropy(), reference.entropy())
    value = torch.tensor([0, 5, 2])
    torch.testing.assert_close(ours.log_prob(value), reference.log_prob(value))


def test_entropy_handles_zero_probabilities() -> None:
    dist = PerturbMaxCategorical(torch.tensor([0.0, 0.3, 9.0], dtype=F64), "uniform")
    assert float(dist.probs[0]) == 0.0
    entropy = dist.entropy()
    assert bool(torch.isfinite(entropy))
    assert float(entropy) == 0.0  # the only possible class is the third
    widening = [float(PerturbMaxCategorical(torch.tensor(MU, dtype=F64), scale=s).entropy())
                for s in (0.1, 1.0, 10.0)]  # fmt: skip
    assert widening == sorted(widening)


def test_samples_are_exact_argmax_draws() -> None:
    logits = torch.tensor(MU, dtype=F64)
    dist = PerturbMaxCategorical(logits, "logistic", num_nodes=64)
    torch.manual_seed(11)
    draws = dist.sample((200_000,))
    counts = np.bincount(draws.numpy(), minlength=5)
    _, p_value = stats.chisquare(counts, dist.probs.numpy() * counts.sum())
    assert p_value > 1e-3


def test_rsample_is_one_hot_with_straight_through_gradient() -> None:
    logits = torch.tensor(MU, dtype=F64, requires_grad=True)
    assert not PerturbMaxCategorical(logits).has_rsample
    dist = PerturbMaxOneHotCategorical(logits)
    sample = dist.rsample((4,))
    assert sample.shape == (4, 5)
    torch.testing.assert_close(sample.detach().sum(-1), torch.ones(4, dtype=F64))
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    weights = torch.arange(5, dtype=F64)
    (sample * weights).sum().backward()
    # the gradient is 4 · ∂(p · w)/∂μ, the Perturb-Max Jacobian applied to w
    jacobian = torch.autograd.functional.jacobian(lambda x: perturb_max_probs(x), logits.detach())
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, 4 * jacobian.T @ weights)
    probs = perturb_max_probs(logits.detach())
    one_hot = straight_through_sample(
        logits.detach(), probs, generator=torch.Generator().manual_seed(0)
    )
    assert float(one_hot.sum()) == pytest.approx(1.0)


def test_distribution_validates_input() -> None:
    with pytest.raises(TypeError, match="floating point"):
        PerturbMaxCategorical(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        PerturbMaxCategorical(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="n >= 1"):
        PerturbMaxCategorical(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="unknown method"):
        PerturbMaxCategorical(torch.zeros(3), method="quad")
    with pytest.raises(ValueError, match="scale"):
        PerturbMaxCategorical(torch.zeros(3), scale=-2.0)
    dist = PerturbMaxCategorical(torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        dist.log_prob(torch.tensor(5))


def test_nll_and_gumbel_cross_entropy() -> None:
    logits = torch.randn(8, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        perturb_max_nll(logits, target, "gumbel"), F.cross_entropy(logits, target)
    )
    losses = perturb_max_nll(logits, target, reduction="none")
    expected = -perturb_max_probs(logits, log=True)[torch.arange(8), target]
    torch.testing.assert_close(losses, expected)
    assert perturb_max_nll(logits, target, reduction="sum").item() == pytest.approx(
        float(losses.sum())
    )
    with pytest.raises(ValueError, match="target values"):
        perturb_max_nll(logits, torch.full((8,), 5))
    with pytest.raises(TypeError, match="integer"):
        perturb_max_nll(logits, target.double())
    with pytest.raises(ValueError, match="shape"):
        perturb_max_nll(logits, target[:3])


def test_expected_max_gradient_is_the_probability_vector() -> None:
    mu = torch.tensor(MU, dtype=F64, requires_grad=True)
    value = expected_max(mu, "normal", "gauss-hermite", 60)
    (gradient,) = torch.autograd.grad(value, mu)
    torch.testing.assert_close(
        gradient, perturb_max_probs(mu.detach(), num_nodes=60), rtol=0, atol=1e-8
    )
    gumbel = expected_max(mu.detach(), "gumbel")
    assert float(gumbel) == pytest.approx(
        float(torch.logsumexp(mu.detach(), 0)) + 0.5772156649015329
    )
    quadrature = expected_max(mu.detach(), "gumbel", "gauss-legendre", 200)
    assert float(quadrature) == pytest.approx(float(gumbel), abs=2e-4)  # log-singular in t
    scaled = expected_max(mu.detach(), "normal", scale=2.0, num_nodes=40)
    assert float(scaled) == pytest.approx(2 * float(expected_max(mu.detach() / 2, num_nodes=40)))
    # Monte-Carlo E max (spec §3: agrees with quadrature; here within 4 standard errors)
    generator = torch.Generator().manual_seed(0)
    draws = (mu.detach() + torch.randn(200_000, 5, dtype=F64, generator=generator)).amax(-1)
    standard_error = float(draws.std()) / np.sqrt(len(draws))
    assert abs(float(draws.mean()) - float(value.detach())) <= 4 * standard_error
    with pytest.raises(ValueError, match="scale > 0"):
        expected_max(mu, scale=0.0)


# ----------------------------------------------------------------------------------------------
# Issue 19 item 4: lazy construction, O(1) expand, masked classes, KL, bad input


def test_construction_is_lazy_and_probabilities_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    import kexue.discrete._distribution as module

    calls = []
    original = module.perturb_max_probs

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "perturb_max_probs", counting)
    logits = torch.tensor([MU, MU[::-1]], dtype=F64)
    for cls in (PerturbMaxCategorical, PerturbMaxOneHotCategorical):
        calls.clear()
        dist = cls(logits)
        dist.sample((3,))
        assert calls == []  # neither __init__ nor sample computes probabilities
        first = dist.probs
        assert dist.probs is first
        assert dist.log_probs is dist.log_probs
        dist.entropy()
        assert len(calls) == 1
        expanded = dist.expand((4, 2))
        assert expanded.probs.data_ptr() == first.data_ptr()  # a view, not a recomputation
        assert len(calls) == 1
    # the raw logits are kept (not normalised); log_probs is the normalised attribute
    dist = PerturbMaxCategorical(logits)
    assert dist.logits is logits
    torch.testing.assert_close(dist.log_probs.exp().sum(-1), torch.ones(2, dtype=F64))


def test_expand_keeps_options_subclass_and_validation() -> None:
    class Tempered(PerturbMaxCategorical):
        pass

    logits = torch.tensor(MU, dtype=F64)
    dist = Tempered(logits, "logistic", "midpoint", 40, scale=0.5, renormalize=False,
                    algorithm="direct", validate_args=True)  # fmt: skip
    expanded = dist.expand((3,))
    assert type(expanded) is Tempered
    assert expanded.batch_shape == (3,)
    assert expanded._validate_args is True
    assert (expanded.noise, expanded.method, expanded.num_nodes, expanded.scale,
            expanded.renormalize, expanded.algorithm) == (dist.noise, "midpoint", 40, 0.5,
                                                           False, "direct")  # fmt: skip
    assert "log_probs" not in expanded.__dict__  # nothing computed by expand
    torch.testing.assert_close(expanded.probs, dist.probs.expand(3, 5))
    with pytest.raises(ValueError, match="support"):
        expanded.log_prob(torch.tensor([0, 1, 7]))
    one_hot = PerturbMaxOneHotCategorical(logits, "gumbel", validate_args=False).expand((2, 1))
    assert isinstance(one_hot, PerturbMaxOneHotCategorical)
    assert one_hot.batch_shape == (2, 1)
    assert one_hot.event_shape == (5,)
    assert one_hot._validate_args is False
    assert one_hot.noise.name == "gumbel"


@pytest.mark.parametrize("noise", ["normal", "gumbel", "logistic", "uniform", "exponential"])
def test_minus_inf_logits_are_masked_classes(noise: str) -> None:
    logits = torch.tensor([[0.5, -math.inf, 0.0, -math.inf], [-math.inf, 1.0, -math.inf, 0.2]],
                          dtype=F64)  # fmt: skip
    dist = PerturbMaxCategorical(logits, noise, validate_args=True)
    masked = torch.isinf(logits)
    assert bool((dist.probs[masked] == 0).all())
    assert bool((dist.log_probs[masked] == -math.inf).all())
    torch.testing.assert_close(dist.probs.sum(-1), torch.ones(2, dtype=F64))
    # the masked classes are dropped: the remaining ones have the probabilities of the sub-vector
    torch.testing.assert_close(dist.probs[0, [0, 2]], perturb_max_probs(logits[0, [0, 2]], noise))
    draws = dist.sample((20_000,))
    assert not bool(masked.gather(-1, draws.T).any())
    assert bool(torch.isfinite(dist.entropy()).all())
    assert float(dist.log_prob(torch.tensor([1, 0]))[0]) == -math.inf
    one_hot = PerturbMaxOneHotCategorical(logits, noise)
    assert not bool((one_hot.sample((100,)) * masked).any())


def test_kl_divergence_gumbel_equals_torch_categorical() -> None:
    generator = torch.Generator().manual_seed(3)
    logits_p = torch.randn(4, 6, dtype=F64, generator=generator)
    logits_q = torch.randn(4, 6, dtype=F64, generator=generator)
    expected = kl_divergence(Categorical(logits=logits_p), Categorical(logits=logits_q))
    ours_p = PerturbMaxCategorical(logits_p, "gumbel")
    ours_q = PerturbMaxCategorical(logits_q, "gumbel")
    torch.testing.assert_close(kl_divergence(ours_p, ours_q), expected)
    torch.testing.assert_close(kl_divergence(ours_p, Categorical(logits=logits_q)), expected)
    torch.testing.assert_close(kl_divergence(Categorical(logits=logits_p), ours_q), expected)
    hot_p = PerturbMaxOneHotCategorical(logits_p, "gumbel")
    hot_q = PerturbMaxOneHotCategorical(logits_q, "gumbel")
    torch.testing.assert_close(kl_divergence(hot_p, hot_q), expected)
    torch.testing.assert_close(kl_divergence(hot_p, OneHotCategorical(logits=logits_q)), expected)
    torch.testing.assert_close(kl_divergence(OneHotCategorical(logits=logits_p), hot_q), expected)


@pytest.mark.parametrize("noise", ["normal", "logistic", "uniform", "exponential"])
def test_kl_divergence_is_the_direct_float64_sum(noise: str) -> None:
    logits_p = torch.tensor([MU, [0.0, 0.2, -0.4, 0.1, -math.inf]], dtype=F64)
    logits_q = torch.tensor([MU[::-1], [0.3, -0.1, 0.0, -math.inf, 0.5]], dtype=F64)
    p = PerturbMaxCategorical(logits_p, noise)
    q = PerturbMaxCategorical(logits_q, noise, scale=2.0)
    p_np, q_np = p.probs.numpy(), q.probs.numpy()
    expected = []
    for row in range(2):
        total = 0.0
        for a, b in zip(p_np[row], q_np[row], strict=True):
            if a > 0:
                total += math.inf if b == 0 else a * (math.log(a) - math.log(b))
        expected.append(total)
    # row 1: p puts mass on class 3 where q is masked -> +inf
    assert expected[1] == math.inf
    result = kl_divergence(p, q)
    assert float(result[1]) == math.inf
    assert float(result[0]) == pytest.approx(expected[0], rel=1e-12, abs=1e-15)
    assert float(kl_divergence(p, p)[0]) == 0.0
    reverse = kl_divergence(q, p)  # q masks class 3 and p masks class 4, where q > 0
    assert float(reverse[1]) == math.inf
    torch_q = Categorical(probs=q.probs)
    torch.testing.assert_close(kl_divergence(p, torch_q)[0], result[0])


def test_kl_divergence_refuses_mismatched_classes() -> None:
    with pytest.raises(ValueError, match="classes"):
        kl_divergence(PerturbMaxCategorical(torch.zeros(3)), Categorical(logits=torch.zeros(4)))


def test_one_hot_log_prob_of_rsample_and_moments() -> None:
    logits = torch.tensor([MU, MU[::-1]], dtype=F64, requires_grad=True)
    dist = PerturbMaxOneHotCategorical(logits, validate_args=True)
    sample = dist.rsample((3,))
    log_p = dist.log_prob(sample)
    assert log_p.shape == (3, 2)
    assert bool(torch.isfinite(log_p).all())
    torch.testing.assert_close(dist.mean, dist.probs)
    torch.testing.assert_close(dist.variance, dist.probs * (1 - dist.probs))
    assert dist.mode.argmax(-1).tolist() == [3, 1]
    assert dist.param_shape == (2, 5)
    assert repr(dist).startswith("PerturbMaxOneHotCategorical(")
    log_p.sum().backward()  # differentiable through log_probs
    assert logits.grad is not None


@pytest.mark.parametrize("cls", [PerturbMaxCategorical, PerturbMaxOneHotCategorical])
def test_bad_constructor_arguments_are_refused(cls: type) -> None:
    inf, nan = math.inf, math.nan
    with pytest.raises(TypeError, match=r"logits must be a torch\.Tensor"):
        cls([0.0, 1.0])
    with pytest.raises(TypeError, match="floating point"):
        cls(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="n >= 1"):
        cls(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="n >= 1"):
        cls(torch.tensor(1.0))
    for bad in ([0.0, nan], [0.0, inf], [[0.0, 1.0], [-inf, -inf]]):
        with pytest.raises(ValueError, match="logits"):
            cls(torch.tensor(bad), validate_args=True)
    with pytest.raises(ValueError, match="NaN"):
        cls(torch.tensor([0.0, nan]), validate_args=True)
    with pytest.raises(ValueError, match="unknown method"):
        cls(torch.zeros(3), method="quad")
    with pytest.raises(ValueError, match="unknown algorithm"):
        cls(torch.zeros(3), algorithm="fast")
    with pytest.raises(ValueError, match="num_nodes"):
        cls(torch.zeros(3), num_nodes=0)
    for scale in (-2.0, nan, inf):
        with pytest.raises(ValueError, match="scale"):
            cls(torch.zeros(3), scale=scale)
    with pytest.raises(TypeError, match="scale"):
        cls(torch.zeros(3), scale="1")
    with pytest.raises(TypeError, match="renormalize"):
        cls(torch.zeros(3), renormalize=1)
    with pytest.raises(ValueError, match="unknown noise"):
        cls(torch.zeros(3), noise="cauchy")
    # scale = 0 is the documented argmax limit
    limit = cls(torch.tensor([0.0, 2.0, 1.0], dtype=F64), scale=0.0)
    torch.testing.assert_close(limit.probs, torch.tensor([0.0, 1.0, 0.0], dtype=F64))


def test_bad_log_prob_values_are_refused() -> None:
    dist = PerturbMaxCategorical(torch.zeros(2, 3), validate_args=True)
    with pytest.raises(TypeError, match="value"):
        dist.log_prob([0, 1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="value"):
        dist.log_prob(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="support"):
        dist.log_prob(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="support"):
        dist.log_prob(torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"broadcast|shape"):
        dist.log_prob(torch.tensor([0, 1, 2]))  # does not broadcast against batch (2,)
    unchecked = PerturbMaxCategorical(torch.zeros(2, 3), validate_args=False)
    with pytest.raises(ValueError, match="broadcast"):
        unchecked.log_prob(torch.tensor([0, 1, 2]))
    hot = PerturbMaxOneHotCategorical(torch.zeros(2, 3), validate_args=True)
    with pytest.raises(ValueError, match="one-hot"):
        hot.log_prob(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="support"):
        hot.log_prob(torch.tensor([1.0, 1.0, 0.0]))
    with pytest.raises(TypeError, match="one-hot"):
        hot.log_prob([1.0, 0.0, 0.0])  # type: ignore[arg-type]


def test_mixed_devices_are_refused() -> None:
    meta = PerturbMaxCategorical(torch.zeros(2, 3, device="meta"), validate_args=False)
    with pytest.raises(ValueError, match="device"):
        meta.log_prob(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="generator"):
        perturb_max_sample(torch.zeros(2, 3, device="meta"), generator=torch.Generator())
    draws = perturb_max_sample(torch.zeros(2, 3, device="meta"))
    assert draws.device.type == "meta"
    assert draws.shape == (2,)


def test_perturb_max_sample_value_check_survives_an_overflowing_sum() -> None:
    """The fast value check (one sum) overflows for huge finite logits; the row-wise test then
    accepts them, and still finds a NaN or an all −inf row hidden behind the overflow."""
    huge = torch.full((2, 4), 3e38)
    huge[0, 1] = 3.1e38
    assert perturb_max_sample(huge, scale=0.0).tolist() == [1, 0]
    half = torch.full((2, 4000), 6e4, dtype=torch.float16)  # float16 sum would overflow
    assert perturb_max_sample(half).shape == (2,)
    with pytest.raises(ValueError, match="NaN"):
        perturb_max_sample(torch.cat((huge, torch.tensor([[0.0, math.nan, 0.0, 0.0]]))))
    with pytest.raises(ValueError, match="all −inf"):
        perturb_max_sample(torch.cat((huge, torch.full((1, 4), -math.inf))))


def test_perturb_max_sample_refuses_bad_input() -> None:
    good = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="logits"):
        perturb_max_sample([0.0, 1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating point"):
        perturb_max_sample(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="n >= 1"):
        perturb_max_sample(torch.zeros(3, 0))
    with pytest.raises(ValueError, match="NaN"):
        perturb_max_sample(torch.tensor([0.0, math.nan]))
    with pytest.raises(ValueError, match=r"\+inf"):
        perturb_max_sample(torch.tensor([0.0, math.inf]))
    with pytest.raises(ValueError, match="all −inf"):
        perturb_max_sample(torch.tensor([[0.0, 1.0], [-math.inf, -math.inf]]))
    for scale in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="scale"):
            perturb_max_sample(good, scale=scale)
    with pytest.raises(TypeError, match="scale"):
        perturb_max_sample(good, scale=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_shape"):
        perturb_max_sample(good, sample_shape=(-1,))
    with pytest.raises(ValueError, match="sample_shape"):
        perturb_max_sample(good, sample_shape=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        perturb_max_sample(good, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probs shape"):
        straight_through_sample(good, torch.zeros(3))
    with pytest.raises(TypeError, match="probs"):
        straight_through_sample(good, torch.zeros(2, 3, dtype=torch.long))
    # scale = 0 is the argmax limit (no noise drawn)
    assert (
        perturb_max_sample(torch.tensor([0.0, 3.0, 1.0]), sample_shape=(4,), scale=0.0).tolist()
        == [1] * 4
    )


def test_low_precision_logits_sample_without_nan() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        logits = torch.tensor([[0.0, -30000.0, 1.0, -math.inf]], dtype=dtype)
        draws = perturb_max_sample(
            logits, "gumbel", (5000,), generator=torch.Generator().manual_seed(0)
        )
        assert set(draws.unique().tolist()) <= {0, 2}
        hot = PerturbMaxOneHotCategorical(logits.float())
        assert hot.sample().dtype == torch.float32

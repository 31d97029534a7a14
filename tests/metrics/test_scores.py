from __future__ import annotations

import numpy as np
import pytest

from kexue.data import DatasetUnavailableError
from kexue.metrics import classifier_score, in_domain_fid


def test_confident_balanced_predictions_score_num_classes() -> None:
    probabilities = np.eye(10)[np.arange(1000) % 10]
    assert classifier_score(probabilities) == pytest.approx(10.0)


def test_constant_predictions_score_one() -> None:
    probabilities = np.tile(np.full(10, 0.1), (50, 1))
    assert classifier_score(probabilities) == pytest.approx(1.0)
    confident_constant = np.tile(np.eye(10)[3], (50, 1))
    assert classifier_score(confident_constant) == pytest.approx(1.0)


def test_splits_return_mean_and_std() -> None:
    probabilities = np.eye(4)[np.arange(400) % 4]
    mean, std = classifier_score(probabilities, splits=4)  # type: ignore[misc]
    assert (mean, std) == pytest.approx((4.0, 0.0))


def test_bad_probabilities() -> None:
    with pytest.raises(ValueError, match="summing to 1"):
        classifier_score(np.ones((5, 3)))
    with pytest.raises(ValueError, match="splits"):
        classifier_score(np.eye(3), splits=5)


@pytest.mark.needs_data
def test_in_domain_fid_of_real_images_is_small() -> None:
    from kexue.data import load_fashion_mnist, load_mnist

    try:
        train = load_mnist("train")
        fashion = load_fashion_mnist("test")
    except DatasetUnavailableError as error:
        pytest.skip(str(error))
    real = in_domain_fid("mnist", train.images[:5000])
    other = in_domain_fid("mnist", fashion.images[:5000])
    assert real < 0.05 * other
    with pytest.raises(ValueError, match="no in-domain extractor"):
        in_domain_fid("cifar10", train.images[:10])

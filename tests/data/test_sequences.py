"""Seeded Zipf token sequences (spec 04 §8 workload)."""

from __future__ import annotations

import numpy as np
import pytest

from kexue.data import zipf_token_sequences


def test_shape_ids_and_determinism() -> None:
    sequences = zipf_token_sequences(2000, vocab_size=1000, lengths=(5, 15), seed=3)
    again = zipf_token_sequences(2000, vocab_size=1000, lengths=(5, 15), seed=3)
    other = zipf_token_sequences(2000, vocab_size=1000, lengths=(5, 15), seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(sequences, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(sequences, other, strict=True))
    lengths = np.array([len(s) for s in sequences])
    assert lengths.min() == 5
    assert lengths.max() == 15
    for sequence in sequences:
        assert sequence.dtype == np.int32
        assert sequence[0] == 1
        assert sequence[-1] == 2
        assert (sequence[1:-1] >= 3).all()
        assert (sequence[1:-1] < 1000).all()


def test_token_frequencies_follow_the_zipf_law() -> None:
    sequences = zipf_token_sequences(20_000, vocab_size=5000, exponent=1.2, seed=0)
    tokens = np.concatenate([s[1:-1] for s in sequences])
    counts = np.bincount(tokens, minlength=5000)[3:]
    # P(rank r) ∝ r^-1.2, so count(rank 1) / count(rank 2) ≈ 2^1.2 = 2.30 and rank 1 dominates
    assert counts[0] == counts.max()
    assert counts[0] / counts[1] == pytest.approx(2**1.2, rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count"),
        ({"count": 1.5}, "count"),
        ({"lengths": (2, 5)}, "lengths"),
        ({"lengths": (6, 5)}, "lengths"),
        ({"first_token": 10**6}, "first_token"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"count": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        zipf_token_sequences(**arguments)  # type: ignore[arg-type]

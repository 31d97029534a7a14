"""Seeded synthetic token sequences for the trie benchmarks (spec 04 §8, E4.2)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["zipf_token_sequences"]


def zipf_token_sequences(
    count: int,
    *,
    vocab_size: int = 50_000,
    lengths: tuple[int, int] = (5, 15),
    exponent: float = 1.2,
    bos_id: int = 1,
    eos_id: int = 2,
    first_token: int = 3,
    seed: int = 0,
) -> list[np.ndarray]:
    """``count`` int32 sequences ``[BOS, t_1, ..., t_n, EOS]`` of ``lengths[0]..lengths[1]`` tokens
    (BOS and EOS included), content tokens i.i.d. with ``P(first_token + r) ∝ (r + 1)^-exponent``
    for ranks ``r = 0 .. vocab_size - first_token - 1`` (spec 04 §8's workload: 300k sequences,
    lengths 5-15, Zipf ids, V = 50k). Duplicates are possible, as in real databases.
    """
    for name, value in (("count", count), ("vocab_size", vocab_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    low, high = lengths
    if not 3 <= low <= high:
        raise ValueError(
            f"lengths must satisfy 3 <= low <= high (BOS + >= 1 token + EOS), got {lengths}"
        )
    if not 0 <= first_token < vocab_size or not exponent > 0:
        raise ValueError("need 0 <= first_token < vocab_size and exponent > 0")
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, vocab_size - first_token + 1, dtype=np.float64)
    probabilities = ranks**-exponent
    probabilities /= probabilities.sum()
    content = rng.integers(low - 2, high - 1, size=count)
    tokens = rng.choice(len(ranks), size=int(content.sum()), p=probabilities) + first_token
    bounds = np.concatenate([[0], np.cumsum(content)])
    out = []
    for index in range(count):
        sequence = np.empty(content[index] + 2, dtype=np.int32)
        sequence[0], sequence[-1] = bos_id, eos_id
        sequence[1:-1] = tokens[bounds[index] : bounds[index + 1]]
        out.append(sequence)
    return out

"""seed_everything / make_generator."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from kexue.utils import make_generator, seed_everything


def _draws() -> tuple[float, list[float], list[float]]:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()  # noqa: NPY002


def test_seed_everything_reproduces_every_stream() -> None:
    seed_everything(123)
    first = _draws()
    seed_everything(123)
    assert _draws() == first
    seed_everything(124)
    assert _draws() != first


def test_seed_everything_returns_a_seeded_generator() -> None:
    generator = seed_everything(7)
    assert isinstance(generator, torch.Generator)
    expected = torch.rand(4, generator=make_generator(7))
    assert torch.equal(torch.rand(4, generator=generator), expected)


def test_make_generator_is_independent_of_the_global_stream() -> None:
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = torch.randn(5, generator=make_generator(99))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(1)
    b = torch.randn(5, generator=make_generator(99))
    assert torch.equal(a, b)
    assert make_generator(3, device="cpu").device.type == "cpu"
    assert make_generator(2**63 - 1).initial_seed() == 2**63 - 1


def test_large_and_numpy_seeds() -> None:
    seed_everything(2**40 + 5)  # numpy gets seed % 2**32, torch the full value
    first = _draws()
    seed_everything(np.int64(2**40 + 5))  # type: ignore[arg-type]
    assert _draws() == first


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_out_of_range_seed(seed: int) -> None:
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)
    with pytest.raises(ValueError, match="seed"):
        make_generator(seed)


@pytest.mark.parametrize("seed", [1.5, "3", None, True])
def test_non_integer_seed(seed: object) -> None:
    with pytest.raises(TypeError, match="seed"):
        seed_everything(seed)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        make_generator(seed)  # type: ignore[arg-type]


@pytest.fixture
def restore_determinism(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "placeholder")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")  # undone at teardown: variable removed again
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


@pytest.mark.usefixtures("restore_determinism")
def test_deterministic_mode() -> None:
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.benchmark is False
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"

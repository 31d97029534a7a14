"""Penalty tests use tiny tensors: one intra-op thread avoids thread-pool contention (a loaded
2-core machine made every small op ~100x slower with two threads)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

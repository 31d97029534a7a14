"""KBQA tests use tiny tensors: one intra-op thread avoids thread-pool contention (on a
loaded 2-core machine two threads made tiny ops such as the trie's repeat_interleave ~1000x
slower)."""

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

"""Test-wide settings: quiet progress bars, two torch threads (the CI machine has 2 cores)."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("KEXUE_PROGRESS", "0")
torch.set_num_threads(min(2, torch.get_num_threads()))

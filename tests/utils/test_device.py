"""resolve_device."""

from __future__ import annotations

import pytest
import torch

from kexue.utils import resolve_device


@pytest.fixture
def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.usefixtures("no_accelerator")
@pytest.mark.parametrize("device", ["auto", "AUTO", " auto ", None])
def test_auto_is_cpu_without_cuda(device: str | None) -> None:
    assert resolve_device(device) == torch.device("cpu")


def test_auto_default_matches_the_machine() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected


@pytest.mark.parametrize("device", ["cpu", "CPU", " cpu", torch.device("cpu")])
def test_cpu(device: str | torch.device) -> None:
    assert resolve_device(device) == torch.device("cpu")


@pytest.mark.usefixtures("no_accelerator")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_cuda_raises(device: str | torch.device) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device(device)


@pytest.mark.usefixtures("no_accelerator")
def test_mps_without_mps_raises() -> None:
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")


def test_cuda_index_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="only 1 CUDA"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("device", ["garbage", "gpu", "cuda:x", ""])
def test_unknown_device_string(device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["meta", torch.device("meta")])
def test_unsupported_device_type(device: str | torch.device) -> None:
    with pytest.raises(ValueError, match="unsupported device"):
        resolve_device(device)


@pytest.mark.parametrize("device", [0, 1.0, ["cpu"]])
def test_non_string_device(device: object) -> None:
    with pytest.raises(TypeError, match=r"str or torch\.device"):
        resolve_device(device)  # type: ignore[arg-type]

"""save_checkpoint / load_checkpoint / Checkpointer: resumed runs continue identically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from kexue.utils import Checkpointer, load_checkpoint, save_checkpoint


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))


def _step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One step drawing its batch and dropout masks from torch's global stream."""
    x = torch.randn(16, 4)
    y = x.sum(dim=1, keepdim=True)
    loss = ((model(x) - y) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _setup(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = _model()
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    model, optimizer = _setup(0)
    for _ in range(10):
        _step(model, optimizer)
    straight = [p.detach().clone() for p in model.parameters()]

    model, optimizer = _setup(0)
    checkpointer = Checkpointer(tmp_path / "ckpt.pt", every=5, model=model, optimizer=optimizer)
    assert checkpointer.restore() == 0
    for step in range(5):
        _step(model, optimizer)
        checkpointer.maybe_save(step + 1)
    assert checkpointer.exists()

    # A "new process": different initialisation and a different global random state.
    model, optimizer = _setup(1234)
    torch.rand(7)
    resumed = Checkpointer(tmp_path / "ckpt.pt", every=5, model=model, optimizer=optimizer)
    start = resumed.restore()
    assert start == 5
    for _ in range(start, 10):
        _step(model, optimizer)
    for expected, actual in zip(straight, model.parameters(), strict=True):
        assert torch.equal(expected, actual)
    assert optimizer.state_dict()["state"][0]["step"] == 10


def test_maybe_save_schedule(tmp_path: Path) -> None:
    model = _model()
    checkpointer = Checkpointer(tmp_path / "c.pt", every=3, model=model)
    assert [checkpointer.maybe_save(step) for step in range(7)] == [
        False, False, False, True, False, False, True,
    ]  # fmt: skip
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 6
    checkpointer.save(7, loss=0.5, phase="end")
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 7
    assert state["extra"] == {"loss": 0.5, "phase": "end"}
    assert list(tmp_path.iterdir()) == [tmp_path / "c.pt"]


def test_restore_without_checkpoint_returns_zero(tmp_path: Path) -> None:
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    checkpointer = Checkpointer(tmp_path / "missing" / "c.pt", model=model)
    assert not checkpointer.exists()
    assert checkpointer.restore() == 0
    for expected, actual in zip(before, model.parameters(), strict=True):
        assert torch.equal(expected, actual)


def test_restore_with_missing_object_state(tmp_path: Path) -> None:
    model = _model()
    Checkpointer(tmp_path / "c.pt", model=model).save(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        Checkpointer(tmp_path / "c.pt", model=model, optimizer=optimizer).restore()


def test_rejects_objects_without_state_dict(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="'thing'"):
        Checkpointer(tmp_path / "c.pt", thing=object())
    with pytest.raises(TypeError, match="state_dict"):
        Checkpointer(tmp_path / "c.pt", model=_model(), tensor=torch.zeros(3))


def test_rejects_bad_every(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every"):
        Checkpointer(tmp_path / "c.pt", every=0, model=_model())


def test_save_and_load_checkpoint(tmp_path: Path) -> None:
    state = {"step": 3, "weights": torch.arange(4.0), "meta": {"name": "run", "values": [1, 2]}}
    path = save_checkpoint(tmp_path / "sub" / "state.pt", state)
    assert path == tmp_path / "sub" / "state.pt"
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3
    assert torch.equal(loaded["weights"], torch.arange(4.0))
    assert loaded["meta"] == {"name": "run", "values": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]


def test_save_checkpoint_rejects_non_mappings(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="mapping"):
        save_checkpoint(tmp_path / "x.pt", [1, 2, 3])  # type: ignore[arg-type]
    assert not (tmp_path / "x.pt").exists()


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="mapping"):
        load_checkpoint(tmp_path / "list.pt")


def test_generators_are_checkpointed(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    checkpointer = Checkpointer(tmp_path / "g.pt", generator=generator)
    torch.rand(5, generator=generator)
    checkpointer.save(1)
    expected = torch.rand(5, generator=generator)
    fresh = torch.Generator().manual_seed(99)
    assert Checkpointer(tmp_path / "g.pt", generator=fresh).restore() == 1
    assert torch.equal(torch.rand(5, generator=fresh), expected)
    checkpointer.remove()
    assert not checkpointer.exists()

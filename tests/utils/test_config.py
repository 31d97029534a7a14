"""Config: typed dataclasses that round-trip through JSON."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

import pytest

from kexue.utils import Config


class Method(enum.Enum):
    GN = "gn"
    GP = "gp"


@dataclasses.dataclass
class Optim(Config):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.9)


@dataclasses.dataclass
class Run(Config):
    name: str = "run"
    optim: Optim = dataclasses.field(default_factory=Optim)
    out: Path = Path("results")
    seeds: tuple[int, ...] = (0, 1, 2)
    method: Method = Method.GN
    steps: int | None = None
    finetune: Optim | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    note: str | None = None


def _custom() -> Run:
    return Run(
        name="e1.1",
        optim=Optim(lr=2e-4, betas=(0.5, 0.999)),
        out=Path("/tmp/kexue/runs"),
        seeds=(3, 4),
        method=Method.GP,
        steps=5000,
        finetune=Optim(lr=1e-5),
        tags=["toy", "wgan"],
        weights={"a": 1.0, "b": 0.5},
        note="科学空间",
    )


@pytest.mark.parametrize("config", [Run(), _custom()])
def test_json_round_trip(config: Run) -> None:
    restored = Run.from_json(config.to_json())
    assert restored == config
    assert isinstance(restored.optim, Optim)
    assert isinstance(restored.optim.betas, tuple)
    assert isinstance(restored.seeds, tuple)
    assert isinstance(restored.out, Path)
    assert isinstance(restored.method, Method)


def test_to_dict_is_plain_json() -> None:
    data = _custom().to_dict()
    assert data["optim"] == {"lr": 2e-4, "betas": [0.5, 0.999]}
    assert data["out"] == "/tmp/kexue/runs"
    assert data["seeds"] == [3, 4]
    assert data["method"] == "gp"
    assert data["steps"] == 5000
    assert data["finetune"] == {"lr": 1e-5, "betas": [0.0, 0.9]}
    assert json.loads(json.dumps(data)) == data


def test_optional_fields() -> None:
    config = Run.from_dict({"steps": None, "finetune": None})
    assert config.steps is None
    assert config.finetune is None
    config = Run.from_dict({"steps": 7, "finetune": {"lr": 0.1}})
    assert config.steps == 7
    assert config.finetune == Optim(lr=0.1)


def test_partial_dict_uses_defaults_and_ints_become_floats() -> None:
    config = Run.from_dict({"optim": {"lr": 1}})
    assert config.optim.lr == 1.0
    assert isinstance(config.optim.lr, float)
    assert config.optim.betas == (0.0, 0.9)
    assert config.name == "run"


def test_save_and_load(tmp_path: Path) -> None:
    config = _custom()
    path = config.save(tmp_path / "configs" / "run.json")
    assert path.is_file()
    assert Run.load(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="'learning_rate'") as info:
        Run.from_dict({"learning_rate": 0.1})
    assert "valid fields" in str(info.value)
    with pytest.raises(ValueError, match="'momentum'"):
        Run.from_dict({"optim": {"momentum": 0.9}})
    with pytest.raises(ValueError, match="unknown"):
        Run.from_json('{"name": "x", "nmae": "y"}')


def test_bad_values() -> None:
    with pytest.raises(TypeError, match="dict"):
        Run.from_dict([("name", "x")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Method"):
        Run.from_dict({"method": "clip"})
    with pytest.raises(ValueError, match="JSON"):
        Run(optim=Optim(lr=float("nan"))).to_json()


def test_replace() -> None:
    config = Run()
    changed = config.replace(name="other", steps=3)
    assert (changed.name, changed.steps) == ("other", 3)
    assert config.name == "run"
    assert changed.optim == config.optim

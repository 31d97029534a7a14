"""Atomic writes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kexue.utils import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
)


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_write_bytes_text_json(tmp_path: Path) -> None:
    assert atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01\xff") == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01\xff"
    atomic_write_text(tmp_path / "b.txt", "科学空间\nline 2")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "科学空间\nline 2"
    payload = {"name": "苏剑林", "values": [1, 2.5, None, True], "nested": {"k": "v"}}
    atomic_write_json(tmp_path / "c.json", payload)
    assert read_json(tmp_path / "c.json") == payload
    text = (tmp_path / "c.json").read_text(encoding="utf-8")
    assert "苏剑林" in text  # not \\u-escaped
    assert text.endswith("\n")
    assert _names(tmp_path) == ["a.bin", "b.txt", "c.json"]  # no temporary files left


def test_overwrite_and_parent_creation(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(str(target), "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert _names(target.parent) == ["file.txt"]


@pytest.mark.parametrize("mode", ["w", "wt", "wb"])
def test_atomic_open_modes(tmp_path: Path, mode: str) -> None:
    target = tmp_path / "out"
    with atomic_open(target, mode) as handle:
        handle.write(b"data" if "b" in mode else "data")
        assert not target.exists()  # nothing visible until the block completes
    assert target.read_bytes() == b"data"
    assert _names(tmp_path) == ["out"]


@pytest.mark.parametrize("mode", ["a", "r", "w+", "ab", "x"])
def test_atomic_open_rejects_other_modes(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ValueError, match="write modes"), atomic_open(tmp_path / "out", mode):
        pass  # pragma: no cover
    assert _names(tmp_path) == []


def _interrupted_write(path: Path, mode: str, data: str | bytes, error: BaseException) -> None:
    with atomic_open(path, mode) as handle:
        handle.write(data)
        raise error


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_leaves_the_old_file_intact(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    with pytest.raises(error, match="killed"):
        _interrupted_write(target, "w", '{"step": 2, "half": ', error("killed mid-write"))
    assert read_json(target) == {"step": 1}
    assert _names(tmp_path) == ["state.json"]


def test_exception_without_old_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _interrupted_write(tmp_path / "new.bin", "wb", b"partial", RuntimeError("boom"))
    assert _names(tmp_path) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_rejects_non_finite_numbers(tmp_path: Path, bad: float) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"loss": 1.0})
    with pytest.raises(ValueError, match="JSON"):
        atomic_write_json(target, {"loss": bad})
    assert read_json(target) == {"loss": 1.0}
    assert _names(tmp_path) == ["metrics.json"]


def test_json_rejects_unserialisable_objects(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"path": object()})
    assert _names(tmp_path) == []

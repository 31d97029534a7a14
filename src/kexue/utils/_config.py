"""Typed configs: dataclasses that round-trip to JSON.

Subclass :class:`Config` with ``@dataclass``; nested configs, tuples, paths and enums survive
``to_json``/``from_json``; unknown keys are rejected so a typo in a JSON file is an error, not
a silent
default.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

from ._io import atomic_write_json

__all__ = ["Config"]

ConfigT = TypeVar("ConfigT", bound="Config")


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _to_jsonable(item) for key, item in value.items()}
    return value


def _from_jsonable(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        arguments = typing.get_args(annotation)
        if value is None and type(None) in arguments:
            return None
        for argument in arguments:
            if argument is type(None):
                continue
            try:
                return _from_jsonable(argument, value)
            except (TypeError, ValueError):
                continue
        return value
    if origin is tuple:
        arguments = typing.get_args(annotation)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_from_jsonable(arguments[0], item) for item in value)
        return tuple(_from_jsonable(a, item) for a, item in zip(arguments, value, strict=True))
    if origin is list:
        (argument,) = typing.get_args(annotation) or (Any,)
        return [_from_jsonable(argument, item) for item in value]
    if origin is dict:
        _, argument = typing.get_args(annotation) or (Any, Any)
        return {key: _from_jsonable(argument, item) for key, item in value.items()}
    if isinstance(annotation, type):
        if issubclass(annotation, Config):
            return annotation.from_dict(value)
        if issubclass(annotation, enum.Enum):
            return annotation(value)
        if issubclass(annotation, Path):
            return Path(value)
        if annotation is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    return value


@dataclasses.dataclass
class Config:
    """Base class for typed, JSON round-tripping configuration dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return {
            field.name: _to_jsonable(getattr(self, field.name))
            for field in dataclasses.fields(self)
        }

    def to_json(self, *, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Atomically write the config as JSON."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls: type[ConfigT], data: dict[str, Any]) -> ConfigT:
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(fields)}"
            )
        kwargs = {name: _from_jsonable(hints[name], value) for name, value in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[ConfigT], text: str) -> ConfigT:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls: type[ConfigT], path: str | os.PathLike[str]) -> ConfigT:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def replace(self: ConfigT, **changes: Any) -> ConfigT:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

"""Strict configs: frozen dataclasses built from YAML mappings and ``--set key=value`` flags.

Each stage (train, search, export) defines one frozen dataclass of its own; this module only
turns mappings into such dataclasses, refusing unknown keys and wrong types with an error that
names the key and where it came from, and writes the resolved config back out.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nas.errors import ConfigError

T = TypeVar("T")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Checks ``value`` against a type annotation (bool/int/float/str, Optional, tuple[...])."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_kind, *_) = typing.get_args(kind)
        return tuple(_coerce(v, item_kind, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        allowed = typing.get_args(kind)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not allowed; choose one of "
                              f"{', '.join(map(str, allowed))}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {kind!r} at {where}")


def from_mapping(cls: type[T], mapping: dict[str, Any], source: str = "config") -> T:
    """Builds the dataclass ``cls`` from a mapping, strictly.

    Raises:
        ConfigError: an unknown key (the message lists the allowed ones) or a value of the
            wrong type, naming ``source`` and the key.
    """
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in mapping.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key {key!r}; allowed keys: {', '.join(sorted(names))}")
        kwargs[key] = _coerce(value, hints[key], f"{source}: {key}")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # __post_init__ range checks
        raise ConfigError(f"{source}: {exc}") from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.1", "epochs=3"]`` -> ``{"lr": 0.1, "epochs": 3}``; values are read as YAML scalars.

    Raises:
        ConfigError: an item without ``=``.
    """
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = text
    return out


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Reads a YAML recipe that must be a mapping.

    Raises:
        ConfigError: missing file, invalid YAML, or not a mapping.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    return data


def to_mapping(config: Any) -> dict[str, Any]:
    """The dataclass as a plain dict (tuples as lists), ready for YAML/JSON or a checkpoint."""
    def plain(v):
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}

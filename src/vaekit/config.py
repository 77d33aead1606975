"""Frozen-dataclass configs: building them from dicts, TOML files and ``key=value`` overrides.

Every config in vaekit is a frozen dataclass whose fields are a constructor's arguments; its JSON
form is ``dataclasses.asdict``. :func:`from_dict` is the one way back from JSON/TOML, and it rejects
unknown keys and wrong types with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field's type annotation, converting lists to tuples."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(name, value, option)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        (item, *_rest) = typing.get_args(annotation)
        return tuple(_coerce(name, v, item) for v in value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    return value


def check_fields(config: Any) -> None:
    """Check the fields of a config dataclass, in its ``__post_init__``, against their type
    annotations, the way Python code passes them: any integer (numpy's too) for ``int``, any
    real number for ``float``, any sequence for a tuple (a ``torch.Size``, a list); each is
    stored as the plain Python type. A value of another type is a :class:`ConfigError` naming
    the field (``data_shape=784`` says to give a list such as ``(784,)``)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = _field(f.name, getattr(config, f.name), hints[f.name])
        object.__setattr__(config, f.name, value)


def _field(name: str, value: Any, annotation: Any) -> Any:
    """One field's value checked and converted for :func:`check_fields`."""
    if typing.get_origin(annotation) is tuple:
        (item, *_rest) = typing.get_args(annotation)
        if isinstance(value, numbers.Number):
            raise ConfigError(f"{name} must be a list, e.g. ({value},), got {value!r}")
        if isinstance(value, str) and item is not str:
            raise ConfigError(f"{name} must be a list of numbers, got {value!r}")
        try:
            items = list(value)
        except TypeError:
            raise ConfigError(f"{name} must be a list, got {value!r}") from None
        try:
            return tuple(_field(name, v, item) for v in items)
        except ConfigError:
            what = {int: "integers", float: "numbers", str: "strings"}.get(item, "values")
            raise ConfigError(f"{name} must be a list of {what}, got {items!r}") from None
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if annotation is str and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return value


def configure(cls: type[C], config: Any = None, fields: dict[str, Any] | None = None) -> C:
    """The config a constructor (or ``fit``) was given: ``config`` (an instance of the
    dataclass ``cls``, a table of its settings as a dict, or None for the defaults) with
    ``fields`` replaced. Names that are not settings of ``cls``, and a config of another class,
    are a :class:`ConfigError` naming them."""
    if config is None:
        config = cls()
    elif isinstance(config, dict):
        config = from_dict(cls, config)
    elif not isinstance(config, cls):
        raise ConfigError(
            f"expected a {cls.__name__} (or a dict of its settings), got {type(config).__name__}"
        )
    known = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(fields or {}) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]} of {cls.__name__}; known settings: "
            f"{', '.join(sorted(known))}"
        )
    return dataclasses.replace(config, **fields) if fields else config  # type: ignore[type-var]


def from_dict(cls: type[C], data: dict[str, Any], *, section: str = "") -> C:
    """Build the dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{section or cls.__name__} must be a table of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    prefix = f"{section}." if section else ""
    unknown = sorted(set(data) - fields)
    if unknown:
        name = f"{prefix}{unknown[0]!s}"
        name = name if name.isprintable() else repr(name)  # one line, whatever the key holds
        raise ConfigError(f"unknown setting {name}; known settings: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(prefix + k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing file or a syntax error into a :class:`ConfigError`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {str(path)!r}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` where value is a TOML value (bare words are read as strings).

    >>> parse_override("model.latent_dim=8")
    ('model.latent_dim', 8)
    >>> parse_override("likelihood=gaussian")
    ('likelihood', 'gaussian')
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def check_count(name: str, value: Any, least: int = 1) -> int:
    """``value`` as an int, or a :class:`ConfigError` naming ``name`` unless it is an integer of
    at least ``least`` (the draws ``n`` of ``sample``, the samples ``k`` per example)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        what = "a positive integer" if least == 1 else f"an integer of at least {least}"
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return int(value)

"""Frozen-dataclass configs: building them from dicts, TOML files and ``key=value`` overrides.

Every config in vaekit is a frozen dataclass whose fields are a constructor's arguments; its JSON
form is ``dataclasses.asdict``. :func:`from_dict` is the one way back from JSON/TOML, and it rejects
unknown keys and wrong types with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")


def check_value(name: str, value: Any, annotation: Any, *, from_file: bool = False) -> Any:
    """``value`` checked against a field's type annotation and stored as the plain Python type:
    any integer (numpy's too) for ``int``, any real number for ``float``, a sequence for a tuple
    (a ``torch.Size``, a list) and None where the annotation allows it. A value of another type
    is a :class:`ConfigError` naming ``name`` (``data_shape=784`` says to give ``(784,)``).

    ``from_file``: the value was read from JSON or TOML, where a tuple is a list and a bad item
    of a list is named on its own (``model.hidden must be an integer, got 'x'``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(annotation)):
            return None
        errors = []
        for option in options:
            try:
                return check_value(name, value, option, from_file=from_file)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is tuple:
        return _check_list(name, value, typing.get_args(annotation)[0], from_file)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
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
    return value


def _check_list(name: str, value: Any, item: Any, from_file: bool) -> tuple[Any, ...]:
    """A tuple field's value for :func:`check_value`, each item checked against ``item``."""
    if from_file:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return tuple(check_value(name, v, item, from_file=True) for v in value)
    if isinstance(value, numbers.Number):
        raise ConfigError(f"{name} must be a list, e.g. ({value},), got {value!r}")
    if isinstance(value, str) and item is not str:
        raise ConfigError(f"{name} must be a list of numbers, got {value!r}")
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(f"{name} must be a list, got {value!r}") from None
    try:
        return tuple(check_value(name, v, item) for v in items)
    except ConfigError:
        what = {int: "integers", float: "numbers", str: "strings"}.get(item, "values")
        raise ConfigError(f"{name} must be a list of {what}, got {items!r}") from None


def check_fields(config: Any) -> None:
    """Check and convert every field of a config dataclass against its type annotation with
    :func:`check_value`, in place (a frozen dataclass's ``__post_init__`` may call it)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = check_value(f.name, getattr(config, f.name), hints[f.name])
        object.__setattr__(config, f.name, value)


# -- constraints ---------------------------------------------------------------------------------
#
# A config declares its ranges as a table, checked by :func:`check_settings` in __post_init__:
#
#     CONSTRAINTS = {"latent_dim": positive_int, "likelihood": one_of(LIKELIHOODS),
#                    ("decoder_min_logvar", "decoder_max_logvar"): below}
#
# A key that is a field name maps to ``check(name, value)``; a tuple of field names maps to
# ``check(names, values)`` (orderings, settings that depend on each other). A check raises a
# ConfigError naming the setting and its value, and returns nothing.

Check = Callable[[Any, Any], None]
Constraints = Mapping["str | tuple[str, ...]", Check]


def check_settings(config: Any, constraints: Constraints, *, prefix: str = "") -> None:
    """Check the fields of the config dataclass ``config``: first their types
    (:func:`check_fields`, converting them in place), then each entry of ``constraints`` in
    order. ``prefix`` goes before every setting's name in a message (e.g. ``"audio "``)."""
    check_fields(config)
    for key, check in constraints.items():
        if isinstance(key, str):
            check(prefix + key, getattr(config, key))
        else:
            check(tuple(prefix + k for k in key), tuple(getattr(config, k) for k in key))


def int_at_least(least: int) -> Check:
    """An integer of at least ``least``."""
    what = {0: "zero or more", 1: "a positive integer"}.get(least, f"{least} or more")

    def check(name: str, value: int) -> None:
        if value < least:
            raise ConfigError(f"{name} must be {what}, got {value}")

    return check


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_number(name: str, value: float) -> None:
    """A finite number above 0."""
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value}")


def non_negative_number(name: str, value: float) -> None:
    """A finite number of at least 0."""
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be zero or more, got {value}")


def finite(name: str, value: float) -> None:
    """A finite number."""
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")


def fraction(name: str, value: float) -> None:
    """A number in [0, 1)."""
    if not 0 <= value < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")


def one_of(options: Iterable[str]) -> Check:
    """One of ``options`` (the keys of a table such as ``LIKELIHOODS``)."""
    options = tuple(options)

    def check(name: str, value: str) -> None:
        if value not in options:
            raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")

    return check


def sizes(name: str, value: tuple[int, ...]) -> None:
    """A list of positive sizes, possibly empty (layer widths)."""
    if any(v <= 0 for v in value):
        raise ConfigError(f"{name} must be positive sizes, got {list(value)}")


def shape(name: str, value: tuple[int, ...]) -> None:
    """One or more positive sizes (the shape of an example)."""
    if not value or any(v <= 0 for v in value):
        raise ConfigError(f"{name} must be one or more positive sizes, got {list(value)}")


def below(names: tuple[str, str], values: tuple[float, float]) -> None:
    """Two finite numbers, the first below the second (soft bounds on a log-variance)."""
    for name, value in zip(names, values, strict=True):
        finite(name, value)
    if not values[0] < values[1]:
        raise ConfigError(f"{names[0]} must be below {names[1]}, got {values[0]}")


def not_above(names: tuple[str, str], values: tuple[float, float]) -> None:
    """The first number no greater than the second (a floor and its start)."""
    if values[0] > values[1]:
        raise ConfigError(f"{names[0]} {values[0]} must not exceed {names[1]} {values[1]}")


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
            f"unknown setting {unknown[0]} of {cls.__name__}{did_you_mean(unknown[0], known)}; "
            f"known settings: {', '.join(sorted(known))}"
        )
    return dataclasses.replace(config, **fields) if fields else config  # type: ignore[type-var]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``name``, or "" if none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
        hint = did_you_mean(str(unknown[0]), fields)
        raise ConfigError(
            f"unknown setting {name}{hint}; known settings: {', '.join(sorted(fields))}"
        )
    kwargs = {k: check_value(prefix + k, v, hints[k], from_file=True) for k, v in data.items()}
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

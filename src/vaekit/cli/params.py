"""The command line's own kinds of value (click parameter types) and the options commands share.

A bad value is one line naming it, as every vaekit error is: the types raise ConfigError.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import click

from ..config import parse_override
from ..errors import ConfigError
from .output import output_option as output_option  # -o/--output with --force, shared
from .run import Run

SPLITS = ("train", "valid", "test")
#: Seconds in one unit of a duration: "90s", "10m", "1.5h".
DURATION_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def duration(text: str, flag: str) -> float:
    """Seconds in ``text``: a number of seconds or a number with a unit of DURATION_UNITS."""
    body = text.strip().lower()
    unit = next((u for u in sorted(DURATION_UNITS, key=len, reverse=True) if body.endswith(u)), "")
    try:
        value = float(body[: len(body) - len(unit)]) * DURATION_UNITS.get(unit, 1.0)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(
            f"{flag} {text!r}: give seconds, or a number with s, m or h (600, 90s, 10m, 1.5h; "
            "0 for no limit)"
        )
    return value


def _flag(param: click.Parameter | None, default: str) -> str:
    return param.opts[0] if param is not None and param.opts else default


class Duration(click.ParamType):
    """A duration (seconds, or with a unit: 90s, 10m, 1.5h) as seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        return duration(str(value), _flag(param, "--time-limit"))


class ImageSize(click.ParamType):
    """An image size, ``64`` or ``48x64`` (height x width), as (height, width)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().split("x")
        if not (
            1 <= len(parts) <= 2 and all(re.fullmatch(r"\s*0*[1-9][0-9]*\s*", p) for p in parts)
        ):
            raise ConfigError(
                f"{_flag(param, '--image-size')} expects a positive size such as 64 or 48x64 "
                f"(height x width), got {value!r}"
            )
        return int(parts[0]), int(parts[-1])


class LabelColumn(click.ParamType):
    """A CSV column: an index (negative from the end) or a header name."""

    name = "col"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        column = str(value).strip()
        return int(column) if re.fullmatch(r"-?[0-9]+", column) else column


class KeyValue(click.ParamType):
    """``key=value`` as (key, value), the value parsed as a TOML value (or kept as a string)."""

    name = "key=value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        text = str(value)
        if "=" not in text or not text.partition("=")[0].strip():
            raise ConfigError(
                f"{_flag(param, '--set')} expects key=value (e.g. n_mels=32), got {text!r}"
            )
        return parse_override(text)


class RunFolder(click.ParamType):
    """A run folder, as a :class:`~vaekit.cli.run.Run` (its files read when first asked for)."""

    name = "run"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value if isinstance(value, Run) else Run(Path(value))


run_argument = click.argument("run", type=RunFolder())


def count_option(default: int | None, text: str, lo: int = 1, hi: int | None = None) -> Any:
    """The ``-n`` option of a drawing command: a count in [lo, hi], described by ``text``."""
    return click.option(
        "-n",
        "n",
        type=click.IntRange(lo, hi),
        default=default,
        show_default=default is not None,
        help=text,
    )


data_option = click.option(
    "--data", default=None, metavar="NAME|PATH", help="Data set (default: the run's own)."
)
split_option = click.option(
    "--split", type=click.Choice(SPLITS), default="test", show_default=True, help="Which split."
)
image_option = click.option(
    "--image-shape", default=None, metavar="HxW", help="Show flat examples as HxW (or CxHxW)."
)
scale_option = click.option(
    "--scale", type=click.IntRange(1, 16), default=None, help="Enlarge pictures this many times."
)
#: The seeds torch.manual_seed takes: 0 .. 2**63 - 1.
seed_range = click.IntRange(0, 2**63 - 1)
seed_option = click.option(
    "--seed", type=seed_range, default=0, show_default=True, help="Random seed."
)
label_option = click.option(
    "--label",
    type=click.IntRange(min=0),
    default=None,
    help="Class to condition on (conditional runs).",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")

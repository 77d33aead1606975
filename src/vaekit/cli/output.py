"""Where a command writes: output paths checked before any work, and the "wrote ..." lines.

The rule every writing command follows (``check_output``, ``check_folder``, ``check_replace``):

- An output is resolved (links and '..') before it is checked: it is never one of a run's own
  files (config.json, the weights, the training state, metrics.jsonl, the lock, anything in a
  .vaekit-previous folder), in this run folder or any other.
- A default output lies inside the run folder (RUN/figures/NAME.png, RUN/eval.json, ...) and
  stays there: a link on the way (RUN/figures, or the file) that leads out of it is refused.
- A default output's name says what it shows when that is not the run's own default: another
  data set (``-DATA``), another split (``-SPLIT``), one class (``-labelN``), another input file
  (``-STEM``): ``sample --label 3`` writes figures/samples-label3.png, ``reconstruct --data
  other`` figures/reconstructions-other.png. A default output is derived from the run, so the
  same command run again regenerates it.
- An ``--output`` that already exists is replaced only with ``--force``.
- Every file is written to a temporary file beside it and renamed over it: a crash leaves the
  old file or the new one, and a link at the output's path is replaced, never written through.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import ConfigError
from ..files import new_only, write_file
from ..runs import CONFIG_FILE, LOCK_FILE, PREVIOUS_FOLDER, RUN_NAMES

#: Suffixes of files, which a folder of sound files must not look like.
FILE_SUFFIXES = (".wav", ".png", ".npy", ".csv", ".txt")
#: A run's own files (beside its config.json), which no output may replace.
OWN_NAMES = (*RUN_NAMES, LOCK_FILE)
#: Where --force is kept for the command that parses it (click's context ``meta``).
FORCE_KEY = "vaekit.force"

F = TypeVar("F", bound=Callable[..., Any])


def _remember_force(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[FORCE_KEY] = bool(value)
    return bool(value)


def force_option(f: F) -> F:
    """The ``--force`` of a command that writes: an existing --output is replaced only with it
    (read by :func:`forced`, so a command's function does not take it)."""
    return click.option(
        "--force",
        is_flag=True,
        expose_value=False,
        callback=_remember_force,
        help="Replace the file (or folder's files) --output names if it exists.",
    )(f)


def output_option(f: F) -> F:
    """``-o/--output FILE`` and ``--force``: every command that writes a file takes both."""
    f = click.option(
        "-o",
        "--output",
        type=click.Path(path_type=Path),
        default=None,
        help="File to write [default: in the run folder, named for the data set, split or class "
        "shown when not the run's own]; an existing file is replaced only with --force.",
    )(f)
    return force_option(f)


def forced() -> bool:
    """Whether the command being run was given ``--force``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(FORCE_KEY))


def data_name(data: str | None, own: str | None = None) -> str | None:
    """The part of a default output's name that names the data set ``data`` (its file's stem,
    or its name, in letters, digits and ``_+-``), or None for no ``data`` or the run's own
    (``own``)."""
    if data is None or not data.strip():
        return None
    if own is not None and (data == own or same_file(Path(data), Path(own))):
        return None
    stem = Path(data.rstrip("/\\")).name
    for suffix in (".gz", ".npz", ".npy", ".csv", ".tsv", ".txt", ".pkl", ".json"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_+-]+", "_", stem).strip("_-")[:40] or "data"


def variant(name: str, *parts: str | None) -> str:
    """The default output ``name`` (a path inside a run folder, as runs.py gives it) with
    ``parts`` that are not None added to its stem: ``variant("figures/samples.png", "label3")``
    is ``figures/samples-label3.png``. Without parts, ``name`` itself."""
    given = [p for p in parts if p]
    if not given:
        return name
    path = Path(name)
    return str(path.with_name(f"{path.stem}-{'-'.join(given)}{path.suffix}"))


def default_name(
    name: str,
    *,
    data: str | None = None,
    own: str | None = None,
    split: str | None = None,
    default_split: str | None = "test",
    label: int | None = None,
    also: str | None = None,
) -> str:
    """The default output ``name`` of a command (a path inside a run folder) named for what it
    shows when that is not the run's default: ``-DATA`` for a data set other than the run's own
    (``own``), ``-SPLIT`` for a split other than ``default_split``, ``-labelN`` for class N,
    then ``also`` (an input file's stem). ``default_name("eval.json", data="other.npz")`` is
    ``eval-other.json``."""
    return variant(
        name,
        data_name(data, own),
        None if split is None or split == default_split else split,
        None if label is None else f"label{label}",
        also,
    )


def check_output(
    run: Any,
    output: Path | None,
    default: Path,
    suffixes: tuple[str, ...],
    inputs: tuple[Path | str | None, ...] = (),
) -> Path:
    """The file to write: ``output`` or ``default`` (inside the run folder ``run``, a path or a
    :class:`~vaekit.cli.run.Run`), checked before any work is done by the rule of this module
    (and never one of the files ``inputs`` the command reads)."""
    path = output if output is not None else default
    for given in inputs:
        if given is not None and same_file(path, Path(given)):
            raise ConfigError(
                f"output {str(path)!r} is the command's input file {str(given)!r}; writing it "
                "would replace what is read: choose another output"
            )
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"output {str(path)!r} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"output {str(path)!r} is a folder; give a file name")
    check_not_own(path)
    if output is None:
        check_inside(Path(str(run)), path)
    else:
        check_replace(path)
    check_writable(path, start=path.parent)
    return path


def check_not_own(path: Path, folder: bool = False) -> None:
    """Refuse ``path`` when it, as given or through links and '..', is one of a run's own files
    (beside a config.json), lies in a run's set-aside .vaekit-previous folder, or (a
    ``folder`` to write files into) is a run folder."""
    for named in (path, _resolved(path)):
        own = named.name in OWN_NAMES and (named.parent / CONFIG_FILE).exists()
        if own or PREVIOUS_FOLDER in named.parts:
            raise ConfigError(
                f"output {str(path)!r} would replace a run's own file ({str(named)!r}); choose "
                "another"
            )
        if folder and (named / CONFIG_FILE).exists():
            raise ConfigError(
                f"output {str(path)!r} is a run folder ({str(named)!r}); give a folder of its own"
            )


def check_inside(run: Path, path: Path) -> None:
    """Refuse a default output ``path`` of the run folder ``run`` that a link (a folder on the
    way, or the file itself) leads out of the run folder."""
    home = _resolved(run)
    try:
        parts = path.relative_to(run).parts
    except ValueError:
        return  # not under the run folder as given: an output of the command's choosing
    for i in range(len(parts)):
        step = run.joinpath(*parts[: i + 1])
        if not step.is_symlink():
            continue
        target = _resolved(step)
        if target != home and home not in target.parents:
            raise ConfigError(
                f"{str(step)!r} is a symbolic link to {os.readlink(step)!r}, outside the run "
                f"folder; vaekit writes a run's outputs inside it: remove the link, or give "
                "--output"
            )


def check_replace(path: Path, what: str = "") -> None:
    """Refuse an --output ``path`` that exists (a link too) unless --force was given; without
    --force the file is then written only if none has appeared there meanwhile."""
    if not forced():
        new_only(path)
    if os.path.lexists(path) and not forced():
        kind = what or ("output folder" if path.is_dir() else "output")
        held = "holds files" if kind.endswith("folder") else "already exists"
        raise ConfigError(
            f"{kind} {str(path)!r} {held}: give --force to replace it, or --output NAME to "
            "write elsewhere"
        )


def check_folder(output: Path | None, default: Path, run: Path | None = None) -> Path:
    """The folder to write sound files into: ``output`` or ``default`` (inside the run folder
    ``run``), checked first: never a run folder; an --output folder that holds files only with
    --force."""
    path = output if output is not None else default
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output {str(path)!r} is a file; audio runs write a folder of WAV files")
    if path.suffix.lower() in FILE_SUFFIXES:
        raise ConfigError(f"output {str(path)!r} names a file; give a folder for the WAV files")
    check_not_own(path, folder=True)
    if output is None:
        if run is not None:
            check_inside(run, path)
    elif path.is_dir() and any(path.iterdir()):
        check_replace(path, "output folder")
    check_writable(path)
    return path


def check_writable(path: Path, what: str = "", start: Path | None = None) -> None:
    """Raise unless ``path`` (a folder, or the file in ``start``) exists in, or can be made
    inside, a writable folder."""
    folder = path if start is None else start
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        name = f"{what} {str(path)!r}" if what else repr(str(path))
        raise ConfigError(f"cannot write {name}: {str(folder)!r} is not a writable folder")


def _resolved(path: Path) -> Path:
    """``path`` with every link and '..' resolved (as far as it exists)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a loop of links: the path as given is all there is
        return path


def same_file(a: Path, b: Path) -> bool:
    """Whether the paths ``a`` and ``b`` name one file (through links too)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def write(path: Path, data: bytes) -> Path:
    """``data`` written atomically to ``path``."""
    return write_file(path, data)


def wrote(*paths: Path) -> None:
    """Print a "wrote PATH" line for each of ``paths``."""
    for path in paths:
        click.echo(f"wrote {path}")


def echo_lines(lines: list[str]) -> None:
    """Print ``lines``, one a line."""
    for line in lines:
        click.echo(line)


def echo_and_write(out: Path, lines: list[str]) -> None:
    """Print ``lines`` and write them, one a line, to ``out``."""
    echo_lines(lines)
    write(out, "".join(f"{line}\n" for line in lines).encode())
    wrote(out)


def progress(quiet: bool) -> bool:
    """Whether to show progress bars: not asked to be quiet, and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()

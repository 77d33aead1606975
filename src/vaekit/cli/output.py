"""Where a command writes: output paths checked before any work, and the "wrote ..." lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import ConfigError
from ..files import write_file
from ..runs import CONFIG_FILE, RUN_NAMES

#: Suffixes of files, which a folder of sound files must not look like.
FILE_SUFFIXES = (".wav", ".png", ".npy", ".csv", ".txt")


def check_output(
    run: Path,
    output: Path | None,
    default: Path,
    suffixes: tuple[str, ...],
    inputs: tuple[Path | str | None, ...] = (),
) -> Path:
    """The file to write: ``output`` or ``default``, checked before any work is done (and
    never one of the files ``inputs`` the command reads)."""
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
    for named in (path, _resolved(path)):  # as given, and through links and '..'
        if named.name in RUN_NAMES and (named.parent / CONFIG_FILE).exists():
            raise ConfigError(
                f"output {str(path)!r} would replace a run's own file ({str(named)!r}); choose "
                "another"
            )
    check_writable(path, start=path.parent)
    return path


def check_folder(output: Path | None, default: Path) -> Path:
    """The folder to write sound files into: ``output`` or ``default``, checked first."""
    path = output if output is not None else default
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output {str(path)!r} is a file; audio runs write a folder of WAV files")
    if path.suffix.lower() in FILE_SUFFIXES:
        raise ConfigError(f"output {str(path)!r} names a file; give a folder for the WAV files")
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

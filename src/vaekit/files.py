"""Files written whole or not at all: a crash leaves either the old file or the new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import VaekitError


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    ``data``: the bytes, or a function that writes them into the open file it is given (a file
    written piece by piece, never whole in memory). The file gets the permissions ``open`` would
    give it (0666 less the umask).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_file(path: str | Path, data: bytes, error: type[VaekitError] = VaekitError) -> Path:
    """Write ``data`` to ``path`` atomically; an OSError becomes one ``error`` naming the file."""
    path = Path(path)
    try:
        atomic_write(path, data)
    except OSError as err:
        raise error(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    return path

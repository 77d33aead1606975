"""Files written whole or not at all: a crash leaves either the old file or the new one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import VaekitError

#: Files this process checked were free and must not replace (an --output given without
#: --force), by absolute path: see :func:`new_only`.
_NEW_ONLY: set[str] = set()


def new_only(path: str | Path) -> None:
    """Have :func:`atomic_write` put the file at ``path`` only where none exists when it is
    written: the finished temporary file is hard-linked into place, which fails (FileExistsError,
    the file there unchanged) where a file appeared at ``path`` after the command checked it was
    free. A file system without hard links falls back to replacing."""
    _NEW_ONLY.add(os.path.abspath(path))


def forget_new_only() -> None:
    """Forget every :func:`new_only` path (a command is done)."""
    _NEW_ONLY.clear()


def _put(tmp: str, path: Path) -> None:
    """The finished temporary file ``tmp`` moved to ``path`` (see :func:`new_only`)."""
    if os.path.abspath(path) not in _NEW_ONLY:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST, "a file appeared there while vaekit worked; give --force to replace it"
        ) from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        os.replace(tmp, path)  # no hard links here
        return
    os.unlink(tmp)


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
        _put(tmp, path)
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

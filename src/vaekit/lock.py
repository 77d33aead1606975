"""One writer per run folder, and readers that see a consistent run while it trains.

A process that writes a run (``fit`` with ``out``: a new run, a resumed one, one that replaces
another) holds an exclusive ``fcntl.flock`` on the lock file ``RUN/.vaekit-lock`` for the whole
run, from before its first write to after its last; a second writer refuses at once
(:class:`~vaekit.errors.RunBusy`, never waiting) naming the holder that the file records: its
PID, host, start time and command, written as JSON once the lock is taken. The kernel drops a
flock when its process dies, however it dies, so a run left by a process killed with SIGKILL is
taken over by the next writer; the JSON such a process leaves behind is never trusted, because
it is only read while the flock is held. A writer that ends removes the file while it still
holds the lock.

Readers take no lock and never hold a writer back. The writer counts its commits (the steps that
change more than one of the run's files: laying out a new run, which sets the old one aside;
writing the final weights and config.json; putting an old run back) in the lock file: odd while
one is under way. :func:`consistent` reads a run between commits and reads it again if a commit
happened meanwhile (a seqlock), so config.json and model.safetensors always come from one
commit; a run whose weights are not written yet is said to be training, with its last saved
epoch.

On a file system without flock (ENOLCK, EOPNOTSUPP: some network mounts) the lock is best
effort: a writer refuses when the recorded holder is a live process on this host, and otherwise
proceeds with a warning.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from .errors import CheckpointError, RunBusy
from .runs import LOCK_FILE, WEIGHTS_FILE

T = TypeVar("T")

#: How the lock file is opened: never through a link, never waiting (a FIFO put in its place).
_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: errno values of a file system that has no flock.
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
#: How long a reader waits for a writer's commit to end, and how often it looks (seconds).
COMMIT_WAIT = 10.0
_POLL = 0.05


def _command() -> str:
    """The command line of this process, as a person would type it (at most 200 characters)."""
    argv = list(sys.argv) or ["python"]
    if Path(argv[0]).name in ("__main__.py", "vaekit"):
        argv[0] = "vaekit"
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The holder record of a lock file's bytes; None when it is empty or half written."""
    try:
        record = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def describe(holder: dict[str, Any] | None) -> str:
    """``PID 123 on host h, since 2026-12-04 02:10:05 UTC (vaekit train ...)``, from the fields
    the holder recorded (those it lacks are left out)."""
    if not holder:
        return "another process (not yet recorded)"
    parts = [f"PID {holder.get('pid', '?')}"]
    if holder.get("host"):
        parts.append(f"on {holder['host']}")
    if isinstance(holder.get("started"), int | float):
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder["started"]))
        parts.append(f"since {when}")
    text = " ".join(parts)
    return f"{text} ({holder['command']})" if holder.get("command") else text


def _same_file(fd: int, file: Path) -> bool:
    """Whether the descriptor ``fd`` is the file at ``file`` now (not one removed meanwhile)."""
    try:
        a, b = os.fstat(fd), os.stat(file, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _pid_alive(pid: Any) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user's
        return True
    return True


class RunLock:
    """The exclusive lock of one writer on the run folder ``folder``: taken by :func:`acquire`,
    given back by :meth:`release` (or when the process ends)."""

    def __init__(self, folder: Path, fd: int, flocked: bool) -> None:
        self.folder = folder
        self.file = folder / LOCK_FILE
        self._fd: int | None = fd
        self.flocked = flocked  # False: a file system without flock (best effort)
        self._length = 0  # of the record last written
        self.record: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": round(time.time(), 3),
            "command": _command(),
            "commits": 0,  # odd while a commit is under way
            "saved_epoch": None,
        }
        with suppress(OSError):
            os.ftruncate(fd, 0)  # the record of a holder that died
        self._write()

    def _write(self) -> None:
        """The record into the file, in one write at its start, padded with spaces to the
        length of the last one (JSON ignores them): no moment shows half of it. Best effort: a
        record that cannot be written (a full disk) does not stop the run."""
        if self._fd is None:
            return
        data = json.dumps(self.record).encode()
        data += b" " * (self._length - len(data) - 1) + b"\n"
        with suppress(OSError):
            os.pwrite(self._fd, data, 0)
            self._length = len(data)

    def update(self, **fields: Any) -> None:
        """Record ``fields`` (e.g. ``saved_epoch``) in the lock file for readers to see."""
        self.record.update(fields)
        self._write()

    @contextmanager
    def commit(self) -> Iterator[None]:
        """Around a change to several of the run's files: readers wait for its end, and read
        again what they read during it."""
        self.update(commits=self.record["commits"] + 1)
        try:
            yield
        finally:
            self.update(commits=self.record["commits"] + 1)

    def release(self) -> None:
        """Remove the lock file (while still holding it: a writer waiting on the old file sees
        it gone and opens the new one) and give the lock back. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.file):
                self.file.unlink(missing_ok=True)
        except OSError:
            pass  # a file left behind is never trusted: only a held flock is
        finally:
            os.close(fd)

    def __del__(self) -> None:  # a lock dropped without release (an exception): closing frees it
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)


def acquire(folder: str | Path) -> RunLock:
    """Take the writer's lock of the run folder ``folder`` (which must exist), or raise
    :class:`RunBusy` naming the process that holds it. Never waits."""
    folder = Path(folder)
    file = folder / LOCK_FILE
    for _ in range(20):  # the file may be removed by a holder ending meanwhile: open it again
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | _FLAGS, 0o666)
        except OSError as err:
            raise CheckpointError(
                f"cannot create the lock file {str(file)!r}: {err.strerror or err}; remove it if "
                "it is not a file"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CheckpointError(f"{str(file)!r} is not a regular file; remove it")
        try:
            _flock_exclusive(fd)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise _busy(folder, holder) from None
        except OSError as err:
            if err.errno not in _NO_FLOCK:
                os.close(fd)
                raise CheckpointError(f"cannot lock {str(file)!r}: {err.strerror}") from None
            return _best_effort(folder, fd)
        if _same_file(fd, file):
            return RunLock(folder, fd, flocked=True)
        os.close(fd)  # removed by the holder that just ended: take the new file
    raise RunBusy(f"{str(folder)!r}: its lock file keeps being replaced; try again")


def _busy(folder: Path | str, holder: dict[str, Any] | None) -> RunBusy:
    """The refusal of a second writer, naming the first."""
    return RunBusy(
        f"{str(folder)!r} is being trained by {describe(holder)}; one process writes a run "
        "folder at a time: wait for it to end, or train into another folder"
    )


def _flock_exclusive(fd: int) -> None:
    """flock ``fd`` exclusively without waiting on a writer; a reader's probe (a shared lock
    held for microseconds, see :func:`holder`) is given a moment to end."""
    for attempt in range(10):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == 9:
                raise
            time.sleep(0.02)


def _best_effort(folder: Path, fd: int) -> RunLock:
    """The lock where the file system has no flock: refuse a live recorded holder on this host,
    else proceed with a warning."""
    record = _parse(os.pread(fd, 4096, 0)) or {}
    pid = record.get("pid")
    if record.get("host") == socket.gethostname() and pid != os.getpid() and _pid_alive(pid):
        os.close(fd)
        raise _busy(folder, record)
    warnings.warn(
        f"the file system of {str(folder)!r} has no file locks: vaekit cannot stop another "
        "process on another host writing the run at the same time",
        RuntimeWarning,
        stacklevel=3,
    )
    return RunLock(folder, fd, flocked=False)


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The record of the process that holds the lock on ``fd``'s file: it writes it just after
    taking the lock, so a moment's wait covers one that has only just started."""
    for _ in range(20):
        holder = _parse(os.pread(fd, 4096, 0))
        if holder is not None:
            return holder
        time.sleep(0.025)
    return None


def holder(folder: str | Path) -> dict[str, Any] | None:
    """The record of the live process writing the run folder ``folder``, or None when none is
    (a lock file left by a process that died is not a holder). Takes no lock that lasts."""
    file = Path(folder) / LOCK_FILE
    for _ in range(20):
        try:
            fd = os.open(file, os.O_RDONLY | _FLAGS)
        except OSError:
            return None  # no lock file (or not one we can read): no writer
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None  # not a lock file vaekit made
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder(fd) or {}
            except OSError:  # no flock here: trust a live PID on this host only
                record = _parse(os.pread(fd, 4096, 0))
                host = record.get("host") if record else None
                if record and host == socket.gethostname() and _pid_alive(record.get("pid")):
                    return record
                return None
            if _same_file(fd, file):
                return None  # we could lock it: nobody holds it
        finally:
            os.close(fd)
    return None


def refuse_if_busy(folder: str | Path | None) -> None:
    """Raise :class:`RunBusy` when a live process is writing the run folder ``folder``."""
    if folder is None:
        return
    live = holder(folder)
    if live is not None:
        raise _busy(folder, live)


def _token(folder: Path) -> tuple[Any, ...] | None:
    """Who writes ``folder`` and how many commits it has made (None: no writer)."""
    live = holder(folder)
    if live is None:
        return None
    return (live.get("pid"), live.get("started"), live.get("commits"))


def consistent(folder: str | Path, read: Callable[[], T]) -> T:
    """``read()`` of the run folder ``folder``, made while no writer commits and repeated if a
    commit happened during it: what it reads comes from one state of the run. A run whose
    training has not written its weights yet is a :class:`RunBusy` saying so."""
    folder = Path(folder)
    if not folder.is_dir():
        return read()
    deadline = time.monotonic() + COMMIT_WAIT
    while time.monotonic() < deadline:
        before = _token(folder)
        if before is not None and isinstance(before[2], int) and before[2] % 2:
            time.sleep(_POLL)  # a commit is under way
            continue
        try:
            result = read()
        except CheckpointError:
            if _token(folder) != before:
                continue  # a commit happened meanwhile: read again
            if before is not None and not (folder / WEIGHTS_FILE).is_file():
                raise RunBusy(_training(folder, holder(folder))) from None
            raise
        if _token(folder) == before:
            return result
    raise RunBusy(
        f"{str(folder)!r} is training: {describe(holder(folder))}; its files are being "
        "replaced, try again in a moment"
    )


def _training(folder: Path, live: dict[str, Any] | None) -> str:
    epoch = (live or {}).get("saved_epoch")
    saved = f"its last saved epoch is {epoch}" if epoch else "no epoch of it is saved yet"
    return (
        f"{str(folder)!r} is training: {describe(live)}; {saved}, and its {WEIGHTS_FILE} is "
        "written when training ends"
    )

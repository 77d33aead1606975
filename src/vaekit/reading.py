"""Reading a run's files without trusting them: only regular files, never blocking, never more
than a stated number of bytes, and JSON of bounded size and nesting depth.

Every reader of config.json, metrics.jsonl and a checkpoint's header goes through
:func:`read_regular` and :func:`loads`: a FIFO, a device (``/dev/zero``) or a folder in place of a
file is refused at once naming it, and JSON nested deeper than :data:`MAX_DEPTH` is refused before
the parser (whose recursion it would exhaust) sees it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from .errors import VaekitError

#: Deepest JSON nesting a run's files may hold (vaekit writes at most about a dozen levels).
MAX_DEPTH = 64
#: Largest config.json read (vaekit writes a few kilobytes).
MAX_CONFIG_BYTES = 16 * 2**20
#: Largest metrics.jsonl read (one short line per epoch).
MAX_METRICS_BYTES = 256 * 2**20

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def read_regular(
    path: str | Path, max_bytes: int | None, error: type[VaekitError], what: str = "file"
) -> bytes:
    """The bytes of the regular file ``path`` (a symlink to one is followed). A FIFO, socket,
    device or folder is refused without blocking on it, and a file over ``max_bytes`` (None: no
    cap) without reading it: one ``error`` naming the file. FileNotFoundError passes through
    for the caller to word."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise error(f"{name!r} is a folder, not a {what}") from None
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno == errno.ENXIO:  # a FIFO (or socket) with no writer
            raise error(f"{name!r} is not a regular file; replace it with the {what}") from None
        raise error(f"cannot read {name!r}: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise error(f"{name!r} is {kind}; replace it with the {what}")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(
                f"{name!r} is {st.st_size} bytes, more than a {what} holds ({max_bytes}); it is "
                "damaged or not vaekit's"
            )
        os.set_blocking(fd, True)
        chunks, left = [], (max_bytes + 1 if max_bytes is not None else None)
        while True:
            chunk = os.read(fd, 1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            chunks.append(chunk)
            if left is not None:
                left -= len(chunk)
                if left <= 0:
                    raise error(f"{name!r} grew past {max_bytes} bytes while it was read")
        return b"".join(chunks)
    except OSError as err:
        raise error(f"cannot read {name!r}: {err.strerror or err}") from None
    finally:
        os.close(fd)


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of brackets in the JSON ``text`` (brackets in strings not counted)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads(
    text: str | bytes, where: str, error: type[VaekitError], max_depth: int = MAX_DEPTH
) -> Any:
    """``json.loads(text)`` of a value read from ``where`` (a file, or a file and a field), as one
    ``error`` naming ``where`` when the text is not JSON or is nested deeper than
    ``max_depth``."""
    if json_depth(text) > max_depth:
        raise error(f"{where} is corrupt: its JSON is nested more than {max_depth} deep")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        why = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise error(f"{where} is unreadable or corrupt: {why}") from None


def read_json(
    path: str | Path, error: type[VaekitError], what: str, max_bytes: int = MAX_CONFIG_BYTES
) -> Any:
    """The JSON value of the regular file ``path`` (see :func:`read_regular` and :func:`loads`):
    a file that is not one, too large, too deeply nested or not JSON is one ``error``."""
    return loads(read_regular(path, max_bytes, error, what), repr(str(path)), error)


def is_number(value: Any) -> bool:
    """Whether a parsed JSON ``value`` is a number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


#: Fields of a metrics.jsonl record that must be numbers where present (the first two always).
METRIC_NUMBERS = ("examples_seen", "train_bound", "valid_elbo", "seconds", "lr", "beta")
METRIC_INTS = ("epoch", "step", "skipped_steps")


def check_metrics_record(record: Any, where: str, error: type[VaekitError]) -> dict[str, Any]:
    """``record`` (one parsed line of metrics.jsonl, or one epoch of a checkpoint's history,
    read from ``where``), checked to be a table whose fields have the types vaekit writes."""
    if not isinstance(record, dict):
        raise error(f"{where} is not a table of an epoch's metrics; the file is damaged")
    for key in ("examples_seen", "train_bound"):
        if key not in record:
            raise error(f"{where} lacks {key}; the file is damaged")
    for key in METRIC_NUMBERS:
        if key in record and not is_number(record[key]):
            raise error(f"{where}: {key} must be a number, got {type(record[key]).__name__}")
    for key in METRIC_INTS:
        if key in record and (type(record[key]) is not int or record[key] < 0):
            raise error(f"{where}: {key} must be a whole number >= 0, got {record[key]!r:.40}")
    if "stopped" in record and not isinstance(record["stopped"], str):
        raise error(f"{where}: stopped must be a string, got {type(record['stopped']).__name__}")
    return record


def conform_tensors(
    tensors: Any, expected: dict[str, Any], where: str, error: type[VaekitError]
) -> dict[str, Any]:
    """``tensors`` (name -> tensor, read from ``where``) checked against ``expected`` (a model's
    ``state_dict``): the same names and shapes, each in the expected dtype. A tensor of another
    floating dtype is converted where every value survives the round trip (bfloat16, float16 and
    float8 to float32 always do); any other dtype is refused naming the tensor."""
    import torch

    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise error(f"{where} is corrupt: its weights are not a table of tensors")
    extra = [k for k in tensors if k not in expected]
    if extra:
        names = ", ".join(repr(k) for k in extra[:6]) + (", ..." if len(extra) > 6 else "")
        raise error(f"{where}: Unexpected key(s) {names} (the model has no such weights)")
    missing = [k for k in expected if k not in tensors]
    if missing:
        names = ", ".join(repr(k) for k in missing[:6]) + (", ..." if len(missing) > 6 else "")
        raise error(f"{where}: Missing key(s) {names} (weights of the model the file lacks)")
    out = {}
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise error(
                f"{where}: size mismatch for {name!r}: shape {list(got.shape)} in the file, "
                f"{list(want.shape)} in the model"
            )
        if got.dtype != want.dtype:
            if not (got.is_floating_point() and want.is_floating_point()):
                raise error(f"{where}: weight {name!r} is {got.dtype}, the model's is {want.dtype}")
            converted = got.to(want.dtype)
            back = converted.to(got.dtype)
            same = (back == got) | (back.isnan() & got.isnan())
            if not bool(same.all()):
                raise error(
                    f"{where}: weight {name!r} is {got.dtype} with values {want.dtype} cannot "
                    "hold; convert the weights to it"
                )
            got = converted
        out[name] = got
    return out

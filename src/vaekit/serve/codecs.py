"""Values of a request body as tensors, and tensors as values of a response.

Numbers arrive as nested JSON lists, images as base64 PNG files, sound as base64 WAV files and
text as strings; each is checked here (shape, dtype, finiteness, size) and a bad one is a
:class:`~vaekit.serve.settings.RequestError` naming its field, such as ``png[2]``. Nothing here
calls a model.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .settings import RequestError

#: The most pixels a PNG in a request may have (its header is read before its pixels are).
MAX_PNG_PIXELS = 4096 * 4096


def numbers(value: Any, field: str) -> np.ndarray:
    """``value`` (nested lists of JSON numbers) as a float32 array with a leading axis of rows.

    Refuses ragged lists, values that are not numbers (strings, booleans, null), an empty
    list, NaN or infinite values and values beyond float32's range."""
    if not isinstance(value, list):
        raise RequestError(field, f"{field} must be a list of rows of numbers")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError):
        raise RequestError(
            field, f"{field} must be a rectangular array (rows of equal length)"
        ) from None
    if a.dtype.kind == "O":
        raise RequestError(field, f"{field} must be a rectangular array of numbers")
    if a.dtype.kind not in "iuf":
        kind = {"b": "true/false", "U": "strings", "S": "strings"}.get(a.dtype.kind, a.dtype.name)
        raise RequestError(field, f"{field} must hold numbers, got {kind}")
    if a.ndim == 0 or a.size == 0:
        raise RequestError(field, f"{field} is empty; give at least one row")
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(np.float32)
    if not np.isfinite(out).all():
        row = int(np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(1))[0])
        raise RequestError(
            field,
            f"{field} holds NaN or infinite values (or values beyond float32's range), first in "
            f"row {row}",
        )
    return out


def check_rows(field: str, n: int, limit: int, what: str = "rows") -> None:
    """Refuse ``n`` rows of ``field`` beyond the server's max_batch ``limit``."""
    if n > limit:
        raise RequestError(
            field,
            f"{field} has {n} {what}; this server takes at most {limit} a request (its "
            "max_batch setting): split the request",
        )


def b64(text: Any, field: str) -> bytes:
    """The bytes of a base64 string (a ``data:...;base64,`` prefix is allowed)."""
    if not isinstance(text, str):
        raise RequestError(field, f"{field} must be a base64 string")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(field, f"{field} is not valid base64") from None


def png_examples(values: list[str], field: str, shape: tuple[int, ...]) -> Tensor:
    """PNG files (base64) as examples (N, C, H, W) in [0, 1] for images of ``shape`` (C, H, W):
    8-bit values divided by 255, colour turned grey for a grey run and grey to RGB for a
    colour run. Each must have the run's size; none is resized."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    out = []
    for i, text in enumerate(values):
        where = f"{field}[{i}]"
        data = b64(text, where)
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.format != "PNG":
                    raise RequestError(where, f"{where} is a {img.format} image; give a PNG")
                if img.width * img.height > MAX_PNG_PIXELS:
                    raise RequestError(where, f"{where} has too many pixels ({img.size})")
                if (img.height, img.width) != (height, width):
                    raise RequestError(
                        where,
                        f"{where} is {img.width}x{img.height} pixels but the run's images are "
                        f"{width}x{height} (width x height); resize it",
                    )
                a = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise RequestError(where, f"{where} is not a readable PNG file") from None
        a = a[None] if channels == 1 else a.transpose(2, 0, 1)
        out.append(a / 255.0)
    return torch.from_numpy(np.stack(out))


def wav_examples(values: list[str], field: str, settings: Any) -> tuple[Tensor, list[int]]:
    """WAV files (base64) as clips (M, 1, n_mels, frames) made as the run's training data was
    (``settings``: its AudioSettings), and for each clip the index of the file it came from
    (a long file gives several clips)."""
    from ..data.audio import examples_of

    clips, sources = [], []
    with tempfile.TemporaryDirectory(prefix="vaekit-serve-") as folder:
        for i, text in enumerate(values):
            where = f"{field}[{i}]"
            path = Path(folder) / f"{i}.wav"
            path.write_bytes(b64(text, where))
            try:
                x = examples_of(path, settings)
            except DataError as err:
                message = str(err).replace(repr(str(path)), where).replace(str(path), where)
                raise RequestError(where, message) from None
            clips.append(x)
            sources += [i] * len(x)
    return torch.cat(clips), sources


def png_strings(images: np.ndarray) -> list[str]:
    """Images (N, H, W, C) in [0, 1] as base64 PNG files."""
    from PIL import Image

    out = []
    for a in images:
        pixels = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
        img = Image.fromarray(pixels[..., 0] if a.shape[-1] == 1 else pixels)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        out.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return out


def wav_strings(x: Tensor, settings: Any) -> list[str]:
    """Spectrogram examples (N, 1, n_mels, frames) as base64 WAV files (Griffin-Lim)."""
    from ..data.audio import to_waveforms, wav_bytes

    waves = to_waveforms(x, settings)
    return [base64.b64encode(wav_bytes(w, settings.sample_rate)).decode("ascii") for w in waves]


def listed(x: Tensor) -> list[Any]:
    """A tensor as nested lists of Python floats (float32 values)."""
    return x.detach().to("cpu", torch.float32).numpy().tolist()


def check_seed(value: int, field: str = "seed") -> int:
    """A seed that torch.manual_seed takes: 0 .. 2**63 - 1."""
    if not 0 <= value < 2**63:
        raise RequestError(field, f"{field} must be in 0..{2**63 - 1}, got {value}")
    return value


def check_count(value: int, field: str, limit: int, setting: str) -> int:
    """A count in 1..``limit`` (the server's ``setting``)."""
    if value < 1:
        raise RequestError(field, f"{field} must be at least 1, got {value}")
    if value > limit:
        raise RequestError(
            field,
            f"{field} = {value} is above this server's limit of {limit} (its {setting} setting)",
        )
    return value


def finite_number(value: float, field: str, least: float = 0.0) -> float:
    """A finite number above ``least``."""
    if not (math.isfinite(value) and value > least):
        raise RequestError(field, f"{field} must be a finite number above {least:g}, got {value}")
    return value

"""What a run's examples stand for, and how they go to and from files a person uses.

One class per kind of example: :class:`Arrays` (the default: arrays and images), :class:`Text`
(strings, one a line) and :class:`Audio` (WAV clips as mel spectrograms). Each reads examples
from a person's file (``read``), writes examples as files (``write``) and draws them
(``picture``: a grid of images, or None where a picture means nothing).
:func:`media_of` chooses by the run's ``data.media`` table.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import viz
from .data.arrays import NUMPY_READ_ERRORS, channels_first, channels_last_as_trained, to_float
from .errors import ConfigError, DataError
from .files import write_file
from .runs import DERIVED_SOUND_FOLDERS, figure


def array_bytes(a: np.ndarray, suffix: str, prefix: str) -> bytes:
    """``a`` (N, ...) as .npy bytes, or as CSV with one flattened row per example."""
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, a, allow_pickle=False)
        return buffer.getvalue()
    flat = a.reshape(a.shape[0], -1)
    buffer = io.StringIO()
    header = ",".join(f"{prefix}{i}" for i in range(flat.shape[1]))
    np.savetxt(buffer, flat, delimiter=",", fmt="%.7g", header=header, comments="")
    return buffer.getvalue().encode()


def read_array(path: Path, what: str, *, data: bool = False) -> np.ndarray:
    """A float32 array from .npy, or from .csv (comma-separated, optional header line). With
    ``data`` (examples, not latents) a .npy file is read as ``--data`` reads it: images stored
    channels last become (N, C, H, W), uint8 values are 8-bit data, divided by 255."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise DataError(f"{what} file {str(path)!r} must be .npy or .csv")
    if path.is_dir():
        raise DataError(f"{what} file {str(path)!r} is a folder; give a {suffix} file")
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} does not exist")
    try:
        if suffix == ".npy":
            a = np.load(path, allow_pickle=False)
            if not isinstance(a, np.ndarray):
                raise ValueError("not a single array")
            if data:
                a = channels_first(a)  # as --data reads it
                if a.dtype == np.uint8:
                    a = to_float(a, f"{what} file {str(path)!r}")[0]
        else:
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            if lines:
                try:
                    [float(v) for v in lines[0].split(",")]
                except ValueError:
                    lines = lines[1:]  # a header
            if not lines:
                raise DataError(f"{what} file {str(path)!r} is empty")
            a = np.loadtxt(lines, delimiter=",", ndmin=2, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            a = np.asarray(a, dtype=np.float32)
    except DataError:
        raise
    except (*NUMPY_READ_ERRORS, UnicodeDecodeError) as err:
        detail = str(err).splitlines()[0] if str(err) else "it is empty"
        if "pickle" in detail:  # numpy's guess for a file without the .npy header
            detail = "it is not a .npy file of numbers (vaekit never unpickles)"
        raise DataError(f"cannot read {what} file {str(path)!r}: {detail}") from None
    if a.size == 0:
        raise DataError(f"{what} file {str(path)!r} is empty")
    if not np.isfinite(a).all():
        raise DataError(
            f"{what} file {str(path)!r} holds NaN or infinite values (or values beyond "
            "float32's range)"
        )
    return a


#: A picture's enlargement for spectrograms when none is given (they are small).
SPECTROGRAM_SCALE = 3


class Arrays:
    """Examples that are arrays (N, *data_shape), images among them: read from and written to
    .npy/.csv files, drawn as a grid of images."""

    kind: str | None = None
    #: Suffixes of the files :meth:`write` writes.
    suffixes: tuple[str, ...] = (".npy", ".csv")
    #: Whether the examples are strings (printed, one a line).
    strings = False
    #: Whether :meth:`write` writes a folder of files (one per example).
    folder = False
    #: Suffixes of a drawing command's output (a picture).
    shown_as: tuple[str, ...] = (".png",)

    def __init__(self, config: dict[str, Any], model: Any) -> None:
        self.config = config
        self.model = model

    @classmethod
    def output(cls, name: str) -> str:
        """Where a drawing command ``name`` writes inside a run folder (runs.py's names)."""
        return figure(name)

    def read(self, path: Path, what: str = "input") -> Tensor:
        """Examples (N, *data_shape) from a .npy/.csv file, read as a data file is read
        (channels last become channels first, uint8 values are divided by 255) and checked
        against the model's likelihood."""
        x = torch.from_numpy(read_array(path, what, data=True))
        return examples(self.model, x, repr(str(path)))

    def write(self, x: Tensor, out: Path, names: list[str] | None = None) -> list[Path]:
        """``x`` (N, ...) as ``out``: .npy, or .csv with one flattened row per example."""
        a = x.detach().cpu().numpy().astype(np.float32)
        return [write_file(out, array_bytes(a, out.suffix.lower(), "x"))]

    def picture(
        self, x: Tensor, shape: tuple[int, ...], ncols: int | None, scale: int | None
    ) -> Any:
        """A grid of ``x`` (N, *data_shape) as images of ``shape``, ``ncols`` a row."""
        return viz.example_grid(x, shape, ncols, scale=scale)

    def pairs(
        self, x: Tensor, y: Tensor, shape: tuple[int, ...], ncols: int, scale: int | None
    ) -> Any:
        """A grid of ``x`` above ``y`` (both (N, *data_shape)), ``ncols`` pairs a row."""
        return viz.pairs_grid(x, y, shape, ncols, scale=scale)

    def lines(self, x: Tensor) -> list[str]:
        """The examples as lines of text (strings only; none for arrays)."""
        return []


class Text(Arrays):
    """Strings of tokens: read from .txt files (one a line), written as lines, never drawn."""

    kind = "text"
    suffixes = (".txt",)
    strings = True
    shown_as = (".txt",)

    @classmethod
    def output(cls, name: str) -> str:
        """RUN/NAME.txt: the strings a drawing command prints."""
        return f"{name}.txt"

    def read(self, path: Path, what: str = "input") -> Tensor:
        """Token ids (N, length) of the lines of a .txt file, in the model's vocabulary."""
        from .data.text import read_lines

        if path.suffix.lower() != ".txt":
            raise DataError(f"{what} file {str(path)!r} of a text run must be a .txt file")
        return self.model.ids(read_lines(path, at_least=1), repr(str(path)))

    def write(self, x: Tensor, out: Path, names: list[str] | None = None) -> list[Path]:
        """The strings of ``x`` (N, length), one a line, as ``out``."""
        return [write_lines(out, self.lines(x))]

    def picture(
        self, x: Tensor, shape: tuple[int, ...], ncols: int | None, scale: int | None
    ) -> Any:
        return None

    def pairs(
        self, x: Tensor, y: Tensor, shape: tuple[int, ...], ncols: int, scale: int | None
    ) -> Any:
        return None

    def lines(self, x: Tensor) -> list[str]:
        return self.model.texts(x)


class Audio(Arrays):
    """Clips as mel spectrograms (N, 1, n_mels, frames): read from WAV files, written as WAV
    files (Griffin-Lim) into a folder, drawn as spectrograms with low frequencies at the bottom."""

    kind = "audio"
    suffixes = (".wav",)
    folder = True
    shown_as = ()

    @classmethod
    def output(cls, name: str) -> str:
        """RUN/NAME/: the folder of WAV files a drawing command writes."""
        if name not in DERIVED_SOUND_FOLDERS:
            raise ValueError(f"{name!r} is not one of the run's sound folders")
        return name

    def settings(self) -> Any:
        from .data.audio import AudioSettings

        return AudioSettings.from_media(self.config["data"]["media"])

    def read(self, path: Path, what: str = "input") -> Tensor:
        """Examples of a .wav file or a folder of them, made as the run's training data was."""
        from .data.audio import examples_of

        return examples_of(path, self.settings())

    def write(self, x: Tensor, out: Path, names: list[str] | None = None) -> list[Path]:
        """``x`` as ``out/NAME.wav`` for each of ``names``."""
        from .data.audio import write_clips

        return write_clips(x, self.settings(), out, names or [f"{i:03d}" for i in range(len(x))])

    def picture(
        self, x: Tensor, shape: tuple[int, ...], ncols: int | None, scale: int | None
    ) -> Any:
        return viz.example_grid(x.flip(-2), shape, ncols, scale=scale or SPECTROGRAM_SCALE)

    def pairs(
        self, x: Tensor, y: Tensor, shape: tuple[int, ...], ncols: int, scale: int | None
    ) -> Any:
        return viz.pairs_grid(
            x.flip(-2), y.flip(-2), shape, ncols, scale=scale or SPECTROGRAM_SCALE
        )


MEDIA: dict[str | None, type[Arrays]] = {None: Arrays, "text": Text, "audio": Audio}


def media_kind(config: dict[str, Any]) -> str | None:
    """What a run's examples stand for, from its config's ``data.media`` table: "text",
    "audio", or None for arrays and images."""
    entry = config.get("data") if isinstance(config.get("data"), dict) else {}
    media = entry.get("media") if isinstance(entry.get("media"), dict) else {}
    return media.get("kind")


def media_type(config: dict[str, Any]) -> type[Arrays]:
    """The class of a run's media (its config.json as a dict), chosen without its model."""
    kind = media_kind(config)
    if kind not in MEDIA:
        raise ConfigError(f"the run's data media {kind!r} is unknown; use a newer vaekit")
    return MEDIA[kind]


def media_of(config: dict[str, Any], model: Any) -> Arrays:
    """The media of a run (its config.json as a dict, and its model)."""
    return media_type(config)(config, model)


def write_lines(out: Path, lines: list[str]) -> Path:
    """``lines`` written one a line to ``out``."""
    return write_file(out, "".join(f"{line}\n" for line in lines).encode())


def examples(model: Any, x: Tensor, where: str) -> Tensor:
    """``x`` reshaped to (N, *data_shape) and checked against the model's likelihood."""
    from .estimators import check_data

    shape = model.config.data_shape
    x = channels_last_as_trained(x, shape)  # not reshaped: that would mix up its pixels
    if x.ndim == 1 and x.numel() == math.prod(shape):
        x = x[None]
    if tuple(x.shape[1:]) != shape:
        if x.ndim >= 2 and math.prod(x.shape[1:]) == math.prod(shape):
            x = x.reshape(x.shape[0], *shape)
        else:
            raise DataError(
                f"{where} has examples of shape {tuple(x.shape[1:])} but the run's model "
                f"expects {shape}"
            )
    check_data(model, x, where)
    return x


def eight_bit(x: Tensor) -> bool:
    """Whether every value of ``x`` is k / 255 for an integer k in [0, 255] (8-bit pixels)."""
    steps = x * 255
    return bool(
        x.numel() and x.min() >= 0 and x.max() <= 1 and (steps - steps.round()).abs().max() < 1e-3
    )

"""What a run's examples stand for, and how they go to and from files a person uses.

One class per kind of example, each a :class:`Medium`: :class:`Arrays` (the default: arrays and
images), :class:`Table` (rows of a CSV file, with named columns), :class:`Text` (strings, one a
line) and :class:`Audio` (WAV clips as mel spectrograms). A medium loads a data set as the
run's model was trained on it (``load``), reads examples from a person's file (``read``),
writes examples as files (``write``), draws them (``shape``, ``picture``, ``pairs``: a grid of
images, or None where a picture means nothing), writes a drawing command's output (``show``,
``show_pairs``), gives the lines a command prints (``lines``, ``pair_lines``, ``summary``,
``quality_lines``) and how a report measures its examples (``importance_samples``,
``bin_levels``). Commands call these methods and never ask which kind of example a run holds.
:func:`media_of` chooses the medium by the run's ``data.media`` table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from . import viz
from .data.arrays import channels_last_as_trained
from .errors import ConfigError, DataError
from .files import write_file
from .runs import DERIVED_SOUND_FOLDERS, figure
from .tables import array_bytes, read_array, read_columns, table_bytes

if TYPE_CHECKING:
    from .data import Dataset


#: A picture's enlargement for spectrograms when none is given (they are small).
SPECTROGRAM_SCALE = 3
#: The file a folder of sounds holds their spectrograms in.
SPECTROGRAMS_FILE = "spectrograms.png"


def numbered(prefix: str, n: int) -> list[str]:
    """``n`` file names ``PREFIX-000``, ``PREFIX-001``, ..."""
    return [f"{prefix}-{i:03d}" for i in range(n)]


class Medium:
    """What a run's examples stand for. A subclass says how they are loaded, read, written,
    drawn and printed; ``config`` is the run's config.json as a dict, ``model`` its model."""

    kind: str | None = None
    #: Suffixes of the files :meth:`write` writes.
    suffixes: tuple[str, ...] = (".npy", ".csv")
    #: Whether the examples are strings (printed, one a line).
    strings = False
    #: Whether :meth:`write` writes a folder of files (one per example).
    folder = False
    #: Suffixes of a drawing command's output (a picture).
    shown_as: tuple[str, ...] = (".png",)
    #: Whether :meth:`ends` takes interpolation ends given as inputs (strings, files).
    takes_ends = False
    #: Importance samples K of log p(x) in a report, when none is given.
    importance_samples = 5000
    #: The summary line of each drawing command's output (``str.format`` templates of the
    #: facts :meth:`summary` is given; None: no line).
    said: ClassVar[dict[str, str | None]] = {}

    def __init__(self, config: dict[str, Any], model: Any) -> None:
        self.config = config
        self.model = model

    @property
    def data(self) -> dict[str, Any]:
        """The ``data`` table of the run's config (empty when it has none)."""
        entry = self.config.get("data")
        return entry if isinstance(entry, dict) else {}

    @classmethod
    def output(cls, name: str) -> str:
        """Where a drawing command ``name`` writes inside a run folder (runs.py's names)."""
        return figure(name)

    @classmethod
    def written(cls, name: str) -> str:
        """Where :meth:`write` puts examples named ``name`` inside a run folder."""
        return f"{name}{cls.suffixes[0]}"

    @classmethod
    def picture_file(cls, out: Path, name: str, beside: bool) -> Path | None:
        """Where a picture of examples written to ``out`` goes: beside it (``beside``, a file
        of that name ending in .png), else in the run's figures folder; None where examples
        have no picture."""
        return out.with_suffix(".png") if beside else out.parent / figure(name)

    def load(self, source: str, seed: int) -> Dataset:
        """The data set at ``source`` (split by ``seed``), read as the run's model was trained."""
        raise NotImplementedError

    def read(self, path: Path, what: str = "input") -> Tensor:
        """Examples (N, *data_shape) from a person's file at ``path``."""
        raise NotImplementedError

    def write(self, x: Tensor, out: Path, names: list[str] | None = None) -> list[Path]:
        """Examples ``x`` (N, *data_shape) written as ``out``; the paths written."""
        raise NotImplementedError

    def shape(self, given: str | None) -> tuple[int, ...] | None:
        """How to draw one example: the image shape ``given`` (HxW or CxHxW), else the run's
        recorded shape; None where examples have no picture."""
        from .viz import image_shape, parse_image_shape

        hint = parse_image_shape(given) if given else self.data.get("image_shape")
        return image_shape(self.model.config.data_shape, hint, self.data.get("name"))

    def picture(
        self, x: Tensor, shape: tuple[int, ...] | None, ncols: int | None, scale: int | None
    ) -> Any:
        """A grid of ``x`` (N, *data_shape) as images of ``shape``, ``ncols`` a row (None:
        no picture)."""
        return None

    def pairs(
        self,
        x: Tensor,
        y: Tensor,
        shape: tuple[int, ...] | None,
        ncols: int,
        scale: int | None,
    ) -> Any:
        """A grid of ``x`` above ``y`` (both (N, *data_shape)), ``ncols`` pairs a row (None:
        no picture)."""
        return None

    def show(self, x: Tensor, out: Path, prefix: str, picture: Any = None) -> list[Path]:
        """A drawing command's output for examples ``x`` (their ``picture``, their file or
        files named ``PREFIX-NNN``) at ``out``; the paths written."""
        raise NotImplementedError

    def show_pairs(self, x: Tensor, y: Tensor, out: Path, picture: Any = None) -> list[Path]:
        """A drawing command's output for examples ``x`` and their reconstructions ``y``."""
        raise NotImplementedError

    def lines(self, x: Tensor) -> list[str]:
        """The examples as lines to print (strings only; none for arrays and sounds)."""
        return []

    def pair_lines(self, x: Tensor, y: Tensor) -> list[str]:
        """Each example and its reconstruction as a line to print, tab-separated (strings
        only)."""
        return []

    def ends(self, start: str, end: str, where: str) -> tuple[Tensor, str]:
        """Two interpolation ends given as inputs (of ``where``): examples (2, *data_shape)
        and words naming them. Only a medium that :attr:`takes_ends` takes them."""
        raise ConfigError(
            f"{where} cannot give the ends of an interpolation of {self.kind or 'arrays'}; "
            "give two example indices"
        )

    def summary(self, name: str, **facts: Any) -> list[str]:
        """The summary line of drawing command ``name``'s output (none or one) from ``facts``."""
        template = self.said.get(name)
        return [] if template is None else [template.format(**facts)]

    def bin_levels(self, x: Tensor) -> int | None:
        """Levels of the discrete values of data ``x`` (256 for 8-bit pixels), else None: a
        report then measures bits/dim in bins of those levels."""
        return 256 if eight_bit(x) else None

    def quality_lines(self, report: dict[str, Any]) -> list[str]:
        """The lines of an evaluation ``report`` that depend on the examples (bits, and how
        well they are reconstructed)."""
        basis = " (8-bit bins)" if "bits_per_dim_basis" in report else ""
        scaled = report.get("reconstruction_mse_standardized")  # 1: no better than the means
        return [
            f"  bits/dim             {report['bits_per_dim']:12.4f}{basis}",
            f"  reconstruction MSE   {report['reconstruction_mse']:12.5f} per dim",
        ] + ([] if scaled is None else [f"    standardised       {scaled:12.5f} per dim"])


class Arrays(Medium):
    """Examples that are arrays (N, *data_shape), images among them: loaded as the run's data
    set was, read from and written to .npy/.csv files, drawn as a grid of images."""

    said: ClassVar[dict[str, str | None]] = {
        "samples": "{n} {what}{of} from {run}",
        "reconstructions": "{n} {split} examples of {data} (above) and their reconstructions",
        "interpolation": "{steps} steps between {ends}",
        "decoded": "decoded {n} latents from {latents}: shape {shape}",
    }

    def load(self, source: str, seed: int) -> Dataset:
        """The data set at ``source``: image folders at the run's image size and in its colours
        (grey or RGB), CSV labels from its label column, arrays of a run from before they were
        read channels first as that run saw them."""
        from . import data as datasets

        entry = self.data
        applies = datasets.load_options(source)
        options: dict[str, Any] = {}
        shape = entry.get("image_shape")
        if "image_size" in applies and isinstance(shape, list) and len(shape) == 3:
            options["image_size"] = (int(shape[1]), int(shape[2]))
        if "label_column" in applies and entry.get("label_column") is not None:
            options["label_column"] = entry["label_column"]
        # how many were drawn; the factors file beside it; the split (old runs: 0.1 and 0.1)
        for key in ("examples", "factors", *datasets.SPLIT_OPTIONS):
            if key in applies and entry.get(key) is not None:
                options[key] = entry[key]
        dataset = datasets.load(source, seed=seed, **options)
        if "image_size" in options:  # and in the run's colours: grey images for a colour run
            dataset = datasets.with_channels(dataset, int(shape[0]))
        trained = tuple(self.model.config.data_shape)  # (H, W, C) arrays of an older run
        if tuple(dataset.data_shape) != trained:
            splits = [
                datasets.channels_last_as_trained(x, trained)
                for x in (dataset.train, dataset.valid, dataset.test)
            ]
            if tuple(splits[0].shape[1:]) == trained:
                dataset.train, dataset.valid, dataset.test = splits
                dataset.image_shape = None
        return dataset

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
        self, x: Tensor, shape: tuple[int, ...] | None, ncols: int | None, scale: int | None
    ) -> Any:
        return viz.example_grid(x, shape, ncols, scale=scale)

    def pairs(
        self,
        x: Tensor,
        y: Tensor,
        shape: tuple[int, ...] | None,
        ncols: int,
        scale: int | None,
    ) -> Any:
        return viz.pairs_grid(x, y, shape, ncols, scale=scale)

    def show(self, x: Tensor, out: Path, prefix: str, picture: Any = None) -> list[Path]:
        """The picture of ``x`` as the image file ``out``."""
        return [viz.save(picture, out)]

    def show_pairs(self, x: Tensor, y: Tensor, out: Path, picture: Any = None) -> list[Path]:
        """The picture of ``x`` above ``y`` as the image file ``out``."""
        return [viz.save(picture, out)]


class Table(Arrays):
    """Examples that are rows of a table with named columns (a CSV file a run was trained on):
    written as CSV with a header of the columns' names and each row's ``id`` (or as the bare
    .npy array), and read back by column name, so the training file itself, its label column
    and all, is an input. A picture (``--output x.png``) draws them as :class:`Arrays` do."""

    kind = "table"
    said: ClassVar[dict[str, str | None]] = {
        **Arrays.said,
        "reconstructions": "{n} {split} examples of {data} and their reconstructions",
    }
    suffixes = (".csv", ".npy")
    shown_as = (".csv", ".npy", ".png")

    @property
    def columns(self) -> list[str]:
        """The names of the run's columns (``x0``, ``x1``, ... where it recorded none)."""
        width = math.prod(self.model.config.data_shape)
        names = (self.data.get("media") or {}).get("columns")
        if (
            isinstance(names, list)
            and len(names) == width
            and all(isinstance(n, str) for n in names)
        ):
            return names
        return [f"x{i}" for i in range(width)]

    @classmethod
    def output(cls, name: str) -> str:
        return f"{name}.csv"

    written = output

    def shape(self, given: str | None) -> tuple[int, ...] | None:
        """Rows are drawn only as a grid of the image shape ``given`` (--image-shape)."""
        return super().shape(given) if given else None

    def picture(
        self, x: Tensor, shape: tuple[int, ...] | None, ncols: int | None, scale: int | None
    ) -> Any:
        return None if shape is None else super().picture(x, shape, ncols, scale)

    def pairs(
        self,
        x: Tensor,
        y: Tensor,
        shape: tuple[int, ...] | None,
        ncols: int,
        scale: int | None,
    ) -> Any:
        return None if shape is None else super().pairs(x, y, shape, ncols, scale)

    @staticmethod
    def _picture(picture: Any, out: Path) -> Any:
        if picture is None:
            raise ConfigError(
                f"{str(out)!r} would be a picture of table rows: give their image shape "
                "(--image-shape HxW), or write a .csv or .npy file"
            )
        return picture

    def read(self, path: Path, what: str = "input") -> Tensor:
        """Rows (N, columns) of a .csv file, its columns taken by the run's names where its
        header has them all (else every column but the run's label column and vaekit's
        id/label/kind), or of a .npy file."""
        if path.suffix.lower() != ".csv" or not path.is_file():
            return super().read(path, what)
        a = read_columns(path, what, self.columns, self.data.get("label_column"))
        return examples(self.model, torch.from_numpy(a), repr(str(path)))

    def write(self, x: Tensor, out: Path, names: list[str] | None = None) -> list[Path]:
        """``x`` (N, columns) as ``out``: CSV with an ``id`` and the run's column names, or .npy."""
        a = x.detach().cpu().numpy().astype(np.float32)
        data = table_bytes(a, out.suffix.lower(), self.columns, ids=range(len(a)))
        return [write_file(out, data)]

    def show(self, x: Tensor, out: Path, prefix: str, picture: Any = None) -> list[Path]:
        """``x`` as the table ``out`` (.csv, .npy), or its picture (.png)."""
        if out.suffix.lower() == ".png":
            return super().show(x, out, prefix, self._picture(picture, out))
        return self.write(x, out)

    def show_pairs(self, x: Tensor, y: Tensor, out: Path, picture: Any = None) -> list[Path]:
        """Examples ``x`` and their reconstructions ``y`` (N, columns) as ``out``: CSV rows in
        pairs (``id``, ``kind`` input / reconstruction, the values), .npy an array (2, N,
        columns) of inputs and reconstructions, or .png their picture."""
        if out.suffix.lower() == ".png":
            return super().show_pairs(x, y, out, self._picture(picture, out))
        a = torch.stack([x, y]).detach().cpu().numpy().astype(np.float32)  # (2, N, columns)
        if out.suffix.lower() == ".npy":
            return [write_file(out, table_bytes(a, ".npy", self.columns))]
        n = a.shape[1]
        rows = a.transpose(1, 0, 2).reshape(2 * n, -1)  # example 0, its reconstruction, ...
        ids = [i for i in range(n) for _ in range(2)]
        kinds = ["input", "reconstruction"] * n
        data = table_bytes(rows, ".csv", self.columns, ids=ids, kinds=kinds)
        return [write_file(out, data)]


class Text(Medium):
    """Strings of tokens: loaded and read from .txt files (one a line) in the model's
    vocabulary, written and printed as lines, never drawn."""

    kind = "text"
    suffixes = (".txt",)
    strings = True
    shown_as = (".txt",)
    takes_ends = True
    importance_samples = 100
    said: ClassVar[dict[str, str | None]] = {
        "samples": None,
        "reconstructions": "{n} {split} examples of {data} and their reconstructions",
        "interpolation": "{steps} steps between {ends}",
        "decoded": "decoded {n} latents from {latents} (greedy strings)",
    }

    @classmethod
    def output(cls, name: str) -> str:
        """RUN/NAME.txt: the strings a drawing command prints."""
        return f"{name}.txt"

    @classmethod
    def picture_file(cls, out: Path, name: str, beside: bool) -> Path | None:
        return None

    def load(self, source: str, seed: int) -> Dataset:
        """The lines of the text file ``source`` in the model's vocabulary and length."""
        from .data.text import load_text

        model = self.model
        return load_text(source, seed, tokenizer=model.tokenizer, length=model.config.data_dim)

    def read(self, path: Path, what: str = "input") -> Tensor:
        """Token ids (N, length) of the lines of a .txt file, in the model's vocabulary."""
        from .data.text import read_lines

        if path.suffix.lower() != ".txt":
            raise DataError(f"{what} file {str(path)!r} of a text run must be a .txt file")
        return self.model.ids(read_lines(path, at_least=1), repr(str(path)))

    def write(self, x: Tensor, out: Path, names: list[str] | None = None) -> list[Path]:
        """The strings of ``x`` (N, length), one a line, as ``out``."""
        return [write_lines(out, self.lines(x))]

    def shape(self, given: str | None) -> tuple[int, ...] | None:
        return None

    def show(self, x: Tensor, out: Path, prefix: str, picture: Any = None) -> list[Path]:
        """The strings of ``x``, one a line, as ``out``."""
        return self.write(x, out)

    def show_pairs(self, x: Tensor, y: Tensor, out: Path, picture: Any = None) -> list[Path]:
        """Each string of ``x`` and its reconstruction in ``y``, tab-separated, as ``out``."""
        return [write_lines(out, self.pair_lines(x, y))]

    def lines(self, x: Tensor) -> list[str]:
        return self.model.texts(x)

    def pair_lines(self, x: Tensor, y: Tensor) -> list[str]:
        pairs = zip(self.model.texts(x), self.model.texts(y), strict=True)
        return [f"{a}\t{b}" for a, b in pairs]

    def ends(self, start: str, end: str, where: str) -> tuple[Tensor, str]:
        """The strings ``start`` and ``end`` as token ids (2, length)."""
        return self.model.ids([start, end], where), f"{start!r} and {end!r}"

    def bin_levels(self, x: Tensor) -> int | None:
        return None

    def quality_lines(self, report: dict[str, Any]) -> list[str]:
        """Bits per token (character or word) and the share of strings and tokens that
        reconstruct exactly."""
        unit = "word" if self.model.config.level == "word" else "char"
        tokens = "words" if unit == "word" else "characters"
        return [
            f"  bits/{unit:<15s} {report[f'bits_per_{unit}']:12.4f}  "
            f"({report['tokens_per_string']:.2f} per string, end token included)",
            f"  reconstruction       {100 * report['exact_reconstruction']:11.1f}% of strings, "
            f"{100 * report['token_accuracy']:.1f}% of {tokens}",
        ]


class Audio(Arrays):
    """Clips as mel spectrograms (N, 1, n_mels, frames): loaded and read from WAV files with the
    run's spectrogram settings, written as WAV files (Griffin-Lim) into a folder, drawn as
    spectrograms with low frequencies at the bottom."""

    kind = "audio"
    suffixes = (".wav",)
    folder = True
    shown_as = ()
    takes_ends = True
    said: ClassVar[dict[str, str | None]] = {
        "samples": "{n} samples from {run} as sound (Griffin-Lim) and spectrograms",
        "reconstructions": "{n} {split} examples of {data} and their reconstructions as sound "
        "(both through Griffin-Lim) and spectrograms",
        "interpolation": "{steps} steps between {ends}, as sound (Griffin-Lim) and spectrograms",
        "decoded": "decoded {n} latents from {latents} as sound (Griffin-Lim)",
    }

    @classmethod
    def output(cls, name: str) -> str:
        """RUN/NAME/: the folder of WAV files a drawing command writes."""
        if name not in DERIVED_SOUND_FOLDERS:
            raise ValueError(f"{name!r} is not one of the run's sound folders")
        return name

    @classmethod
    def written(cls, name: str) -> str:
        return cls.output(name)

    @classmethod
    def picture_file(cls, out: Path, name: str, beside: bool) -> Path | None:
        """The folder's spectrograms.png."""
        return out / SPECTROGRAMS_FILE

    def settings(self) -> Any:
        """The run's :class:`vaekit.data.audio.AudioSettings` (clips, spectrograms, scaling)."""
        from .data.audio import AudioSettings

        return AudioSettings.from_media(self.config["data"]["media"])

    def load(self, source: str, seed: int) -> Dataset:
        """The WAV files at ``source`` made into clips as the run's training data was."""
        from .data.audio import load_audio

        return load_audio(source, seed, settings=self.settings())

    def read(self, path: Path, what: str = "input") -> Tensor:
        """Examples of a .wav file or a folder of them, made as the run's training data was."""
        from .data.audio import examples_of

        return examples_of(path, self.settings())

    def write(self, x: Tensor, out: Path, names: list[str] | None = None) -> list[Path]:
        """``x`` as ``out/NAME.wav`` for each of ``names`` (default 000, 001, ...)."""
        from .data.audio import write_clips

        return write_clips(x, self.settings(), out, names or [f"{i:03d}" for i in range(len(x))])

    def picture(
        self, x: Tensor, shape: tuple[int, ...] | None, ncols: int | None, scale: int | None
    ) -> Any:
        return viz.example_grid(x.flip(-2), shape, ncols, scale=scale or SPECTROGRAM_SCALE)

    def pairs(
        self,
        x: Tensor,
        y: Tensor,
        shape: tuple[int, ...] | None,
        ncols: int,
        scale: int | None,
    ) -> Any:
        return viz.pairs_grid(
            x.flip(-2), y.flip(-2), shape, ncols, scale=scale or SPECTROGRAM_SCALE
        )

    def show(self, x: Tensor, out: Path, prefix: str, picture: Any = None) -> list[Path]:
        """``x`` as ``out/PREFIX-NNN.wav``, and ``picture`` as ``out/spectrograms.png``."""
        return self._sounds(x, out, numbered(prefix, len(x)), picture)

    def show_pairs(self, x: Tensor, y: Tensor, out: Path, picture: Any = None) -> list[Path]:
        """``x`` as ``out/NNN-input.wav``, ``y`` as ``out/NNN-reconstruction.wav``, and
        ``picture`` as ``out/spectrograms.png``."""
        names = [f"{i:03d}-{what}" for what in ("input", "reconstruction") for i in range(len(x))]
        return self._sounds(torch.cat([x, y]), out, names, picture)

    def _sounds(self, x: Tensor, out: Path, names: list[str], picture: Any) -> list[Path]:
        paths = self.write(x, out, names)
        if picture is not None:
            paths.append(viz.save(picture, out / SPECTROGRAMS_FILE))
        return paths

    def ends(self, start: str, end: str, where: str) -> tuple[Tensor, str]:
        """The first clip of each of the WAV files ``start`` and ``end``."""
        x = torch.cat([self.read(Path(p))[:1] for p in (start, end)])
        return x, f"{start} and {end} (first clip of each)"


MEDIA: dict[str | None, type[Medium]] = {
    None: Arrays,
    "table": Table,
    "text": Text,
    "audio": Audio,
}


def media_kind(config: dict[str, Any]) -> str | None:
    """What a run's examples stand for, from its config's ``data.media`` table: "text",
    "audio", or None for arrays and images."""
    entry = config.get("data") if isinstance(config.get("data"), dict) else {}
    media = entry.get("media") if isinstance(entry.get("media"), dict) else {}
    return media.get("kind")


def media_type(config: dict[str, Any]) -> type[Medium]:
    """The class of a run's media (its config.json as a dict), chosen without its model."""
    kind = media_kind(config)
    if kind not in MEDIA:
        raise ConfigError(f"the run's data media {kind!r} is unknown; use a newer vaekit")
    return MEDIA[kind]


def media_of(config: dict[str, Any], model: Any) -> Medium:
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

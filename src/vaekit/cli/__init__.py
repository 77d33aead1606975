"""The ``vaekit`` command. Thin: it parses arguments, calls the library and prints.

``vaekit train`` makes a run folder; every other command takes that folder as its first argument
and writes beside it (pictures in ``RUN/figures/``, data files in ``RUN/``) or where ``--output``
says. Outputs are checked before any work and written atomically, so a failed command leaves the
run's files as they were. Any :class:`~vaekit.errors.VaekitError` or usage mistake becomes one
line on stderr and exit status 2.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
import torch
from torch import Tensor

from .. import __version__
from ..config import from_dict, parse_override, read_toml
from ..errors import CheckpointError, ConfigError, DataError, VaekitError

if TYPE_CHECKING:
    from ..data import Dataset
    from ..models import VAE

SECTIONS = ("model", "train")
#: Files of a run folder that no command other than ``train`` may replace.
RUN_FILES = ("config.json", "model.safetensors", "metrics.jsonl")
SPLITS = ("train", "valid", "test")
#: Seed of the one fixed binarisation of evaluation data for runs trained with binarize="dynamic".
EVAL_BINARIZE_SEED = 0
#: train's options of how data is read: data.load's keyword -> (flag, the data it is for).
DATA_OPTIONS = {
    "image_size": ("--image-size", "folders of images"),
    "label_column": ("--label-column", "CSV and TSV files"),
    "audio": ("--audio", "WAV files and folders of them"),
}
#: Examples reconstruct shows when -n is not given (fewer when the split has fewer).
RECONSTRUCT_COUNT = 20
#: Draws of a learned prior whose empirical quantiles place the manifold's grid.
MANIFOLD_PRIOR_DRAWS = 100_000


def resolve_config(
    config_file: str | None, overrides: tuple[str, ...], dataset: Any, cli: dict[str, Any]
) -> tuple[Any, Any, str]:
    """Merge data-set defaults < config file < command-line flags < ``--set`` overrides.

    Returns (VAEConfig, TrainConfig, data name). ``--set`` keys are ``section.key`` or a bare key
    that belongs to exactly one section.
    """
    from ..models import model_config, model_kinds
    from ..train import TrainConfig

    def settings(section: str) -> set[str]:
        if section == "train":
            return set(TrainConfig.__dataclass_fields__)
        kinds = model_kinds()
        cls = kinds.get(merged["model"].get("kind", "vae"), kinds["vae"])
        return {"kind", *cls.config_class.__dataclass_fields__}  # type: ignore[attr-defined]

    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    given: set[str] = set()  # model settings from the config file or --set, not the data set
    for source in (dataset.defaults or {}, read_toml(config_file) if config_file else {}):
        for key, value in source.items():
            if key == "data":
                continue
            if key not in SECTIONS:
                raise ConfigError(f"unknown config section {key!r}; use [model] and [train]")
            if not isinstance(value, dict):
                raise ConfigError(f"config section {key!r} must be a table")
            merged[key].update(value)
            if key == "model" and source is not dataset.defaults:
                given.update(value)
    merged["train"].update({k: v for k, v in cli.items() if v is not None})
    parsed = [(text, *parse_override(text)) for text in overrides]
    for _, key, value in parsed:  # the model kind first: it decides which settings exist
        if key in ("kind", "model.kind"):
            merged["model"]["kind"] = value
    for text, key, value in parsed:
        section, _, name = key.rpartition(".")
        if not section:
            owners = [s for s in SECTIONS if name in settings(s)]
            if len(owners) > 1:
                raise ConfigError(
                    f"setting {name!r} in --set {text!r} is in {' and '.join(owners)}: write "
                    f"{owners[0]}.{name}=... or {owners[1]}.{name}=..."
                )
            if not owners:
                kind = merged["model"].get("kind", "vae")
                raise ConfigError(
                    f"unknown setting {name!r} in --set {text!r}; the {kind} model has "
                    f"{', '.join(sorted(settings('model') - {'kind'}))}; training has "
                    f"{', '.join(sorted(settings('train')))}"
                )
            section = owners[0]
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r} in --set {text!r}")
        merged[section][name] = value
        if section == "model":
            given.add(name)
    # The data set's model defaults suit its default kind; another kind keeps only those it has.
    known = settings("model")
    model_cfg = {k: v for k, v in merged["model"].items() if k in known or k in given}
    model_cfg.setdefault("data_shape", list(dataset.data_shape))
    model_cfg.setdefault("likelihood", "bernoulli" if dataset.binary else "gaussian")
    image = getattr(dataset, "image_shape", None)
    if model_cfg.get("network", "mlp") != "mlp" and image and len(dataset.data_shape) != 3:
        model_cfg.setdefault("image_shape", list(image))  # flat images: the conv nets' view
    train_cfg = dict(merged["train"])
    if dataset.binary and model_cfg["likelihood"] == "bernoulli":
        train_cfg.setdefault("binarize", "dynamic")
    return (
        model_config(model_cfg),
        from_dict(TrainConfig, train_cfg, section="train"),
        dataset.name,
    )


# -- helpers: run folders, data, outputs --------------------------------------------------------


def _progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _settings(config: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        if isinstance(v, list) and len(v) > 12:  # a text model's vocabulary
            return f"[{len(v)} items]"
        return json.dumps(v) if isinstance(v, str) else str(v)

    return " ".join(f"{k}={show(v)}" for k, v in config.items())


def _wrapped(label: str, text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent=f"{label:<7}", subsequent_indent=" " * 7)


def _read_run(run: Path) -> dict[str, Any]:
    from ..models import read_config

    return read_config(run)


def _load_model(run: Path) -> VAE:
    from ..models import load

    return load(run)


def _output(
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
        if given is not None and _same_file(path, Path(given)):
            raise ConfigError(
                f"output {str(path)!r} is the command's input file {str(given)!r}; writing it "
                "would replace what is read: choose another output"
            )
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"output {str(path)!r} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"output {str(path)!r} is a folder; give a file name")
    if path.name in RUN_FILES and (path.parent / "config.json").exists():
        raise ConfigError(f"output {str(path)!r} would replace a run's own file; choose another")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {str(path)!r}: {str(folder)!r} is not a writable folder")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether the paths ``a`` and ``b`` name one file (through links too)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def _write(path: Path, data: bytes) -> Path:
    from ..files import write_file

    return write_file(path, data)


def _array_bytes(a: np.ndarray, suffix: str, prefix: str) -> bytes:
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


def _read_array(path: Path, what: str, *, data: bool = False) -> np.ndarray:
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
    from ..data import NUMPY_READ_ERRORS

    try:
        if suffix == ".npy":
            a = np.load(path, allow_pickle=False)
            if not isinstance(a, np.ndarray):
                raise ValueError("not a single array")
            if data:
                from ..data import _to_float, channels_first

                a = channels_first(a)  # as --data reads it
                if a.dtype == np.uint8:
                    a = _to_float(a, f"{what} file {str(path)!r}")[0]
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


def _read_latents(path: Path, latent_dim: int) -> Tensor:
    z = _read_array(path, "latent")
    if z.ndim == 1 and z.shape[0] == latent_dim:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise DataError(
            f"latents in {str(path)!r} have shape {z.shape} but the run's latent_dim is "
            f"{latent_dim}; expected (N, {latent_dim})"
        )
    return torch.from_numpy(z)


def _check_examples(model: VAE, x: Tensor, where: str) -> Tensor:
    """``x`` reshaped to (N, *data_shape) and checked against the model's likelihood."""
    from ..data import channels_last_as_trained

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
    if x.shape[0] == 0:
        raise DataError(f"{where} is empty")
    if not torch.isfinite(x).all():
        raise DataError(f"{where} holds NaN or infinite values")
    if model.likelihood.support == "unit" and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"{where} has values in [{float(x.min()):g}, {float(x.max()):g}] but the run's "
            f"{model.config.likelihood} likelihood needs [0, 1]"
        )
    levels = getattr(model.likelihood, "levels", None)
    if levels is not None:
        steps = x * (levels - 1)
        if ((steps - steps.round()).abs() > 1e-3).any():
            raise DataError(
                f"{where} has values off the grid k/{levels - 1} that the run's "
                f"{model.config.likelihood} likelihood needs (8-bit data scaled by 1/{levels - 1})"
            )
    return x


def _eight_bit(x: Tensor) -> bool:
    """Whether every value of ``x`` is k / 255 for an integer k in [0, 255] (8-bit pixels)."""
    steps = x * 255
    return bool(
        x.numel() and x.min() >= 0 and x.max() <= 1 and (steps - steps.round()).abs().max() < 1e-3
    )


def _check_data_option(data: str | None) -> None:
    """Refuse an empty --data (it would otherwise mean the default data set)."""
    if data is not None and not data.strip():
        raise ConfigError(f"--data is empty ({data!r}); give a data set name or a path")


def _data_source(config: dict[str, Any], data: str | None) -> tuple[str, int]:
    _check_data_option(data)
    entry = config.get("data") if isinstance(config.get("data"), dict) else {}
    source = data or entry.get("source") or entry.get("name")
    if not source:
        raise DataError("the run does not record its data set; give one with --data NAME|PATH")
    return str(source), int(entry.get("split_seed", 0)) if not data else 0


def _media(config: dict[str, Any]) -> str | None:
    """What the run's examples stand for: "text", "audio", or None for arrays and images."""
    entry = config.get("data") if isinstance(config.get("data"), dict) else {}
    media = entry.get("media") if isinstance(entry.get("media"), dict) else {}
    return media.get("kind")


def _load_options(
    image_size: str | None, label_column: str | None, audio: tuple[str, ...]
) -> dict[str, Any]:
    """Keyword options of ``data.load`` from train's --image-size, --label-column and --audio."""
    options: dict[str, Any] = {}
    if image_size is not None:
        parts = image_size.lower().split("x")
        if not (
            1 <= len(parts) <= 2 and all(re.fullmatch(r"\s*0*[1-9][0-9]*\s*", p) for p in parts)
        ):
            raise ConfigError(
                f"--image-size expects a positive size such as 64 or 48x64 (height x width), "
                f"got {image_size!r}"
            )
        h, w = int(parts[0]), int(parts[-1])
        options["image_size"] = (h, w)
    if label_column is not None:
        column = label_column.strip()
        is_index = re.fullmatch(r"-?[0-9]+", column) is not None
        options["label_column"] = int(column) if is_index else column
    if audio:
        table = {}
        for text in audio:
            if "=" not in text or not text.partition("=")[0].strip():
                raise ConfigError(f"--audio expects key=value (e.g. n_mels=32), got {text!r}")
            key, value = parse_override(text)
            table[key] = value
        options["audio"] = table
    return options


def _load_data(config: dict[str, Any], model: VAE, source: str, seed: int) -> Dataset:
    """The data set at ``source``, read as the run's model was trained (text in its vocabulary,
    audio with its spectrogram settings, image folders at its image size and in its colours (grey
    or RGB), CSV labels from its label column)."""
    from .. import data as datasets

    if _media(config) == "text":
        from ..data.text import load_text

        return load_text(source, seed, tokenizer=model.tokenizer, length=model.config.data_dim)
    if _media(config) == "audio":
        from ..data.audio import AudioSettings, load_audio

        return load_audio(source, seed, settings=AudioSettings.from_media(config["data"]["media"]))
    entry = config.get("data") if isinstance(config.get("data"), dict) else {}
    applies = datasets.load_options(source)
    options: dict[str, Any] = {}
    shape = entry.get("image_shape")
    if "image_size" in applies and isinstance(shape, list) and len(shape) == 3:
        options["image_size"] = (int(shape[1]), int(shape[2]))
    if "label_column" in applies and entry.get("label_column") is not None:
        options["label_column"] = entry["label_column"]
    dataset = datasets.load(source, seed=seed, **options)
    if "image_size" in options:  # and in the run's colours: grey images for a colour run
        dataset = datasets.with_channels(dataset, int(shape[0]))
    trained = tuple(model.config.data_shape)  # (H, W, C) arrays of a run from before they were
    if tuple(dataset.data_shape) != trained:  # read channels first: as the run saw them
        splits = [
            datasets.channels_last_as_trained(x, trained)
            for x in (dataset.train, dataset.valid, dataset.test)
        ]
        if tuple(splits[0].shape[1:]) == trained:
            dataset.train, dataset.valid, dataset.test = splits
            dataset.image_shape = None
    return dataset


def _load_split(
    config: dict[str, Any], model: VAE, data: str | None, split: str
) -> tuple[Tensor, Tensor | None, Dataset]:
    """The ``split`` of the run's data set (or of ``--data``): examples and labels (or None)."""
    source, seed = _data_source(config, data)
    try:
        dataset = _load_data(config, model, source, seed)
    except DataError as err:
        if data:
            raise
        raise DataError(f"{err} (the run's data set; give another with --data)") from None
    x = getattr(dataset, split)
    labels = getattr(dataset, f"{split}_labels", None)
    x = _check_examples(model, x, f"the {split} split of {dataset.name}")
    return x, labels, dataset


def _image_shape(config: dict[str, Any], model: VAE, given: str | None) -> tuple[int, ...]:
    from ..viz import image_shape, parse_image_shape

    entry = config.get("data") if isinstance(config.get("data"), dict) else {}
    if _media(config) == "text":
        raise ConfigError("the run's data is text: it has no pictures; try sample or interpolate")
    hint = parse_image_shape(given) if given else entry.get("image_shape")
    return image_shape(model.config.data_shape, hint, entry.get("name"))


def _need_continuous(model: VAE, command: str) -> None:
    """Refuse ``command`` for a model whose latent is discrete (it walks a continuous z)."""
    if model.capabilities.discrete_latent:
        raise ConfigError(
            f"{command} walks a continuous latent space, but this run's model "
            f"({model.kind}) has categorical latents; use sample, reconstruct or encode"
        )


def _condition_dim(model: VAE) -> int:
    """Width of the run's condition (0 for an unconditional model)."""
    return int(model.config.condition_dim) if model.capabilities.conditional else 0


def _split_conditions(model: VAE, labels: Tensor | None, where: str) -> Tensor | None:
    """One-hot conditions from the labels of ``where`` for a conditional run, else None."""
    from ..models import as_condition

    dim = _condition_dim(model)
    if not dim:
        return None
    if labels is None:
        raise DataError(
            f"{where} has no labels, but the run is conditional (condition_dim = {dim}); give a "
            "labelled data set"
        )
    if labels.numel() and int(labels.min()) < 0:
        raise DataError(
            f"{where} has label {int(labels.min())}; a conditional run needs classes numbered "
            f"0..{dim - 1}: renumber them (text labels in a CSV file are numbered for you)"
        )
    if labels.numel() and int(labels.max()) >= dim:
        raise DataError(
            f"{where} has label {int(labels.max())} but condition_dim = {dim} takes labels "
            f"0..{dim - 1}: number the classes from 0 and set condition_dim to their number"
        )
    return as_condition(labels, dim)


def _label_condition(model: VAE, label: int | None, what: str) -> dict[str, int]:
    """``{"condition": label}`` for a conditional run (which needs --label), else {}."""
    dim = _condition_dim(model)
    if not dim:
        if label is not None:
            raise ConfigError(
                "--label needs a conditional run (condition_dim > 0); this run has none"
            )
        return {}
    if label is None:
        raise ConfigError(
            f"the run is conditional (condition_dim = {dim}): give --label 0..{dim - 1} to {what}"
        )
    if label >= dim:
        raise ConfigError(f"--label {label} is outside 0..{dim - 1} (condition_dim = {dim})")
    return {"condition": label}


def _check_count(name: str, n: int, available: int, split: str) -> None:
    if n > available:
        raise ConfigError(f"{name} {n} is more than the {available} examples of the {split} split")


def _count(n: int | None, default: int, available: int, split: str) -> int:
    """The -n of a command that takes the first examples of a split: ``n`` when given (and no
    more than the split has), else ``default`` capped at the split's size."""
    if n is None:
        return min(default, available)
    _check_count("-n", n, available, split)
    return n


def _check_index(index: int, n: int, split: str, name: str) -> None:
    if index >= n:
        raise ConfigError(
            f"index {index} is out of range: the {split} split of {name} has {n} examples "
            f"(0..{n - 1})"
        )


def _wrote(*paths: Path) -> None:
    for path in paths:
        click.echo(f"wrote {path}")


def _echo_lines(out: Path, lines: list[str]) -> None:
    """Print ``lines`` and write them, one a line, to ``out``."""
    for line in lines:
        click.echo(line)
    _write(out, "".join(f"{line}\n" for line in lines).encode())
    _wrote(out)


def _read_texts(model: Any, path: Path, what: str) -> Tensor:
    """Token ids of the lines of a .txt file, in the text model's vocabulary."""
    from ..data.text import read_lines

    if path.suffix.lower() != ".txt":
        raise DataError(f"{what} file {str(path)!r} of a text run must be a .txt file")
    return model.ids(read_lines(path, at_least=1), repr(str(path)))


def _folder(output: Path | None, default: Path) -> Path:
    """The folder to write sound files into: ``output`` or ``default``, checked first."""
    path = output if output is not None else default
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output {str(path)!r} is a file; audio runs write a folder of WAV files")
    if path.suffix.lower() in (".wav", ".png", ".npy", ".csv", ".txt"):
        raise ConfigError(f"output {str(path)!r} names a file; give a folder for the WAV files")
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {str(path)!r}: {str(folder)!r} is not a writable folder")
    return path


def _write_sound(
    config: dict[str, Any], x: Tensor, folder: Path, names: list[str], picture: Any = None
) -> list[Path]:
    """Examples (N, 1, n_mels, frames) as ``folder/NAME.wav`` (Griffin-Lim), and ``picture``
    (their spectrograms, drawn with low frequencies at the bottom) as
    ``folder/spectrograms.png``."""
    from .. import viz
    from ..data.audio import AudioSettings, write_clips

    settings = AudioSettings.from_media(config["data"]["media"])
    paths = write_clips(x, settings, folder, names)
    if picture is not None:
        paths.append(viz.save(picture, folder / "spectrograms.png"))
    return paths


def _read_sound(config: dict[str, Any], path: Path) -> Tensor:
    """Examples of a .wav file or folder, made as the audio run's training data was."""
    from ..data.audio import AudioSettings, examples_of

    return examples_of(path, AudioSettings.from_media(config["data"]["media"]))


def _figure_path(run: Path, name: str) -> Path:
    return run / "figures" / name


_run_argument = click.argument("run", type=click.Path(path_type=Path))


def _split_ends(
    config: dict[str, Any],
    model: Any,
    data: str | None,
    split: str,
    indices: tuple[int, ...],
) -> tuple[Tensor, str]:
    """The two examples an interpolation runs between (examples ``indices``, two of them, or
    by default 0 and 1, of ``split``) as a (2, ...) tensor, and words naming them."""
    x, _, dataset = _load_split(config, model, data, split)
    if not indices:
        _two_examples(x.shape[0], split, dataset.name, "--from and --to, or --split train")
    i, j = indices or (0, 1)
    _check_index(max(i, j), x.shape[0], split, dataset.name)
    return x[[i, j]], f"{split} examples {i} and {j} of {dataset.name}"


def _two_examples(n: int, split: str, name: str, instead: str) -> None:
    """Refuse a default interpolation on a split of fewer than two examples."""
    if n < 2:
        raise ConfigError(
            f"the {split} split of {name} has {n} example(s) and an interpolation needs two: "
            f"give {instead}"
        )


#: Seconds in one unit of a duration: "90s", "10m", "1.5h".
DURATION_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def _duration(text: str, flag: str) -> float:
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


def _count_option(default: int | None, text: str, lo: int = 1, hi: int | None = None) -> Any:
    """The ``-n`` option of a drawing command: a count in [lo, hi], described by ``text``."""
    return click.option(
        "-n",
        "n",
        type=click.IntRange(lo, hi),
        default=default,
        show_default=default is not None,
        help=text,
    )


_output_option = click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=None, help="File to write."
)
_data_option = click.option(
    "--data", default=None, metavar="NAME|PATH", help="Data set (default: the run's own)."
)
_split_option = click.option(
    "--split", type=click.Choice(SPLITS), default="test", show_default=True, help="Which split."
)
_image_option = click.option(
    "--image-shape", default=None, metavar="HxW", help="Show flat examples as HxW (or CxHxW)."
)
_scale_option = click.option(
    "--scale", type=click.IntRange(1, 16), default=None, help="Enlarge pictures this many times."
)
#: The seeds torch.manual_seed takes: 0 .. 2**63 - 1.
_seed_range = click.IntRange(0, 2**63 - 1)
_seed_option = click.option(
    "--seed", type=_seed_range, default=0, show_default=True, help="Random seed."
)
_label_option = click.option(
    "--label",
    type=click.IntRange(min=0),
    default=None,
    help="Class to condition on (conditional runs).",
)


# -- commands ----------------------------------------------------------------------------------


@click.group(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "terminal_width": 100,
    }
)
@click.version_option(__version__, prog_name="vaekit")
def cli() -> None:
    """vaekit: train, evaluate and draw variational autoencoders.

    \b
    Example:
      vaekit train --data digits --out runs/digits
      vaekit evaluate runs/digits
      vaekit sample runs/digits -n 64
    """


@cli.command()
@click.option("--data", "data", default=None, help="Data set name or file [default: digits].")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Run folder.")
@click.option(
    "--resume",
    "resume",
    type=click.Path(path_type=Path),
    default=None,
    metavar="RUN",
    help="Continue the run in RUN from its last checkpoint, with its own settings.",
)
@click.option("--epochs", type=int, default=None, help="Passes over the training set.")
@click.option(
    "--time-limit",
    "time_limit",
    default=None,
    metavar="DURATION",
    help="End the run before an epoch that would take training past DURATION (600, 90s, 10m, "
    "1.5h).",
)
@click.option(
    "--seed", type=_seed_range, default=None, help="Seed of initialisation, order and noise."
)
@click.option("--config", "config_file", default=None, help="TOML file with [model] and [train].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option("-k", "k", type=int, default=1000, show_default=True, help="Samples for log p(x).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a run already in --out (put back if the new one fails or is stopped in its "
    "first epoch).",
)
@click.option(
    "--image-size",
    default=None,
    metavar="SIZE",
    help="Image folders: resize every image to SIZE (e.g. 64, or 48x64 for height x width).",
)
@click.option(
    "--label-column",
    default=None,
    metavar="COL",
    help="CSV/TSV files: the column of labels (index, negative from the end, or header name).",
)
@click.option(
    "--audio",
    "audio",
    multiple=True,
    metavar="KEY=VALUE",
    help="WAV data: spectrogram setting (sample_rate, n_fft, hop, n_mels, frames, trim_db, "
    "griffin_lim_iters).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train(
    data: str | None,
    out: Path | None,
    resume: Path | None,
    epochs: int | None,
    time_limit: str | None,
    seed: int | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    k: int,
    overwrite: bool,
    image_size: str | None,
    label_column: str | None,
    audio: tuple[str, ...],
    quiet: bool,
) -> None:
    """Train a VAE and save it in a run folder.

    Settings come from the data set's defaults, then --config, then --epochs, --time-limit and
    --seed, then --set. The resolved config is printed and saved in RUN/config.json. The training
    state is saved in RUN/checkpoint.safetensors once a minute (or every N steps with --set
    checkpoint_every=N; on a GPU's fast path at the first epoch end due) and at the end; Ctrl-C
    saves it and stops. --resume RUN continues from it with the run's own settings (--epochs may
    extend a finished run, --time-limit one that its time limit ended); on CPU the result is bit for
    bit that of a run never stopped. --time-limit ends the run, as finished, before an epoch that
    would take its training past the limit.

    \b
    Example:
      vaekit train --data digits --out runs/digits --epochs 50 --set latent_dim=2
      vaekit train --config configs/aevb-mnist.toml --out runs/mnist --epochs 100
      vaekit train --data photos/ --image-size 64 --out runs/photos
      vaekit train --resume runs/mnist --epochs 200
      vaekit train --config configs/iwae-iwae2-k50.toml --out runs/best --time-limit 10m
    """
    from .. import data as datasets
    from ..models import build_model
    from ..runs import STATE_FILE

    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    _check_data_option(data)
    load_options = _load_options(image_size, label_column, audio)
    seconds = None if time_limit is None else _duration(time_limit, "--time-limit")
    if resume is not None:
        if load_options:
            flag = DATA_OPTIONS[next(iter(load_options))][0]
            raise ConfigError(f"--resume reads the run's data as it was read; leave out {flag}")
        _train_resume(
            resume, out, data, epochs, seconds, seed, config_file, overrides, k, overwrite, quiet
        )
        return
    if out is None:
        raise click.UsageError("give --out for a new run, or --resume RUN to continue one")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; give a folder for the run")
    if not overwrite and (out / STATE_FILE).exists() and not (out / "model.safetensors").exists():
        raise ConfigError(
            f"{str(out)!r} holds an unfinished run; continue it with vaekit train --resume "
            f"{out}, or replace it with --overwrite"
        )
    if (out / "config.json").exists() and not overwrite:
        raise ConfigError(f"{str(out)!r} already holds a run; choose another --out or --overwrite")
    _check_writable_folder(out, "--out")
    if data is None and config_file:
        data = read_toml(config_file).get("data")
        if data is not None and not isinstance(data, str):
            raise ConfigError(f"'data' in {config_file!r} must be a data set name or a path")
    data = data or "digits"
    for option in datasets.misplaced_options(data, list(load_options)):
        flag, fits = DATA_OPTIONS[option]
        raise ConfigError(f"{flag} does not apply to {data!r}: it is for {fits}")
    dataset = datasets.load(data, seed=0, **load_options)
    model_config, train_config, name = resolve_config(
        config_file, overrides, dataset, {"epochs": epochs, "time_limit": seconds, "seed": seed}
    )
    if dataset.media == {"kind": "text"}:
        dataset, model_config = retokenize(dataset, model_config)
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    # A data set's name wins over a file or folder of that name, as in data.load.
    is_file = datasets.builtin_name(data) is None
    image_shape = getattr(dataset, "image_shape", None)
    metadata = {
        "data": {
            "name": name,
            "source": str(Path(data).resolve()) if is_file else data,
            "split_seed": 0,
            **({"image_shape": list(image_shape)} if image_shape else {}),
            **(
                {"label_column": load_options["label_column"]}
                if "label_column" in load_options
                else {}
            ),
            **({"media": dataset.media} if dataset.media else {}),
        }
    }
    _train_and_report(model, dataset, train_config, out, metadata, k, quiet, resume=False)


def _train_resume(
    run: Path,
    out: Path | None,
    data: str | None,
    epochs: int | None,
    time_limit: float | None,
    seed: int | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    k: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """``vaekit train --resume RUN``: the run's saved settings, with only RESUMABLE changes."""
    from ..checkpoint import read_training_info
    from ..models import build_model, model_config
    from ..train import RESUMABLE, TrainConfig

    if out is not None and out.resolve() != run.resolve():
        raise ConfigError(f"--resume continues {str(run)!r} in place; leave out --out")
    given_flags = {"--seed": seed is not None, "--config": config_file, "--overwrite": overwrite}
    for flag, given in given_flags.items():
        if given:
            raise ConfigError(
                f"--resume continues {str(run)!r} with its saved settings and {flag} would change "
                "them; start a new run with --out instead"
            )
    info = read_training_info(run)
    changes: dict[str, Any] = {} if epochs is None else {"epochs": epochs}
    if time_limit is not None:
        changes["time_limit"] = time_limit
    for text in overrides:
        key, value = parse_override(text)
        section, _, name = key.rpartition(".")
        if section not in ("", "train") or name not in RESUMABLE:
            raise ConfigError(
                f"--set {text!r}: a resumed run keeps its settings (only "
                f"{', '.join(RESUMABLE)} may change); start a new run with --out to change {name}"
            )
        changes[name] = value
    try:
        saved_train = dict(info["train"])
        saved_model = model_config(info["model"], section="model")
        metadata = dict(info.get("metadata") or {})
        done = int(info.get("epochs_done", 0))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{str(run)!r}: its checkpoint's run record is damaged ({err})"
        ) from None
    train_config = from_dict(TrainConfig, {**saved_train, **changes}, section="train")
    rewrite = bool(info.get("finished")) and not _weights_readable(run)
    if info.get("finished") and not rewrite:
        limit = float(saved_train.get("time_limit") or 0)
        if train_config.epochs == done:
            click.echo(
                f"{run} has already finished its {done} epochs; to train further give --epochs N "
                f"with N more than {done}"
            )
            return
        if info.get("time_limit_reached") and train_config.time_limit == limit:
            click.echo(
                f"{run} reached its time limit of {limit:g} s after {done} epochs; to train "
                f"further give a longer --time-limit (or 0 for none)"
            )
            return
    if train_config.epochs < done:
        raise ConfigError(
            f"epochs {train_config.epochs} is fewer than the {done} epochs the run in "
            f"{str(run)!r} has done; give more epochs"
        )
    _check_time_left(run, info, train_config.time_limit, saved_train.get("time_limit"))
    source, split_seed = _data_source(metadata, data)
    torch.manual_seed(train_config.seed)
    model = build_model(saved_model)
    try:
        dataset = _load_data(metadata, model, source, split_seed)
    except DataError as err:
        if data:
            raise
        raise DataError(f"{err} (the run's data set; give it with --data)") from None
    if rewrite and train_config.epochs == done:
        click.echo(
            f"{run}: model.safetensors is missing or unreadable; writing it again from the "
            f"training state ({done} epochs)"
        )
    else:
        click.echo(
            f"resume {run} at epoch {done + 1} of {train_config.epochs}, step {info.get('step')}"
        )
    _train_and_report(model, dataset, train_config, run, metadata, k, quiet, resume=True)


def _check_time_left(run: Path, info: dict[str, Any], limit: float, saved: Any) -> None:
    """Refuse a new time limit (seconds) that leaves a resumed run no epoch to train: the run's
    training seconds so far plus its last epoch's would pass it. A run stopped mid-epoch
    finishes that epoch whatever the limit, so it is not refused."""
    if not limit or limit == saved or info.get("mid_epoch") or "seconds" not in info:
        return
    from ..train import no_epoch_fits

    try:
        spent, last = float(info["seconds"]), float(info.get("last_epoch_seconds") or 0.0)
    except (TypeError, ValueError):
        return
    if no_epoch_fits(spent, last, limit):
        raise ConfigError(
            f"time limit {limit:g} s: the run in {str(run)!r} has trained for {spent:.1f} s and "
            f"its last epoch took {last:.1f} s, so no epoch fits; give more than "
            f"{math.ceil(spent + last)} s (or 0 for no limit)"
        )


def _time_limit_reached(run: Path) -> bool:
    """Whether the run's training state says its time limit ended it (and nothing since)."""
    from ..checkpoint import read_training_info

    try:
        return bool(read_training_info(run).get("time_limit_reached"))
    except CheckpointError:
        return False


def _weights_readable(run: Path) -> bool:
    """Whether the run's model.safetensors loads (it may be missing, truncated or damaged)."""
    from ..models import load

    try:
        load(run)
    except CheckpointError:
        return False
    return True


def _check_writable_folder(folder: Path, what: str) -> None:
    """Raise unless ``folder`` exists as a writable folder or can be made inside one."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write {what} {str(folder)!r}: {str(parent)!r} is not a writable folder"
        )


def _train_and_report(
    model: VAE,
    dataset: Dataset,
    train_config: Any,
    out: Path,
    metadata: dict[str, Any],
    k: int,
    quiet: bool,
    resume: bool,
) -> None:
    """Run fit with Ctrl-C (and SIGTERM) saving the state and stopping; then print the report."""
    import shlex
    import signal
    import threading

    from ..config import to_dict
    from ..estimators import elbo as elbo_per_example
    from ..estimators import latent_stats, log_likelihood
    from ..models import model_table
    from ..runs import STATE_FILE
    from ..train import TrainingInterrupted, as_tensor, binarize, check_data, fit

    name = dataset.name
    for split in ("train", "valid"):  # before the settings are printed: bad data is one line
        check_data(model, as_tensor(getattr(dataset, split)), f"{name}'s {split} split")
    conditions = {}
    if _condition_dim(model):
        conditions = {
            "conditions": _split_conditions(model, dataset.train_labels, f"{name}'s train split"),
            "valid_conditions": _split_conditions(
                model, dataset.valid_labels, f"{name}'s valid split"
            ),
        }
    sizes = f"{len(dataset.train)} train / {len(dataset.valid)} valid / {len(dataset.test)} test"
    click.echo(_wrapped("data", f"{name} {tuple(dataset.data_shape)}, {sizes}"))
    click.echo(_wrapped("model", _settings(model_table(model.config))))
    click.echo(_wrapped("train", _settings(to_dict(train_config))))

    stop = threading.Event()
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop at once (files are written atomically)
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, handler) for sig in handled}
    try:
        history = fit(
            model,
            dataset.train,
            valid=dataset.valid,
            **conditions,
            config=train_config,
            out=out,
            metadata=metadata,
            progress=_progress(quiet),
            resume=resume,
            stop=stop.is_set,
        )
    except TrainingInterrupted as err:
        if err.restored:
            click.echo(
                f"vaekit: interrupted before the new run's first epoch ended; the run that was "
                f"in {out} is back",
                err=True,
            )
            sys.exit(128 + (received[0] if received else signal.SIGINT))
        click.echo(
            f"vaekit: interrupted at step {err.step}; continue with: vaekit train --resume "
            f"{shlex.quote(str(out))}",
            err=True,
        )
        sys.exit(128 + (received[0] if received else signal.SIGINT))
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    x_valid = dataset.valid
    if train_config.binarize == "dynamic":
        x_valid = binarize(x_valid, seed=train_config.seed + 1)
    kw = {"condition": conditions["valid_conditions"]} if conditions else {}
    valid_elbo = float(elbo_per_example(model, x_valid, **kw).mean())
    valid_ll = float(log_likelihood(model, x_valid, k=k, progress=_progress(quiet), **kw).mean())
    last = history[-1]
    click.echo(
        f"trained {last['epoch']} epochs ({last['step']} steps, {last['seconds']:.1f} s, "
        f"{last['skipped_steps']} skipped) on {name} {tuple(dataset.data_shape)}"
    )
    if last.get("stopped") == "time_limit" and train_config.time_limit > 0:
        click.echo(
            f"stopped by the time limit ({train_config.time_limit:g} s) after {last['epoch']} "
            f"of {train_config.epochs} epochs"
        )
    click.echo(f"valid ELBO            {valid_elbo:10.3f} nats")
    click.echo(f"valid log p(x), K={k:<4d} {valid_ll:10.3f} nats")
    if model.capabilities.exact_likelihood:  # a small discrete latent: the exact value
        exact_ll = float(model.log_likelihood_exact(x_valid).mean())
        click.echo(f"valid log p(x), exact  {exact_ll:10.3f} nats")
    stats = latent_stats(model, x_valid, **kw)
    active = int((stats["activity"] > 0.01).sum())
    kl_valid = float(stats["kl"] if "kl" in stats else stats["kl_per_dim"].sum())
    click.echo(
        f"valid KL              {kl_valid:10.3f} nats, "
        f"{active} of {len(stats['kl_per_dim'])} latent dims active"
    )
    _wrote(*(out / f for f in (*RUN_FILES, STATE_FILE)))


@cli.command()
@_run_argument
@_data_option
@_split_option
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=None,
    help="Importance samples for log p(x)  [default: 5000; 100 for text]",
)
@click.option(
    "--gaps",
    "gaps_n",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Also split the ELBO's shortfall from log p(x) into approximation and amortization "
    "gaps on the first N examples (refines q(z|x) for each; kinds vae and text).",
)
@click.option(
    "--refine-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Adam steps of each example's refinement for --gaps  [default: 500].",
)
@_seed_option
@_output_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def evaluate(
    run: Path,
    data: str | None,
    split: str,
    k: int | None,
    gaps_n: int | None,
    refine_steps: int | None,
    seed: int,
    output: Path | None,
    quiet: bool,
) -> None:
    """Report ELBO, log p(x), bits/dim, reconstruction error and latent usage of a run.

    Uses the test split of the run's data set unless --data/--split say otherwise. A run
    trained with dynamic binarisation is evaluated on one fixed binarisation (seed --seed).
    Writes RUN/eval.json (or --output) and prints a table.

    --gaps N splits log p(x) - ELBO on the first N examples in two (Cremer et al. 2018): the
    approximation gap, log p(x) - ELBO(q*), where q* is the best diagonal Gaussian for each x
    (found by --refine-steps Adam steps from the encoder's q), and the amortization gap,
    ELBO(q*) - ELBO(q), what one encoder for all x costs.

    \b
    Example:
      vaekit evaluate runs/digits -k 5000
      vaekit evaluate runs/mnist --gaps 1000
    """
    from ..evaluation import evaluate as evaluate_model
    from ..train import binarize

    config = _read_run(run)
    out = _output(run, output, run / "eval.json", (".json",), inputs=(data,))
    model = _load_model(run)
    if gaps_n is not None:
        from ..evaluation import check_refinable

        check_refinable(model)
    elif refine_steps is not None:
        raise ConfigError("--refine-steps goes with --gaps N (the examples to refine)")
    x, labels, dataset = _load_split(config, model, data, split)
    condition = _split_conditions(model, labels, f"the {split} split of {dataset.name}")
    binarized = (config.get("train") or {}).get("binarize") == "dynamic"
    if binarized:
        x = binarize(x, seed=seed)
    start = time.perf_counter()
    text = _media(config) == "text"
    k = k or (100 if text else 5000)
    options = {}
    if text:
        from ..evaluation import evaluate_text

        report = evaluate_text(model, x, k=k, seed=seed, progress=_progress(quiet))
    else:
        if _eight_bit(x):
            options["bin_levels"] = 256
        report = evaluate_model(
            model, x, k=k, seed=seed, progress=_progress(quiet), condition=condition, **options
        )
    if gaps_n is not None:
        report["inference_gaps"] = _inference_gaps(
            model, x, condition, k, gaps_n, refine_steps or REFINE_STEPS, seed, quiet
        )
    report = {
        "data": dataset.name,
        "split": split,
        "binarized": binarized,
        "seed": seed,
        **report,
        "seconds": round(time.perf_counter() - start, 3),
    }
    _write(out, (json.dumps(report, indent=2) + "\n").encode())
    note = f", binarised once (seed {seed})" if binarized else ""
    kl = " ".join(f"{v:.2f}" for v in report["kl_per_dim"])
    click.echo(f"{split} split of {dataset.name}: {report['n']} examples{note}")
    click.echo(f"  ELBO                 {report['elbo']:12.3f} nats")
    click.echo(f"  log p(x), K={k:<8d} {report['log_likelihood']:12.3f} nats")
    if "exact_log_likelihood" in report:
        click.echo(f"  log p(x), exact       {report['exact_log_likelihood']:12.3f} nats")
    if text:
        unit = "word" if model.config.level == "word" else "char"
        tokens = "words" if unit == "word" else "characters"
        click.echo(
            f"  bits/{unit:<15s} {report[f'bits_per_{unit}']:12.4f}  "
            f"({report['tokens_per_string']:.2f} per string, end token included)"
        )
        click.echo(
            f"  reconstruction       {100 * report['exact_reconstruction']:11.1f}% of strings, "
            f"{100 * report['token_accuracy']:.1f}% of {tokens}"
        )
    else:
        basis = " (8-bit bins)" if "bits_per_dim_basis" in report else ""
        click.echo(f"  bits/dim             {report['bits_per_dim']:12.4f}{basis}")
        click.echo(f"  reconstruction MSE   {report['reconstruction_mse']:12.5f} per dim")
    click.echo(f"  KL(q(z|x) || p(z))   {report['kl']:12.3f} nats")
    units = len(report["kl_per_dim"])
    click.echo(f"  active units         {report['active_units']:>7d} of {units}")
    click.echo(
        textwrap.fill(kl, 100, initial_indent="  KL per latent dim   ", subsequent_indent=" " * 23)
    )
    if "inference_gaps" in report:
        gaps = report["inference_gaps"]
        click.echo(
            f"inference gaps on the first {gaps['n']} examples (q refined by "
            f"{gaps['refine_steps']} Adam steps each, ELBOs from {gaps['samples']} draws):"
        )
        click.echo(f"  log p(x), K={k:<8d} {gaps['log_likelihood']:12.3f} nats")
        click.echo(f"  ELBO, q(z|x)         {gaps['elbo']:12.3f} nats")
        click.echo(f"  ELBO, refined q*     {gaps['elbo_refined']:12.3f} nats")
        click.echo(f"  approximation gap    {gaps['approximation_gap']:12.3f} nats")
        click.echo(f"  amortization gap     {gaps['amortization_gap']:12.3f} nats")
    _wrote(out)


#: Draws of each ELBO that ``vaekit evaluate --gaps`` compares, and its refinement's steps.
GAP_SAMPLES, REFINE_STEPS = 100, 500


def _inference_gaps(
    model: Any,
    x: torch.Tensor,
    condition: torch.Tensor | None,
    k: int,
    n: int,
    steps: int,
    seed: int,
    quiet: bool,
) -> dict[str, Any]:
    """``vaekit evaluate --gaps``: the gaps of the first ``n`` examples, averaged (nats)."""
    from ..evaluation import inference_gaps

    n = min(n, x.shape[0])
    kw = {} if condition is None else {"condition": condition[:n]}
    gaps = inference_gaps(
        model, x[:n], k=k, steps=steps, samples=GAP_SAMPLES, seed=seed,
        progress=_progress(quiet), **kw,
    )  # fmt: skip
    means = {name: float(v.mean()) for name, v in gaps.items()}
    return {"n": n, "refine_steps": steps, "samples": GAP_SAMPLES, "k": k, **means}


@cli.command()
@_run_argument
@_count_option(64, "Number of samples.", 1, 4096)
@click.option("--ncols", type=click.IntRange(min=1), default=None, help="Images per row.")
@click.option("--draw", is_flag=True, help="Draw x ~ p(x|z) instead of showing E[x|z].")
@_label_option
@_seed_option
@_image_option
@_scale_option
@_output_option
def sample(
    run: Path,
    n: int,
    ncols: int | None,
    draw: bool,
    label: int | None,
    seed: int,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Draw samples from the model as a grid of images (z ~ p(z), then E[x|z]).

    A conditional run draws from p(x|z, c): all of class --label, or, without it, one row per
    class (n // classes samples each, or --ncols). Writes RUN/figures/samples.png (or --output).
    A text run prints the strings (greedy at each step, or drawn with --draw) and writes
    RUN/samples.txt; an audio run writes WAV files and their spectrograms into the folder
    RUN/samples/ (or --output).

    \b
    Example:
      vaekit sample runs/digits -n 64 --seed 1
      vaekit sample runs/mnist-cvae -n 64 --label 3
    """
    from .. import viz

    config = _read_run(run)
    if _media(config) == "text":
        out = _output(run, output, run / "samples.txt", (".txt",))
        model = _load_model(run)
        torch.manual_seed(seed)
        _echo_lines(out, model.texts(model.sample(n, mean=not draw)))
        return
    if _media(config) == "audio":
        folder = _folder(output, run / "samples")
        model = _load_model(run)
        shape = _image_shape(config, model, image_shape)
        torch.manual_seed(seed)
        x = model.sample(n, mean=not draw)  # (n, 1, n_mels, frames)
        picture = viz.example_grid(x.flip(-2), shape, ncols, scale=scale or 3)  # low pitch down
        names = [f"sample-{i:03d}" for i in range(n)]
        click.echo(f"{n} samples from {run} as sound (Griffin-Lim) and spectrograms")
        _wrote(*_write_sound(config, x, folder, names, picture))
        return
    out = _output(run, output, _figure_path(run, "samples.png"), (".png",))
    model = _load_model(run)
    shape = _image_shape(config, model, image_shape)
    what = "draws" if draw else "samples (means of p(x|z))"
    classes = _condition_dim(model)
    torch.manual_seed(seed)
    if classes and label is None:
        per_class = ncols or max(1, n // classes)
        x = torch.cat(
            [model.sample(per_class, mean=not draw, condition=c) for c in range(classes)]
        )  # (classes * per_class, *data_shape)
        viz.save(viz.example_grid(x, shape, per_class, scale=scale), out)
        click.echo(
            f"{per_class} {what} of each of classes 0..{classes - 1} (one row each) from {run}"
        )
    else:
        kw = _label_condition(model, label, "sample")
        x = model.sample(n, mean=not draw, **kw)  # (n, *data_shape)
        viz.save(viz.example_grid(x, shape, ncols, scale=scale), out)
        of = f" of class {label}" if kw else ""
        click.echo(f"{n} {what}{of} from {run}")
    _wrote(out)


@cli.command()
@_run_argument
@_count_option(None, "Number of examples  [default: 20, or all of a smaller split]")
@click.option(
    "--ncols", type=click.IntRange(min=1), default=10, show_default=True, help="Pairs per row."
)
@_data_option
@_split_option
@_image_option
@_scale_option
@_output_option
def reconstruct(
    run: Path,
    n: int | None,
    ncols: int,
    data: str | None,
    split: str,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Show the first N examples of a split above their reconstructions E[x|z=E[z|x]].

    Writes RUN/figures/reconstructions.png (or --output). A text run prints each string and
    its greedy reconstruction and writes them, tab-separated, to RUN/reconstructions.txt; an
    audio run writes NNN-input.wav and NNN-reconstruction.wav into RUN/reconstructions/.

    \b
    Example:
      vaekit reconstruct runs/digits -n 20
    """
    from .. import viz

    config = _read_run(run)
    if _media(config) == "text":
        out = _output(run, output, run / "reconstructions.txt", (".txt",), inputs=(data,))
        model = _load_model(run)
        x, _, dataset = _load_split(config, model, data, split)
        n = _count(n, RECONSTRUCT_COUNT, x.shape[0], split)
        pairs = zip(model.texts(x[:n]), model.texts(model.reconstruct(x[:n])), strict=True)
        click.echo(f"{n} {split} examples of {dataset.name} and their reconstructions")
        _echo_lines(out, [f"{a}\t{b}" for a, b in pairs])
        return
    if _media(config) == "audio":
        folder = _folder(output, run / "reconstructions")
        model = _load_model(run)
        shape = _image_shape(config, model, image_shape)
        x, _, dataset = _load_split(config, model, data, split)
        n = _count(n, RECONSTRUCT_COUNT, x.shape[0], split)
        x = x[:n]
        x_rec = model.reconstruct(x)
        picture = viz.pairs_grid(x.flip(-2), x_rec.flip(-2), shape, ncols, scale=scale or 3)
        names = [f"{i:03d}-{what}" for what in ("input", "reconstruction") for i in range(n)]
        click.echo(
            f"{n} {split} examples of {dataset.name} and their reconstructions as sound "
            "(both through Griffin-Lim) and spectrograms"
        )
        _wrote(*_write_sound(config, torch.cat([x, x_rec]), folder, names, picture))
        return
    out = _output(run, output, _figure_path(run, "reconstructions.png"), (".png",), inputs=(data,))
    model = _load_model(run)
    shape = _image_shape(config, model, image_shape)
    x, labels, dataset = _load_split(config, model, data, split)
    n = _count(n, RECONSTRUCT_COUNT, x.shape[0], split)
    x = x[:n]
    condition = _split_conditions(model, labels, f"the {split} split of {dataset.name}")
    kw = {} if condition is None else {"condition": condition[:n]}
    viz.save(viz.pairs_grid(x, model.reconstruct(x, **kw), shape, ncols, scale=scale), out)
    click.echo(f"{n} {split} examples of {dataset.name} (above) and their reconstructions")
    _wrote(out)


@cli.command()
@_run_argument
@_data_option
@_split_option
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Encode the rows of this .npy/.csv (.txt for text) instead of a data set (uint8 "
    ".npy values are divided by 255, as --data does).",
)
@click.option("--sample", "draw", is_flag=True, help="Draw z ~ q(z|x) instead of its mean.")
@click.option(
    "--refine",
    "refine_steps",
    type=click.IntRange(min=1),
    default=None,
    metavar="STEPS",
    help="Refine q(z|x) for each example by STEPS Adam steps on its ELBO, the model held fixed "
    "(e.g. 500; kinds vae and text).",
)
@_label_option
@_seed_option
@_output_option
def encode(
    run: Path,
    data: str | None,
    split: str,
    input_file: Path | None,
    draw: bool,
    refine_steps: int | None,
    label: int | None,
    seed: int,
    output: Path | None,
) -> None:
    """Map examples to latents: E[z|x] by default, or one draw z ~ q(z|x) with --sample.

    Writes an (N, latent_dim) array to RUN/latents.npy, or to --output (.npy or .csv). For a
    categorical latent (kind "categorical") E[z|x] is the probabilities q(z_l = c | x), one
    block of n_categories columns per latent (argmax of a block: its most probable value), and
    --sample writes one-hot draws. A conditional run encodes a data set's examples with their
    labels, --input rows with --label. For a text run, --input is a .txt file with one string a
    line; for an audio run, a .wav file or a folder of them (every clip of each).

    --refine STEPS answers the inference question for each x on its own: starting at the
    encoder's q(z|x), the diagonal Gaussian of largest ELBO with the model held fixed (an example
    it cannot improve keeps the encoder's q).

    \b
    Example:
      vaekit encode runs/digits --output runs/digits/test-z.csv
      vaekit encode runs/digits --input my_images.npy --sample --output z.npy
      vaekit encode runs/digits --refine 500 --output refined-z.npy
    """
    config = _read_run(run)
    read = (input_file, data)
    out = _output(run, output, run / "latents.npy", (".npy", ".csv"), inputs=read)
    model = _load_model(run)
    if refine_steps is not None:
        from ..evaluation import check_refinable

        check_refinable(model)
    kw: dict[str, Any] = {}
    if input_file is not None and _media(config) == "text":
        x, what = _read_texts(model, input_file, "input"), str(input_file)
    elif input_file is not None and _media(config) == "audio":
        x, what = _read_sound(config, input_file), str(input_file)
    elif input_file is not None:
        kw = _label_condition(model, label, "encode --input rows")
        x = _check_examples(
            model,
            torch.from_numpy(_read_array(input_file, "input", data=True)),
            repr(str(input_file)),
        )
        what = str(input_file)
    else:
        if label is not None:
            raise ConfigError("--label goes with --input; a data set's examples use their labels")
        x, labels, dataset = _load_split(config, model, data, split)
        what = f"the {split} split of {dataset.name}"
        condition = _split_conditions(model, labels, what)
        kw = {} if condition is None else {"condition": condition}
    torch.manual_seed(seed)
    if refine_steps is not None:
        from ..evaluation import refine_posterior

        qz_x = refine_posterior(
            model, x, steps=refine_steps, seed=seed, progress=_progress(False), **kw
        )
    else:
        with torch.no_grad():
            qz_x = model.encode(x, **kw)
    with torch.no_grad():
        z = qz_x.sample() if draw else qz_x.mean  # (N, latent_dim)
    z_np = z.detach().cpu().numpy().astype(np.float32)
    _write(out, _array_bytes(z_np, out.suffix.lower(), "z"))
    q = "q(z|x)" if refine_steps is None else f"q(z|x) refined by {refine_steps} steps"
    kind = f"draws from {q}" if draw else f"means of {q}"
    click.echo(f"encoded {x.shape[0]} examples of {what}: {kind}, shape {z_np.shape}")
    _wrote(out)


@cli.command()
@_run_argument
@click.argument("latents", type=click.Path(path_type=Path))
@click.option("--png", "png", is_flag=True, help="Also draw the decoded means as images.")
@click.option("--ncols", type=click.IntRange(min=1), default=None, help="Images per row.")
@_label_option
@_image_option
@_scale_option
@_output_option
def decode(
    run: Path,
    latents: Path,
    png: bool,
    ncols: int | None,
    label: int | None,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Map latents (N, latent_dim) from a .npy/.csv file to decoded means E[x|z].

    A text run prints the greedy strings and writes them to RUN/decoded.txt (or --output); an
    audio run writes WAV files into the folder RUN/decoded/ (or --output).

    Writes an (N, *data_shape) array to RUN/decoded.npy (or --output, .npy or .csv); with
    --png also RUN/figures/decoded.png (beside --output when given). A conditional run decodes
    them all as class --label.

    \b
    Example:
      vaekit encode runs/digits && vaekit decode runs/digits runs/digits/latents.npy --png
    """
    from .. import viz

    config = _read_run(run)
    if _media(config) == "text":
        out = _output(run, output, run / "decoded.txt", (".txt",), inputs=(latents,))
        model = _load_model(run)
        z = _read_latents(latents, model.config.latent_dim)
        click.echo(f"decoded {z.shape[0]} latents from {latents} (greedy strings)")
        with torch.no_grad():
            _echo_lines(out, model.texts(model.decode(z).mean))
        return
    if _media(config) == "audio":
        folder = _folder(output, run / "decoded")
        model = _load_model(run)
        z = _read_latents(latents, model.config.latent_dim)
        with torch.no_grad():
            x = model.decode(z).mean
        names = [f"decoded-{i:03d}" for i in range(z.shape[0])]
        click.echo(f"decoded {z.shape[0]} latents from {latents} as sound (Griffin-Lim)")
        _wrote(*_write_sound(config, x, folder, names))
        return
    out = _output(run, output, run / "decoded.npy", (".npy", ".csv"), inputs=(latents,))
    picture = None
    if png:
        default = out.with_suffix(".png") if output else _figure_path(run, "decoded.png")
        picture = _output(run, None, default, (".png",))
    model = _load_model(run)
    shape = _image_shape(config, model, image_shape) if png else None
    kw = _label_condition(model, label, "decode")
    z = _read_latents(latents, model.config.latent_dim)
    with torch.no_grad():
        x = model.decode(z, **kw).mean  # (N, *data_shape)
    x_np = x.cpu().numpy().astype(np.float32)
    _write(out, _array_bytes(x_np, out.suffix.lower(), "x"))
    written = [out]
    if picture is not None and shape is not None:
        written.append(viz.save(viz.example_grid(x, shape, ncols, scale=scale), picture))
    click.echo(f"decoded {z.shape[0]} latents from {latents}: shape {x_np.shape}")
    _wrote(*written)


@cli.command()
@_run_argument
@click.argument("indices", nargs=-1, type=click.IntRange(min=0))
@click.option(
    "--steps",
    type=click.IntRange(2, 100),
    default=10,
    show_default=True,
    help="Decoded images between the two ends.",
)
@click.option(
    "--from",
    "start",
    default=None,
    metavar="EXAMPLE",
    help="First end instead of an index: a string for a text run, a .wav file for an audio run.",
)
@click.option("--to", "end", default=None, metavar="EXAMPLE", help="Second end, as --from.")
@_data_option
@_split_option
@_image_option
@_scale_option
@_output_option
def interpolate(
    run: Path,
    indices: tuple[int, ...],
    steps: int,
    start: str | None,
    end: str | None,
    data: str | None,
    split: str,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Walk the latent space in a straight line between two examples, as a row of images.

    INDICES are two example numbers of the split (default: the first two with different labels).
    The row shows the first example, the decoded points from E[z|x1] to E[z|x2], and the second.
    In a conditional run the condition moves from the first example's label to the second's.
    Writes RUN/figures/interpolation.png (or --output). A text run takes its ends as strings
    too (--from, --to), prints the greedy strings along the line and writes
    RUN/interpolation.txt; an audio run takes .wav files as --from/--to and writes the steps as
    WAV files into RUN/interpolation/.

    \b
    Example:
      vaekit interpolate runs/digits 3 17 --steps 12
      vaekit interpolate runs/words --from house --to garden
    """
    from .. import viz

    if len(indices) not in (0, 2):
        raise click.UsageError(f"give two indices or none, got {len(indices)}")
    if (start is None) != (end is None) or (start is not None and indices):
        raise click.UsageError("give both --from and --to, or indices, not a mix")
    config = _read_run(run)
    if _media(config) == "text":
        out = _output(run, output, run / "interpolation.txt", (".txt",), inputs=(data,))
        model = _load_model(run)
        if start is not None:
            ends, what = model.ids([start, end], "--from/--to"), f"{start!r} and {end!r}"
        else:
            ends, what = _split_ends(config, model, data, split, indices)
        with torch.no_grad():
            mu = model.encode(ends).mean  # (2, latent_dim)
            path = model.texts(model.decode(viz.interpolation_latents(mu[0], mu[1], steps)).mean)
        click.echo(f"{steps} steps between {what}")
        _echo_lines(out, path)
        return
    if _media(config) == "audio":
        folder = _folder(output, run / "interpolation")
        model = _load_model(run)
        shape = _image_shape(config, model, image_shape)
        if start is not None:
            ends = torch.cat([_read_sound(config, Path(p))[:1] for p in (start, end)])
            what = f"{start} and {end} (first clip of each)"
        else:
            ends, what = _split_ends(config, model, data, split, indices)
        with torch.no_grad():
            mu = model.encode(ends).mean  # (2, latent_dim)
            path = model.decode(viz.interpolation_latents(mu[0], mu[1], steps)).mean
        row = torch.cat([ends[:1], path, ends[1:]])
        picture = viz.example_grid(row.flip(-2), shape, ncols=row.shape[0], scale=scale or 3)
        names = [f"step-{i:03d}" for i in range(steps)]
        click.echo(f"{steps} steps between {what}, as sound (Griffin-Lim) and spectrograms")
        _wrote(*_write_sound(config, path, folder, names, picture))
        return
    if start is not None:
        raise ConfigError("--from/--to take strings or .wav files; for images give two indices")
    out = _output(run, output, _figure_path(run, "interpolation.png"), (".png",), inputs=(data,))
    model = _load_model(run)
    _need_continuous(model, "interpolate")
    shape = _image_shape(config, model, image_shape)
    x, labels, dataset = _load_split(config, model, data, split)
    if indices:
        i, j = indices
    else:
        _two_examples(x.shape[0], split, dataset.name, "--split train, or --data with more")
        i, j = 0, 1
        if labels is not None:
            j = next((t for t in range(1, len(labels)) if labels[t] != labels[0]), 1)
    for index in (i, j):
        _check_index(index, x.shape[0], split, dataset.name)
    condition = _split_conditions(model, labels, f"the {split} split of {dataset.name}")
    ends: dict[str, Tensor] = {}
    path: dict[str, Tensor] = {}
    if condition is not None:
        ends = {"condition": condition[[i, j]]}
        path = {"condition": viz.interpolation_latents(condition[i], condition[j], steps)}
    with torch.no_grad():
        mu = model.encode(x[[i, j]], **ends).mean  # (2, latent_dim)
        z = viz.interpolation_latents(mu[0], mu[1], steps)
        row = torch.cat([x[[i]], model.decode(z, **path).mean, x[[j]]])  # (steps + 2, ...)
    viz.save(viz.example_grid(row, shape, ncols=row.shape[0], scale=scale), out)
    click.echo(f"{steps} steps between {split} examples {i} and {j} of {dataset.name}")
    _wrote(out)


@cli.command()
@_run_argument
@_count_option(20, "Images per side of the grid.", 2, 100)
@click.option(
    "--dims",
    default=None,
    metavar="I,J",
    help="Latent dims to vary (default: the two with the largest KL).",
)
@_label_option
@_data_option
@_image_option
@_scale_option
@_output_option
def manifold(
    run: Path,
    n: int,
    dims: str | None,
    label: int | None,
    data: str | None,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Decode an n x n grid of latents: the learned data manifold (AEVB paper, figure 4).

    Evenly spaced points on the unit square go through the inverse CDF of the prior's marginals
    (of N(0, 1) for the standard prior; estimated from 100,000 draws for a learned prior or the
    lower layer of a two-layer model). With more than two latent dims, the two with the largest
    KL on the test split vary and the rest stay at the prior's median (0 for N(0, I)).
    A conditional run draws the manifold of class --label.
    Writes RUN/figures/manifold.png (or --output).

    \b
    Example:
      vaekit manifold runs/digits -n 20
      vaekit manifold runs/digits --dims 0,3
    """
    from .. import viz
    from ..estimators import latent_stats

    config = _read_run(run)
    out = _output(run, output, _figure_path(run, "manifold.png"), (".png",), inputs=(data,))
    model = _load_model(run)
    _need_continuous(model, "manifold")
    shape = _image_shape(config, model, image_shape)
    kw = _label_condition(model, label, "draw its manifold")
    latent_dim = model.config.latent_dim
    if latent_dim < 2:
        raise ConfigError("a manifold needs at least 2 latent dims; this run has 1")
    how = ""
    if dims is not None:
        try:
            d0, d1 = (int(v) for v in dims.split(","))
        except ValueError:
            raise ConfigError(f"--dims {dims!r} is not two dims like 0,1") from None
    elif latent_dim == 2:
        d0, d1 = 0, 1
    else:
        x, labels, dataset = _load_split(config, model, data, "test")
        condition = _split_conditions(model, labels, f"the test split of {dataset.name}")
        stats_kw = {} if condition is None else {"condition": condition}
        kl = latent_stats(model, x, **stats_kw)["kl_per_dim"]
        d0, d1 = viz.top_dims(kl.tolist(), 2)
        how = f" (largest KL on {dataset.name}/test: {float(kl[d0]):.2f}, {float(kl[d1]):.2f} nats)"
    samples = None
    if not model.standard_normal_latents:
        # a learned prior (or z1 of two layers): its marginals' quantiles, from draws of it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            samples = model.sample_latents(MANIFOLD_PRIOR_DRAWS)
        how += "; grid at quantiles of the prior's marginals, other dims at their medians"
    z = viz.manifold_latents(n, latent_dim, (d0, d1), samples)
    with torch.no_grad():
        x_grid = model.decode(z, **kw).mean  # (n * n, *data_shape)
    viz.save(viz.example_grid(x_grid, shape, n, pad=0, scale=scale), out)
    click.echo(f"{n}x{n} manifold over latent dims {d0} (down) and {d1} (across){how}")
    _wrote(out)


@cli.command()
@_run_argument
@_data_option
@_split_option
@_count_option(None, "Plot only the first N examples.")
@_output_option
def latents(run: Path, data: str | None, split: str, n: int | None, output: Path | None) -> None:
    """Scatter the latent means E[z|x] of a split in 2-D, coloured by label (PCA if dims > 2).

    Writes RUN/figures/latents.png (or --output).

    \b
    Example:
      vaekit latents runs/digits --split test
    """
    from .. import viz

    config = _read_run(run)
    out = _output(run, output, _figure_path(run, "latents.png"), (".png",), inputs=(data,))
    model = _load_model(run)
    x, labels, dataset = _load_split(config, model, data, split)
    x, labels = x[:n], (labels[:n] if labels is not None else None)
    condition = _split_conditions(model, labels, f"the {split} split of {dataset.name}")
    kw = {} if condition is None else {"condition": condition}
    with torch.no_grad():
        z = model.encode(x, **kw).mean  # (N, latent_dim)
    title = f"{dataset.name} {split}: E[z|x]" + (", PCA" if z.shape[1] > 2 else "")
    names = getattr(dataset, "label_names", None)
    viz.save(viz.scatter(z, labels, names=names, title=title), out)
    click.echo(f"{x.shape[0]} latent means of the {split} split of {dataset.name}")
    _wrote(out)


@cli.command()
@_run_argument
@click.argument("more", nargs=-1, type=click.Path(path_type=Path))
@_output_option
def curves(run: Path, more: tuple[Path, ...], output: Path | None) -> None:
    """Plot the training bound and validation ELBO against examples seen (log axis), from
    RUN/metrics.jsonl, as in the AEVB paper's figure 2. Writes RUN/figures/curves.png.

    With more run folders after RUN, overlays them (one colour per run, named by its folder;
    validation dashed), as the paper draws its latent sizes in one figure.

    \b
    Example:
      vaekit curves runs/digits
      vaekit curves runs/z3 runs/z5 runs/z10 -o fig2.png
    """
    from .. import viz

    runs = (run, *more)
    for folder in runs:
        _read_run(folder)
    out = _output(run, output, _figure_path(run, "curves.png"), (".png",))
    records = {folder.name: viz.read_metrics(folder / "metrics.jsonl") for folder in runs}
    if len(records) < len(runs):
        raise ConfigError("runs to overlay need different folder names; they label the curves")
    if more:
        viz.save(viz.curves(records, title="bound per example"), out)
    else:
        viz.save(viz.curves(records[run.name], title=f"{run.name}: bound per example"), out)
    for name, rows in records.items():
        last = rows[-1]
        valid = f", validation ELBO {last['valid_elbo']:.3f}" if "valid_elbo" in last else ""
        prefix = f"{name}: " if more else ""
        click.echo(
            f"{prefix}{len(rows)} epochs, {last['examples_seen']} examples; last train bound "
            f"{last['train_bound']:.3f}{valid} nats"
        )
    _wrote(out)


@cli.command()
@_run_argument
def info(run: Path) -> None:
    """Show what a run folder holds: data, model and training settings, progress, files.

    \b
    Example:
      vaekit info runs/digits
    """
    from ..viz import read_metrics

    config = _read_run(run)
    entry = config.get("data") if isinstance(config.get("data"), dict) else {}
    model_cfg = config.get("model") or {}
    click.echo(
        f"run    {run}  (vaekit {config.get('vaekit_version', '?')}, "
        f"format {config['format_version']})"
    )
    if entry:
        source = entry.get("source", entry.get("name"))
        click.echo(f"data   {entry.get('name', '?')} (from {source})")
    click.echo(_wrapped("model", _settings(model_cfg)))
    if config.get("train"):
        click.echo(_wrapped("train", _settings(config["train"])))
    try:
        records = read_metrics(run / "metrics.jsonl")
    except DataError:
        records = []
    if records:
        last = records[-1]
        valid = f", valid ELBO {last['valid_elbo']:.3f}" if "valid_elbo" in last else ""
        click.echo(
            f"epochs {last.get('epoch', len(records))} ({last.get('step', '?')} steps, "
            f"{last['examples_seen']} examples, {last.get('seconds', 0):.1f} s); "
            f"last train bound {last['train_bound']:.3f}{valid} nats"
        )
        if last.get("stopped") == "time_limit" and _time_limit_reached(run):
            limit = (config.get("train") or {}).get("time_limit", "?")
            click.echo(
                f"note   its time limit ({limit} s) ended the run; vaekit train --resume {run} "
                "--time-limit LONGER continues it"
            )
    eval_file = run / "eval.json"
    if eval_file.is_file():
        try:
            ev = json.loads(eval_file.read_text())
            exact = ev.get("exact_log_likelihood")
            exact = f"; exact {exact:.3f}" if isinstance(exact, float) else ""
            # a text run's bits are per token, as vaekit evaluate prints them
            unit = next((u for u in ("char", "word") if f"bits_per_{u}" in ev), "dim")
            click.echo(
                f"eval   {ev['split']}: ELBO {ev['elbo']:.3f}, log p(x) {ev['log_likelihood']:.3f} "
                f"(K={ev['k']}{exact}), {ev['bits_per_dim']:.4f} bits/{unit}, "
                f"{ev['active_units']} active units"
            )
            gaps = ev.get("inference_gaps")
            if isinstance(gaps, dict):
                click.echo(
                    f"gaps   approximation {gaps['approximation_gap']:.3f}, amortization "
                    f"{gaps['amortization_gap']:.3f} nats (first {gaps['n']} examples, "
                    f"{gaps['refine_steps']} refinement steps)"
                )
        except (OSError, ValueError, KeyError, TypeError):
            click.echo("eval   eval.json is unreadable")
    if not (run / "model.safetensors").is_file():
        from ..checkpoint import read_training_info

        try:
            state = read_training_info(run)
            click.echo(
                f"note   no model.safetensors yet: training stopped in epoch "
                f"{state.get('epochs_done', 0) + 1} at step {state.get('step', '?')}; continue "
                f"it with vaekit train --resume {run}"
            )
        except CheckpointError:
            click.echo("note   no model.safetensors: the run did not finish saving")
    click.echo("files")
    for path in sorted(p for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")):
        click.echo(f"  {path.relative_to(run)!s:<32} {_size(path.stat().st_size):>9}")


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    return f"{n / 1000:.1f} kB" if n < 1_000_000 else f"{n / 1_000_000:.1f} MB"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; vaekit errors and usage mistakes become one line, exit status 2."""
    try:
        cli.main(args=argv, prog_name="vaekit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("vaekit: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as err:
        err.show()
        sys.exit(err.exit_code)
    except click.ClickException as err:
        hint = ""
        if isinstance(err, click.UsageError) and err.ctx is not None:
            hint = f" (see '{err.ctx.command_path} --help')"
        message = " ".join(err.format_message().split())
        click.echo(f"vaekit: error: {message}{hint}", err=True)
        sys.exit(err.exit_code if err.exit_code else 1)
    except VaekitError as err:
        click.echo(f"vaekit: error: {err}", err=True)
        sys.exit(2)
    except (MemoryError, RuntimeError) as err:
        # torch reports a failed CPU allocation as a RuntimeError, a CUDA one as OutOfMemoryError.
        text = str(err)
        if not (
            isinstance(err, MemoryError | torch.OutOfMemoryError) or "can't allocate memory" in text
        ):
            raise
        click.echo(
            "vaekit: error: out of memory; lower batch_size or samples (--set batch_size=...), "
            "the model's size (hidden, latent_dim) or -k, or use fewer examples",
            err=True,
        )
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)


def retokenize(ds: Any, config: Any) -> tuple[Any, Any]:
    """The data set and the text model's config made to agree. The file was read at the data
    set's defaults; a config that asks for another ``level`` (``--set level=word``) gets the
    lines read again at that level, with the vocabulary and length that come from them, and one
    that names its own ``vocab`` or ``data_shape`` gets the lines encoded with those."""
    from dataclasses import replace

    from ..data.text import load_text
    from ..models import TextVAEConfig
    from ..tokenizer import Tokenizer

    if not isinstance(config, TextVAEConfig):
        raise ConfigError(
            f"{ds.name!r} is text: train it with the text model (kind 'text'), not "
            f"{type(config).__name__}"
        )
    made = ds.defaults["model"]
    if config.level != made["level"]:
        ds = load_text(ds.source, 0, level=config.level)
        made = ds.defaults["model"]
        vocab, shape = tuple(made["vocab"]), tuple(made["data_shape"])
        return ds, replace(config, vocab=vocab, data_shape=shape)
    if config.vocab != tuple(made["vocab"]) or config.data_shape != ds.data_shape:
        tok = Tokenizer(config.vocab, config.level)
        ds = load_text(ds.source, 0, tokenizer=tok, length=config.data_dim)
    return ds, config

"""Data sets as float32 tensors, split into train / valid / test.

A :class:`Dataset` carries the splits, optional labels (kept for plots only) and what the data
suggests for the model: ``binary`` is True when the values are intensities in [0, 1] meant for a
Bernoulli likelihood (with dynamic binarisation in :func:`vaekit.train.fit`), False for 8-bit
images, integer counts or real values, for which a Gaussian likelihood is the safer choice.

Built-in data sets (:data:`DATASETS`): ``digits`` (scikit-learn, offline), ``mnist``,
``fashion-mnist``, ``cifar10``, ``frey-face``, ``shapes`` (generated, with known factors of
variation) and ``dsprites`` (the official file, when the user has it). Their files are looked for
in :func:`data_dir` and in a sub-folder of it named after the data set; when absent they are
downloaded there (not dSprites), checked against published checksums, unless
``VAEKIT_OFFLINE=1``. A user's own data: ``.npy`` / ``.npz`` arrays, numeric ``.csv`` files,
folders of images, text and WAV files (see :func:`load`), with a factors file beside them.

Pickled files (``mnist.pkl.gz``, the CIFAR-10 batches) are unpickled only after their checksum
matches the published one, and then with an unpickler that builds numpy arrays, lists, dicts,
strings, bytes and numbers and nothing else. vaekit itself never writes a pickle.

One module per source: :mod:`.digits`, :mod:`.mnist`, :mod:`.cifar`, :mod:`.frey`,
:mod:`.shapes`, :mod:`.dsprites` (each with its ``DEFAULTS``), :mod:`.factors` (a user's factors
file), :mod:`.arrays` (.npy/.npz/.csv/.tsv), :mod:`.images`, :mod:`.text`, :mod:`.audio`;
:mod:`.download` finds and fetches files, :mod:`.dataset` holds what the loaders share and
:mod:`.checks` the one validator of examples. This module dispatches by name or path.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from . import cifar, digits, frey, mnist, shapes
from .arrays import (
    NUMPY_READ_ERRORS,
    channels_first,
    channels_last_as_trained,
    load_array,
    load_csv,
    to_float,
)
from .checks import as_tensor, check_examples
from .cifar import (
    CIFAR10_BATCH_MD5,
    CIFAR10_CLASSES,
    CIFAR10_FOLDER,
    CIFAR10_TARBALL,
    CIFAR10_TARBALL_MD5,
    CIFAR10_TARBALL_SHA256,
    CIFAR10_URL,
    load_cifar10,
    load_cifar10_folder,
    load_cifar10_tarball,
)
from .dataset import (
    BINARIZE,
    DEFAULT_FRACTIONS,
    Dataset,
    binarize_static,
    check_fractions,
    class_folder,
    hidden,
    split,
    standardization,
    suits_bernoulli,
    with_channels,
)
from .digits import load_digits
from .download import data_dir, download, md5, offline, sha256
from .dsprites import DSPRITES_FILE, load_dsprites, read_dsprites
from .factors import attach_factors, read_factors
from .frey import FREY_FILE, FREY_SHAPE, FREY_URL, load_frey_face, load_frey_face_file
from .images import IMAGE_SUFFIXES, MAX_IMAGE_SIDE, load_image_folder
from .mnist import (
    FASHION_CLASSES,
    FASHION_IDX_MD5,
    FASHION_URLS,
    IDX_FILES,
    MNIST_IDX_MD5,
    MNIST_PKL_SHA256,
    MNIST_URLS,
    idx_paths,
    load_fashion_mnist,
    load_idx_folder,
    load_mnist,
    load_mnist_pickle,
    read_idx,
)
from .shapes import load_shapes

__all__ = [
    "ALIASES",
    "BINARIZE",
    "CIFAR10_BATCH_MD5",
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_TARBALL",
    "CIFAR10_TARBALL_MD5",
    "CIFAR10_TARBALL_SHA256",
    "CIFAR10_URL",
    "DATASETS",
    "DEFAULTS",
    "DEFAULT_FRACTIONS",
    "DSPRITES_FILE",
    "FASHION_CLASSES",
    "FASHION_IDX_MD5",
    "FASHION_URLS",
    "FILE_KINDS",
    "FREY_FILE",
    "FREY_SHAPE",
    "FREY_URL",
    "IDX_FILES",
    "IMAGE_SHAPE_HINTS",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_SIDE",
    "MNIST_IDX_MD5",
    "MNIST_PKL_SHA256",
    "MNIST_URLS",
    "NUMPY_READ_ERRORS",
    "SPLIT_OPTIONS",
    "DataError",
    "Dataset",
    "as_tensor",
    "attach_factors",
    "binarize_static",
    "builtin_name",
    "channels_first",
    "channels_last_as_trained",
    "check_examples",
    "check_fractions",
    "class_folder",
    "data_dir",
    "download",
    "hidden",
    "image_shape_hint",
    "load",
    "load_array",
    "load_cifar10",
    "load_cifar10_folder",
    "load_cifar10_tarball",
    "load_csv",
    "load_digits",
    "load_dsprites",
    "load_fashion_mnist",
    "load_frey_face",
    "load_frey_face_file",
    "load_idx_folder",
    "load_image_folder",
    "load_mnist",
    "load_mnist_pickle",
    "load_options",
    "load_shapes",
    "md5",
    "misplaced_options",
    "offline",
    "read_dsprites",
    "read_factors",
    "read_idx",
    "sha256",
    "split",
    "standardization",
    "suits_bernoulli",
    "to_float",
    "with_channels",
]

#: The old private name of :func:`to_float` (the command line reads arrays with it).
_to_float = to_float

#: Recommended settings per built-in data set, as ``{"model": {...}, "train": {...}}``; each
#: loader's module holds its own.
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "digits": digits.DEFAULTS,
    "mnist": mnist.DEFAULTS,
    "fashion-mnist": mnist.DEFAULTS,
    "frey-face": frey.DEFAULTS,
    "cifar10": cifar.DEFAULTS,
    "shapes": shapes.DEFAULTS,
    "dsprites": shapes.DEFAULTS,
}

#: Built-in data set names -> loader(root, seed).
DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": lambda root=None, seed=0: load_digits(seed),
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "frey-face": load_frey_face,
    "shapes": load_shapes,
    "dsprites": load_dsprites,
}
#: The options of :func:`load` that set the split of data vaekit splits itself.
SPLIT_OPTIONS = ("valid_fraction", "test_fraction")
#: Built-in data sets that take the ``examples`` option (how many to draw).
SIZED = ("shapes", "dsprites")
ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashion": "fashion-mnist",
    "cifar-10": "cifar10",
    "frey": "frey-face",
    "frey_face": "frey-face",
    "freyface": "frey-face",
}
FILE_KINDS = (
    ".npy, .npz, .csv, .tsv, .txt (one example per line), .wav, mnist.pkl.gz, "
    "cifar-10-python.tar.gz, a .mat Frey Face file"
)


def load(
    name_or_path: str | Path,
    *,
    seed: int = 0,
    binarize: str = "none",
    image_size: int | tuple[int, int] | None = None,
    label_column: int | str | None = None,
    audio: Any = None,
    root: str | Path | None = None,
    examples: int | None = None,
    factors: str | Path | None = None,
    valid_fraction: float | None = None,
    test_fraction: float | None = None,
) -> Dataset:
    """A built-in data set by name (:data:`DATASETS`) or a user's file or folder by path.

    Files: .npy / .npz (:func:`load_array`), .csv / .tsv (:func:`load_csv`), ``mnist.pkl.gz``,
    ``cifar-10-python.tar.gz``, a Frey Face .mat file, .txt, .wav. Folders: the four MNIST idx
    files, ``cifar-10-batches-py``, WAV files or images (:func:`load_image_folder`).

    seed: seeds the validation / test split of data that has none, and static binarisation.
    binarize: "none", or "static" for one fixed Bernoulli draw of the data
        (:func:`binarize_static`); dynamic binarisation is a training option instead.
    image_size: (H, W) or one int, for image folders. label_column: for CSV files.
    audio: for WAV files and folders, :class:`vaekit.data.audio.AudioSettings` or a dict of its
        fields (e.g. ``{"sample_rate": 8000, "n_mels": 32}``).
    root: folder searched for built-in data sets instead of :func:`data_dir`.
    examples: for ``shapes`` and ``dsprites``, how many examples to draw under ``seed`` (default
        50,000; 737,280 for every combination).
    factors: for a user's data split by vaekit, a .npy / .csv file of the known factors of
        variation, one row per example (:func:`attach_factors`).
    valid_fraction, test_fraction: for data vaekit splits itself (a user's arrays, CSV / TSV
        tables and folders of images), the fractions of the examples in the validation and test
        splits, drawn under ``seed`` (None: 0.1 each); from 0 to below 1, their sum below 1.

    An option that does not apply to the data (see :func:`load_options`) is a DataError.
    """
    if binarize not in BINARIZE:
        raise DataError(f"unknown binarize {binarize!r}; choose one of {', '.join(BINARIZE)}")
    text = str(name_or_path)
    given = {
        "image_size": image_size,
        "label_column": label_column,
        "audio": audio,
        "examples": examples,
        "factors": factors,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
    }
    fractions = check_fractions(valid_fraction, test_fraction)
    for option in misplaced_options(text, [o for o, v in given.items() if v is not None]):
        raise DataError(f"{option}={given[option]!r} does not apply to {text!r}; leave it out")
    name = builtin_name(text)
    if name is not None:  # a name wins over a file of that name; write ./name for the file
        sized = {"examples": examples} if examples is not None else {}
        ds = DATASETS[name](root=root, seed=seed, **sized)
    else:
        ds = _load_path(Path(text), seed, image_size, label_column, audio, fractions)
        if factors is not None:
            ds = attach_factors(ds, factors, seed, fractions)
    if binarize == "static":
        ds = binarize_static(ds, seed)
    return ds


def builtin_name(name_or_path: str | Path) -> str | None:
    """The built-in data set (a key of :data:`DATASETS`) that this names, in any case or by an
    alias, or None for a path."""
    text = str(name_or_path).lower()
    name = ALIASES.get(text, text)
    return name if name in DATASETS else None


#: (H, W) that shows one flat example of a built-in data set as an image where its size is not a
#: square (Frey Face's 560 values are 28 x 20 pixels), by data set name.
IMAGE_SHAPE_HINTS: dict[str, tuple[int, int]] = {"frey-face": FREY_SHAPE}


def image_shape_hint(name: str | None) -> tuple[int, ...] | None:
    """How to show a flat example of the built-in data set ``name`` (its name, or an alias as
    written, e.g. ``frey_face``) as an image, (H, W), when its size is not a square; else None."""
    name = name or ""
    return IMAGE_SHAPE_HINTS.get(name if name in DATASETS else ALIASES.get(name, ""))


def misplaced_options(name_or_path: str | Path, options: Sequence[str]) -> list[str]:
    """Those of ``options`` (keywords of :func:`load`) that do not apply to this data; none for a
    path that does not exist, whose loading says so."""
    if builtin_name(name_or_path) is None and not Path(name_or_path).exists():
        return []
    applies = load_options(name_or_path)
    return [option for option in options if option not in applies]


def load_options(name_or_path: str | Path) -> tuple[str, ...]:
    """The keyword options of :func:`load` that apply to this data: ``("image_size",
    "factors")`` for a folder of images, ``("label_column", "factors")`` for a CSV or TSV file,
    ``("factors",)`` for a .npy / .npz array, ``("audio",)`` for WAV files and folders of them,
    ``("examples",)`` for ``shapes`` and ``dsprites``; none for other built-in data sets, text
    and paths that do not exist. The split settings (:data:`SPLIT_OPTIONS`) apply where
    ``factors`` does: to data vaekit splits itself.
    """
    name = builtin_name(name_or_path)
    if name is not None:
        return ("examples",) if name in SIZED else ()
    path = Path(name_or_path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".wav", ".wave"):
        from .audio import is_audio

        if is_audio(path):
            return ("audio",)
    if path.is_dir():
        if (path / "data_batch_1").is_file() or idx_paths(path) is not None:
            return ()
        return ("image_size", "factors", *SPLIT_OPTIONS)
    if not path.is_file():
        return ()
    if suffix in (".csv", ".tsv"):
        return ("label_column", "factors", *SPLIT_OPTIONS)
    return ("factors", *SPLIT_OPTIONS) if suffix in (".npy", ".npz") else ()


def _is_text(path: Path) -> bool:
    """Whether the file's first 64 kB are UTF-8 text without NUL bytes (e.g. a word list)."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
        # a character cut off at the end of the 64 kB is not an error, any other bad byte is
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 1 << 16)
    except (OSError, UnicodeDecodeError):
        return False
    return bool(head) and b"\0" not in head


def _load_path(
    path: Path,
    seed: int,
    image_size: Any,
    label_column: Any,
    audio: Any,
    fractions: tuple[float, float] = DEFAULT_FRACTIONS,
) -> Dataset:
    """A user's file or folder as a data set (the options as for :func:`load`; ``fractions``:
    valid and test, for arrays, tables and folders of images)."""
    suffix, lname = path.suffix.lower(), path.name.lower()
    if path.is_dir() or suffix in (".wav", ".wave"):
        from .audio import AudioSettings, is_audio, load_audio

        if is_audio(path):
            return load_audio(path, seed, settings=AudioSettings.from_options(audio))
    if path.is_dir():
        if (path / "data_batch_1").is_file():
            return load_cifar10_folder(path)
        if idx_paths(path) is not None:
            return load_idx_folder(path)
        return load_image_folder(path, seed, image_size=image_size, fractions=fractions)
    if not path.exists():
        if suffix:
            raise DataError(f"data file {str(path)!r} does not exist; check the path")
        raise DataError(
            f"unknown data set or missing file {str(path)!r}; use one of {', '.join(DATASETS)} "
            f"or the path of a file ({FILE_KINDS}) or a folder of images or WAV files"
        )
    if suffix in (".npy", ".npz"):
        return load_array(path, seed, fractions=fractions)
    if suffix == ".txt" or (suffix == "" and _is_text(path)):
        from .text import load_text

        return load_text(path, seed)
    if suffix in (".csv", ".tsv"):
        return load_csv(path, seed, label_column=label_column, fractions=fractions)
    if lname.endswith(".pkl.gz"):
        return load_mnist_pickle(path)
    if lname.endswith((".tar.gz", ".tgz")):
        return load_cifar10_tarball(path)
    if suffix == ".mat":
        return load_frey_face_file(path, seed)
    if suffix in (".gz", "") and "idx" in lname:
        raise DataError(f"give the folder that holds {path.name!r} and the other idx files")
    raise DataError(
        f"cannot read {str(path)!r}: supported are {FILE_KINDS} and folders of images or WAV files"
    )

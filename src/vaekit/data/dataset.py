"""The data set record every loader returns, and what the loaders share: the seeded split, the
class-folder layout, hidden files, tensors from arrays, static binarisation and channel changes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError

#: Values of the ``binarize`` option of :func:`vaekit.data.load` (dynamic binarisation is a
#: training option instead).
BINARIZE = ("none", "static")


@dataclass
class Dataset:
    """Train / valid / test splits of shape (N, *data_shape) with optional labels (N,).

    Values are float32: in [0, 1] for images (8-bit pixels are divided by 255), as given for a
    user's real-valued data.

    binary: the data suits a Bernoulli likelihood (intensities in [0, 1]); False for 8-bit
        images, integer counts and data outside [0, 1].
    defaults: settings that suit this data set, ``{"model": {...}, "train": {...}}``; a user's
        config and its overrides take precedence.
    image_shape: (C, H, W) to view one example as an image (for plots), or None.
    label_names: class name of each label value, where known.
    binarization: "static" when the values were replaced by one fixed Bernoulli draw, else "none".
    source: the file or folder the data was read from ("" for built-in data).
    notes: what reading the data changed that a person should know (a size chosen for large
        photos, images resized or converted to one size and colour), one sentence each.
    media: what the examples stand for when they are not arrays or images, saved with a run so
        its commands write them back as files: ``{"kind": "text"}`` (token ids, see
        :mod:`vaekit.data.text`) or ``{"kind": "audio", ...}`` (log-mel spectrograms and the
        settings that made them, see :mod:`vaekit.data.audio`); None otherwise.
    train_factors, valid_factors, test_factors: the known factors of variation of each example
        of each split, (N, F) numpy arrays (int64 classes, or float64 values), or None.
    factor_names: a name per factor column. factor_sizes: the number of classes of each factor
        when they are classes 0..size-1, else None.
    render_factors: for generated data (``shapes``), a function from factor classes (N, F) to
        examples (N, *data_shape); None where examples can only be looked up.
    """

    name: str
    train: Tensor
    valid: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    valid_labels: Tensor | None = None
    test_labels: Tensor | None = None
    binary: bool = False
    defaults: dict | None = None
    image_shape: tuple[int, int, int] | None = None
    label_names: list[str] | None = None
    binarization: str = "none"
    source: str = ""
    media: dict | None = None
    train_factors: np.ndarray | None = None
    valid_factors: np.ndarray | None = None
    test_factors: np.ndarray | None = None
    factor_names: list[str] | None = None
    factor_sizes: list[int] | None = None
    render_factors: Callable[[np.ndarray], Tensor] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.train.shape[1:])


#: (valid, test) fractions of the data vaekit splits itself when none are given.
DEFAULT_FRACTIONS = (0.1, 0.1)


def check_fractions(valid: float | None, test: float | None) -> tuple[float, float]:
    """The settings ``valid_fraction`` and ``test_fraction`` (None: 0.1) as (valid, test), each
    from 0 to below 1 and their sum below 1 (the rest is the training split); a
    :class:`ConfigError` names the one that is not."""
    given = {"valid_fraction": valid, "test_fraction": test}
    for (name, value), default in zip(given.items(), DEFAULT_FRACTIONS, strict=True):
        if value is None:
            given[name] = default
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and 0 <= value < 1)
        ):
            raise ConfigError(f"{name} must be a fraction from 0 to below 1, got {value!r}")
    v, t = float(given["valid_fraction"]), float(given["test_fraction"])
    if v + t >= 1:
        raise ConfigError(
            f"valid_fraction {v:g} + test_fraction {t:g} leave no training examples; give "
            "fractions whose sum is below 1"
        )
    return v, t


def split(
    x: Tensor, labels: Tensor | None, fractions: tuple[float, float], seed: int
) -> tuple[list[Tensor], list[Tensor | None]]:
    """Seeded random split of ``x`` (N, ...) into train / valid / test; ``fractions`` = (valid,
    test). A part with a fraction above 0 gets at least one example; N must be at least 3."""
    n = x.shape[0]
    if n < 3:
        raise DataError(
            f"{n} example{'s' * (n != 1)} cannot be split into train, valid and test; give 3 or "
            "more"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_valid, n_test = (max(int(f > 0), round(n * f)) for f in fractions)
    if n_valid + n_test >= n:
        n_valid, n_test = int(fractions[0] > 0), int(fractions[1] > 0)
    parts = [order[n_valid + n_test :], order[:n_valid], order[n_valid : n_valid + n_test]]
    return [x[p] for p in parts], [None if labels is None else labels[p] for p in parts]


def tensor(a: np.ndarray) -> Tensor:
    """A tensor sharing the memory of ``a`` (copied first when not contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(a))


def label_tensor(a: np.ndarray | None) -> Tensor | None:
    """Labels (N,) as an int64 tensor, or None."""
    return None if a is None else tensor(np.asarray(a).astype(np.int64))


def suits_bernoulli(x: np.ndarray | Tensor, eight_bit: bool = False) -> bool:
    """Whether ``x`` suits a Bernoulli likelihood: values in [0, 1] and not 8-bit pixels.

    Data of only 0s and 1s always suits it; 8-bit images (even scaled to [0, 1]), integer counts
    and data outside [0, 1] do not, and get a Gaussian likelihood from the command line.
    """
    x = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if not np.isfinite(x).all():
        return False
    if np.isin(x, (0, 1)).all():
        return True
    return not eight_bit and bool(x.min() >= 0 and x.max() <= 1)


def standardization(x: np.ndarray | Tensor) -> dict[str, list[float]]:
    """Each data dimension's mean and standard deviation over the examples ``x`` (N, ...), in
    float64, as a :class:`vaekit.VAEConfig`'s ``data_shift`` and ``data_scale`` (flat lists of
    prod(x.shape[1:]) values, in the data's units). A dimension that is constant (its standard
    deviation within rounding of 0) gets scale 1, as scikit-learn's StandardScaler gives it."""
    a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    a = a.reshape(len(a), -1).astype(np.float64)
    mean, std = a.mean(axis=0), a.std(axis=0)
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    scale = np.where(std <= tiny, 1.0, std)
    return {"data_shift": mean.tolist(), "data_scale": scale.tolist()}


def hidden(path: Path) -> bool:
    """Whether a file or folder is hidden (its name starts with "."): macOS's ``._NAME``
    companions of copied files, ``.ipynb_checkpoints`` and the like, which data folders skip."""
    return path.name.startswith(".")


def class_folder(
    folder: Path, list_files: Callable[[Path], list[Path]], what: str, item: str
) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """The files of a data folder: ``list_files(folder)`` at its top, unlabelled, or else those of
    its sub-folders, each sub-folder a class. Returns (files, labels, class names); labels index
    the sorted sub-folders and are None (as are the names) for files at the top. Files both at
    the top and in sub-folders, or none at all, are a :class:`DataError` naming ``what`` (e.g.
    "images") and one ``item`` (e.g. "image")."""
    where = repr(str(folder))
    top = list_files(folder)
    subs = sorted(d for d in folder.iterdir() if d.is_dir() and not hidden(d) and list_files(d))
    if top and subs:
        raise DataError(
            f"{where} holds {what} both at its top and in sub-folders; put every {item} into a "
            "class sub-folder, or none"
        )
    if not subs:
        return top, None, None
    per_class = [list_files(d) for d in subs]
    files = [f for fs in per_class for f in fs]
    labels = [k for k, fs in enumerate(per_class) for _ in fs]
    return files, labels, [d.name for d in subs]


def with_channels(ds: Dataset, channels: int) -> Dataset:
    """An image folder's data set with ``channels`` (1 or 3): grey images repeated over R, G, B,
    or colour turned grey as Pillow does (L = (19595 R + 38470 G + 7471 B + 32768) >> 16 on the
    8-bit values), so a run trained on grey images reads a folder of colour ones and back."""
    have = ds.train.shape[1] if ds.train.dim() == 4 else None
    if have == channels or have not in (1, 3) or channels not in (1, 3):
        return ds

    def convert(x: Tensor) -> Tensor:
        if channels == 3:
            return x.repeat(1, 3, 1, 1)
        rgb = (x * 255).round().long()
        grey = (19595 * rgb[:, 0] + 38470 * rgb[:, 1] + 7471 * rgb[:, 2] + 32768) >> 16
        return (grey.float() / 255)[:, None]

    ds.train, ds.valid, ds.test = (convert(x) for x in (ds.train, ds.valid, ds.test))
    if ds.image_shape is not None:
        ds.image_shape = (channels, *ds.image_shape[1:])
    return ds


def binarize_static(ds: Dataset, seed: int = 0) -> Dataset:
    """Replace every split by one fixed Bernoulli draw (x ~ Bernoulli(x)) under ``seed``.

    Needs values in [0, 1]. The draw is done once, so every epoch sees the same binary data (as
    in the "statically binarised" MNIST benchmarks); the splits keep their shapes.
    """
    lo = min(float(x.min()) for x in (ds.train, ds.valid, ds.test))
    hi = max(float(x.max()) for x in (ds.train, ds.valid, ds.test))
    if lo < 0 or hi > 1:
        raise DataError(
            f"static binarisation needs values in [0, 1] but {ds.name!r} has [{lo:g}, {hi:g}]; "
            "scale the data or use binarize='none'"
        )
    g = torch.Generator().manual_seed(seed)
    ds.train, ds.valid, ds.test = (
        torch.bernoulli(x, generator=g) for x in (ds.train, ds.valid, ds.test)
    )
    ds.binary = True
    ds.binarization = "static"
    return ds

"""Data sets as float32 tensors in [0, 1] (or real-valued), split into train / valid / test.

A :class:`Dataset` carries the splits, optional labels (kept for plots only) and what the data
suggests for the model (``binary``: values are pixel intensities in [0, 1] meant for a Bernoulli
likelihood with dynamic binarisation).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .errors import DataError

#: sha256 of the classic ``mnist.pkl.gz`` (50k / 10k / 10k, float32 in [0, 1]).
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


@dataclass
class Dataset:
    """Train / valid / test splits of shape (N, *data_shape) with optional labels (N,)."""

    name: str
    train: Tensor
    valid: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    valid_labels: Tensor | None = None
    test_labels: Tensor | None = None
    binary: bool = False
    #: Settings that suit this data set, as ``{"model": {...}, "train": {...}}``; a user's config
    #: and ``--set`` overrides take precedence.
    defaults: dict | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.train.shape[1:])


def data_dir() -> Path:
    """Folder searched for downloaded data sets: ``$VAEKIT_DATA`` or ``~/.cache/vaekit``."""
    return Path(os.environ.get("VAEKIT_DATA", Path.home() / ".cache" / "vaekit"))


def split(
    x: Tensor, labels: Tensor | None, fractions: tuple[float, float], seed: int
) -> tuple[list[Tensor], list[Tensor | None]]:
    """Seeded random split of ``x`` into train / valid / test; ``fractions`` = (valid, test)."""
    n = x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_valid, n_test = round(n * fractions[0]), round(n * fractions[1])
    parts = [order[n_valid + n_test :], order[:n_valid], order[n_valid : n_valid + n_test]]
    return [x[p] for p in parts], [None if labels is None else labels[p] for p in parts]


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, 17 grey levels scaled to [0, 1]), split 70/15/15."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32) / 16.0)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    (tr, va, te), (ytr, yva, yte) = split(x, y, (0.15, 0.15), seed)
    defaults = {"model": {"latent_dim": 8, "hidden": [200]}, "train": {"epochs": 100}}
    return Dataset("digits", tr, va, te, ytr, yva, yte, binary=True, defaults=defaults)


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays and nothing else."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a data file")


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_mnist_pickle(path: str | Path) -> Dataset:
    """The classic ``mnist.pkl.gz``: its sha256 is checked before anything is unpickled."""
    path = Path(path)
    if sha256(path) != MNIST_PKL_SHA256:
        raise DataError(
            f"{str(path)!r} is not the known mnist.pkl.gz (sha256 mismatch); vaekit unpickles "
            "only that file: remove it, or convert your data to .npy"
        )
    with gzip.open(path, "rb") as f:
        raw = f.read()
    (trx, try_), (vax, vay), (tex, tey) = _NumpyUnpickler(io.BytesIO(raw), encoding="latin1").load()

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a))

    return Dataset(
        "mnist",
        t(trx).float(),
        t(vax).float(),
        t(tex).float(),
        t(try_).long(),
        t(vay).long(),
        t(tey).long(),
        binary=True,
    )


def load_mnist(root: Path | None = None) -> Dataset:
    """MNIST from ``mnist.pkl.gz`` in the data folder (see :func:`data_dir`)."""
    root = root or data_dir()
    pkl = root / "mnist.pkl.gz"
    if pkl.exists():
        return load_mnist_pickle(pkl)
    raise DataError(
        f"MNIST not found: put mnist.pkl.gz into {str(root)!r} (or set VAEKIT_DATA to its folder)"
    )


def load_array(path: str | Path, seed: int = 0) -> Dataset:
    """A user's .npy / .npz array (N, ...) split 80/10/10 under ``seed``.

    An .npz may hold ``train`` / ``valid`` / ``test`` arrays (used as given) or one array.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read {str(path)!r} as a numpy array: {err}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        arrays = {k: loaded[k] for k in loaded.files}
        if {"train", "test"} <= set(arrays):
            parts = [arrays["train"], arrays.get("valid", arrays["test"]), arrays["test"]]
            x = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in parts]
            return Dataset(path.stem, *x, binary=_looks_unit(x[0]))
        if len(arrays) != 1:
            raise DataError(
                f"{str(path)!r} holds {sorted(arrays)}; expected train/test or one array"
            )
        (loaded,) = arrays.values()
    if loaded.ndim < 2 or loaded.shape[0] == 0:
        raise DataError(f"{str(path)!r} has shape {loaded.shape}; expected (examples, ...)")
    x = torch.from_numpy(np.asarray(loaded, dtype=np.float32))
    (tr, va, te), _ = split(x, None, (0.1, 0.1), seed)
    return Dataset(path.stem, tr, va, te, binary=_looks_unit(x))


def _looks_unit(x: Tensor) -> bool:
    return bool(torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1)


#: Built-in data set names -> loader.
DATASETS = {"digits": load_digits, "mnist": load_mnist}


def load(name_or_path: str, *, seed: int = 0) -> Dataset:
    """A built-in data set by name, or a user's file by path."""
    if name_or_path == "digits":
        return load_digits(seed)
    if name_or_path in DATASETS:
        return DATASETS[name_or_path]()
    path = Path(name_or_path)
    if path.suffix in (".npy", ".npz"):
        return load_array(path, seed)
    if not path.exists():
        raise DataError(
            f"unknown data set or missing file {name_or_path!r}; use one of "
            f"{', '.join(DATASETS)} or a path to a .npy/.npz file"
        )
    raise DataError(f"cannot read {name_or_path!r}: supported files are .npy and .npz")

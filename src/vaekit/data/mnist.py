"""MNIST and Fashion-MNIST: the four idx files (as published, gzip-compressed or not) and the
classic pickled ``mnist.pkl.gz``, each checked against its published digest before it is read."""

from __future__ import annotations

import copy
import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..errors import DataError
from .dataset import Dataset, label_tensor, tensor
from .download import fetch, folders, md5, missing, sha256, unpickle

#: sha256 of the classic ``mnist.pkl.gz`` (50k / 10k / 10k, float32 in [0, 1]).
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

#: The four idx files of MNIST and Fashion-MNIST, in the order train images, train labels, test
#: images, test labels. Each may also be stored uncompressed (without ``.gz``).
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
#: Published md5 of each compressed idx file (as distributed and as used by torchvision).
MNIST_IDX_MD5 = dict(
    zip(
        IDX_FILES,
        (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
        strict=True,
    )
)
FASHION_IDX_MD5 = dict(
    zip(
        IDX_FILES,
        (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        strict=True,
    )
)
MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
FASHION_URLS = (
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

#: Recommended settings for MNIST and Fashion-MNIST: the AEVB paper's MNIST model.
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"hidden": [500], "latent_dim": 20, "activation": "tanh", "likelihood": "bernoulli"},
    "train": {"epochs": 100, "batch_size": 100, "optimizer": "adam", "lr": 1e-3},
}

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """An idx file (as MNIST distributes it; gzip-compressed when its name ends in ``.gz``).

    The magic number is two zero bytes, a dtype code (0x08 = uint8, ...) and the number of
    dimensions; ``ndim`` (3 for images, 1 for labels) is checked when given. Returns the array
    in the file's shape, e.g. (60000, 28, 28) uint8 images or (60000,) uint8 labels.
    """
    path = Path(path)
    want = f"0x000008{ndim:02X}" if ndim else "0x0000 then a type code and a rank"
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"idx file {str(path)!r} does not exist") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {str(path)!r}: {err}; replace it with a good copy") from None
    if len(raw) < 4:
        raise DataError(f"{str(path)!r} is too short for an idx file; replace it with a good copy")
    magic = int.from_bytes(raw[:4], "big")
    code, dims = raw[2], raw[3]
    if raw[:2] != b"\0\0" or code not in _IDX_DTYPES or (ndim is not None and dims != ndim):
        raise DataError(
            f"{str(path)!r} has magic number 0x{magic:08X}, expected {want}; "
            "is it the right idx file?"
        )
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{str(path)!r} ends inside its header; replace it with a good copy")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    size = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != size:
        raise DataError(
            f"{str(path)!r} holds {len(raw) - header} bytes of data but its header {shape} "
            f"needs {size}; replace it with a good copy"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def idx_paths(folder: Path) -> list[Path] | None:
    """The four idx files in ``folder``, or None if any is missing. Each may be .gz or plain,
    and named as published (``train-images-idx3-ubyte``) or with a dot before ``idx``
    (``train-images.idx3-ubyte``, as some mirrors, Kaggle's among them, name them)."""
    found = []
    for name in IDX_FILES:
        dotted = name.replace("-idx", ".idx")
        names = (name, name.removesuffix(".gz"), dotted, dotted.removesuffix(".gz"))
        found.append(next((folder / n for n in names if (folder / n).is_file()), None))
    return None if None in found else found  # type: ignore[return-value]


def load_idx_folder(
    folder: str | Path, name: str | None = None, *, check_md5: dict[str, str] | None = None
) -> Dataset:
    """MNIST-layout idx files in ``folder``: 28x28 uint8 images -> (N, 784) float32 in [0, 1].

    Train = the training file but its last 10000 examples (the classic MNIST split: 50k / 10k),
    valid = those last 10000 (the last sixth when the file holds 10000 or fewer), test = t10k.
    Labels are kept. ``check_md5`` maps each compressed file name to its expected md5 (checked
    for ``.gz`` files only).
    """
    folder = Path(folder)
    paths = idx_paths(folder)
    if paths is None:
        raise DataError(f"{str(folder)!r} lacks idx files: it needs {_idx_note()}")
    for p in paths:
        want = (check_md5 or {}).get(p.name)
        if want is not None and (got := md5(p)) != want:
            raise DataError(
                f"{str(p)!r} has md5 {got}, expected {want} (the published file); "
                "replace it with a good copy"
            )
    tr_x, tr_y, te_x, te_y = (read_idx(p, nd) for p, nd in zip(paths, (3, 1, 3, 1), strict=True))
    _check_idx_images(paths, tr_x, tr_y, te_x, te_y)
    n_valid = 10000 if len(tr_x) > 10000 else len(tr_x) // 6

    def flat(a: np.ndarray) -> Tensor:
        return tensor(a.reshape(len(a), -1).astype(np.float32) / np.float32(255))

    x_all = flat(tr_x)
    h, w = tr_x.shape[1:]
    return Dataset(
        name or folder.name,
        x_all[:-n_valid],
        x_all[-n_valid:],
        flat(te_x),
        label_tensor(tr_y[:-n_valid]),
        label_tensor(tr_y[-n_valid:]),
        label_tensor(te_y),
        binary=True,
        image_shape=(1, h, w),
        source=str(folder),
    )


def _check_idx_images(paths: list[Path], *arrays: np.ndarray) -> None:
    """Train and test images (uint8, of one size) each with one label apiece."""
    tr_x, tr_y, te_x, te_y = arrays
    for x, y, px in ((tr_x, tr_y, paths[0]), (te_x, te_y, paths[2])):
        if len(x) != len(y):
            raise DataError(f"{str(px)!r} holds {len(x)} images but its labels {len(y)}")
        if len(x) == 0:
            raise DataError(f"{str(px)!r} holds no images; replace it with a good copy")
    n_valid = 10000 if len(tr_x) > 10000 else len(tr_x) // 6
    if len(tr_x) - n_valid < 1 or n_valid < 1:
        raise DataError(f"{str(paths[0])!r} holds {len(tr_x)} images; need 2 or more")
    for a, p in ((tr_x, paths[0]), (te_x, paths[2])):
        if a.dtype != np.uint8:
            raise DataError(f"{str(p)!r} holds {a.dtype} values; MNIST-layout images are uint8")
    if te_x.shape[1:] != tr_x.shape[1:]:
        raise DataError(
            f"{str(paths[2])!r} has images of {te_x.shape[1:]}, train of {tr_x.shape[1:]}"
        )


def load_mnist_pickle(path: str | Path) -> Dataset:
    """The classic ``mnist.pkl.gz``: (N, 784) float32 in [0, 1], 50k / 10k / 10k with labels.

    Its sha256 is checked before anything is unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    if sha256(path) != MNIST_PKL_SHA256:
        raise DataError(
            f"{str(path)!r} is not the known mnist.pkl.gz (sha256 mismatch); vaekit unpickles "
            "only that file: remove it, or convert your data to .npy"
        )
    with gzip.open(path, "rb") as f:
        raw = f.read()
    (trx, try_), (vax, vay), (tex, tey) = unpickle(raw, repr(str(path)), "latin1")
    return Dataset(
        "mnist",
        tensor(np.asarray(trx, np.float32)),
        tensor(np.asarray(vax, np.float32)),
        tensor(np.asarray(tex, np.float32)),
        label_tensor(try_),
        label_tensor(vay),
        label_tensor(tey),
        binary=True,
        defaults=copy.deepcopy(DEFAULTS),
        image_shape=(1, 28, 28),
        label_names=[str(i) for i in range(10)],
        source=str(path),
    )


def _idx_note() -> str:
    return f"{', '.join(IDX_FILES)} (or uncompressed)"


def load_mnist(root: str | Path | None = None, seed: int = 0) -> Dataset:
    """MNIST as (N, 784) float32 in [0, 1]: train 50000, valid 10000, test 10000, with labels.

    Looks in ``root/mnist`` then ``root`` (``root`` defaults to :func:`data_dir`) for
    ``mnist.pkl.gz`` or the four idx files, else downloads the idx files into ``root/mnist``.
    ``seed`` is unused: the split is fixed.
    """
    where = folders("mnist", root)
    for folder in where:
        if (folder / "mnist.pkl.gz").is_file():
            return load_mnist_pickle(folder / "mnist.pkl.gz")
        if idx_paths(folder) is not None:
            return _named(load_idx_folder(folder, check_md5=MNIST_IDX_MD5), "mnist")
    dest = where[0]
    for f in IDX_FILES:
        if (dest / f).is_file():
            continue
        done, note = fetch([u + f for u in MNIST_URLS], dest / f, md5=MNIST_IDX_MD5[f])
        if not done:
            raise missing(f"MNIST not found: put mnist.pkl.gz or {_idx_note()}", where, note)
    return _named(load_idx_folder(dest, check_md5=MNIST_IDX_MD5), "mnist")


def load_fashion_mnist(root: str | Path | None = None, seed: int = 0) -> Dataset:
    """Fashion-MNIST as (N, 784) float32 in [0, 1]: train 50000, valid 10000 (the last of the
    training file), test 10000, with labels.

    Looks in ``root/fashion-mnist`` only (its files are named like MNIST's), else downloads them
    there. ``seed`` is unused: the split is fixed.
    """
    where = folders("fashion-mnist", root, top=False)
    if idx_paths(where[0]) is None:
        for f in IDX_FILES:
            if (where[0] / f).is_file():
                continue
            done, note = fetch([u + f for u in FASHION_URLS], where[0] / f, md5=FASHION_IDX_MD5[f])
            if not done:
                raise missing(f"Fashion-MNIST not found: put {_idx_note()}", where, note)
    return _named(load_idx_folder(where[0], check_md5=FASHION_IDX_MD5), "fashion-mnist")


def _named(ds: Dataset, name: str) -> Dataset:
    """An idx folder's data set as the built-in ``name`` ("mnist" or "fashion-mnist")."""
    ds.name = name
    ds.defaults = copy.deepcopy(DEFAULTS)
    ds.label_names = list(FASHION_CLASSES) if name == "fashion-mnist" else list("0123456789")
    return ds

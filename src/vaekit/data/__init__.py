"""Data sets as float32 tensors, split into train / valid / test.

A :class:`Dataset` carries the splits, optional labels (kept for plots only) and what the data
suggests for the model: ``binary`` is True when the values are intensities in [0, 1] meant for a
Bernoulli likelihood (with dynamic binarisation in :func:`vaekit.train.fit`), False for 8-bit
images, integer counts or real values, for which a Gaussian likelihood is the safer choice.

Built-in data sets (:data:`DATASETS`): ``digits`` (scikit-learn, offline), ``mnist``,
``fashion-mnist``, ``cifar10`` and ``frey-face``. Their files are looked for in :func:`data_dir`
and in a sub-folder of it named after the data set; when absent they are downloaded there, checked
against published checksums, unless ``VAEKIT_OFFLINE=1``. A user's own data: ``.npy`` / ``.npz``
arrays, numeric ``.csv`` files and folders of images (see :func:`load`).

Pickled files (``mnist.pkl.gz``, the CIFAR-10 batches) are unpickled only after their checksum
matches the published one, and then with an unpickler that builds numpy arrays, lists, dicts,
strings, bytes and numbers and nothing else. vaekit itself never writes a pickle.
"""

from __future__ import annotations

import codecs
import copy
import csv
import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import tarfile
import tokenize
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .checks import as_tensor, check_examples  # noqa: F401  (public names)
from .dataset import Dataset

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

CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: md5 (as published on the CIFAR-10 page) and sha256 of ``cifar-10-python.tar.gz``.
CIFAR10_TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TARBALL_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
#: md5 of each member of ``cifar-10-batches-py`` (the extracted tarball).
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CIFAR10_CLASSES = (
    "airplane automobile bird cat deer dog frog horse ship truck".split()  # noqa: SIM905
)

FREY_FILE = "frey_rawface.mat"
FREY_URL = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"
#: Frey Face: 1965 grey images of 28 x 20 pixels, stored as the columns of ``ff`` (560, 1965).
FREY_SHAPE = (28, 20)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
BINARIZE = ("none", "static")
#: The largest image side (pixels) an image folder is resized to: a larger image_size is refused
#: before any image is resized (one 4096 x 4096 RGB image is already 200 MB as float32).
MAX_IMAGE_SIDE = 4096

_AEVB_MNIST = {
    "model": {"hidden": [500], "latent_dim": 20, "activation": "tanh", "likelihood": "bernoulli"},
    "train": {"epochs": 100, "batch_size": 100, "optimizer": "adam", "lr": 1e-3},
}
#: Recommended settings per built-in data set, as ``{"model": {...}, "train": {...}}``.
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "digits": {"model": {"latent_dim": 8, "hidden": [200]}, "train": {"epochs": 100}},
    "mnist": _AEVB_MNIST,
    "fashion-mnist": _AEVB_MNIST,
    # AEVB paper, Frey Face: 200 hidden units, Gaussian decoder with mean and variance from the
    # network; two latent dimensions give its learned-manifold figure.
    "frey-face": {
        "model": {
            "hidden": [200],
            "latent_dim": 2,
            "activation": "tanh",
            "likelihood": "gaussian",
        },
        "train": {"epochs": 500, "batch_size": 100, "optimizer": "adam", "lr": 1e-3},
    },
    "cifar10": {
        "model": {
            "hidden": [1000],
            "latent_dim": 64,
            "activation": "relu",
            "likelihood": "gaussian",
        },
        "train": {"epochs": 50, "batch_size": 100, "optimizer": "adam", "lr": 1e-3},
    },
}


# -- where files live ------------------------------------------------------------------------


#: What np.load raises on a damaged .npy/.npz: a broken header is parsed by Python's tokenizer
#: and ast (SyntaxError, tokenize.TokenError), a broken body or archive by numpy and zlib.
NUMPY_READ_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    SyntaxError,
    tokenize.TokenError,
    MemoryError,
    zlib.error,
)


def data_dir() -> Path:
    """Folder searched for downloaded data sets: ``$VAEKIT_DATA`` or ``~/.cache/vaekit``."""
    return Path(os.environ.get("VAEKIT_DATA", Path.home() / ".cache" / "vaekit")).expanduser()


def offline() -> bool:
    """True when ``VAEKIT_OFFLINE`` is set to anything but "" or "0": no downloads."""
    return os.environ.get("VAEKIT_OFFLINE", "") not in ("", "0")


def _folders(name: str, root: str | Path | None, *, top: bool = True) -> list[Path]:
    """Folders to search for data set ``name``: ``root/name`` and (if ``top``) ``root``."""
    base = Path(root).expanduser() if root is not None else data_dir()
    return [base / name, base] if top else [base / name]


def _where(folders: Sequence[Path]) -> str:
    return " or ".join(repr(str(f)) for f in folders)


def _missing(what: str, folders: Sequence[Path], note: str) -> DataError:
    """The one-line error for a public data set that is neither on disk nor downloadable."""
    return DataError(f"{what} into {_where(folders)} (VAEKIT_DATA sets the data folder); {note}")


def _hashes(path: Path) -> tuple[str, str]:
    """(md5, sha256) hex digests of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return _hashes(Path(path))[1]


def md5(path: Path) -> str:
    """Hex md5 of a file (the checksum most data sets publish)."""
    return _hashes(Path(path))[0]


def download(
    urls: Sequence[str],
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    check: Callable[[Path], None] | None = None,
    timeout: float = 20.0,
) -> bool:
    """Fetch ``dest`` from the first of ``urls`` that answers; True on success.

    The bytes go to a hidden ``.part`` file beside ``dest``, are checked (``md5`` / ``sha256`` hex
    digests; ``check`` may raise :class:`DataError` on bad content) and only then renamed to
    ``dest``, so a partial or wrong download never takes its place. Returns False when no URL can
    be reached or ``dest``'s folder cannot be written; raises :class:`DataError` on a mismatch.
    Does not look at ``VAEKIT_OFFLINE``: callers do.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    for url in urls:
        h_md5, h_sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as f:
                for block in iter(lambda r=response: r.read(1 << 20), b""):
                    f.write(block)
                    h_md5.update(block)
                    h_sha.update(block)
        except (OSError, ValueError):  # URLError, HTTPError and timeouts are OSErrors
            part.unlink(missing_ok=True)
            continue
        for algo, want, got in (("md5", md5, h_md5), ("sha256", sha256, h_sha)):
            if want is not None and got.hexdigest() != want:
                part.unlink(missing_ok=True)
                raise DataError(
                    f"download of {url} has {algo} {got.hexdigest()}, expected {want}; it was "
                    f"discarded: try again, or put a good copy of {dest.name} into "
                    f"{str(dest.parent)!r}"
                )
        if check is not None:
            try:
                check(part)
            except DataError:
                part.unlink(missing_ok=True)
                raise
        os.replace(part, dest)
        return True
    return False


def _fetch(urls: Sequence[str], dest: Path, **checks: Any) -> tuple[bool, str]:
    """Try :func:`download` unless offline; returns (done, a note for the error message)."""
    if offline():
        return False, "downloading is off (VAEKIT_OFFLINE is set)"
    if download(urls, dest, **checks):
        return True, ""
    return False, f"the download from {urls[0]} failed (no network?)"


# -- checks shared by every loader -----------------------------------------------------------


def _check_examples(x: np.ndarray, where: str) -> None:
    """Reject an empty array or one holding NaN / inf, naming the first bad example."""
    if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{where} has shape {x.shape}; expected (examples, ...) with some examples")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{where} holds NaN or infinite values (first in example {i}); clean it"
            )


def _to_float(a: np.ndarray, where: str = "the data") -> tuple[np.ndarray, bool]:
    """A float32 copy of ``a`` and whether it is 8-bit data.

    uint8 values are divided by 255 into [0, 1], unless they are all 0 or 1 (already binary).
    """
    if a.dtype == np.uint8:
        if a.max(initial=0) <= 1:
            return a.astype(np.float32), False
        return a.astype(np.float32) / np.float32(255), True
    if np.iscomplexobj(a):
        raise DataError(
            f"{where} holds complex numbers; give their real and imaginary parts as separate "
            "values (e.g. np.stack([x.real, x.imag], axis=-1))"
        )
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.number):
        with np.errstate(over="ignore"):
            x = np.asarray(a, dtype=np.float32)
        if not np.isfinite(x).all():
            largest = float(np.abs(a.astype(np.float64)).max())
            raise DataError(
                f"{where} holds values up to {largest:g}, beyond float32's range (3.4e+38); "
                "scale the data"
            )
        return x, False
    raise DataError(f"arrays of dtype {a.dtype} are not numbers; convert them to float")


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


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _labels(a: np.ndarray | None) -> Tensor | None:
    return None if a is None else _t(np.asarray(a).astype(np.int64))


def channels_first(a: np.ndarray) -> np.ndarray:
    """Images (N, H, W, C) stored channels last, as Pillow, matplotlib and Keras keep them, as
    (N, C, H, W); any other array as it is. An array is taken for channels last when its last
    axis has 1 or 3 entries (grey, RGB) and its second axis has not."""
    if a.ndim == 4 and a.shape[3] in (1, 3) and a.shape[1] not in (1, 3):
        return a.transpose(0, 3, 1, 2)
    return a


def channels_last_as_trained(x: Tensor, data_shape: tuple[int, ...]) -> Tensor:
    """Examples ``x`` (N, C, H, W) that :func:`channels_first` turned from (N, H, W, C), back as
    (N, H, W, C) when a run's model takes ``data_shape`` (H, W, C): a run trained on such an
    array before vaekit read it channels first. Any other ``x`` as it is."""
    s = tuple(data_shape)
    if (
        len(s) == 3
        and x.dim() == 4
        and tuple(x.shape[1:]) == (s[2], s[0], s[1])
        and s[2] in (1, 3)
        and s[0] not in (1, 3)
    ):
        return x.permute(0, 2, 3, 1).contiguous()
    return x


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(C, H, W) of examples of ``shape`` (N, ...) when they look like images."""
    if len(shape) == 3:
        return (1, shape[1], shape[2])
    if len(shape) == 4 and shape[1] in (1, 3, 4):
        return (shape[1], shape[2], shape[3])
    return None


def _from_array(
    name: str,
    x: np.ndarray,
    labels: np.ndarray | None,
    seed: int,
    path: Path,
    *,
    eight_bit: bool = False,
    label_names: list[str] | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> Dataset:
    """A Dataset from one float32 array (N, ...) split 80/10/10 under ``seed``.

    eight_bit: the values are 8-bit pixels scaled to [0, 1] (then ``binary`` is False unless
    every value is 0 or 1).
    """
    where = repr(str(path))
    _check_examples(x, where)
    if labels is not None and len(labels) != len(x):
        raise DataError(f"{where} has {len(x)} examples but {len(labels)} labels")
    (tr, va, te), (ytr, yva, yte) = split(_t(x), _labels(labels), (0.1, 0.1), seed)
    return Dataset(
        name,
        tr,
        va,
        te,
        ytr,
        yva,
        yte,
        binary=suits_bernoulli(x, eight_bit),
        image_shape=image_shape or _image_shape(x.shape),
        label_names=label_names,
        source=str(path),
    )


# -- scikit-learn digits ---------------------------------------------------------------------


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits: 1797 examples (64,), 17 grey levels scaled to [0, 1], split
    70/15/15 under ``seed``; labels 0-9."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32) / 16.0)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    (tr, va, te), (ytr, yva, yte) = split(x, y, (0.15, 0.15), seed)
    return Dataset(
        "digits",
        tr,
        va,
        te,
        ytr,
        yva,
        yte,
        binary=True,
        defaults=copy.deepcopy(DEFAULTS["digits"]),
        image_shape=(1, 8, 8),
        label_names=[str(i) for i in range(10)],
    )


# -- restricted unpickling -------------------------------------------------------------------


def _np_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays, lists, dicts, str, bytes and numbers, nothing else.

    Lists, dicts, strings, bytes and numbers need no class lookup; the only globals it resolves
    are numpy's array constructor, ``ndarray`` and ``dtype``.
    """

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct(),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a data file")


def _unpickle(raw: bytes, where: str, encoding: str) -> Any:
    try:
        return _NumpyUnpickler(io.BytesIO(raw), encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"cannot read {where}: {err}; replace the file with a good copy") from None


# -- MNIST and Fashion-MNIST -----------------------------------------------------------------

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


def _idx_paths(folder: Path) -> list[Path] | None:
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
    paths = _idx_paths(folder)
    if paths is None:
        raise DataError(
            f"{str(folder)!r} lacks idx files: it needs {', '.join(IDX_FILES)} (or uncompressed)"
        )
    for p in paths:
        want = (check_md5 or {}).get(p.name)
        if want is not None and (got := md5(p)) != want:
            raise DataError(
                f"{str(p)!r} has md5 {got}, expected {want} (the published file); "
                "replace it with a good copy"
            )
    tr_x, tr_y, te_x, te_y = (read_idx(p, nd) for p, nd in zip(paths, (3, 1, 3, 1), strict=True))
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

    def flat(a: np.ndarray) -> Tensor:
        return _t(a.reshape(len(a), -1).astype(np.float32) / np.float32(255))

    x_all = flat(tr_x)
    h, w = tr_x.shape[1:]
    if te_x.shape[1:] != (h, w):
        raise DataError(f"{str(paths[2])!r} has images of {te_x.shape[1:]}, train of {(h, w)}")
    return Dataset(
        name or folder.name,
        x_all[:-n_valid],
        x_all[-n_valid:],
        flat(te_x),
        _labels(tr_y[:-n_valid]),
        _labels(tr_y[-n_valid:]),
        _labels(te_y),
        binary=True,
        image_shape=(1, h, w),
        source=str(folder),
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
    (trx, try_), (vax, vay), (tex, tey) = _unpickle(raw, repr(str(path)), "latin1")
    return Dataset(
        "mnist",
        _t(np.asarray(trx, np.float32)),
        _t(np.asarray(vax, np.float32)),
        _t(np.asarray(tex, np.float32)),
        _labels(try_),
        _labels(vay),
        _labels(tey),
        binary=True,
        defaults=copy.deepcopy(DEFAULTS["mnist"]),
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
    folders = _folders("mnist", root)
    for folder in folders:
        if (folder / "mnist.pkl.gz").is_file():
            return load_mnist_pickle(folder / "mnist.pkl.gz")
        if _idx_paths(folder) is not None:
            return _named(load_idx_folder(folder, check_md5=MNIST_IDX_MD5), "mnist")
    dest = folders[0]
    for f in IDX_FILES:
        if (dest / f).is_file():
            continue
        done, note = _fetch([u + f for u in MNIST_URLS], dest / f, md5=MNIST_IDX_MD5[f])
        if not done:
            raise _missing(f"MNIST not found: put mnist.pkl.gz or {_idx_note()}", folders, note)
    return _named(load_idx_folder(dest, check_md5=MNIST_IDX_MD5), "mnist")


def load_fashion_mnist(root: str | Path | None = None, seed: int = 0) -> Dataset:
    """Fashion-MNIST as (N, 784) float32 in [0, 1]: train 50000, valid 10000 (the last of the
    training file), test 10000, with labels.

    Looks in ``root/fashion-mnist`` only (its files are named like MNIST's), else downloads them
    there. ``seed`` is unused: the split is fixed.
    """
    folders = _folders("fashion-mnist", root, top=False)
    if _idx_paths(folders[0]) is None:
        for f in IDX_FILES:
            if (folders[0] / f).is_file():
                continue
            done, note = _fetch(
                [u + f for u in FASHION_URLS], folders[0] / f, md5=FASHION_IDX_MD5[f]
            )
            if not done:
                raise _missing(f"Fashion-MNIST not found: put {_idx_note()}", folders, note)
    return _named(load_idx_folder(folders[0], check_md5=FASHION_IDX_MD5), "fashion-mnist")


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def _named(ds: Dataset, name: str) -> Dataset:
    ds.name = name
    ds.defaults = copy.deepcopy(DEFAULTS[name])
    ds.label_names = list(FASHION_CLASSES) if name == "fashion-mnist" else list("0123456789")
    return ds


# -- CIFAR-10 --------------------------------------------------------------------------------


def _cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 3, 32, 32) uint8, labels (n,)) from one pickled CIFAR-10 batch."""
    d = _unpickle(raw, where, "bytes")
    data = d.get(b"data") if isinstance(d, dict) else None
    labels = d.get(b"labels") if isinstance(d, dict) else None
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or labels is None
        or len(labels) != len(data)
    ):
        raise DataError(f"{where} is not a CIFAR-10 batch; replace it with a good copy")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _cifar_dataset(batches: dict[str, bytes], source: str) -> Dataset:
    parts = [_cifar_batch(batches[f"data_batch_{i}"], f"data_batch_{i}") for i in range(1, 6)]
    te_x, te_y = _cifar_batch(batches["test_batch"], "test_batch")
    tr_x = np.concatenate([p[0] for p in parts[:4]])
    tr_y = np.concatenate([p[1] for p in parts[:4]])
    va_x, va_y = parts[4]

    def f(a: np.ndarray) -> Tensor:
        return _t(a.astype(np.float32) / np.float32(255))

    return Dataset(
        "cifar10",
        f(tr_x),
        f(va_x),
        f(te_x),
        _labels(tr_y),
        _labels(va_y),
        _labels(te_y),
        binary=False,
        defaults=copy.deepcopy(DEFAULTS["cifar10"]),
        image_shape=(3, 32, 32),
        label_names=list(CIFAR10_CLASSES),
        source=source,
    )


def load_cifar10_folder(folder: str | Path, *, _md5: dict[str, str] | None = None) -> Dataset:
    """The extracted ``cifar-10-batches-py`` folder; see :func:`load_cifar10`.

    Each batch's md5 must match the published one before it is unpickled. (``_md5`` replaces the
    published table; for tests only.)
    """
    folder = Path(folder)
    table = CIFAR10_BATCH_MD5 if _md5 is None else _md5
    names = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"{str(folder)!r} lacks {', '.join(missing)}; extract cifar-10-python.tar.gz again"
        )
    batches = {}
    for name in names:
        path = folder / name
        if (got := md5(path)) != table[name]:
            raise DataError(
                f"{str(path)!r} has md5 {got}, expected {table[name]} (the published "
                "CIFAR-10 batch); vaekit unpickles only verified files: replace it"
            )
        batches[name] = path.read_bytes()
    return _cifar_dataset(batches, str(folder))


def load_cifar10_tarball(
    path: str | Path, *, _md5: str | None = None, _sha256: str | None = None
) -> Dataset:
    """``cifar-10-python.tar.gz``, read in place; see :func:`load_cifar10`.

    Its md5 and sha256 must match the published ones before anything in it is unpickled.
    (``_md5`` / ``_sha256`` replace the published digests; for tests only.)
    """
    path = Path(path)
    want_md5 = CIFAR10_TARBALL_MD5 if _md5 is None else _md5
    want_sha = CIFAR10_TARBALL_SHA256 if _sha256 is None else _sha256
    got_md5, got_sha = _hashes(path)
    if (got_md5, got_sha) != (want_md5, want_sha):
        raise DataError(
            f"{str(path)!r} has md5 {got_md5}, expected {want_md5} (the published "
            "cifar-10-python.tar.gz); vaekit unpickles only verified files: replace it"
        )
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.rpartition("/")[2]
                if member.isfile() and name in CIFAR10_BATCH_MD5:
                    batches[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {str(path)!r}: {err}; replace it with a good copy") from None
    missing = [n for n in CIFAR10_BATCH_MD5 if n != "batches.meta" and n not in batches]
    if missing:
        raise DataError(f"{str(path)!r} lacks {', '.join(missing)}; replace it with a good copy")
    return _cifar_dataset(batches, str(path))


def load_cifar10(root: str | Path | None = None, seed: int = 0) -> Dataset:
    """CIFAR-10 as (N, 3, 32, 32) float32 RGB in [0, 1]: train 40000 (data_batch_1-4), valid
    10000 (data_batch_5), test 10000 (test_batch), with labels 0-9 (:data:`CIFAR10_CLASSES`).

    Looks in ``root/cifar10`` then ``root`` for the ``cifar-10-batches-py`` folder or the
    ``cifar-10-python.tar.gz`` tarball, else downloads the tarball into ``root/cifar10``.
    ``seed`` is unused: the split is fixed.
    """
    folders = _folders("cifar10", root)
    for folder in folders:
        if (folder / CIFAR10_FOLDER).is_dir():
            return load_cifar10_folder(folder / CIFAR10_FOLDER)
        if (folder / CIFAR10_TARBALL).is_file():
            return load_cifar10_tarball(folder / CIFAR10_TARBALL)
    dest = folders[0] / CIFAR10_TARBALL
    done, note = _fetch(
        [CIFAR10_URL], dest, md5=CIFAR10_TARBALL_MD5, sha256=CIFAR10_TARBALL_SHA256, timeout=60
    )
    if not done:
        raise _missing(
            f"CIFAR-10 not found: put {CIFAR10_TARBALL} (or its {CIFAR10_FOLDER} folder)",
            folders,
            note,
        )
    return load_cifar10_tarball(dest)


# -- Frey Face -------------------------------------------------------------------------------


def _read_frey(path: Path) -> np.ndarray:
    """``ff`` of a Frey Face .mat file as (1965, 560) uint8; DataError if it is not one."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except FileNotFoundError:
        raise DataError(f"data file {str(path)!r} does not exist") from None
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError, ...
        raise DataError(f"cannot read {str(path)!r} as a .mat file: {err}") from None
    ff = mat.get("ff")
    if not isinstance(ff, np.ndarray):
        raise DataError(f"{str(path)!r} has no variable 'ff'; is it {FREY_FILE}?")
    n_pix = FREY_SHAPE[0] * FREY_SHAPE[1]
    if ff.ndim != 2 or ff.shape[0] != n_pix or ff.shape[1] == 0:
        raise DataError(f"'ff' in {str(path)!r} has shape {ff.shape}; expected ({n_pix}, examples)")
    return np.ascontiguousarray(ff.T)


def load_frey_face_file(path: str | Path, seed: int = 0) -> Dataset:
    """A Frey Face .mat file: examples (560,) = 28 x 20 pixels row by row, float32 in [0, 1]
    (uint8 / 255), split 80/10/10 under ``seed``; no labels. ``binary`` is False: the AEVB paper
    fits it with a Gaussian likelihood."""
    path = Path(path)
    ff = _read_frey(path)
    x = ff.astype(np.float32) / np.float32(255)
    ds = _from_array("frey-face", x, None, seed, path, eight_bit=True, image_shape=(1, *FREY_SHAPE))
    ds.binary = False
    ds.defaults = copy.deepcopy(DEFAULTS["frey-face"])
    return ds


def load_frey_face(root: str | Path | None = None, seed: int = 0) -> Dataset:
    """Frey Face (1965 examples of (560,), see :func:`load_frey_face_file`) from ``root/frey-face``
    or ``root``, else downloaded into ``root/frey-face``.

    No checksum is published for this file; a download is kept only if it reads as a .mat file
    with ``ff`` of shape (560, N), and .mat files hold data, never code.
    """
    folders = _folders("frey-face", root)
    for folder in folders:
        if (folder / FREY_FILE).is_file():
            return load_frey_face_file(folder / FREY_FILE, seed)
    dest = folders[0] / FREY_FILE
    done, note = _fetch([FREY_URL], dest, check=_read_frey)
    if not done:
        raise _missing(f"Frey Face not found: put {FREY_FILE}", folders, note)
    return load_frey_face_file(dest, seed)


# -- the user's files ------------------------------------------------------------------------


def load_array(path: str | Path, seed: int = 0) -> Dataset:
    """A user's .npy / .npz array (N, ...), split 80/10/10 under ``seed``.

    An .npz may hold ``train`` / ``test`` (and ``valid``; else 10% of train under ``seed``) with
    optional ``train_labels`` / ``valid_labels`` / ``test_labels``, or one array with optional
    ``labels``. uint8 arrays are divided by 255. Images stored channels last (N, H, W, C) are
    read as (N, C, H, W) (:func:`channels_first`). Labels are integers, or text numbered in
    sorted order (``label_names``).
    """
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise DataError(f"data file {where} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
        else:
            arrays = {"": loaded}
    except NUMPY_READ_ERRORS as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "pickle" in detail:  # numpy's guess for a file without the .npy header
            detail = "it is not a .npy/.npz file of numbers (vaekit never unpickles data)"
        raise DataError(f"cannot read {where} as a numpy array: {detail}") from None
    if {"train", "test"} <= set(arrays):
        return _array_splits(path, arrays, seed)
    labels = arrays.pop("labels", None)
    if len(arrays) != 1:
        raise DataError(
            f"{where} holds {sorted(arrays)}; expected train/test(/valid) or one array "
            "(and optionally labels)"
        )
    (a,) = arrays.values()
    _check_examples(a, where)
    x, eight_bit = _to_float(channels_first(a), where)
    numbered, names = _numbered_labels({"labels": labels}, where)
    return _from_array(
        path.stem, x, numbered["labels"], seed, path, eight_bit=eight_bit, label_names=names
    )


def _numbered_labels(
    given: dict[str, np.ndarray | None], where: str
) -> tuple[dict[str, np.ndarray | None], list[str] | None]:
    """Label arrays (each (N,) or None, by key) as int64, and the class names when they are text.

    Integer labels (or floats with integer values) stay as they are; text labels are numbered
    in sorted order over every array, and their names returned. Anything else is a DataError
    naming the array.
    """
    out: dict[str, np.ndarray | None] = {}
    text = [k for k, y in given.items() if y is not None and y.dtype.kind in "USO"]
    names = sorted({str(v) for k in text for v in given[k].ravel()}) if text else None  # type: ignore[union-attr]
    for key, y in given.items():
        if y is None:
            out[key] = None
            continue
        if y.ndim != 1:
            one_hot = y.ndim == 2 and y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all()
            raise DataError(
                f"{key!r} in {where} has shape {y.shape}; labels are one per example, shape (N,)"
                + ("; for one-hot rows give labels.argmax(axis=1)" if one_hot else "")
            )
        if names is not None:
            if key not in text:
                raise DataError(f"{where} has text labels and numbers as {key!r}; give one kind")
            index = {n: i for i, n in enumerate(names)}
            out[key] = np.array([index[str(v)] for v in y], dtype=np.int64)
        elif y.dtype.kind in "biuf" and np.isfinite(y).all() and (y == np.round(y)).all():
            out[key] = y.astype(np.int64)
        else:
            raise DataError(
                f"{key!r} in {where} holds {y.dtype} values that are not whole numbers; labels "
                "are classes: integers or text"
            )
    return out, names


def _array_splits(path: Path, arrays: dict[str, np.ndarray], seed: int) -> Dataset:
    where = repr(str(path))
    xs, eight = {}, False
    for k in ("train", "valid", "test"):
        if k in arrays:
            _check_examples(arrays[k], f"{k!r} in {where}")
            xs[k], e = _to_float(channels_first(arrays[k]), where)
            _check_examples(xs[k], f"{k!r} in {where}")
            eight = eight or e
    given = {f"{k}_labels": arrays.get(f"{k}_labels") for k in ("train", "valid", "test")}
    numbered, names = _numbered_labels(given, where)
    ys = {k: numbered[f"{k}_labels"] for k in ("train", "valid", "test")}
    shapes = {k: v.shape[1:] for k, v in xs.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{where} has splits of different example shapes {shapes}")
    for k, y in ys.items():
        if y is not None and len(y) != len(xs[k]):
            raise DataError(f"{where} has {len(xs[k])} {k} examples but {len(y)} {k}_labels")
    x_train, y_train = _t(xs["train"]), _labels(ys["train"])
    if "valid" in xs:
        x_valid, y_valid = _t(xs["valid"]), _labels(ys["valid"])
    else:
        (x_train, x_valid, _), (y_train, y_valid, _) = split(x_train, y_train, (0.1, 0.0), seed)
    every = np.concatenate([x.reshape(len(x), -1) for x in xs.values()])
    return Dataset(
        path.stem,
        x_train,
        x_valid,
        _t(xs["test"]),
        y_train,
        y_valid,
        _labels(ys["test"]),
        binary=suits_bernoulli(every, eight),
        image_shape=_image_shape(xs["train"].shape),
        label_names=names,
        source=str(path),
    )


def load_csv(
    path: str | Path,
    seed: int = 0,
    *,
    label_column: int | str | None = None,
    header: bool | None = None,
) -> Dataset:
    """A numeric CSV file: one example per row -> (N, columns) float32, split 80/10/10.

    header: whether the first row holds column names; None = yes when any cell of it is not a
        number. label_column: index (negative counts from the end) or header name of a column of
        labels, removed from the data; integer labels are kept as they are, other text is numbered
        in sorted order (``label_names``). A ``.tsv`` file is tab-separated.
    """
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise DataError(f"data file {where} does not exist")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [
                r for r in csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        if isinstance(err, UnicodeDecodeError):
            raise DataError(
                f"{where} is not UTF-8 text (byte {err.start}); save it as UTF-8 (or convert it, "
                "e.g. with iconv)"
            ) from None
        raise DataError(f"cannot read {where} as CSV text: {err}") from None
    numbered = [
        (i + 1, [c.strip() for c in r]) for i, r in enumerate(rows) if any(c.strip() for c in r)
    ]
    if not numbered:
        raise DataError(f"{where} holds no rows; it needs one example per row")
    separator = "tab" if path.suffix.lower() == ".tsv" else "comma"
    if all(len(cells) == 1 for _, cells in numbered):
        for line, (cell,) in numbered:
            other = next((c for c in (";", "\t", ",", "|") if c in cell), None)
            if other is not None:
                raise DataError(
                    f"row {line} of {where} is one value {cell[:40]!r} holding {other!r}; "
                    "vaekit reads .csv files as comma-separated and .tsv files as tab-separated: "
                    + (
                        "write the file with tabs between values (or name a comma-separated "
                        "file .csv)"
                        if separator == "tab"
                        else "write the file with commas between values (or name a "
                        "tab-separated file .tsv)"
                    )
                )
    # spreadsheets often end every row with a separator: an empty last column is no column
    (_, top), *rest = numbered
    if (
        rest
        and all(len(cells) > 1 and cells[-1] == "" for _, cells in rest)
        and (top[-1] == "" or len(top) == len(rest[0][1]) - 1)
    ):
        numbered = [(line, cells[:-1] if cells[-1] == "" else cells) for line, cells in numbered]

    def is_number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    names: list[str] | None = None
    if header is None:
        # a header names columns of numbers: a cell of text above a number (a column of text
        # labels has text in every row, and a file without a header may have one)
        first = numbered[0][1]
        below = numbered[1][1] if len(numbered) > 1 else [""] * len(first)
        header = any(
            not is_number(c) and (j >= len(below) or is_number(below[j]) or len(numbered) == 1)
            for j, c in enumerate(first)
        )
    if header:
        names = numbered[0][1]
        numbered = numbered[1:]
        if not numbered:
            raise DataError(f"{where} holds a header row and no data; it needs one example per row")
    width = len(numbered[0][1])
    for line, cells in numbered:
        if len(cells) != width:
            raise DataError(
                f"row {line} of {where} has {len(cells)} values but row {numbered[0][0]} has "
                f"{width}; every row needs the same number"
            )
    if names is not None and len(names) != width:
        raise DataError(f"{where} has {len(names)} header names but {width} values per row")
    col = None
    if label_column is not None:
        if isinstance(label_column, str) and not re.fullmatch(r"-?[0-9]+", label_column):
            if names is None or label_column not in names:
                raise DataError(
                    f"label column {label_column!r} is not in the header of {where}; "
                    f"columns: {names or 'no header'}"
                )
            col = names.index(label_column)
        else:
            col = int(label_column)
            if not -width <= col < width:
                raise DataError(f"label column {col} is outside the {width} columns of {where}")
            col %= width
        if width < 2:
            raise DataError(f"{where} has one column; it cannot be both data and labels")
    values = np.empty((len(numbered), width - (col is not None)), dtype=np.float64)
    raw_labels = []
    for i, (line, cells) in enumerate(numbered):
        if col is not None:
            raw_labels.append(cells[col])
            cells = cells[:col] + cells[col + 1 :]
        for j, cell in enumerate(cells):
            try:
                values[i, j] = float(cell)
            except ValueError:
                name = f" ({names[j]!r})" if names and col is None else ""
                hint = ""
                if label_column is None and not any(is_number(r[j]) for _, r in numbered):
                    hint = (
                        f" (if it holds labels, give --label-column {names[j]})"  # type: ignore[index]
                        if name
                        else f" (if it holds labels, give --label-column {j}; columns count from 0)"
                    )
                raise DataError(
                    f"row {line}, column {j + 1}{name} of {where} is {cell!r}, not a number; "
                    f"CSV data must be numeric{hint}"
                ) from None
    labels, label_names = None, None
    if col is not None:
        try:
            as_float = np.array([float(v) for v in raw_labels])
            if not np.all(np.isfinite(as_float) & (as_float == np.round(as_float))):
                raise ValueError
            labels = as_float.astype(np.int64)
        except ValueError:
            label_names = sorted(set(raw_labels))
            index = {n: k for k, n in enumerate(label_names)}
            labels = np.array([index[v] for v in raw_labels], dtype=np.int64)
    x = values.astype(np.float32)
    if np.isfinite(values).all() and not np.isfinite(x).all():
        raise DataError(f"{where} holds values too large for float32; scale the data")
    return _from_array(path.stem, x, labels, seed, path, label_names=label_names)


def hidden(path: Path) -> bool:
    """Whether a file or folder is hidden (its name starts with "."): macOS's ``._NAME``
    companions of copied files, ``.ipynb_checkpoints`` and the like, which data folders skip."""
    return path.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not hidden(p)
    )


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


#: Pillow's modes of grey images; those of more than 8 bits a pixel are scaled to 8 bits.
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def _eight_bit_image(im: Any, path: Path) -> Any:
    """A Pillow image as 8-bit grey ("L") or RGB. 16-bit grey (modes "I;16*", and "I" with
    values in 0..65535) is scaled by 255 / 65535, float grey ("F") with values in [0, 1] by 255;
    Pillow's own conversion would clip both at 255. Float grey with values in [0, 255] (8-bit
    levels stored as floats, as ImageJ saves them) is rounded as it is. Other values are a
    DataError."""
    from PIL import Image

    if im.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return im.convert("L" if im.mode in _GREY_MODES else "RGB")
    a = np.asarray(im, dtype=np.float64)
    top = 65535.0
    if im.mode == "F":
        top = 1.0 if a.size and a.max() <= 1 else 255.0
    if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= top):
        kind = "float values" if im.mode == "F" else "32-bit integers"
        raise DataError(
            f"image {str(path)!r} holds {kind} in [{a.min():g}, {a.max():g}]; vaekit reads "
            f"{'float images in [0, 1] or [0, 255]' if im.mode == 'F' else '8 and 16-bit images'}"
            ": convert it to 8 or 16-bit"
        )
    return Image.fromarray(np.round(a * (255 / top)).astype(np.uint8), "L")


def load_image_folder(
    folder: str | Path,
    seed: int = 0,
    *,
    image_size: int | tuple[int, int] | None = None,
) -> Dataset:
    """A folder of images -> (N, C, H, W) float32 in [0, 1] (8-bit pixels / 255), split 80/10/10.

    C is 1 when every image is grey, else 3 (RGB; alpha is dropped); 16-bit grey images are
    scaled to 8 bits (k / 65535 -> round(255 k / 65535)). Images are resized
    (bilinear) to ``image_size`` ((H, W), or one int for square; at most ``MAX_IMAGE_SIDE`` a
    side) or else to the most common size.
    Images in sub-folders get the sub-folder's name as their label (``label_names``, sorted); then
    the folder itself must hold no images.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    folder = Path(folder)
    where = repr(str(folder))
    paths, labels, names = class_folder(folder, _image_files, "images", "image")
    if not paths:
        raise DataError(
            f"{where} holds no images ({', '.join(IMAGE_SUFFIXES)}), neither at its top nor in "
            "sub-folders"
        )
    images = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                # a camera's photo taken upright is stored sideways with an EXIF orientation
                images.append(_eight_bit_image(ImageOps.exif_transpose(im), p))
        except DataError:
            raise
        except Image.DecompressionBombError:
            raise DataError(
                f"image {str(p)!r} has more than the {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels "
                "Pillow opens (its guard against decompression bombs); shrink it or remove it"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise DataError(f"cannot read image {str(p)!r}: {err}; remove or replace it") from None
    if image_size is None:
        counts = Counter(im.size for im in images)
        w, h = max(counts, key=lambda s: (counts[s], s[0] * s[1]))
    else:
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if h < 1 or w < 1:
            raise DataError(f"image_size must be positive, got {image_size!r}")
        if max(h, w) > MAX_IMAGE_SIDE:
            raise DataError(
                f"image_size {h}x{w} is larger than {MAX_IMAGE_SIDE} pixels a side; give a "
                "smaller image_size (--image-size), e.g. 64"
            )
    mode = "RGB" if any(im.mode == "RGB" for im in images) else "L"
    arrays = []
    try:
        for im in images:
            im = im.convert(mode)
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
            arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        pixels = np.stack(arrays)  # (N, C, H, W) uint8
        x = pixels.astype(np.float32) / np.float32(255)
    except MemoryError:
        arrays.clear()  # free what was made before the error is reported
        pixels = np.empty(0, np.uint8)
        size = len(images) * (3 if mode == "RGB" else 1) * h * w * 4 / 1e9
        raise DataError(
            f"{len(images)} images at {h}x{w} need about {size:.1f} GB as float32, more memory "
            "than there is; give a smaller image_size (--image-size)"
        ) from None
    y = np.array(labels, dtype=np.int64) if labels is not None else None
    return _from_array(folder.name, x, y, seed, folder, eight_bit=True, label_names=names)


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


# -- preprocessing ---------------------------------------------------------------------------


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


# -- the entry point -------------------------------------------------------------------------

#: Built-in data set names -> loader(root, seed).
DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": lambda root=None, seed=0: load_digits(seed),
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "frey-face": load_frey_face,
}
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
) -> Dataset:
    """A built-in data set by name (:data:`DATASETS`) or a user's file or folder by path.

    Files: .npy / .npz (:func:`load_array`), .csv / .tsv (:func:`load_csv`), ``mnist.pkl.gz``,
    ``cifar-10-python.tar.gz``, a Frey Face .mat file, .txt, .wav. Folders: the four MNIST idx
    files, ``cifar-10-batches-py``, WAV files or images (:func:`load_image_folder`).

    seed: seeds the validation / test split of data that has none, and static binarisation.
    binarize: "none", or "static" for one fixed Bernoulli draw of the data
        (:func:`binarize_static`); dynamic binarisation is a training option instead.
    image_size: (H, W) or one int, for image folders. label_column: for CSV files.
    audio: for WAV files and folders, :class:`vaekit.audio.AudioSettings` or a dict of its
        fields (e.g. ``{"sample_rate": 8000, "n_mels": 32}``).
    root: folder searched for built-in data sets instead of :func:`data_dir`.

    An option that does not apply to the data (see :func:`load_options`) is a DataError.
    """
    if binarize not in BINARIZE:
        raise DataError(f"unknown binarize {binarize!r}; choose one of {', '.join(BINARIZE)}")
    text = str(name_or_path)
    given = {"image_size": image_size, "label_column": label_column, "audio": audio}
    for option in misplaced_options(text, [o for o, v in given.items() if v is not None]):
        raise DataError(f"{option}={given[option]!r} does not apply to {text!r}; leave it out")
    name = builtin_name(text)
    if name is not None:  # a name wins over a file of that name; write ./name for the file
        ds = DATASETS[name](root=root, seed=seed)
    else:
        ds = _load_path(Path(text), seed, image_size, label_column, audio)
    if binarize == "static":
        ds = binarize_static(ds, seed)
    return ds


def builtin_name(name_or_path: str | Path) -> str | None:
    """The built-in data set (a key of :data:`DATASETS`) that this names, in any case or by an
    alias, or None for a path."""
    text = str(name_or_path).lower()
    name = ALIASES.get(text, text)
    return name if name in DATASETS else None


def misplaced_options(name_or_path: str | Path, options: Sequence[str]) -> list[str]:
    """Those of ``options`` (keywords of :func:`load`) that do not apply to this data; none for a
    path that does not exist, whose loading says so."""
    if builtin_name(name_or_path) is None and not Path(name_or_path).exists():
        return []
    applies = load_options(name_or_path)
    return [option for option in options if option not in applies]


def load_options(name_or_path: str | Path) -> tuple[str, ...]:
    """The keyword options of :func:`load` that apply to this data: ``("image_size",)`` for a
    folder of images, ``("label_column",)`` for a CSV or TSV file, ``("audio",)`` for WAV files
    and folders of them; none for built-in data sets, arrays, text and paths that do not exist.
    """
    if builtin_name(name_or_path) is not None:
        return ()
    path = Path(name_or_path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".wav", ".wave"):
        from .audio import is_audio

        if is_audio(path):
            return ("audio",)
    if path.is_dir():
        if (path / "data_batch_1").is_file() or _idx_paths(path) is not None:
            return ()
        return ("image_size",)
    return ("label_column",) if suffix in (".csv", ".tsv") and path.is_file() else ()


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


def _load_path(path: Path, seed: int, image_size: Any, label_column: Any, audio: Any) -> Dataset:
    """A user's file or folder as a data set (the options as for :func:`load`)."""
    suffix, lname = path.suffix.lower(), path.name.lower()
    if path.is_dir() or suffix in (".wav", ".wave"):
        from .audio import AudioSettings, is_audio, load_audio

        if is_audio(path):
            return load_audio(path, seed, settings=AudioSettings.from_options(audio))
    if path.is_dir():
        if (path / "data_batch_1").is_file():
            return load_cifar10_folder(path)
        if _idx_paths(path) is not None:
            return load_idx_folder(path)
        return load_image_folder(path, seed, image_size=image_size)
    if not path.exists():
        if suffix:
            raise DataError(f"data file {str(path)!r} does not exist; check the path")
        raise DataError(
            f"unknown data set or missing file {str(path)!r}; use one of {', '.join(DATASETS)} "
            f"or the path of a file ({FILE_KINDS}) or a folder of images or WAV files"
        )
    if suffix in (".npy", ".npz"):
        return load_array(path, seed)
    if suffix == ".txt" or (suffix == "" and _is_text(path)):
        from .text import load_text

        return load_text(path, seed)
    if suffix in (".csv", ".tsv"):
        return load_csv(path, seed, label_column=label_column)
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

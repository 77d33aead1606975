"""CIFAR-10: the pickled batches of ``cifar-10-python.tar.gz`` (or its extracted folder), each
checked against its published md5 before the restricted unpickler reads it."""

from __future__ import annotations

import copy
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..errors import DataError
from .dataset import Dataset, label_tensor, tensor
from .download import fetch, folders, hashes, md5, missing, unpickle

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

#: Recommended settings for CIFAR-10, as ``{"model": {...}, "train": {...}}``.
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "hidden": [1000],
        "latent_dim": 64,
        "activation": "relu",
        "likelihood": "gaussian",
    },
    "train": {"epochs": 50, "batch_size": 100, "optimizer": "adam", "lr": 1e-3},
}


def _cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 3, 32, 32) uint8, labels (n,)) from one pickled CIFAR-10 batch."""
    d = unpickle(raw, where, "bytes")
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
        return tensor(a.astype(np.float32) / np.float32(255))

    return Dataset(
        "cifar10",
        f(tr_x),
        f(va_x),
        f(te_x),
        label_tensor(tr_y),
        label_tensor(va_y),
        label_tensor(te_y),
        binary=False,
        defaults=copy.deepcopy(DEFAULTS),
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
    absent = [n for n in names if not (folder / n).is_file()]
    if absent:
        raise DataError(
            f"{str(folder)!r} lacks {', '.join(absent)}; extract cifar-10-python.tar.gz again"
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
    got_md5, got_sha = hashes(path)
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
    absent = [n for n in CIFAR10_BATCH_MD5 if n != "batches.meta" and n not in batches]
    if absent:
        raise DataError(f"{str(path)!r} lacks {', '.join(absent)}; replace it with a good copy")
    return _cifar_dataset(batches, str(path))


def load_cifar10(root: str | Path | None = None, seed: int = 0) -> Dataset:
    """CIFAR-10 as (N, 3, 32, 32) float32 RGB in [0, 1]: train 40000 (data_batch_1-4), valid
    10000 (data_batch_5), test 10000 (test_batch), with labels 0-9 (:data:`CIFAR10_CLASSES`).

    Looks in ``root/cifar10`` then ``root`` for the ``cifar-10-batches-py`` folder or the
    ``cifar-10-python.tar.gz`` tarball, else downloads the tarball into ``root/cifar10``.
    ``seed`` is unused: the split is fixed.
    """
    where = folders("cifar10", root)
    for folder in where:
        if (folder / CIFAR10_FOLDER).is_dir():
            return load_cifar10_folder(folder / CIFAR10_FOLDER)
        if (folder / CIFAR10_TARBALL).is_file():
            return load_cifar10_tarball(folder / CIFAR10_TARBALL)
    dest = where[0] / CIFAR10_TARBALL
    done, note = fetch(
        [CIFAR10_URL], dest, md5=CIFAR10_TARBALL_MD5, sha256=CIFAR10_TARBALL_SHA256, timeout=60
    )
    if not done:
        raise missing(
            f"CIFAR-10 not found: put {CIFAR10_TARBALL} (or its {CIFAR10_FOLDER} folder)",
            where,
            note,
        )
    return load_cifar10_tarball(dest)

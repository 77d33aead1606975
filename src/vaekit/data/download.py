"""Where data files live, downloads checked against published digests, and the restricted
unpickler that reads the pickled data sets (mnist.pkl.gz, the CIFAR-10 batches).

Files are looked for in :func:`data_dir` and in a sub-folder of it named after the data set; when
absent they are downloaded there unless ``VAEKIT_OFFLINE=1``. vaekit itself never writes a pickle.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import DataError


def data_dir() -> Path:
    """Folder searched for downloaded data sets: ``$VAEKIT_DATA`` or ``~/.cache/vaekit``."""
    return Path(os.environ.get("VAEKIT_DATA", Path.home() / ".cache" / "vaekit")).expanduser()


def offline() -> bool:
    """True when ``VAEKIT_OFFLINE`` is set to anything but "" or "0": no downloads."""
    return os.environ.get("VAEKIT_OFFLINE", "") not in ("", "0")


def folders(name: str, root: str | Path | None, *, top: bool = True) -> list[Path]:
    """Folders to search for data set ``name``: ``root/name`` and (if ``top``) ``root``;
    ``root`` defaults to :func:`data_dir`."""
    base = Path(root).expanduser() if root is not None else data_dir()
    return [base / name, base] if top else [base / name]


def missing(what: str, where: Sequence[Path], note: str) -> DataError:
    """The one-line error for a public data set that is neither on disk nor downloadable."""
    places = " or ".join(repr(str(f)) for f in where)
    return DataError(f"{what} into {places} (VAEKIT_DATA sets the data folder); {note}")


def hashes(path: Path) -> tuple[str, str]:
    """(md5, sha256) hex digests of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashes(Path(path))[1]


def md5(path: Path) -> str:
    """Hex md5 of a file (the checksum most data sets publish)."""
    return hashes(Path(path))[0]


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


def fetch(urls: Sequence[str], dest: Path, **checks: Any) -> tuple[bool, str]:
    """Try :func:`download` unless offline; returns (done, a note for the error message)."""
    if offline():
        return False, "downloading is off (VAEKIT_OFFLINE is set)"
    if download(urls, dest, **checks):
        return True, ""
    return False, f"the download from {urls[0]} failed (no network?)"


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


def unpickle(raw: bytes, where: str, encoding: str) -> Any:
    """The arrays, lists and dicts pickled in ``raw`` (see :class:`_NumpyUnpickler`); anything
    else, or a damaged pickle, is a :class:`DataError` naming ``where``. Call it only on bytes
    whose checksum matched a published one."""
    try:
        return _NumpyUnpickler(io.BytesIO(raw), encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"cannot read {where}: {err}; replace the file with a good copy") from None

"""Frey Face: 1965 grey images of Brendan Frey's face, 28 x 20 pixels, from Sam Roweis's page."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .arrays import from_array
from .dataset import Dataset
from .download import fetch, folders, missing

FREY_FILE = "frey_rawface.mat"
FREY_URL = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"
#: Frey Face: 1965 grey images of 28 x 20 pixels, stored as the columns of ``ff`` (560, 1965).
FREY_SHAPE = (28, 20)

#: Recommended settings: the AEVB paper's Frey Face model, 200 hidden units and a Gaussian
#: decoder with mean and variance from the network; two latent dimensions give its
#: learned-manifold figure.
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "hidden": [200],
        "latent_dim": 2,
        "activation": "tanh",
        "likelihood": "gaussian",
    },
    "train": {"epochs": 500, "batch_size": 100, "optimizer": "adam", "lr": 1e-3},
}


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
    ds = from_array("frey-face", x, None, seed, path, eight_bit=True, image_shape=(1, *FREY_SHAPE))
    ds.binary = False
    ds.defaults = copy.deepcopy(DEFAULTS)
    return ds


def load_frey_face(root: str | Path | None = None, seed: int = 0) -> Dataset:
    """Frey Face (1965 examples of (560,), see :func:`load_frey_face_file`) from ``root/frey-face``
    or ``root``, else downloaded into ``root/frey-face``.

    No checksum is published for this file; a download is kept only if it reads as a .mat file
    with ``ff`` of shape (560, N), and .mat files hold data, never code.
    """
    where = folders("frey-face", root)
    for folder in where:
        if (folder / FREY_FILE).is_file():
            return load_frey_face_file(folder / FREY_FILE, seed)
    dest = where[0] / FREY_FILE
    done, note = fetch([FREY_URL], dest, check=_read_frey)
    if not done:
        raise missing(f"Frey Face not found: put {FREY_FILE}", where, note)
    return load_frey_face_file(dest, seed)

"""dSprites (Matthey et al. 2017): the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``,
read from the data folder when the user has it (it is not downloaded: its licence asks users to
fetch it themselves), with its latent classes as the factors of each example."""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset, split, tensor
from .download import folders, missing
from .shapes import DEFAULT_EXAMPLES, DEFAULTS, FACTOR_NAMES, FACTOR_SIZES, SHAPE_NAMES, TOTAL

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_URL = "https://github.com/google-deepmind/dsprites-dataset"


def find_dsprites(root: str | Path | None = None) -> Path:
    """The dSprites .npz in ``root`` (default the data folder) or its ``dsprites`` sub-folder."""
    places = folders("dsprites", root)
    for folder in places:
        if (folder / DSPRITES_FILE).is_file():
            return folder / DSPRITES_FILE
    raise missing(
        f"dSprites is not here: put {DSPRITES_FILE}", places, f"get it from {DSPRITES_URL}"
    )


def read_dsprites(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 64, 64) uint8, factor classes (N, 5) int64) of a dSprites .npz.

    Only the arrays ``imgs`` and ``latents_classes`` are read, with ``allow_pickle=False``: the
    official file's pickled ``metadata`` entry is never unpickled. The colour column (one class)
    of ``latents_classes`` is dropped, leaving shape, scale, orientation, pos_x, pos_y.
    """
    where = repr(str(path))
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not {"imgs", "latents_classes"} <= set(npz.files):
                raise DataError(
                    f"{where} holds {sorted(npz.files)}, not dSprites' imgs and latents_classes; "
                    f"replace it with {DSPRITES_FILE} from {DSPRITES_URL}"
                )
            imgs, classes = npz["imgs"], npz["latents_classes"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot read {where} as dSprites: {detail}") from None
    if imgs.ndim != 3 or classes.ndim != 2 or len(imgs) != len(classes):
        raise DataError(
            f"{where} has images {imgs.shape} and latents_classes {classes.shape}; expected "
            "(N, 64, 64) and (N, 6)"
        )
    if classes.shape[1] == len(FACTOR_SIZES) + 1:
        classes = classes[:, 1:]  # colour: always white
    if classes.shape[1] != len(FACTOR_SIZES):
        raise DataError(f"{where} has {classes.shape[1]} latent columns; dSprites has 6")
    return imgs, classes.astype(np.int64)


def load_dsprites(
    root: str | Path | None = None, seed: int = 0, examples: int | None = None
) -> Dataset:
    """dSprites from the data folder: ``examples`` images (default 50,000, drawn under ``seed``
    without repetition; 737,280 or more for all) (N, 1, 64, 64) float32 in {0, 1}, split
    80/10/10 under ``seed``; factors (N, 5) int64 as in ``shapes``; labels are the shape."""
    imgs, classes = read_dsprites(find_dsprites(root))
    total = len(imgs)
    n = DEFAULT_EXAMPLES if examples is None else examples
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 3:
        raise DataError(f"examples must be an integer of 3 or more for dsprites, got {n!r}")
    rng = np.random.default_rng(seed)
    index = np.arange(total) if n >= total else np.sort(rng.choice(total, n, replace=False))
    n = len(index)
    (tr, va, te), _ = split(torch.arange(n), None, (0.1, 0.1), seed)
    parts = [index[p.numpy()] for p in (tr, va, te)]
    x = [torch.from_numpy(imgs[p].astype(np.float32))[:, None] for p in parts]
    ds = Dataset(
        "dsprites",
        *x,
        *(tensor(classes[p, 0]) for p in parts),
        binary=True,
        defaults=copy.deepcopy(DEFAULTS),
        image_shape=(1, 64, 64),
        label_names=list(SHAPE_NAMES),
    )
    ds.train_factors, ds.valid_factors, ds.test_factors = (classes[p] for p in parts)
    ds.factor_names = list(FACTOR_NAMES)
    sizes = [int(s) for s in classes.max(axis=0) + 1]
    ds.factor_sizes = sizes if total == TOTAL else None
    return ds

"""``shapes``: procedural dSprites-style images with known factors of variation, made offline.

64x64 binary images of one white shape on black, over five factors (as dSprites, Matthey et al.
2017): shape (square, ellipse, heart), scale (6 values, 0.5 to 1), orientation (40 values,
k * 2 pi / 40), position x (32) and position y (32): 737,280 combinations. Each image is drawn
by evaluating the shape's implicit inequality at every pixel centre in the shape's own rotated
and scaled coordinates, a batch of images at a time in numpy (no drawing library), so that
100,000 images take a few seconds. The same factor classes always give the same image.

The data set is a seeded subset of the combinations (50,000 by default, without repetition) or
the full product; every example carries its factor classes (``Dataset.train_factors``, ...).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .dataset import Dataset, split, tensor

#: Factor names and their number of classes, in the order of the columns of the factor arrays.
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
#: Side of an image in pixels, and the number of examples of the default subset.
SIDE = 64
DEFAULT_EXAMPLES = 50_000
TOTAL = int(np.prod(FACTOR_SIZES))  # 737,280

#: Value of each factor class: scale 0.5..1 in 6 steps (as dSprites), orientation in radians,
#: centre positions as fractions of the image side (0.2..0.8, so every shape stays in view).
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.arange(40) * (2 * np.pi / 40)
POSITIONS = np.linspace(0.2, 0.8, 32)
#: Half-size of a shape at scale 1, as a fraction of the image side (20 pixels across).
RADIUS = 10 / SIDE
#: Half-width of the window around the centre that can hold a shape at any scale and rotation.
_WINDOW = int(np.ceil(RADIUS * SIDE * 1.5)) + 1
_BATCH = 2048

#: Recommended settings: the convolutional networks of Higgins et al. / Locatello et al. (4x4
#: stride-2 convolutions, transposed in the decoder), 10 latents, a Bernoulli p(x|z).
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "network": "conv",
        "conv_upsample": "transpose",
        "channels": [32, 32, 64, 64],
        "hidden": [256],
        "latent_dim": 10,
        "activation": "relu",
        "likelihood": "bernoulli",
    },
    "train": {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3},
}


def _inside(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v) in a shape's own coordinates (units of its half-size, v pointing up)
    lie inside it; ``shape`` (B, 1, 1) broadcasts against u, v (B, H, W)."""
    square = np.maximum(np.abs(u), np.abs(v)) <= 1.0
    ellipse = u * u + (v / 0.5) ** 2 <= 1.0
    # the heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans about [-1.14, 1.14] x [-1, 1.24];
    # scaled by 1.1 and shifted to sit centred in the unit square
    x, y = 1.1 * u, 1.1 * v + 0.12
    r = x * x + y * y - 1.0
    heart = r * r * r - x * x * y * y * y <= 0.0
    return np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))


def render(classes: np.ndarray) -> np.ndarray:
    """Images (N, 64, 64) uint8 of 0s and 1s for factor classes (N, 5) in the order of
    :data:`FACTOR_NAMES` (each column within its :data:`FACTOR_SIZES`).

    Pixel (row i, column j) is 1 when its centre ((j + 0.5) / 64, (i + 0.5) / 64) lies in the
    shape: the point is moved to the shape's centre (pos_x, pos_y), rotated by -orientation
    (counter-clockwise as seen on screen), divided by ``RADIUS * scale`` and tested against the
    shape's inequality. Only a window around the centre is evaluated.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2 or classes.shape[1] != len(FACTOR_SIZES):
        raise DataError(f"factor classes must have shape (N, 5), got {classes.shape}")
    if classes.size and ((classes < 0).any() or (classes >= np.array(FACTOR_SIZES)).any()):
        raise DataError(f"factor classes must lie in 0..size-1 for sizes {FACTOR_SIZES}")
    out = np.zeros((len(classes), SIDE, SIDE), np.uint8)
    w = _WINDOW
    offsets = np.arange(-w, w)  # (2w,)
    for start in range(0, len(classes), _BATCH):
        c = classes[start : start + _BATCH]
        cx, cy = POSITIONS[c[:, 3]] * SIDE, POSITIONS[c[:, 4]] * SIDE  # in pixels
        col0 = np.floor(cx).astype(np.int64)[:, None] + offsets  # (B, 2w) pixel columns
        row0 = np.floor(cy).astype(np.int64)[:, None] + offsets  # (B, 2w) pixel rows
        dx = (col0 + 0.5 - cx[:, None])[:, None, :]  # (B, 1, 2w)
        dy = (row0 + 0.5 - cy[:, None])[:, :, None]  # (B, 2w, 1), rows grow downwards
        theta = ORIENTATIONS[c[:, 2]][:, None, None]
        size = (RADIUS * SIDE * SCALES[c[:, 1]])[:, None, None]
        cos, sin = np.cos(theta), np.sin(theta)
        up = -dy  # v points up on screen
        u = (cos * dx + sin * up) / size
        v = (-sin * dx + cos * up) / size
        mask = _inside(c[:, 0][:, None, None], u, v)  # (B, 2w, 2w)
        rows = np.clip(row0, 0, SIDE - 1)[:, :, None]
        cols = np.clip(col0, 0, SIDE - 1)[:, None, :]
        keep = mask & ((row0 >= 0) & (row0 < SIDE))[:, :, None]
        keep &= ((col0 >= 0) & (col0 < SIDE))[:, None, :]
        b, i, j = np.nonzero(keep)
        out[start + b, rows[b, i, 0], cols[b, 0, j]] = 1
    return out


def render_tensor(classes: np.ndarray) -> Tensor:
    """:func:`render` as float32 examples (N, 1, 64, 64) in {0, 1}, as the data set holds them."""
    return torch.from_numpy(render(classes)).float()[:, None]


def combinations(index: np.ndarray) -> np.ndarray:
    """Factor classes (N, 5) of combination numbers (N,) in 0..737,279 (the last factor, pos_y,
    varying fastest, as dSprites orders its images)."""
    return np.stack(np.unravel_index(np.asarray(index), FACTOR_SIZES), axis=1).astype(np.int64)


def load_shapes(root: Any = None, seed: int = 0, examples: int | None = None) -> Dataset:
    """``examples`` distinct factor combinations (default 50,000; 737,280 for all of them) drawn
    under ``seed``, drawn as images (N, 1, 64, 64) float32 in {0, 1} and split 80/10/10 under
    ``seed``. Factor classes in ``train_factors`` etc. (N, 5) int64; labels are the shape.
    ``root`` is not used (nothing is read)."""
    n = DEFAULT_EXAMPLES if examples is None else examples
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 3 <= n <= TOTAL:
        raise DataError(f"examples must be an integer from 3 to {TOTAL} for shapes, got {n!r}")
    rng = np.random.default_rng(seed)
    index = np.arange(TOTAL) if n == TOTAL else np.sort(rng.choice(TOTAL, n, replace=False))
    (tr, va, te), _ = split(torch.arange(n), None, (0.1, 0.1), seed)
    parts = [combinations(index[p.numpy()]) for p in (tr, va, te)]  # factor classes per split
    ds = Dataset(
        "shapes",
        *(render_tensor(c) for c in parts),
        *(tensor(c[:, 0]) for c in parts),
        binary=True,
        defaults=copy.deepcopy(DEFAULTS),
        image_shape=(1, SIDE, SIDE),
        label_names=list(SHAPE_NAMES),
    )
    ds.train_factors, ds.valid_factors, ds.test_factors = parts
    ds.factor_names = list(FACTOR_NAMES)
    ds.factor_sizes = list(FACTOR_SIZES)
    ds.render_factors = render_tensor
    return ds

"""scikit-learn's 8x8 digits: small, offline, and the default data set of the examples."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from .dataset import Dataset, split

#: Recommended settings for the digits, as ``{"model": {...}, "train": {...}}``.
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"latent_dim": 8, "hidden": [200]},
    "train": {"epochs": 100},
}


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
        defaults=copy.deepcopy(DEFAULTS),
        image_shape=(1, 8, 8),
        label_names=[str(i) for i in range(10)],
    )

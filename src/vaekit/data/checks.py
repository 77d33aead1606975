"""Examples as tensors, and the one check every path applies to them before a model sees them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .dataset import Dataset


def as_tensor(data: Any, name: str = "data", dtype: torch.dtype = torch.float32) -> Tensor:
    """A ``dtype`` tensor from a tensor, a numpy array, nested lists of numbers, or a map-style
    dataset of examples.

    A dataset item may be an example or a tuple whose first element is the example (labels are
    dropped).
    """
    if isinstance(data, Tensor):
        return data.to(dtype)
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data)).to(dtype)
    if isinstance(data, list | tuple):
        try:  # numbers, nested, or arrays of one shape: the examples themselves
            a = np.asarray(data)  # one copy (torch warns that lists of arrays are slow)
            if a.dtype.kind in "biuf":
                return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
        except (TypeError, ValueError, RuntimeError):
            pass  # (example, label) pairs, tensors: a dataset
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        items = [data[i] for i in range(len(data))]
        items = [it[0] if isinstance(it, tuple | list) else it for it in items]
        if not items:
            raise DataError(f"{name} is empty")
        return torch.stack([torch.as_tensor(it) for it in items]).to(dtype)
    kind = type(data).__name__
    if isinstance(data, Dataset):
        raise DataError(
            f"{name} is a vaekit data set of splits; give one split, e.g. "
            "fit(model, ds.train, valid=ds.valid)"
        )
    if hasattr(data, "dataset") and hasattr(data, "batch_size"):
        raise DataError(
            f"{name} is a {kind}, which hands out batches; give its dataset ({kind}.dataset) "
            "or the tensor of examples: fit draws its own batches"
        )
    raise DataError(
        f"{name} must be a tensor, a numpy array, a list of examples or a map-style dataset "
        f"(len() and [i]), got {kind}"
    )


def check_examples(
    x: Tensor | np.ndarray,
    shape: tuple[int, ...] | None = None,
    *,
    support: str = "real",
    levels: int | None = None,
    likelihood: str = "",
    name: str = "data",
) -> None:
    """Raise :class:`DataError` unless ``x`` (N, *shape) is non-empty, finite, of the example
    ``shape`` and inside a likelihood's support: ``support="unit"`` needs values in [0, 1], and
    ``levels`` (e.g. 256) values on the grid k / (levels - 1). ``likelihood`` names the
    likelihood in the messages.

    With ``shape`` None (data as a loader reads it, a tensor or a numpy array of any dtype) any
    example shape will do, but there must be an example axis and some examples; only floating
    values are checked for NaN and infinities.
    """
    if shape is None:
        if x.ndim < 2 or x.shape[0] == 0 or math.prod(x.shape) == 0:
            raise DataError(
                f"{name} has shape {x.shape}; expected (examples, ...) with some examples"
            )
    elif x.shape[0] == 0:
        raise DataError(f"{name} is empty")
    elif tuple(x.shape[1:]) != tuple(shape):
        raise DataError(
            f"{name} has example shape {tuple(x.shape[1:])} but the model expects {tuple(shape)}"
        )
    i = _first_non_finite(x)
    if i is not None:
        raise DataError(f"{name} holds NaN or infinite values (first in example {i}); clean it")
    if isinstance(x, np.ndarray) and (support == "unit" or levels is not None):
        x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    if support == "unit":
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(
                f"{name} has values in [{lo:g}, {hi:g}] but the {likelihood} likelihood needs "
                "[0, 1]; scale the data or choose a Gaussian likelihood"
            )
    if levels is not None:
        steps = x * (levels - 1)
        off = (steps - steps.round()).abs() > 1e-3
        if off.any():
            v = float(x[off][0])
            raise DataError(
                f"{name} has values off the grid k/{levels - 1} (e.g. {v:g}) that the "
                f"{likelihood} likelihood needs; give 8-bit data scaled by 1/{levels - 1} or "
                "choose another likelihood"
            )


def _first_non_finite(x: Tensor | np.ndarray) -> int | None:
    """The index of the first example (along axis 0) holding NaN or an infinity, or None."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            return None
        bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        return int(np.flatnonzero(bad)[0]) if bad.any() else None
    bad = ~torch.isfinite(x)
    if not bad.any():
        return None
    return int(bad.reshape(x.shape[0], -1).any(1).nonzero()[0])

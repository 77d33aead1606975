"""Examples as tensors, and the one check every path applies to them before a model sees them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .dataset import Dataset

#: Keys under which a dataset item that is a dict holds its example, tried in this order.
EXAMPLE_KEYS = ("x", "input", "inputs", "image", "images", "pixel_values", "data", "example")


def as_tensor(data: Any, name: str = "data", dtype: torch.dtype | None = torch.float32) -> Tensor:
    """A ``dtype`` tensor (None: the numbers' own dtype) from a tensor, a numpy array, nested
    lists of numbers, or a map-style dataset of examples.

    A dataset item may be an example, a tuple whose first element is the example (labels are
    dropped), or a dict holding the example under one of :data:`EXAMPLE_KEYS`. Anything else
    (strings, dicts, ragged lists, object or complex arrays) is a :class:`DataError` naming
    ``name`` and what was given, raised before torch sees it.
    """
    if isinstance(data, Tensor):
        _check_dtype_kind(_kind(data), name, str(data.dtype))
        return data if dtype is None else data.to(dtype)
    if isinstance(data, np.ndarray):
        _check_dtype_kind(data.dtype.kind, name, str(data.dtype))
        t = torch.from_numpy(np.ascontiguousarray(data))
        return t if dtype is None else t.to(dtype)
    if isinstance(data, str | bytes):
        raise DataError(
            f"{name} is a string ({_short(data)}); give numbers: a tensor, a numpy array or "
            "nested lists of numbers (text runs read strings with model.ids([...]))"
        )
    if isinstance(data, dict):
        keys = ", ".join(repr(k) for k in list(data)[:6])
        raise DataError(
            f"{name} is a dict (keys {keys}); give the examples themselves, e.g. data['x'], as a "
            "tensor, a numpy array or a list of examples"
        )
    if isinstance(data, list | tuple):
        try:  # numbers, nested, or arrays of one shape: the examples themselves
            a = np.asarray(data)  # one copy (torch warns that lists of arrays are slow)
            if a.dtype.kind in "biuf":
                t = torch.from_numpy(np.ascontiguousarray(a))
                return t if dtype is None else t.to(dtype)
        except (TypeError, ValueError, RuntimeError):
            pass  # (example, label) pairs, tensors: a dataset
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        return _stack_items(data, name, dtype)
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


def _kind(t: Tensor) -> str:
    """The numpy dtype kind of a tensor's dtype: b, i, u, f or c."""
    if t.dtype == torch.bool:
        return "b"
    if t.is_complex():
        return "c"
    return "f" if t.is_floating_point() else ("u" if t.dtype == torch.uint8 else "i")


def _check_dtype_kind(kind: str, name: str, dtype: str) -> None:
    if kind not in "biuf":
        raise DataError(
            f"{name} has dtype {dtype}; give real numbers (bool, integer or floating point)"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


def _stack_items(data: Any, name: str, dtype: torch.dtype | None) -> Tensor:
    """The items of a map-style dataset (or a list that is not one array) stacked."""
    items = []
    for i in range(len(data)):
        item = data[i]
        if isinstance(item, dict):
            key = next((k for k in EXAMPLE_KEYS if k in item), None)
            if key is None:
                keys = ", ".join(repr(k) for k in list(item)[:6])
                raise DataError(
                    f"item {i} of {name} is a dict with keys {keys}; vaekit takes the example "
                    f"from one of {', '.join(repr(k) for k in EXAMPLE_KEYS)}: give a dataset "
                    "of examples or (example, label) pairs"
                )
            item = item[key]
        elif isinstance(item, tuple | list) and item and not _is_number(item[0]):
            item = item[0]  # (example, label): the label is dropped
        if isinstance(item, str | bytes | dict) or item is None:
            raise DataError(
                f"item {i} of {name} is {type(item).__name__} {_short(item)}; every example "
                "must be numbers (a tensor, an array or a list of numbers)"
            )
        items.append(item)
    if not items:
        raise DataError(f"{name} is empty")
    tensors = [as_tensor(it, f"item {i} of {name}", None) for i, it in enumerate(items)]
    shapes = sorted({tuple(t.shape) for t in tensors})
    if len(shapes) > 1:
        raise DataError(
            f"the examples of {name} differ in shape ({', '.join(map(str, shapes[:3]))}); give "
            "examples of one shape"
        )
    stacked = torch.stack(tensors)
    return stacked if dtype is None else stacked.to(dtype)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | bool | np.number)


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

"""Known factors of variation of a user's data set, from a file beside it (``factors=FILE``):
one row per example, one column per factor, integer classes or real values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import DEFAULT_FRACTIONS, Dataset, split


def read_factors(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Factors (N, F) from a .npy file (numbers, no pickle) or a .csv / .tsv file (numbers,
    optionally a first row of names). Whole numbers give int64 classes, others float64.
    Returns (factors, names); names default to ``factor_0``, ``factor_1``, ..."""
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise DataError(f"factors file {where} does not exist; give a .npy or .csv file")
    suffix = path.suffix.lower()
    names: list[str] | None = None
    try:
        if suffix == ".npy":
            a = np.load(path, allow_pickle=False)
        elif suffix in (".csv", ".tsv"):
            delimiter = "\t" if suffix == ".tsv" else ","
            first = path.read_text(encoding="utf-8").splitlines()[:1]
            cells = first[0].split(delimiter) if first else []
            header = bool(cells) and not all(_number(c) for c in cells)
            names = [c.strip() for c in cells] if header else None
            a = np.loadtxt(path, delimiter=delimiter, skiprows=int(header), ndmin=2)
        else:
            raise DataError(f"factors file {where} must be a .npy, .csv or .tsv file")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot read factors file {where}: {detail}") from None
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.dtype.kind not in "biuf" or a.size == 0:
        raise DataError(
            f"factors file {where} holds {a.dtype} of shape {a.shape}; give numbers of shape "
            "(examples, factors)"
        )
    if not np.isfinite(a).all():
        raise DataError(f"factors file {where} holds NaN or infinite values; give finite numbers")
    if names is not None and len(names) != a.shape[1]:
        raise DataError(f"factors file {where} names {len(names)} columns but has {a.shape[1]}")
    whole = a.dtype.kind in "biu" or bool((a == np.round(a)).all())
    a = a.astype(np.int64) if whole else a.astype(np.float64)
    return a, names or [f"factor_{i}" for i in range(a.shape[1])]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def factor_sizes(factors: np.ndarray) -> list[int] | None:
    """Classes per factor when every factor holds integer classes 0..size-1, else None."""
    if factors.dtype.kind not in "iu" or (factors < 0).any():
        return None
    return [int(m) + 1 for m in factors.max(axis=0)]


def attach_factors(
    ds: Dataset,
    path: str | Path,
    seed: int,
    fractions: tuple[float, float] = DEFAULT_FRACTIONS,
) -> Dataset:
    """``ds`` (a user's data read from one array, CSV file or image folder and split under
    ``seed`` with the valid and test ``fractions``) with the factors of ``path`` (one row per
    example, in the order of the data file's examples) split the same way."""
    factors, names = read_factors(path)
    sizes = [len(x) for x in (ds.train, ds.valid, ds.test)]
    n = sum(sizes)
    if len(factors) != n:
        raise DataError(
            f"factors file {str(path)!r} has {len(factors)} rows but the data has {n} examples; "
            "give one row per example"
        )
    parts, _ = split(torch.arange(n), None, fractions, seed)
    if [len(p) for p in parts] != sizes:
        raise DataError(
            f"factors apply to data that vaekit splits itself (one array, a CSV file, a folder of "
            f"images); {ds.name!r} comes with its own splits"
        )
    ds.train_factors, ds.valid_factors, ds.test_factors = (factors[p.numpy()] for p in parts)
    ds.factor_names = names
    ds.factor_sizes = factor_sizes(factors)
    return ds

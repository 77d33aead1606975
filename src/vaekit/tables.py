"""Arrays and tables as the files a person opens: .npy, and .csv with a header row.

Examples and latents go out as .npy (the bare array) or as CSV, one row per example, with named
columns: a table run's own column names, ``z0``, ``z1``, ... for latents, and in front of them
the row's ``id`` (its index in the split or file it came from), its ``label`` where known and, for
reconstructions, its ``kind`` (input or reconstruction). Reading takes the columns back by name,
so a file vaekit wrote, or the CSV a run was trained on (its label column and all), reads as the
examples or latents it holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data.arrays import NUMPY_READ_ERRORS, channels_first, parse_cells, read_table, to_float
from .errors import DataError

#: The columns a vaekit CSV puts before the values: they are never values themselves.
KEY_COLUMNS = ("id", "label", "kind")


def array_bytes(a: np.ndarray, suffix: str, prefix: str) -> bytes:
    """``a`` (N, ...) as .npy bytes, or as CSV with one flattened row per example and columns
    named ``PREFIX0``, ``PREFIX1``, ..."""
    flat = a.reshape(a.shape[0], -1)
    return table_bytes(a, suffix, [f"{prefix}{i}" for i in range(flat.shape[1])])


def table_bytes(
    a: np.ndarray,
    suffix: str,
    columns: Sequence[str],
    *,
    ids: Sequence[int] | None = None,
    labels: Sequence[str | int] | None = None,
    kinds: Sequence[str] | None = None,
) -> bytes:
    """``a`` (N, ...) as .npy bytes (the array alone), or as CSV: a header row, then one row
    per example: its ``id``, ``label`` and ``kind`` where given (each N long), then its values
    flattened under ``columns`` (prod(a.shape[1:]) names), at float32's precision."""
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, a, allow_pickle=False)
        return buffer.getvalue()
    flat = a.reshape(a.shape[0], -1)
    if len(columns) != flat.shape[1]:
        raise ValueError(f"{len(columns)} column names for {flat.shape[1]} values a row")
    keys = [(n, v) for n, v in (("id", ids), ("label", labels), ("kind", kinds)) if v is not None]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([name for name, _ in keys] + list(columns))
    for i, row in enumerate(flat):
        writer.writerow([values[i] for _, values in keys] + [f"{v:.7g}" for v in row])
    return text.getvalue().encode()


def read_array(path: Path, what: str, *, data: bool = False) -> np.ndarray:
    """A float32 array from .npy, or from .csv (comma-separated, optional header line; the
    ``id``/``label``/``kind`` columns of a CSV vaekit wrote are left out). With ``data``
    (examples, not latents) a .npy file is read as ``--data`` reads it: images stored channels
    last become (N, C, H, W), uint8 values are 8-bit data, divided by 255."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise DataError(f"{what} file {str(path)!r} must be .npy or .csv")
    if path.is_dir():
        raise DataError(f"{what} file {str(path)!r} is a folder; give a {suffix} file")
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} does not exist")
    if suffix == ".csv":
        return read_columns(path, what, None)
    try:
        a = np.load(path, allow_pickle=False)
        if not isinstance(a, np.ndarray):
            raise ValueError("not a single array")
        if data:
            a = channels_first(a)  # as --data reads it
            if a.dtype == np.uint8:
                a = to_float(a, f"{what} file {str(path)!r}")[0]
        with np.errstate(over="ignore", invalid="ignore"):
            a = np.asarray(a, dtype=np.float32)
    except DataError:
        raise
    except (*NUMPY_READ_ERRORS, UnicodeDecodeError) as err:
        detail = str(err).splitlines()[0] if str(err) else "it is empty"
        if "pickle" in detail:  # numpy's guess for a file without the .npy header
            detail = "it is not a .npy file of numbers (vaekit never unpickles)"
        raise DataError(f"cannot read {what} file {str(path)!r}: {detail}") from None
    return _checked(a, path, what)


def read_columns(
    path: Path, what: str, columns: Sequence[str] | None, label_column: int | str | None = None
) -> np.ndarray:
    """The values of a CSV file as float32 (N, columns).

    With ``columns`` (a table run's column names) and a header row that names them all, those
    columns in that order, whatever else the file holds (the label column, ids, columns in
    another order); otherwise every column but vaekit's key columns (``id``, ``label``,
    ``kind``, by their header names) and ``label_column`` (a header name or an index) where the
    file has a column more than ``columns`` names (a file of the data's columns alone keeps
    them all).
    """
    where = f"{what} file {str(path)!r}"
    header, rows = read_table(path, where)
    width = len(rows[0][1]) if rows else 0
    if header is not None and columns is not None and set(columns) <= set(header):
        keep = [header.index(c) for c in columns]
    else:
        drop = set()
        if header is not None:
            drop = {j for j, name in enumerate(header) if name in KEY_COLUMNS}
        if columns is None or width - len(drop) > len(columns):  # a column beyond the data's
            drop |= _label_index(label_column, header, width)
        keep = [j for j in range(width) if j not in drop]
    values = parse_cells(rows, keep, header, where)
    with np.errstate(over="ignore", invalid="ignore"):
        return _checked(values.astype(np.float32), path, what)


def _label_index(label_column: int | str | None, header: list[str] | None, width: int) -> set[int]:
    """The column (0 .. width - 1) ``label_column`` names, a header name or an index as
    ``--label-column`` takes it, as a set of none or one."""
    if isinstance(label_column, str) and header is not None and label_column in header:
        return {header.index(label_column)}
    if label_column is not None and str(label_column).lstrip("-").isdigit():
        col = int(label_column)
        if -width <= col < width:
            return {col % width}
    return set()


def _checked(a: np.ndarray, path: Path, what: str) -> np.ndarray:
    if a.size == 0:
        raise DataError(f"{what} file {str(path)!r} is empty")
    if not np.isfinite(a).all():
        raise DataError(
            f"{what} file {str(path)!r} holds NaN or infinite values (or values beyond "
            "float32's range)"
        )
    return a


def latent_names(width: int) -> list[str]:
    """The CSV column names of latents ``width`` wide: z0, z1, ..."""
    return [f"z{i}" for i in range(width)]


def read_latents(path: Path, latent_dim: int) -> np.ndarray:
    """Latents (N, latent_dim) from a .npy or .csv file; a CSV with a header row naming z0 ..
    z{latent_dim - 1} gives those columns (an ``encode`` output with ids and labels reads
    back), one without the header its every column."""
    if path.suffix.lower() == ".csv" and path.is_file():
        z = read_columns(path, "latent", latent_names(latent_dim))
    else:
        z = read_array(path, "latent")
    if z.ndim == 1 and z.shape[0] == latent_dim:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise DataError(
            f"latents in {str(path)!r} have shape {z.shape} but the run's latent_dim is "
            f"{latent_dim}; expected (N, {latent_dim})"
        )
    return z

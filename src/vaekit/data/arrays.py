"""A user's arrays: .npy / .npz files and numeric .csv / .tsv tables, and the conversions every
array loader shares (float32 from any numeric dtype, channels first, a Dataset from one array)."""

from __future__ import annotations

import csv
import io
import re
import tokenize
import zlib
from pathlib import Path

import numpy as np
from torch import Tensor

from ..errors import DataError
from .checks import check_examples
from .dataset import DEFAULT_FRACTIONS, Dataset, label_tensor, split, suits_bernoulli, tensor

#: What np.load raises on a damaged .npy/.npz: a broken header is parsed by Python's tokenizer
#: and ast (SyntaxError, tokenize.TokenError), a broken body or archive by numpy and zlib.
NUMPY_READ_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    SyntaxError,
    tokenize.TokenError,
    MemoryError,
    zlib.error,
)


def to_float(a: np.ndarray, where: str = "the data") -> tuple[np.ndarray, bool]:
    """A float32 copy of ``a`` and whether it is 8-bit data.

    uint8 values are divided by 255 into [0, 1], unless they are all 0 or 1 (already binary).
    """
    if a.dtype == np.uint8:
        if a.max(initial=0) <= 1:
            return a.astype(np.float32), False
        return a.astype(np.float32) / np.float32(255), True
    if np.iscomplexobj(a):
        raise DataError(
            f"{where} holds complex numbers; give their real and imaginary parts as separate "
            "values (e.g. np.stack([x.real, x.imag], axis=-1))"
        )
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.number):
        with np.errstate(over="ignore"):
            x = np.asarray(a, dtype=np.float32)
        if not np.isfinite(x).all():
            largest = float(np.abs(a.astype(np.float64)).max())
            raise DataError(
                f"{where} holds values up to {largest:g}, beyond float32's range (3.4e+38); "
                "scale the data"
            )
        return x, False
    raise DataError(f"arrays of dtype {a.dtype} are not numbers; convert them to float")


def channels_first(a: np.ndarray) -> np.ndarray:
    """Images (N, H, W, C) stored channels last, as Pillow, matplotlib and Keras keep them, as
    (N, C, H, W); any other array as it is. An array is taken for channels last when its last
    axis has 1 or 3 entries (grey, RGB) and its second axis has not."""
    if a.ndim == 4 and a.shape[3] in (1, 3) and a.shape[1] not in (1, 3):
        return a.transpose(0, 3, 1, 2)
    return a


def channels_last_as_trained(x: Tensor, data_shape: tuple[int, ...]) -> Tensor:
    """Examples ``x`` (N, C, H, W) that :func:`channels_first` turned from (N, H, W, C), back as
    (N, H, W, C) when a run's model takes ``data_shape`` (H, W, C): a run trained on such an
    array before vaekit read it channels first. Any other ``x`` as it is."""
    s = tuple(data_shape)
    if (
        len(s) == 3
        and x.dim() == 4
        and tuple(x.shape[1:]) == (s[2], s[0], s[1])
        and s[2] in (1, 3)
        and s[0] not in (1, 3)
    ):
        return x.permute(0, 2, 3, 1).contiguous()
    return x


def image_shape_of(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(C, H, W) of examples of ``shape`` (N, ...) when they look like images."""
    if len(shape) == 3:
        return (1, shape[1], shape[2])
    if len(shape) == 4 and shape[1] in (1, 3, 4):
        return (shape[1], shape[2], shape[3])
    return None


def from_array(
    name: str,
    x: np.ndarray,
    labels: np.ndarray | None,
    seed: int,
    path: Path,
    *,
    eight_bit: bool = False,
    label_names: list[str] | None = None,
    image_shape: tuple[int, int, int] | None = None,
    fractions: tuple[float, float] = DEFAULT_FRACTIONS,
) -> Dataset:
    """A Dataset from one float32 array (N, ...) split 80/10/10 under ``seed`` (``fractions``:
    the valid and test fractions).

    eight_bit: the values are 8-bit pixels scaled to [0, 1] (then ``binary`` is False unless
    every value is 0 or 1).
    """
    where = repr(str(path))
    check_examples(x, name=where)
    if labels is not None and len(labels) != len(x):
        raise DataError(f"{where} has {len(x)} examples but {len(labels)} labels")
    (tr, va, te), (ytr, yva, yte) = split(tensor(x), label_tensor(labels), fractions, seed)
    return Dataset(
        name,
        tr,
        va,
        te,
        ytr,
        yva,
        yte,
        binary=suits_bernoulli(x, eight_bit),
        image_shape=image_shape or image_shape_of(x.shape),
        label_names=label_names,
        source=str(path),
    )


# -- .npy and .npz ---------------------------------------------------------------------------


def load_array(
    path: str | Path, seed: int = 0, *, fractions: tuple[float, float] = DEFAULT_FRACTIONS
) -> Dataset:
    """A user's .npy / .npz array (N, ...), split 80/10/10 under ``seed`` (``fractions``: the
    valid and test fractions; an .npz of splits takes only the valid one, for its train array).

    An .npz may hold ``train`` / ``test`` (and ``valid``; else 10% of train under ``seed``) with
    optional ``train_labels`` / ``valid_labels`` / ``test_labels``, or one array with optional
    ``labels``. uint8 arrays are divided by 255. Images stored channels last (N, H, W, C) are
    read as (N, C, H, W) (:func:`channels_first`). Labels are integers, or text numbered in
    sorted order (``label_names``).
    """
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise DataError(f"data file {where} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
        else:
            arrays = {"": loaded}
    except NUMPY_READ_ERRORS as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "pickle" in detail:  # numpy's guess for a file without the .npy header
            detail = "it is not a .npy/.npz file of numbers (vaekit never unpickles data)"
        raise DataError(f"cannot read {where} as a numpy array: {detail}") from None
    if {"train", "test"} <= set(arrays):
        return _array_splits(path, arrays, seed, fractions)
    labels = arrays.pop("labels", None)
    if len(arrays) != 1:
        raise DataError(
            f"{where} holds {sorted(arrays)}; expected train/test(/valid) or one array "
            "(and optionally labels)"
        )
    (a,) = arrays.values()
    check_examples(a, name=where)
    x, eight_bit = to_float(channels_first(a), where)
    numbered, names = _numbered_labels({"labels": labels}, where)
    return from_array(
        path.stem,
        x,
        numbered["labels"],
        seed,
        path,
        eight_bit=eight_bit,
        label_names=names,
        fractions=fractions,
    )


def _numbered_labels(
    given: dict[str, np.ndarray | None], where: str
) -> tuple[dict[str, np.ndarray | None], list[str] | None]:
    """Label arrays (each (N,) or None, by key) as int64, and the class names when they are text.

    Integer labels (or floats with integer values) stay as they are; text labels are numbered
    in sorted order over every array, and their names returned. Anything else is a DataError
    naming the array.
    """
    out: dict[str, np.ndarray | None] = {}
    text = [k for k, y in given.items() if y is not None and y.dtype.kind in "USO"]
    names = sorted({str(v) for k in text for v in given[k].ravel()}) if text else None  # type: ignore[union-attr]
    for key, y in given.items():
        if y is None:
            out[key] = None
            continue
        if y.ndim != 1:
            one_hot = y.ndim == 2 and y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all()
            raise DataError(
                f"{key!r} in {where} has shape {y.shape}; labels are one per example, shape (N,)"
                + ("; for one-hot rows give labels.argmax(axis=1)" if one_hot else "")
            )
        if names is not None:
            if key not in text:
                raise DataError(f"{where} has text labels and numbers as {key!r}; give one kind")
            index = {n: i for i, n in enumerate(names)}
            out[key] = np.array([index[str(v)] for v in y], dtype=np.int64)
        elif y.dtype.kind in "biuf" and np.isfinite(y).all() and (y == np.round(y)).all():
            out[key] = y.astype(np.int64)
        else:
            raise DataError(
                f"{key!r} in {where} holds {y.dtype} values that are not whole numbers; labels "
                "are classes: integers or text"
            )
    return out, names


def _array_splits(
    path: Path,
    arrays: dict[str, np.ndarray],
    seed: int,
    fractions: tuple[float, float] = DEFAULT_FRACTIONS,
) -> Dataset:
    """The Dataset of an .npz holding ``train`` / ``test`` (and maybe ``valid``) splits; the
    valid fraction of ``fractions`` is drawn from train where there is no ``valid``."""
    where = repr(str(path))
    if fractions[1] != DEFAULT_FRACTIONS[1] or (
        "valid" in arrays and fractions != DEFAULT_FRACTIONS
    ):
        raise DataError(
            f"{where} holds its own {'splits' if 'valid' in arrays else 'test split'}: leave "
            f"out {'valid_fraction and ' if 'valid' in arrays else ''}test_fraction"
        )
    xs, eight = {}, False
    for k in ("train", "valid", "test"):
        if k in arrays:
            check_examples(arrays[k], name=f"{k!r} in {where}")
            xs[k], e = to_float(channels_first(arrays[k]), where)
            check_examples(xs[k], name=f"{k!r} in {where}")
            eight = eight or e
    given = {f"{k}_labels": arrays.get(f"{k}_labels") for k in ("train", "valid", "test")}
    numbered, names = _numbered_labels(given, where)
    ys = {k: numbered[f"{k}_labels"] for k in ("train", "valid", "test")}
    shapes = {k: v.shape[1:] for k, v in xs.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{where} has splits of different example shapes {shapes}")
    for k, y in ys.items():
        if y is not None and len(y) != len(xs[k]):
            raise DataError(f"{where} has {len(xs[k])} {k} examples but {len(y)} {k}_labels")
    x_train, y_train = tensor(xs["train"]), label_tensor(ys["train"])
    if "valid" in xs:
        x_valid, y_valid = tensor(xs["valid"]), label_tensor(ys["valid"])
    else:
        valid_only = (fractions[0], 0.0)
        (x_train, x_valid, _), (y_train, y_valid, _) = split(x_train, y_train, valid_only, seed)
    every = np.concatenate([x.reshape(len(x), -1) for x in xs.values()])
    return Dataset(
        path.stem,
        x_train,
        x_valid,
        tensor(xs["test"]),
        y_train,
        y_valid,
        label_tensor(ys["test"]),
        binary=suits_bernoulli(every, eight),
        image_shape=image_shape_of(xs["train"].shape),
        label_names=names,
        source=str(path),
    )


# -- .csv and .tsv ---------------------------------------------------------------------------

#: Rows of a table as (line number in the file, counted from 1; stripped cells).
Rows = list[tuple[int, list[str]]]


def load_csv(
    path: str | Path,
    seed: int = 0,
    *,
    label_column: int | str | None = None,
    header: bool | None = None,
    fractions: tuple[float, float] = DEFAULT_FRACTIONS,
) -> Dataset:
    """A numeric CSV file: one example per row -> (N, columns) float32, split 80/10/10.

    header: whether the first row holds column names; None = yes when any cell of it is not a
        number. label_column: index (negative counts from the end) or header name of a column of
        labels, removed from the data; integer labels are kept as they are, other text is numbered
        in sorted order (``label_names``). A ``.tsv`` file is tab-separated.
    """
    path = Path(path)
    where = repr(str(path))
    names, rows = read_table(path, where, header)
    if not rows:
        raise DataError(f"{where} holds a header row and no data; it needs one example per row")
    width = len(rows[0][1])
    col = None if label_column is None else _label_index(label_column, names, width, where)
    x, raw_labels = _values(rows, col, names, label_column is None, where)
    labels, label_names = _csv_labels(raw_labels) if col is not None else (None, None)
    dataset = from_array(
        path.stem, x, labels, seed, path, label_names=label_names, fractions=fractions
    )
    if names is not None and col is not None:
        names = names[:col] + names[col + 1 :]
    columns = names if names is not None else [f"x{i}" for i in range(x.shape[1])]
    dataset.media = {"kind": "table", "columns": columns}  # outputs are CSV with these names
    return dataset


def read_table(
    path: str | Path, where: str, header: bool | None = None
) -> tuple[list[str] | None, Rows]:
    """The header (None when the first row holds no names; ``header`` None: found by
    :func:`_has_header`) and the rows of a table file (``where`` names it in errors), split at
    its separator (:func:`_separator`); a ragged table is a DataError naming the row. Rows may be
    none when the file holds a header alone."""
    path = Path(path)
    rows = _drop_trailing_empty_column(_read_rows(path, where, path.suffix.lower() == ".tsv"))
    names = None
    if _has_header(rows) if header is None else header:
        names, rows = rows[0][1], rows[1:]
    if rows:
        _width(rows, names, where)
    return names, rows


def parse_cells(
    rows: Rows, keep: list[int], names: list[str] | None, where: str, hint: bool = False
) -> np.ndarray:
    """The cells in columns ``keep`` (indices in the file) of every row, as float64 (N,
    len(keep)). A cell that is not a number is a DataError naming its line, column and header
    name; with ``hint``, one in a column of text says how to name it as the labels."""
    values = np.empty((len(rows), len(keep)), dtype=np.float64)
    for i, (line, cells) in enumerate(rows):
        for k, j in enumerate(keep):
            try:
                values[i, k] = float(cells[j])
            except ValueError:
                name = f" ({names[j]!r})" if names else ""
                text_column = hint and not any(_is_number(r[j]) for _, r in rows)
                raise DataError(
                    f"row {line}, column {j + 1}{name} of {where} is {cells[j]!r}, not a "
                    f"number; CSV data must be numeric"
                    f"{_label_hint(j, names) if text_column else ''}"
                ) from None
    return values


def _read_rows(path: Path, where: str, tsv: bool) -> Rows:
    """The non-empty rows of a UTF-8 table, split at its separator (see :func:`_separator`);
    one value per row holding another separator is a DataError."""
    if not path.is_file():
        raise DataError(f"data file {where} does not exist")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            text = f.read()
        sep = _separator(text, "\t" if tsv else ",")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    except UnicodeDecodeError as err:
        raise DataError(
            f"{where} is not UTF-8 text (byte {err.start}); save it as UTF-8 (or convert it, "
            "e.g. with iconv)"
        ) from None
    except (OSError, csv.Error) as err:
        raise DataError(f"cannot read {where} as CSV text: {err}") from None
    numbered = [
        (i + 1, [_decimal_point(c.strip(), sep) for c in r])
        for i, r in enumerate(rows)
        if any(c.strip() for c in r)
    ]
    if not numbered:
        raise DataError(f"{where} holds no rows; it needs one example per row")
    if all(len(cells) == 1 for _, cells in numbered):
        for line, (cell,) in numbered:
            other = next((c for c in _SEPARATORS if c in cell), None)
            if other is not None:
                raise DataError(
                    f"row {line} of {where} is one value {cell[:40]!r} holding {other!r}, and "
                    f"the rows do not split into the same number of values at {other!r}; "
                    "write the file with one separator between values"
                )
    return numbered


#: The separators a table may use; the file's own kind (comma for .csv, tab for .tsv) first.
_SEPARATORS = (",", ";", "\t", "|")
_DECIMAL_COMMA = re.compile(r"[+-]?[0-9]*,[0-9]+(?:[eE][+-]?[0-9]+)?")


def _separator(text: str, default: str) -> str:
    """The separator that splits the first 100 rows of ``text`` best: every row into the same
    number (> 1) of values, with the most of them numbers (a value such as ``1,5`` counts as a
    number with a decimal comma where the separator is not a comma). Ties keep ``default``, so
    a table in one column, or one no separator splits evenly, reads as it always did."""
    lines = [line for line in text.splitlines()[:100] if line.strip()]
    best, best_score = default, -1.0
    for sep in (default, *(s for s in _SEPARATORS if s != default)):
        rows = list(csv.reader(lines, delimiter=sep))
        widths = {len(r) for r in rows[1:] or rows}
        width = widths.pop() if len(widths) == 1 else 1
        if width == 1 or len(rows[0]) not in (width, width - 1):  # a header may lack a last ""
            continue
        cells = [c.strip() for r in rows[1:] or rows for c in r]
        score = sum(_is_number(_decimal_point(c, sep)) for c in cells) / len(cells)
        if score > best_score:
            best, best_score = sep, score
    return best


def _decimal_point(cell: str, sep: str) -> str:
    """``cell`` with a decimal comma written as a point, in a table not separated by commas."""
    return cell.replace(",", ".") if sep != "," and _DECIMAL_COMMA.fullmatch(cell) else cell


def _drop_trailing_empty_column(rows: Rows) -> Rows:
    """Spreadsheets often end every row with a separator: an empty last column is no column."""
    (_, top), *rest = rows
    if (
        rest
        and all(len(cells) > 1 and cells[-1] == "" for _, cells in rest)
        and (top[-1] == "" or len(top) == len(rest[0][1]) - 1)
    ):
        return [(line, cells[:-1] if cells[-1] == "" else cells) for line, cells in rows]
    return rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _has_header(rows: Rows) -> bool:
    """Whether the first row names columns of numbers: a cell of text above a number (a column
    of text labels has text in every row, and a file without a header may have one)."""
    first = rows[0][1]
    below = rows[1][1] if len(rows) > 1 else [""] * len(first)
    return any(
        not _is_number(c) and (j >= len(below) or _is_number(below[j]) or len(rows) == 1)
        for j, c in enumerate(first)
    )


def _width(rows: Rows, names: list[str] | None, where: str) -> int:
    """The number of values every row (and the header) has; a ragged table is a DataError."""
    width = len(rows[0][1])
    for line, cells in rows:
        if len(cells) != width:
            raise DataError(
                f"row {line} of {where} has {len(cells)} values but row {rows[0][0]} has "
                f"{width}; every row needs the same number"
            )
    if names is not None and len(names) != width:
        raise DataError(f"{where} has {len(names)} header names but {width} values per row")
    return width


def _label_index(label_column: int | str, names: list[str] | None, width: int, where: str) -> int:
    """The column (0 .. width - 1) that ``label_column`` (an index or a header name) names."""
    if isinstance(label_column, str) and not re.fullmatch(r"-?[0-9]+", label_column):
        if names is None or label_column not in names:
            raise DataError(
                f"label column {label_column!r} is not in the header of {where}; "
                f"columns: {names or 'no header'}"
            )
        col = names.index(label_column)
    else:
        col = int(label_column)
        if not -width <= col < width:
            raise DataError(f"label column {col} is outside the {width} columns of {where}")
        col %= width
    if width < 2:
        raise DataError(f"{where} has one column; it cannot be both data and labels")
    return col


def _values(
    rows: Rows, col: int | None, names: list[str] | None, hint: bool, where: str
) -> tuple[np.ndarray, list[str]]:
    """(float32 values (N, columns) without the label column ``col``, the label cells).

    A cell that is not a number is a DataError (:func:`parse_cells`).
    """
    keep = [j for j in range(len(rows[0][1])) if j != col]
    values = parse_cells(rows, keep, names, where, hint)
    raw_labels = [] if col is None else [cells[col] for _, cells in rows]
    x = values.astype(np.float32)
    if np.isfinite(values).all() and not np.isfinite(x).all():
        raise DataError(f"{where} holds values too large for float32; scale the data")
    return x, raw_labels


def _label_hint(j: int, names: list[str] | None) -> str:
    """How to make column ``j`` (a column of text) the labels, by the setting label_column."""
    if names:
        return f" (if it holds labels, give label_column {names[j]})"
    return f" (if it holds labels, give label_column {j}; columns count from 0)"


def _csv_labels(raw: list[str]) -> tuple[np.ndarray, list[str] | None]:
    """Label cells as int64 (N,): whole numbers as they are, else text numbered in sorted order
    (and the sorted names)."""
    try:
        as_float = np.array([float(v) for v in raw])
        if not np.all(np.isfinite(as_float) & (as_float == np.round(as_float))):
            raise ValueError
        return as_float.astype(np.int64), None
    except ValueError:
        names = sorted(set(raw))
        index = {n: k for k, n in enumerate(names)}
        return np.array([index[v] for v in raw], dtype=np.int64), names

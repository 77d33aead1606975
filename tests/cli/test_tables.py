"""A table through the command line: standardised by default, outputs as CSV with named columns,
ids and labels, and the training file itself an input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit

COLUMNS = ["area", "ratio", "count", "depth"]
SCALES = np.array([1000.0, 0.01, 1.0, 50.0])


def _write_table(path: Path, factor: float = 1.0) -> np.ndarray:
    """A CSV of 300 rows of 4 columns on very different scales, and a text label column
    ("shape") in the middle; returns the values (300, 4) as float32 times ``factor``."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((300, 2))
    x = (
        z @ rng.standard_normal((2, 4)) + 0.1 * rng.standard_normal((300, 4))
    ) * SCALES + 3 * SCALES
    x = (x.astype(np.float32) * np.float32(factor)).astype(np.float32)
    kinds = np.where(z[:, 0] > 0, "tall", "short")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS[:2], "shape", *COLUMNS[2:]])
        for row, k in zip(x, kinds, strict=True):
            w.writerow([repr(float(v)) for v in row[:2]] + [k] + [repr(float(v)) for v in row[2:]])
    return x


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("table")
    return tmp / "t.csv", _write_table(tmp / "t.csv")


@pytest.fixture(scope="module")
def run(table: tuple[Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "t"
    args = ["train", "--data", table[0], "--label-column", "shape", "--out", out, "--epochs", "3"]
    code, _, err = _cli(*args, "-q")
    assert code == 0, err
    return out


def _cli(*args: object) -> tuple[int, str, str]:
    """Run ``vaekit args`` in this process; (exit status, stdout, stderr)."""
    from vaekit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def test_a_real_valued_table_is_standardised_by_its_training_split(
    run: Path, table: tuple[Path, np.ndarray]
) -> None:
    model = json.loads((run / "config.json").read_text())["model"]
    train = vaekit.data.load(str(table[0]), label_column="shape").train.numpy().astype(np.float64)
    np.testing.assert_allclose(model["data_shift"], train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(model["data_scale"], train.std(0), rtol=1e-12)


def test_the_note_says_so_and_standardize_false_turns_it_off(
    table: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    args = ["train", "--data", table[0], "--label-column", "shape", "--epochs", "1"]
    code, out, err = _cli(*args, "--out", tmp_path / "a")
    assert code == 0, err
    assert "standardised each of 4 columns" in out
    code, out, err = _cli(*args, "--out", tmp_path / "b", "--set", "standardize=false", "-q")
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "config.json").read_text())["model"]["data_scale"] == []
    bad = ["--set", "standardize=true", "--set", "likelihood=bernoulli"]
    code, _, err = _cli(*args, "--out", tmp_path / "c", *bad)
    assert code == 2 and "standardize=true" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_log_px_is_in_the_data_s_units(table: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    """The same table times 1024 standardises to the same numbers, so the model trains the same;
    its log p(x) is lower by exactly D log 1024 (the Jacobian of the change of units)."""
    scaled = tmp_path / "t1024.csv"
    _write_table(scaled, 1024.0)
    reports = []
    for i, source in enumerate([table[0], scaled]):
        out = tmp_path / f"r{i}"
        args = ["--data", source, "--label-column", "shape", "--epochs", "2", "-q"]
        assert _cli("train", *args[:-1], "--out", out, "-q")[0] == 0
        code, _, err = _cli("evaluate", out, "-k", "20", "-q")
        assert code == 0, err
        reports.append(json.loads((out / "eval.json").read_text()))
    shift = len(COLUMNS) * math.log(1024)
    a, b = reports
    assert b["log_likelihood"] == pytest.approx(a["log_likelihood"] - shift, abs=1e-3)
    assert b["elbo"] == pytest.approx(a["elbo"] - shift, abs=1e-3)


def test_sample_and_reconstruct_write_csv_with_the_columns_names(run: Path) -> None:
    code, _, err = _cli("sample", run, "-n", "50")
    assert code == 0, err
    header, rows = _rows(run / "samples.csv")
    assert header == ["id", *COLUMNS] and [r[0] for r in rows] == [str(i) for i in range(50)]
    values = np.array([[float(v) for v in r[1:]] for r in rows])
    # in the data's own units: the "area" column is in the thousands, "ratio" in hundredths
    assert 300 < np.abs(values[:, 0]).mean() < 30000 and np.abs(values[:, 1]).mean() < 0.3
    code, _, err = _cli("reconstruct", run, "-n", "3")
    assert code == 0, err
    header, rows = _rows(run / "reconstructions.csv")
    assert header == ["id", "kind", *COLUMNS]
    assert [r[:2] for r in rows] == [
        [str(i), k] for i in range(3) for k in ("input", "reconstruction")
    ]


def test_encode_writes_ids_and_labels_and_decode_reads_them_back(run: Path, tmp_path: Path) -> None:
    code, _, err = _cli("encode", run, "-o", tmp_path / "z.csv")
    assert code == 0, err
    header, rows = _rows(tmp_path / "z.csv")
    model = vaekit.load(run)
    assert header == ["id", "label"] + [f"z{i}" for i in range(model.config.latent_dim)]
    assert {r[1] for r in rows} == {"short", "tall"}
    code, _, err = _cli("decode", run, tmp_path / "z.csv", "-o", tmp_path / "x.npy")
    assert code == 0, err
    z = torch.tensor([[float(v) for v in r[2:]] for r in rows])
    with torch.no_grad():
        expected = model.decode(z).mean.numpy()
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), expected, rtol=1e-5, atol=1e-3)


def test_encode_takes_the_training_csv_itself(run: Path, table: tuple[Path, np.ndarray]) -> None:
    path, x = table
    out = run / "all-z.npy"
    code, _, err = _cli("encode", run, "--input", path, "-o", out)
    assert code == 0, err
    model = vaekit.load(run)
    with torch.no_grad():
        expected = model.encode(torch.from_numpy(x)).mean.numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-5)


def test_a_picture_of_table_rows_needs_their_image_shape(run: Path, tmp_path: Path) -> None:
    code, _, err = _cli("sample", run, "-o", tmp_path / "s.png")
    assert code == 2 and "--image-shape" in err and not (tmp_path / "s.png").exists()
    code, _, err = _cli("sample", run, "-o", tmp_path / "s.png", "--image-shape", "2x2")
    assert code == 0, err
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_new_run_removes_the_old_run_s_tables(
    table: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "t"
    args = ["train", "--data", table[0], "--label-column", "shape", "--out", out, "--epochs", "1"]
    assert _cli(*args, "-q")[0] == 0
    assert _cli("sample", out, "-n", "5")[0] == 0 and _cli("reconstruct", out, "-n", "2")[0] == 0
    (out / "mine.csv").write_text("the user's own file\n")
    assert _cli(*args, "-q", "--overwrite")[0] == 0
    assert not (out / "samples.csv").exists() and not (out / "reconstructions.csv").exists()
    assert (out / "mine.csv").read_text() == "the user's own file\n"


@pytest.mark.parametrize(
    ("text", "label_column", "expected"),
    [
        ("a,b,y\n1,2,p\n3,4,q\n", "y", [[1, 2], [3, 4]]),  # the training file: label dropped
        ("1,2,p\n3,4,q\n", -1, [[1, 2], [3, 4]]),  # no header: the label by index
        ("1,2\n3,4\n", -1, [[1, 2], [3, 4]]),  # the data's columns alone: all kept
        ("b,id,a\n2,0,1\n4,1,3\n", "y", [[1, 2], [3, 4]]),  # by name, in the run's order
        ("id,kind,x0,x1\n0,input,1,2\n0,reconstruction,3,4\n", None, [[1, 2], [3, 4]]),
    ],
)
def test_rows_are_read_back_by_column(
    tmp_path: Path, text: str, label_column: object, expected: list
) -> None:
    from vaekit.tables import read_columns

    path = tmp_path / "rows.csv"
    path.write_text(text)
    got = read_columns(path, "input", ["a", "b"] if "a" in text else ["x0", "x1"], label_column)
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))


def test_evaluate_gives_the_reconstruction_error_in_standard_deviations(run: Path) -> None:
    """1 per dim is what each column's mean would score: a person can read it across columns
    whose units differ by 10^5."""
    code, out, err = _cli("evaluate", run, "-k", "5", "-o", run / "e.json", "--force")
    assert code == 0, err
    report = json.loads((run / "e.json").read_text())
    model = vaekit.load(run)
    x = vaekit.data.load(
        json.loads((run / "config.json").read_text())["data"]["source"], label_column="shape"
    ).test
    with torch.no_grad():
        error = ((model.reconstruct(x) - x) / model.data_scale.float()) ** 2
    assert report["reconstruction_mse_standardized"] == pytest.approx(float(error.mean()), rel=1e-4)
    assert "    standardised" in out

"""``vaekit score``: per-example scores of every example of a file, in its order, checked against
the library's estimators with the same seed; percentiles, typicality and the AUROC against
closed forms, scipy and scikit-learn; bad input is one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from scipy.stats import percentileofscore
from sklearn.metrics import roc_auc_score

import vaekit
from vaekit.cli import main
from vaekit.estimators import elbo as elbo_per_example
from vaekit.evaluation.scores import auroc, percentiles, typicality

K = 20


def _table(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A CSV of 120 rows of 4 correlated columns, 12 of them outliers (label 1)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    x[:, 2:] = 0.5 * x[:, :2] + 0.1 * x[:, 2:]
    y = np.zeros(120, dtype=int)
    out = rng.choice(120, 12, replace=False)
    x[out] = rng.normal(scale=3.0, size=(12, 4))
    y[out] = 1
    path = folder / "table.csv"
    lines = ["a,b,c,d,outlier"] + [
        ",".join(f"{v:.5f}" for v in row) + f",{label}" for row, label in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path, np.loadtxt(path, delimiter=",", skiprows=1)[:, :4].astype(np.float32), y


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("score")
    path, x, y = _table(folder)
    run = folder / "run"
    tiny = ["--epochs", "3", "--set", "hidden=[16]", "--set", "latent_dim=2", "-k", "5", "-q"]
    main(["train", "--data", str(path), "--label-column", "outlier", "--out", str(run), *tiny])
    return run, path, x, y


def _csv(path: Path) -> dict[str, np.ndarray]:
    header = path.read_text().splitlines()[0].split(",")
    values = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {name: values[:, i] for i, name in enumerate(header)}


def test_scores_are_the_estimators_in_the_files_order(
    table: tuple[Path, Path, np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, path, x, y = table
    out = tmp_path / "scores.csv"
    code, stdout, err = run_cli(capsys, "score", run, "--data", path, "-k", K, "--seed", 3,
                                "--output", out)  # fmt: skip
    assert code == 0, err
    cols = _csv(out)
    assert list(cols) == ["index", "label", "log_px", "elbo", "recon", "kl", "percentile"]
    np.testing.assert_array_equal(cols["index"], np.arange(120))
    np.testing.assert_array_equal(cols["label"], y)
    model = vaekit.load(run)
    ll = vaekit.log_likelihood(model, torch.from_numpy(x), k=K, seed=3).numpy()
    np.testing.assert_allclose(cols["log_px"], ll, rtol=1e-7, atol=1e-7)
    elbo = elbo_per_example(model, torch.from_numpy(x), seed=3).numpy()
    np.testing.assert_allclose(cols["elbo"], elbo, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cols["elbo"], cols["recon"] - cols["kl"], atol=1e-6)
    assert (cols["kl"] >= 0).all()
    assert ((cols["percentile"] >= 0) & (cols["percentile"] <= 100)).all()
    # the reference is the run's own test split, scored with the same K and seed
    test_x, _, _ = _test_split(run)
    ref = vaekit.log_likelihood(model, test_x, k=K, seed=3).numpy()
    np.testing.assert_allclose(cols["percentile"], percentiles(cols["log_px"], ref), atol=1e-6)
    # the outliers (label 1 of 0/1 labels): the AUROC of -log p(x), as scikit-learn gives it
    expected = roc_auc_score(y == 1, -cols["log_px"])
    assert f"AUROC of -log p(x) for the 12 outliers: {expected:.4f}" in stdout
    assert expected > 0.8  # points far off the data's plane are unlikely under the model


def _test_split(run: Path) -> tuple[torch.Tensor, torch.Tensor | None, object]:
    from vaekit.cli.run import Run

    return Run(run).split(None, "test")


def test_npy_output_is_a_structured_array_of_the_same_numbers(
    table: tuple[Path, Path, np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, path, _, y = table
    csv, npy = tmp_path / "s.csv", tmp_path / "s.npy"
    for out in (csv, npy):
        code, _, err = run_cli(capsys, "score", run, "--data", path, "-k", K, "--output", out)
        assert code == 0, err
    a = np.load(npy, allow_pickle=False)
    assert a.dtype.names == ("index", "label", "log_px", "elbo", "recon", "kl", "percentile")
    assert a["index"].dtype == np.int64 and a["log_px"].dtype == np.float64
    cols = _csv(csv)
    for name in a.dtype.names:
        np.testing.assert_allclose(a[name], cols[name], rtol=1e-8, atol=1e-7)
    np.testing.assert_array_equal(a["label"], y)


def test_a_npy_file_is_scored_in_its_order_and_by_split(
    table: tuple[Path, Path, np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, _, x, _ = table
    data = tmp_path / "rows.npy"
    np.save(data, x[::-1].copy())  # reversed: another order than the training file's
    out = tmp_path / "s.csv"
    code, _, err = run_cli(capsys, "score", run, "--data", data, "-k", K, "--output", out)
    assert code == 0, err
    cols = _csv(out)
    assert "label" not in cols
    ll = vaekit.log_likelihood(vaekit.load(run), torch.from_numpy(x[::-1].copy()), k=K).numpy()
    np.testing.assert_allclose(cols["log_px"], ll, rtol=1e-7, atol=1e-7)
    # one split: its rows, with their row numbers in the file
    code, _, err = run_cli(capsys, "score", run, "--data", data, "-k", K, "--split", "test",
                           "--output", out, "--force")  # fmt: skip
    assert code == 0, err
    cols = _csv(out)
    rows = cols["index"].astype(int)
    assert len(rows) == 12 and len(set(rows)) == 12
    one = vaekit.log_likelihood(vaekit.load(run), torch.from_numpy(x[::-1][rows].copy()), k=K)
    np.testing.assert_allclose(cols["log_px"], one.numpy(), rtol=1e-7, atol=1e-7)


def test_typicality_column_and_its_auroc(
    table: tuple[Path, Path, np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, path, _, y = table
    out = tmp_path / "s.csv"
    code, stdout, err = run_cli(capsys, "score", run, "--data", path, "-k", K, "--typicality",
                                "--reference", path, "--output", out)  # fmt: skip
    assert code == 0, err
    cols = _csv(out)
    # the reference is the file itself: H is its mean -log p(x)
    h = -cols["log_px"].mean()
    np.testing.assert_allclose(cols["typicality"], np.abs(-cols["log_px"] - h), atol=1e-6)
    np.testing.assert_allclose(
        cols["percentile"], percentiles(-cols["typicality"], -cols["typicality"]), atol=1e-6
    )
    expected = roc_auc_score(y == 1, cols["typicality"])
    assert f"AUROC of typicality for the 12 outliers: {expected:.4f}" in stdout


def test_percentiles_by_hand_and_against_scipy() -> None:
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    got = percentiles(np.array([0.0, 2.0, 2.5, 5.0, 4.0]), ref)
    np.testing.assert_allclose(got, [0.0, 37.5, 50.0, 100.0, 87.5])
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 20, size=200).astype(float)  # ties
    values = rng.integers(-2, 22, size=50).astype(float)
    expected = [percentileofscore(ref, v, kind="mean") for v in values]
    np.testing.assert_allclose(percentiles(values, ref), expected)


def test_typicality_and_auroc_by_hand() -> None:
    np.testing.assert_allclose(typicality(np.array([-1.0, -5.0, -3.0]), np.array([-2.0, -4.0])),
                               [2.0, 2.0, 0.0])  # fmt: skip
    # one outlier ranked above both inliers, one between them: 3 of 4 pairs right
    assert auroc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.5, 0.7])) == 0.75


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "scores.txt"], "must end in .csv or .npy"),
        (["--data", "missing.csv"], "does not exist"),
        (["--outlier-label", "7"], "the labels mark 0 of 120 examples as outliers"),
        (["--outlier-label", "cat"], "is not a class number or label"),
    ],
)
def test_bad_input_is_one_line(
    table: tuple[Path, Path, np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    run, path, _, _ = table
    monkeypatch.chdir(tmp_path)
    given = ["--data", str(path)] if "--data" not in args else []
    code, _, err = run_cli(capsys, "score", run, *given, "-k", 2, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: ") and message in lines[0], err
    assert not list(tmp_path.iterdir()) and not (run / "scores.csv").exists()


def test_an_outlier_label_without_labels_is_one_line(
    table: tuple[Path, Path, np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, _, x, _ = table
    data = tmp_path / "rows.npy"
    np.save(data, x)
    code, _, err = run_cli(capsys, "score", run, "--data", data, "--outlier-label", "1")
    assert code == 2 and err.count("\n") == 1 and "needs labelled data" in err, err


def test_a_built_in_data_set_is_scored_on_its_test_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    tiny = ["--epochs", "1", "--set", "hidden=[16]", "--set", "latent_dim=2", "-k", "2", "-q"]
    main(["train", "--data", "digits", "--out", str(run), *tiny])
    code, stdout, err = run_cli(capsys, "score", run, "--data", "digits", "-k", 3)
    assert code == 0, err
    cols = _csv(run / "scores.csv")
    x, labels, _ = _test_split(run)
    np.testing.assert_array_equal(cols["index"], np.arange(len(x)))
    np.testing.assert_array_equal(cols["label"], labels.numpy())
    from vaekit.train import binarize

    assert json.loads((run / "config.json").read_text())["train"]["binarize"] == "dynamic"
    x = binarize(x, seed=0)  # one fixed binarisation (seed --seed), as vaekit evaluate does
    ll = vaekit.log_likelihood(vaekit.load(run), x, k=3).numpy()
    np.testing.assert_allclose(cols["log_px"], ll, rtol=1e-7, atol=1e-7)
    # scored against itself: the median example sits near the 50th percentile
    assert np.median(cols["percentile"]) == pytest.approx(50.0, abs=1.0)
    assert "AUROC" not in stdout  # labels 0..9 mark no outliers

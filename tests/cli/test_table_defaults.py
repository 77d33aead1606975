"""A user's table gets settings chosen from its size where the user gave none: latent_dim half
its columns (2 to 20), epochs for about 3,000 optimizer steps (10 to 1,000) with early stopping
(patience a tenth of them), each a note that train prints and a value config.json keeps; any
setting the user gives wins, and built-in data sets, images and other kinds are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from vaekit.data import DEFAULTS
from vaekit.train.sizing import table_epochs, table_latent_dim, table_patience

QUICK = ["--time-limit", "1", "-q", "--set", "hidden=[8]"]  # the choice, not a trained model


def _table(path: Path, rows: int, columns: int) -> Path:
    x = np.random.default_rng(0).normal(size=(rows, columns))
    header = ",".join(f"c{i}" for i in range(columns))
    np.savetxt(path, x, delimiter=",", header=header, comments="")
    return path


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_the_rules() -> None:
    assert [table_latent_dim(c) for c in (1, 3, 4, 13, 30, 40, 100)] == [2, 2, 2, 6, 15, 20, 20]
    assert table_epochs(320, 100) == 750  # 4 steps an epoch: 3,000 steps
    assert table_epochs(142, 100) == 1000  # 2 steps an epoch would need 1,500 epochs: capped
    assert table_epochs(100_000, 100) == 10  # a large table keeps the default
    assert table_epochs(16_000, 100) == 19
    assert [table_patience(e) for e in (10, 100, 750, 1000)] == [10, 10, 75, 100]


def test_a_small_table_gets_settings_from_its_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = _table(tmp_path / "t.csv", 400, 13), tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", data, "--out", run, *QUICK)
    assert code == 0, err
    text = " ".join(out.split())  # notes are wrapped at 100 columns
    assert "latent_dim=6 for a table of 13 columns" in text
    assert "epochs=750 for 320 training rows in batches of 100: 3000 steps" in text
    assert "patience=75: training stops after 75 epochs without a better validation ELBO" in text
    config = _config(run)
    assert config["model"]["latent_dim"] == 6
    assert (config["train"]["epochs"], config["train"]["patience"]) == (750, 75)


@pytest.mark.parametrize(
    ("given", "latent", "epochs", "patience"),
    [
        (["--set", "latent_dim=3", "--epochs", "5"], 3, 5, 0),
        (["--set", "model.latent_dim=20"], 20, 750, 75),
        (["--set", "patience=0"], 6, 750, 0),
        (["--set", "patience=4"], 6, 750, 4),
        (["--set", "batch_size=40"], 6, 375, 37),  # 8 steps an epoch
    ],
)
def test_what_the_user_gives_wins(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: list[str],
    latent: int,
    epochs: int,
    patience: int,
) -> None:
    data, run = _table(tmp_path / "t.csv", 400, 13), tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", data, "--out", run, *QUICK, *given)
    assert code == 0, err
    config = _config(run)
    assert config["model"]["latent_dim"] == latent
    assert (config["train"]["epochs"], config["train"]["patience"]) == (epochs, patience)
    text = " ".join(out.split())
    assert ("for a table of 13 columns" in text) == ("latent_dim" not in " ".join(given))


def test_a_config_file_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = _table(tmp_path / "t.csv", 400, 13), tmp_path / "run"
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nlatent_dim = 4\n[train]\nepochs = 7\n")
    code, out, err = run_cli(
        capsys, "train", "--data", data, "--config", toml, "--out", run, *QUICK
    )
    assert code == 0, err
    config = _config(run)
    assert config["model"]["latent_dim"] == 4 and config["train"]["epochs"] == 7
    assert config["train"]["patience"] == 0 and "note" not in out.replace("note   standard", "")


def test_other_data_keeps_its_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "train", "--data", "digits", "--out", tmp_path / "d", *QUICK)
    assert code == 0, err
    config = _config(tmp_path / "d")
    assert "for a table" not in out and config["train"]["patience"] == 0
    recipe = DEFAULTS["digits"]
    assert config["train"]["epochs"] == recipe["train"]["epochs"]  # the built-in recipe's
    assert config["model"]["latent_dim"] == recipe["model"]["latent_dim"]
    images = tmp_path / "images.npy"  # rows that are pictures, not a table
    np.save(images, np.random.default_rng(0).random((300, 8, 8)).astype(np.float32))
    code, out, err = run_cli(capsys, "train", "--data", images, "--out", tmp_path / "i", *QUICK)
    assert code == 0, err
    assert "for a table" not in out and _config(tmp_path / "i")["model"]["latent_dim"] == 20
    big = _table(tmp_path / "big.csv", 2000, 50)  # 50 columns: latent_dim 20, as before
    code, out, err = run_cli(capsys, "train", "--data", big, "--out", tmp_path / "b", *QUICK)
    assert code == 0, err
    config = _config(tmp_path / "b")
    assert config["model"]["latent_dim"] == 20 and "latent_dim=" not in out.split("model")[0]
    assert config["train"]["epochs"] == 188  # 16 steps an epoch


def test_a_table_trains_with_its_chosen_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows on a 2-D plane in 6 columns: the chosen run trains and early stopping ends it."""
    g = np.random.default_rng(1)
    x = g.normal(size=(150, 2)) @ g.normal(size=(2, 6)) + 0.05 * g.normal(size=(150, 6))
    data, run = tmp_path / "plane.csv", tmp_path / "run"
    np.savetxt(data, x, delimiter=",")
    code, out, err = run_cli(capsys, "train", "--data", data, "--out", run, "-q",
                             "--set", "hidden=[32]", "--set", "patience=5")  # fmt: skip
    assert code == 0, err
    config = _config(run)
    assert config["model"]["latent_dim"] == 3 and config["train"]["epochs"] == 1000
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    assert 10 < len(records) < 1000 and last["stopped"] == "early"  # past main's 10 epochs
    assert last["best_valid_elbo"] > records[0]["valid_elbo"] + 1  # the extra epochs paid
    assert f"stopped early at epoch {len(records)}; best validation ELBO at epoch" in out

"""Split settings of data vaekit splits itself: ``--valid-fraction``, ``--test-fraction`` and
``--split-seed`` choose the split, are saved in config.json, and every later command reads the
same split back (its examples' fingerprints are those training recorded); runs from before them
read 0.1, 0.1 and seed 0; bad values are one line, exit status 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

import vaekit
from vaekit.checkpoint import read_training_info
from vaekit.cli.run import Run
from vaekit.train import fingerprint

FAST = ["--epochs", "1", "--set", "hidden=[8]", "--set", "latent_dim=2", "-q"]


def _table(path: Path, n: int = 200) -> Path:
    x = np.random.default_rng(0).normal(size=(n, 4))
    np.savetxt(path, x, delimiter=",", header="a,b,c,d", comments="")
    return path


def _rows(t: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in t.numpy().round(5).tolist()}


def test_the_split_is_chosen_saved_and_read_back_by_later_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = _table(tmp_path / "t.csv"), tmp_path / "run"
    split = ["--valid-fraction", "0.25", "--test-fraction", "0.15", "--split-seed", "7"]
    code, out, err = run_cli(capsys, "train", "--data", data, "--out", run, *FAST, *split)
    assert code == 0, err
    assert "120 train / 50 valid / 30 test" in out  # 200 rows: 25% and 15% held out
    entry = json.loads((run / "config.json").read_text())["data"]
    assert (entry["valid_fraction"], entry["test_fraction"], entry["split_seed"]) == (0.25, 0.15, 7)
    trained = read_training_info(run)["data"]  # what training saw, by fingerprint
    r = Run(run)
    x_train, _, _ = r.split(None, "train")
    x_valid, _, _ = r.split(None, "valid")
    x_test, _, _ = r.split(None, "test")
    assert fingerprint(x_train) == trained["train"] and fingerprint(x_valid) == trained["valid"]
    assert (len(x_train), len(x_valid), len(x_test)) == (120, 50, 30)
    assert not _rows(x_test) & (_rows(x_train) | _rows(x_valid))  # the held-out rows stay out
    code, out, err = run_cli(capsys, "evaluate", run, "-k", "2")
    assert code == 0, err
    assert "test split of t: 30 examples" in out
    code, out, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2", "-q")
    assert code == 0, err  # the resumed run reads the split it trained on (fingerprints match)
    assert f"resume {run} at epoch 2 of 2" in out and "120 train / 50 valid / 30 test" in out
    # the same settings through the Python API give the same split
    ds = vaekit.data.load(data, valid_fraction=0.25, test_fraction=0.15, seed=7)
    assert torch.equal(torch.as_tensor(ds.test), x_test)
    other = vaekit.data.load(data, valid_fraction=0.25, test_fraction=0.15, seed=8)
    assert not torch.equal(torch.as_tensor(other.test), x_test)  # the seed draws the split


def test_runs_without_the_settings_read_the_old_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = _table(tmp_path / "t.csv"), tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", data, "--out", run, *FAST)
    assert code == 0, err
    assert "160 train / 20 valid / 20 test" in out
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["valid_fraction"] == 0.1 and config["data"]["split_seed"] == 0
    for key in ("valid_fraction", "test_fraction"):  # a run folder from before the settings
        del config["data"][key]
    (run / "config.json").write_text(json.dumps(config))
    x_test, _, _ = Run(run).split(None, "test")
    assert torch.equal(x_test, torch.as_tensor(vaekit.data.load(data).test))
    assert fingerprint(Run(run).split(None, "train")[0]) == read_training_info(run)["data"]["train"]


RANGE = "must be a fraction from 0 to below 1, got"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--valid-fraction", "1.2"], f"--valid-fraction {RANGE} 1.2"),
        (["--test-fraction", "-0.1"], f"--test-fraction {RANGE} -0.1"),
        (["--valid-fraction", "nan"], f"--valid-fraction {RANGE} nan"),
        (
            ["--valid-fraction", "0"],
            "--valid-fraction 0 leaves no validation split, on which train measures every epoch "
            "and its report: give a fraction above 0",
        ),
        (
            ["--valid-fraction", "0.6", "--test-fraction", "0.4"],
            "--valid-fraction 0.6 + --test-fraction 0.4 leave no training examples; give "
            "fractions whose sum is below 1",
        ),
    ],
)
def test_bad_fractions_are_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    data, run = _table(tmp_path / "t.csv"), tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", run, *FAST, *flags)
    assert code == 2 and err == f"vaekit: error: {message}\n"
    assert not run.exists()


def test_split_settings_apply_only_to_data_vaekit_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fits = "it is for data vaekit splits itself: arrays, CSV files, folders of images"
    for flags, flag in (
        (["--valid-fraction", "0.2"], "--valid-fraction"),
        (["--split-seed", "3"], "--split-seed"),
    ):
        code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", tmp_path / "r", *flags)
        assert code == 2 and err == f"vaekit: error: {flag} does not apply to 'digits': {fits}\n"
    data, run = _table(tmp_path / "t.csv"), tmp_path / "run"
    assert run_cli(capsys, "train", "--data", data, "--out", run, *FAST)[0] == 0
    code, _, err = run_cli(capsys, "train", "--resume", run, "--split-seed", "2")
    assert code == 2 and "leave out --split-seed" in err
    npz = tmp_path / "s.npz"
    np.savez(npz, train=np.random.rand(30, 3), test=np.random.rand(10, 3))
    with pytest.raises(vaekit.DataError, match="holds its own test split: leave out test_fraction"):
        vaekit.data.load(npz, test_fraction=0.3)
    ds = vaekit.data.load(npz, valid_fraction=0.5)  # drawn from its train array
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (15, 15, 10)
    with pytest.raises(vaekit.ConfigError, match="valid_fraction must be a fraction from 0"):
        vaekit.data.load(data, valid_fraction=True)


def test_factors_follow_the_chosen_split(tmp_path: Path) -> None:
    data = _table(tmp_path / "t.csv", n=50)
    factors = tmp_path / "f.npy"
    np.save(factors, np.arange(50)[:, None])  # factor = row number
    ds = vaekit.data.load(data, factors=factors, valid_fraction=0.3, test_fraction=0.2, seed=4)
    full = np.loadtxt(data, delimiter=",", skiprows=1, dtype=np.float32)
    for split in ("train", "valid", "test"):
        rows = getattr(ds, f"{split}_factors")[:, 0]
        assert np.allclose(full[rows], np.asarray(getattr(ds, split)))
    assert [len(ds.train), len(ds.valid), len(ds.test)] == [25, 15, 10]


def test_a_hand_edited_fraction_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = _table(tmp_path / "t.csv"), tmp_path / "run"
    assert run_cli(capsys, "train", "--data", data, "--out", run, *FAST)[0] == 0
    config = json.loads((run / "config.json").read_text())
    config["data"]["test_fraction"] = 1.5
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "evaluate", run)
    assert code == 2 and "data.test_fraction must be a fraction from 0 to below 1" in err

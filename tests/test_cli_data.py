"""A user's own data files through the ``vaekit`` command, as people bring them: arrays with
text labels, images stored channels-last, CSV files from spreadsheets, WAV files from other tools.

Each file either trains and serves the follow-up commands, or gives one line on stderr naming the
file and what to do, exit status 2 and no traceback.
"""

from __future__ import annotations

import json

import numpy as np
from conftest import run_cli

from vaekit import data

TINY = ["--epochs", "1", "--set", "hidden=[8]", "--set", "latent_dim=2", "-k", "2", "-q"]


def _one_line(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaekit: error: ") and "Traceback" not in err
    return err


def test_text_labels_of_an_npz_number_the_classes_of_a_conditional_run(capsys, tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["setosa", "virginica", "versicolor"])
    np.savez(tmp_path / "d.npz", x=rng.random((30, 4)), labels=names[np.arange(30) % 3])
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "d.npz", "--out", out, *TINY,
                           "--set", "condition_dim=3")  # fmt: skip
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["condition_dim"] == 3
    ds = data.load(tmp_path / "d.npz")
    assert ds.label_names == ["setosa", "versicolor", "virginica"]
    code, _, err = run_cli(capsys, "encode", out, "--output", tmp_path / "z.npy")
    assert code == 0, err
    assert np.load(tmp_path / "z.npy").shape == (3, 2)
    # a label array of another shape, or of fractions, is one line naming it
    np.savez(tmp_path / "bad.npz", x=rng.random((30, 4)), labels=rng.random(30))
    err = _one_line(*run_cli(capsys, "train", "--data", tmp_path / "bad.npz", "--out",
                             tmp_path / "bad", *TINY))  # fmt: skip
    assert "'labels'" in err and "not whole numbers" in err
    assert not (tmp_path / "bad").exists()

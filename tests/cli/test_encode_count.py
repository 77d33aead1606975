"""``vaekit encode -n N`` encodes (and with --refine, refines) only the first N examples, and
refinement's progress bar counts its steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

import vaekit
from vaekit.evaluation import refine_posterior


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("enc") / "run"
    vaekit.cli.main(["train", "--data", "digits", "--out", str(out), "--epochs", "2", "-k", "2",
                     "-q", "--set", "hidden=[16]", "--set", "latent_dim=3"])  # fmt: skip
    return out


def test_encode_first_n(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    every, first = tmp_path / "all.npy", tmp_path / "first.npy"
    assert run_cli(capsys, "encode", run, "--output", every)[0] == 0
    code, out, err = run_cli(capsys, "encode", run, "-n", 7, "--output", first)
    assert code == 0, err
    assert "encoded 7 examples of the test split of digits (the first 7)" in out
    np.testing.assert_allclose(np.load(first), np.load(every)[:7], rtol=0, atol=1e-6)


def test_refine_first_n_matches_the_library(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "refined.npy"
    code, _, err = run_cli(capsys, "encode", run, "--refine", 15, "-n", 4, "--output", out_file)
    assert code == 0, err
    model = vaekit.load(run)
    x = vaekit.data.load("digits", seed=0).test[:4]
    expected = refine_posterior(model, x, steps=15, seed=0).mean
    got = np.load(out_file)
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_refine_count_beyond_the_split_is_one_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "encode", run, "--refine", 5, "-n", 271, "--output",
                           tmp_path / "z.npy")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "-n 271 is more than the 270 examples" in err and not (tmp_path / "z.npy").exists()


def test_refine_progress_counts_steps(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = vaekit.load(run)
    x = torch.rand(5, 64)
    refine_posterior(model, x, steps=12, batch_size=3, progress=True)
    err = capsys.readouterr().err
    assert "refine q of 5 examples" in err and "/24 [" in err  # two batches of 12 steps

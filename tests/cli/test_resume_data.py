"""Resuming a finished run with other data is refused in one line, not reported as finished."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, snapshot

import vaekit


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("resume-data")
    rng = np.random.default_rng(0)
    own, other = folder / "own.npy", folder / "other.npy"
    np.save(own, rng.random((60, 16), dtype=np.float32))
    np.save(other, rng.random((60, 16), dtype=np.float32))
    run = folder / "run"
    vaekit.cli.main(["train", "--data", str(own), "--out", str(run), "--epochs", "2", "-k", "2",
                     "-q", "--set", "hidden=[8]", "--set", "latent_dim=2",
                     "--set", "likelihood=gaussian"])  # fmt: skip
    return run, own, other


def test_resume_with_other_data_is_refused(
    finished: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, _, other = finished
    before = snapshot(run)
    code, out, err = run_cli(capsys, "train", "--resume", run, "--data", other)
    assert code == 2 and len(err.strip().splitlines()) == 1, (out, err)
    assert "is not the data the run" in err and "already finished" not in out
    assert snapshot(run) == before


def test_resume_with_its_own_data_says_finished(
    finished: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, own, _ = finished
    code, out, err = run_cli(capsys, "train", "--resume", run, "--data", own)
    assert code == 0 and "has already finished its 2 epochs" in out, err

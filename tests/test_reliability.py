"""Resources run out: out of memory and a full disk give one line and exit status 2, and the files
of an existing run stay as they were. Real subprocesses, real file-size limits."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SMALL = ["--epochs", "2", "-k", "5", "--quiet", "--set", "latent_dim=2", "--set", "hidden=[8]"]


def vaekit(*args: str, preexec_fn=None) -> tuple[int, str, str]:
    env = {**os.environ, "VAEKIT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "vaekit", *args],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=preexec_fn,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def one_line_exit_2(*args: str, preexec_fn=None) -> str:
    code, out, err = vaekit(*args, preexec_fn=preexec_fn)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def limit_file_size() -> None:
    """Any write past 64 KiB fails with EFBIG, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    data = tmp_path_factory.mktemp("data") / "bits.npy"
    np.save(data, (rng.random((120, 16)) < 0.3).astype(np.float32))
    run = tmp_path_factory.mktemp("runs") / "run"
    code, _, err = vaekit("train", "--data", str(data), "--out", str(run), *SMALL)
    assert code == 0, err
    return run


def test_out_of_memory_is_one_line(tmp_path: Path) -> None:
    # A hidden layer of 3e9 units needs ~36 GB of weights: more than a test machine has.
    out = tmp_path / "huge"
    line = one_line_exit_2(
        "train", "--data", "digits", "--out", str(out), *SMALL, "--set", "hidden=[3000000000]"
    )
    assert "out of memory" in line and "batch_size" in line
    assert not (out / "config.json").exists()


def test_full_disk_during_training_is_one_line(run: Path, tmp_path: Path) -> None:
    data = tmp_path / "bits.npy"
    np.save(data, np.zeros((40, 16), dtype=np.float32))
    wide = [*SMALL, "--set", "hidden=[3000]"]  # weights of ~400 KB cannot be written
    line = one_line_exit_2(
        "train", "--data", str(data), "--out", str(tmp_path / "new"), *wide,
        preexec_fn=limit_file_size,
    )  # fmt: skip
    assert "cannot write" in line


def test_full_disk_leaves_an_existing_run_unchanged(run: Path) -> None:
    before = snapshot(run)
    line = one_line_exit_2(
        "sample", str(run), "-n", "4096", "--output", str(run / "figures" / "big.png"),
        preexec_fn=limit_file_size,
    )  # fmt: skip
    assert "cannot write" in line
    assert snapshot(run) == before

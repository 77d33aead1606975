"""A class folder whose name is not valid UTF-8 goes through every command that reads, draws or
writes labels: Python reads it with surrogate escapes, pictures show its bytes as \\x escapes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import png, run_cli
from PIL import Image

from vaekit.viz import printable


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("names")
    data = os.path.join(os.fsencode(root), b"classes")
    rng = np.random.default_rng(0)
    for name in (b"caf\xe9", b"tea"):
        folder = os.path.join(data, name)
        os.makedirs(folder)
        for i in range(8):
            pixels = (rng.random((8, 8)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png".encode()))
    out = root / "run"
    from vaekit.cli import main

    main(["train", "--data", os.fsdecode(data), "--out", str(out), "--epochs", "1", "-k", "2",
          "-q", "--set", "hidden=[8]", "--set", "latent_dim=2"])  # fmt: skip
    return out


@pytest.mark.parametrize(
    "command",
    [
        ["latents"],
        ["sample", "-n", "4"],
        ["reconstruct", "-n", "2"],
        ["encode"],
        ["evaluate", "-k", "2"],
        ["info"],
        ["manifold", "-n", "3"],
    ],
)
def test_every_command_takes_the_run(
    run: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, command[0], run, *command[1:])
    assert code == 0, err
    if command[0] == "latents":
        assert png(run / "figures" / "latents.png").size > 0


def test_encode_writes_such_a_name_into_its_csv(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "encode", run, "-o", tmp_path / "z.csv")
    assert code == 0, err
    labels = {line.split(",")[1] for line in (tmp_path / "z.csv").read_text().splitlines()[1:]}
    assert "caf\\xe9" in labels  # its bytes as escapes: the file is valid UTF-8


def test_printable_shows_bytes_and_keeps_unicode() -> None:
    assert printable("caf\udce9") == "caf\\xe9"
    assert printable("café") == "café"
    assert printable("\ud800") == "\\ud800"

"""A folder of full-size photos gets a size that fits by default, and reading a folder that mixes
sizes or grey and colour says what it changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from vaekit.data.images import DEFAULT_MAX_SIDE, load_image_folder


def _photos(folder: Path, sizes: list[tuple[int, int]], grey: int = 0) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        shape = (h, w) if i < grey else (h, w, 3)
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_full_size_photos_get_a_default_size_that_keeps_their_aspect(tmp_path: Path) -> None:
    folder = _photos(tmp_path / "photos", [(427, 640)] * 4 + [(300, 300)], grey=1)
    ds = load_image_folder(folder)
    # 427x640 scaled by 64/640 is 42.7x64; each side to a multiple of 4 for the conv networks
    assert ds.data_shape == (3, 44, DEFAULT_MAX_SIDE)
    assert ds.notes[0].startswith("the images are 427x640; training at 44x64")
    assert "5 of 5 images of 2 sizes resized to 44x64" in ds.notes
    assert "1 of 5 images are grey: converted to colour (RGB)" in ds.notes


def test_a_given_size_or_small_images_are_kept_without_notes(tmp_path: Path) -> None:
    big = _photos(tmp_path / "big", [(427, 640)] * 3)
    assert load_image_folder(big, image_size=(100, 150)).data_shape == (3, 100, 150)
    assert not load_image_folder(big, image_size=(100, 150)).notes[1:]  # only "resized"
    small = _photos(tmp_path / "small", [(32, 32)] * 3)
    ds = load_image_folder(small)
    assert ds.data_shape == (3, 32, 32) and ds.notes == []


def test_train_says_the_size_it_chose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _photos(tmp_path / "photos", [(427, 640)] * 10)
    code, out, err = run_cli(capsys, "train", "--data", folder, "--out", tmp_path / "run",
                             "--epochs", "1", "-k", "2", "-q")  # fmt: skip
    assert code == 0, err
    assert "training at 44x64" in out and "--image-size" in out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["network"] == "conv"

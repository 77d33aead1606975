"""Colour images end to end: an RGB image folder and a CIFAR-10 tarball (tiny, made here with the
real layout) through vaekit train, evaluate (bits/dim in 8-bit bins), sample and reconstruct."""

from __future__ import annotations

import io
import json
import math
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from vaekit import data
from vaekit.evaluation import evaluate
from vaekit.models import VAE

TINY = ["--epochs", "2", "--set", "hidden=[16]", "--set", "latent_dim=2", "-k", "3", "-q"]


def colour_png(path: Path) -> np.ndarray:
    """Pixels (H, W, 3) of an RGB PNG that is not grey."""
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB", (img.format, img.mode)
        a = np.asarray(img, dtype=np.int64)
    assert (a[..., 0] != a[..., 2]).any(), f"{path} has no colour"
    return a


def check_image_commands(run: Path, capsys, n_test: int, d: int) -> dict:
    code, out, err = run_cli(capsys, "evaluate", run, "-k", "4")
    assert code == 0, err
    report = json.loads((run / "eval.json").read_text())
    assert "8-bit bins" in out and report["bits_per_dim_basis"].endswith("1/255")
    expected = (-report["log_likelihood"] / d + math.log(255)) / math.log(2)
    assert report["bits_per_dim"] == pytest.approx(expected, rel=1e-9)
    for command, name in (("sample", "samples.png"), ("reconstruct", "reconstructions.png")):
        code, out, err = run_cli(capsys, command, run, "-n", min(4, n_test))
        assert code == 0, err
        colour_png(run / "figures" / name)
    return report


def test_rgb_image_folder(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    for name, colour in (("red", (220, 40, 30)), ("blue", (20, 60, 230))):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(10):
            shade = rng.uniform(0.4, 1.0, (8, 8, 1))
            pixels = (np.array(colour)[None, None] * shade).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(tmp_path / "pics" / name / f"{i}.png")
    run = tmp_path / "rgb-run"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "pics", "--out", run, *TINY)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["data_shape"] == [3, 8, 8]
    assert config["model"]["likelihood"] == "gaussian"
    check_image_commands(run, capsys, 2, 3 * 8 * 8)


def cifar_tarball(path: Path, per_batch: int = 4) -> None:
    """cifar-10-python.tar.gz with the real layout: six pickled batches of uint8 rows."""
    rng = np.random.default_rng(1)
    with tarfile.open(path, "w:gz") as tar:
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
            labels = rng.integers(0, 10, per_batch).tolist()
            rows = np.zeros((per_batch, 3, 32, 32), np.uint8)
            for r, y in enumerate(labels):  # a colour per class, with noise
                rows[r] = (np.array([25 * y, 250 - 25 * y, 120])[:, None, None]
                           + rng.integers(0, 5, (3, 32, 32))).astype(np.uint8)  # fmt: skip
            raw = pickle.dumps({b"data": rows.reshape(per_batch, -1), b"labels": labels})
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(raw)
            tar.addfile(member, io.BytesIO(raw))


def test_cifar10_by_name(tmp_path: Path, capsys, monkeypatch) -> None:
    folder = tmp_path / "cache" / "cifar10"
    folder.mkdir(parents=True)
    tarball = folder / data.CIFAR10_TARBALL
    cifar_tarball(tarball)
    # vaekit unpickles only a tarball whose checksums are the published ones: publish this one's
    monkeypatch.setattr(data.cifar, "CIFAR10_TARBALL_MD5", data.md5(tarball))
    monkeypatch.setattr(data.cifar, "CIFAR10_TARBALL_SHA256", data.sha256(tarball))
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("VAEKIT_OFFLINE", "1")
    run = tmp_path / "cifar-run"
    code, out, err = run_cli(capsys, "train", "--data", "cifar10", "--out", run, *TINY)
    assert code == 0, err
    assert "cifar10 (3, 32, 32), 16 train / 4 valid / 4 test" in out
    check_image_commands(run, capsys, 4, 3 * 32 * 32)


def test_bin_width_term_only_for_continuous_likelihoods() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 12), generator=g).float() / 255
    gaussian = VAE(data_shape=(12,), latent_dim=2, hidden=(8,), likelihood="gaussian")
    plain = evaluate(gaussian, x, k=3)
    binned = evaluate(gaussian, x, k=3, bin_levels=256)
    assert binned["log_likelihood"] == plain["log_likelihood"]
    assert binned["bits_per_dim"] - plain["bits_per_dim"] == pytest.approx(math.log2(255))
    bernoulli = VAE(data_shape=(12,), latent_dim=2, hidden=(8,), likelihood="bernoulli")
    a, b = evaluate(bernoulli, x, k=3), evaluate(bernoulli, x, k=3, bin_levels=256)
    assert a["bits_per_dim"] == b["bits_per_dim"] and "bits_per_dim_basis" not in b

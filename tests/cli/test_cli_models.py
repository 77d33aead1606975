"""The model choices through the ``vaekit`` command: conv and residual networks on flat and
(C, H, W) images, the discretized logistic likelihood in bits/dim, mixture priors, and
conditional runs with --label; each trains a few steps, then samples and evaluates."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import png, run_cli, snapshot
from PIL import Image

from vaekit import load, viz
from vaekit.cli import RUN_FILES, main

TINY = ["--epochs", "2", "-k", "5", "-q"]


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional digits run: one-hot labels on encoder and decoder, trained on the IWAE bound
    with KL warm-up and a mixture prior."""
    folder = tmp_path_factory.mktemp("cvae") / "run"
    settings = ["hidden=[16]", "latent_dim=2", "condition_dim=10", "objective=iwae", "samples=3",
                "warmup_steps=10", "prior=mog", "prior_components=3"]  # fmt: skip
    main(["train", "--data", "digits", "--out", str(folder), *TINY,
          *(a for s in settings for a in ("--set", s))])  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 random 8-bit RGB images (N, 3, 32, 32) with labels 0..3, as .npz."""
    folder = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    np.savez(folder / "paint.npz", images=images, labels=np.arange(40) % 4)
    return folder / "paint.npz"


def test_conditional_run_samples_one_row_per_class_or_one_class(
    cvae_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads((cvae_run / "config.json").read_text())
    assert config["model"]["condition_dim"] == 10 and config["model"]["prior"] == "mog"
    assert config["train"]["objective"] == "iwae" and config["train"]["warmup_steps"] == 10
    records = [json.loads(line) for line in (cvae_run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["beta"] == 1.0 and all(math.isfinite(r["valid_elbo"]) for r in records)
    code, out, _ = run_cli(capsys, "sample", cvae_run, "-n", "30", "-o", cvae_run / "grid.png")
    assert code == 0 and "3 samples (means of p(x|z)) of each of classes 0..9" in out
    grid = png(cvae_run / "grid.png")
    code, out, _ = run_cli(capsys, "sample", cvae_run, "-n", "3", "--label", "7",
                           "--ncols", "3", "-o", cvae_run / "seven.png")  # fmt: skip
    assert code == 0 and "of class 7" in out
    row = png(cvae_run / "seven.png")
    assert grid.shape[1] == row.shape[1] and grid.shape[0] > 5 * row.shape[0]  # 10 rows vs 1


def test_conditional_run_decodes_with_the_label_it_is_given(
    cvae_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    z = np.zeros((4, 2), dtype=np.float32)
    np.save(tmp_path / "z.npy", z)
    decoded = []
    for label in ("0", "1"):
        out = tmp_path / f"x{label}.npy"
        code, _, err = run_cli(capsys, "decode", cvae_run, tmp_path / "z.npy", "--label", label,
                               "-o", out)  # fmt: skip
        assert code == 0, err
        decoded.append(np.load(out))
    model = load(cvae_run)
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(z), 1).mean.numpy()
    assert np.allclose(decoded[1], expected) and not np.allclose(decoded[0], decoded[1])


def test_conditional_run_evaluates_and_encodes_with_the_labels(
    cvae_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = run_cli(capsys, "evaluate", cvae_run, "-k", "5", "-q", "-o", tmp_path / "e.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    assert math.isfinite(report["log_likelihood"]) and report["n"] == 270
    grids: list = []
    manifold_latents = viz.manifold_latents

    def recording(n, latent_dim, dims=(0, 1), prior_samples=None):
        grids.append(prior_samples)
        return manifold_latents(n, latent_dim, dims, prior_samples)

    monkeypatch.setattr(viz, "manifold_latents", recording)
    for command in (["reconstruct", "-n", "4", "-o", tmp_path / "r.png"],
                    ["interpolate", "--steps", "3", "-o", tmp_path / "i.png"],
                    ["manifold", "-n", "3", "--label", "2", "-o", tmp_path / "m.png"],
                    ["latents", "-o", tmp_path / "l.png"],
                    ["encode", "-o", tmp_path / "z.npy"]):  # fmt: skip
        code, out, err = run_cli(capsys, command[0], cvae_run, *command[1:])
        assert code == 0, (command, err)
        if command[0] == "manifold":  # a mixture prior: the grid follows its quantiles
            assert "quantiles of the prior's marginals" in out
            assert grids[-1] is not None and grids[-1].shape == (100_000, 2)
    np.save(tmp_path / "rows.npy", np.zeros((2, 64), dtype=np.float32))
    code, _, err = run_cli(capsys, "encode", cvae_run, "--input", tmp_path / "rows.npy",
                           "--label", "4", "-o", tmp_path / "zi.npy")  # fmt: skip
    assert code == 0, err
    assert np.load(tmp_path / "zi.npy").shape == (2, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["decode", "{run}/z.npy"], "run is conditional .condition_dim = 10.: give --label 0..9"),
        (["sample", "--label", "10"], "--label 10 is outside 0..9"),
        (["manifold"], "give --label 0..9 to draw its manifold"),
        (["encode", "--label", "3"], "--label goes with --input"),
    ],
)
def test_conditional_run_errors(
    cvae_run: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    np.save(cvae_run / "z.npy", np.zeros((1, 2), dtype=np.float32))
    before = snapshot(cvae_run)
    code, out, err = run_cli(capsys, args[0], cvae_run, *[a.format(run=cvae_run) for a in args[1:]])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert snapshot(cvae_run) == before


def test_label_on_an_unconditional_run_and_conditions_without_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "plain.npy", np.random.default_rng(0).random((30, 16), dtype=np.float32))
    out = tmp_path / "cond"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "plain.npy", "--out", out,
                           *TINY, "--set", "condition_dim=3")  # fmt: skip
    assert code == 2 and "has no labels, but the run is conditional" in err
    assert not (out / "config.json").exists()
    run = tmp_path / "plain"
    main(["train", "--data", str(tmp_path / "plain.npy"), "--out", str(run), *TINY,
          "--set", "hidden=[4]", "--set", "latent_dim=2"])  # fmt: skip
    code, _, err = run_cli(capsys, "sample", run, "--label", "1")
    assert code == 2 and "--label needs a conditional run" in err


def test_resnet_discretized_logistic_mog_run_on_colour_images(
    colour: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """8-bit RGB through resnet networks, a logistic mixture and a mixture prior; bits/dim is
    -log2 p(x) per dimension, a true probability here."""
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", colour, "--out", run, *TINY,
                             "--set", "network=resnet", "--set", "channels=[4, 8, 8]",
                             "--set", "hidden=[]", "--set", "latent_dim=4",
                             "--set", "likelihood=discretized_logistic",
                             "--set", "likelihood_components=2", "--set", "prior=mog",
                             "--set", "activation=relu", "--set", "batch_size=8")  # fmt: skip
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())["model"]
    assert config["data_shape"] == [3, 32, 32] and config["image_shape"] == []
    code, _, err = run_cli(capsys, "evaluate", run, "-k", "3", "-q")
    assert code == 0, err
    report = json.loads((run / "eval.json").read_text())
    assert report["bits_per_dim"] == pytest.approx(
        -report["log_likelihood"] / (3 * 32 * 32 * math.log(2))
    )
    assert 0 < report["bits_per_dim"] < 20
    code, _, err = run_cli(capsys, "sample", run, "-n", "4", "--draw", "-o", tmp_path / "s.png")
    assert code == 0, err
    np.save(tmp_path / "grey.npy", np.full((3, 3, 32, 32), 0.5, dtype=np.float32))
    code, _, err = run_cli(capsys, "encode", run, "--input", tmp_path / "grey.npy")
    assert code == 2 and "off the grid k/255" in err
    model = load(run)
    torch.manual_seed(0)
    draws = model.sample(2, mean=False)
    assert torch.equal(draws * 255, (draws * 255).round())  # 8-bit values


def test_conv_run_on_flat_images_takes_the_image_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Grey 28x28 images stored flat: the data set's image_shape becomes the conv nets' view."""
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "digits28.npz",
             train=rng.random((30, 784)).round().astype(np.float32),
             test=rng.random((10, 784)).round().astype(np.float32))  # fmt: skip
    data = tmp_path / "digits28.npz"
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", run, *TINY,
                           "--set", "network=conv", "--set", "channels=[4, 8]",
                           "--set", "image_shape=[1, 28, 28]", "--set", "hidden=[]",
                           "--set", "latent_dim=2", "--set", "prior=vamp",
                           "--set", "prior_components=3")  # fmt: skip
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())["model"]
    assert config["data_shape"] == [784] and config["network"] == "conv"
    code, _, err = run_cli(capsys, "sample", run, "-n", "4", "--image-shape", "28x28")
    assert code == 0, err
    bad = tmp_path / "bad"
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", bad, *TINY,
                             "--set", "network=conv", "--set", "channels=[4, 8, 8]",
                             "--set", "image_shape=[1, 28, 28]")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "divisible by 8" in err and not bad.exists()
    assert set(RUN_FILES) <= {p.name for p in run.iterdir()}


@pytest.mark.parametrize(
    ("name", "data_shape", "image_shape"),
    [
        ("mnist-conv.toml", (784,), (1, 28, 28)),
        ("mnist-vamp.toml", (784,), (1, 28, 28)),
        ("mnist-cvae.toml", (784,), (1, 28, 28)),
        ("cifar10-conv.toml", (3, 32, 32), (3, 32, 32)),
    ],
)
def test_model_recipes_build_for_their_data(name: str, data_shape, image_shape) -> None:
    from types import SimpleNamespace

    from vaekit.cli import resolve_config
    from vaekit.models import build_model

    path = Path(__file__).resolve().parents[2] / "configs" / name
    dataset = SimpleNamespace(
        name="x", defaults=None, data_shape=data_shape, binary=False, image_shape=image_shape
    )
    model_config, _, _ = resolve_config(str(path), (), dataset, {})
    model = build_model(model_config)
    x = torch.randint(0, 256, (2, *data_shape)) / 255
    terms = model(x, k=1, **({"condition": [1, 2]} if model_config.condition_dim else {}))
    assert terms.log_w.shape == (1, 2) and torch.isfinite(terms.log_w).all()


def test_conditional_conv_run_on_a_folder_of_colour_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sub-folders are classes; 32x32 RGB goes through conv nets, logistic mixture, labels."""
    rng = np.random.default_rng(2)
    for name, channel in (("blue", 2), ("red", 0)):
        (tmp_path / "paintings" / name).mkdir(parents=True)
        for i in range(8):
            a = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            a[..., channel] = rng.integers(180, 256, (32, 32), dtype=np.uint8)
            Image.fromarray(a).save(tmp_path / "paintings" / name / f"{i}.png")
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", tmp_path / "paintings", "--out", run,
                             *TINY, "--set", "network=conv", "--set", "channels=[4, 8]",
                             "--set", "hidden=[]", "--set", "latent_dim=2",
                             "--set", "condition_dim=2", "--set", "batch_size=4",
                             "--set", "likelihood=discretized_logistic")  # fmt: skip
    assert code == 0, err
    assert "(3, 32, 32)" in out
    code, out, err = run_cli(capsys, "sample", run, "-n", "4", "--label", "1")
    assert code == 0 and "of class 1" in out, err
    code, _, err = run_cli(capsys, "evaluate", run, "-k", "2", "-q", "--split", "train")
    assert code == 0, err
    assert json.loads((run / "eval-train.json").read_text())["n"] > 0  # named for its split

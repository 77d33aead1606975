"""The network a new run gets when nothing names one: conv for images the conv stages take (both
sides divisible by 4 and at least 16 pixels), the MLP for smaller images (8x8 digits), for
tables, text and spectrograms; `train` says which. Recipes name their network, so the figures
measured with them do not move."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit import data
from vaekit.cli import main, resolve_config
from vaekit.nets import default_network

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("shape", "channels", "network"),
    [
        ((1, 28, 28), (32, 64), "conv"),  # MNIST
        ((3, 32, 32), (32, 64), "conv"),  # CIFAR-10
        ((1, 28, 20), (32, 64), "conv"),  # Frey Face
        ((3, 64, 64), (32, 64), "conv"),  # photos at the 64-pixel cap
        ((3, 44, 64), (32, 64), "conv"),
        ((3, 43, 64), (32, 64), "mlp"),  # 43 does not halve twice
        ((1, 30, 30), (32, 64), "mlp"),
        ((1, 28, 28), (8, 16, 32), "mlp"),  # three halvings need sides divisible by 8
        ((1, 8, 8), (32, 64), "mlp"),  # digits: too small to be worth convolving
        ((1, 12, 12), (32, 64), "mlp"),
        ((1, 16, 16), (32, 64), "conv"),
        (None, (32, 64), "mlp"),  # not images
        ((64,), (32, 64), "mlp"),
    ],
)
def test_default_network_by_image_size(shape, channels, network) -> None:
    assert default_network(shape, channels) == network


def _resolved(tmp_path: Path, array: np.ndarray, *overrides: str, name: str = "x.npy"):
    np.save(tmp_path / name, array)
    ds = data.load(tmp_path / name, seed=0)
    model, _, _ = resolve_config(None, overrides, ds, {})
    return model, ds.notes


def test_image_arrays_get_conv_and_a_note_tables_keep_the_mlp(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model, notes = _resolved(tmp_path, rng.random((30, 1, 28, 28), dtype=np.float32))
    assert (model.network, model.conv_upsample) == ("conv", "resize")
    assert any("network conv, the default for 28x28 images" in n for n in notes)
    flat, notes = _resolved(tmp_path, rng.random((30, 28, 20), dtype=np.float32))  # (N, H, W)
    assert flat.network == "conv" and flat.image_shape == (1, 28, 20)
    model, notes = _resolved(tmp_path, rng.random((30, 3, 30, 30), dtype=np.float32))
    assert model.network == "mlp"
    assert any(
        "network mlp: the conv networks need height and width divisible by 4" in n for n in notes
    )
    model, notes = _resolved(tmp_path, rng.random((30, 1, 8, 8), dtype=np.float32))
    assert model.network == "mlp" and not any("network" in n for n in notes)
    model, notes = _resolved(tmp_path, rng.random((30, 13), dtype=np.float32))
    assert model.network == "mlp" and not any("network" in n for n in notes)


def test_a_named_network_is_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((30, 1, 28, 28), dtype=np.float32)
    model, notes = _resolved(tmp_path, images, "network=mlp")
    assert model.network == "mlp" and not any("network" in n for n in notes)
    model, _ = _resolved(tmp_path, images, "network=resnet", "channels=[8, 16]")
    assert model.network == "resnet"
    # a data set's own defaults (shapes: Locatello et al.'s conv networks) are kept too
    shapes = data.load("shapes", seed=0, examples=30)
    model, _, _ = resolve_config(None, (), shapes, {})
    assert (model.network, model.channels) == ("conv", (32, 32, 64, 64))
    assert model.conv_upsample == "transpose"  # their decoder


def test_digits_and_other_kinds_keep_their_networks() -> None:
    digits = data.load("digits", seed=0)
    model, _, _ = resolve_config(None, (), digits, {})
    assert model.network == "mlp"
    model, _, _ = resolve_config(None, ("kind=hvae",), digits, {})
    assert not hasattr(model, "network")


def test_train_on_a_folder_of_photos_says_conv(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(12):
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "photos" / f"{i}.png")
    run = tmp_path / "run"
    main(["train", "--data", str(tmp_path / "photos"), "--out", str(run), "--epochs", "1",
          "--quiet", "--set", "channels=[4, 8]", "--set", "hidden=[16]", "-k", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert "network conv, the default for 16x16 images (--set network=mlp" in out
    saved = json.loads((run / "config.json").read_text())["model"]
    assert (saved["network"], saved["conv_upsample"]) == ("conv", "resize")


def test_recipes_for_image_data_name_their_network() -> None:
    """A recipe on MNIST, Frey Face or CIFAR-10 names its network (the papers' MLPs), so the
    default for images does not change the figures measured with it; conv recipes measured with
    transposed convolutions name those."""
    for path in sorted((REPO / "configs").glob("*.toml")):
        recipe = tomllib.loads(path.read_text())
        model = recipe.get("model", {})
        if model.get("kind", "vae") != "vae" or recipe.get("data") not in (
            "mnist", "fashion-mnist", "frey-face", "cifar10", "digits"
        ):  # fmt: skip
            continue
        assert "network" in model, path.name
    conv = tomllib.loads((REPO / "configs" / "mnist-conv.toml").read_text())["model"]
    assert conv["conv_upsample"] == "transpose"

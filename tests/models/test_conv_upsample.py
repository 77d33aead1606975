"""The conv decoder's upsampling: "resize" (nearest-neighbour, then a 3x3 convolution) has no
checkerboard pattern, measured as the share of an image's energy at the three Nyquist frequencies
of a 2x2-periodic pattern; "transpose" (4x4 stride-2 transposed convolutions) has one. Run
folders saved before the setting existed rebuild their transposed convolutions bit for bit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import vaekit
from vaekit import VAE, ConfigError
from vaekit.cli import main
from vaekit.nets import ConvDecoder


def checkerboard(y: torch.Tensor) -> float:
    """Share of the energy of images ``y`` (B, C, H, W), their mean taken out, that lies at the
    spatial frequencies (pi, 0), (0, pi) and (pi, pi): the 2x2-periodic part of the images
    (Parseval: the DFT's squared magnitudes sum to H*W times the energy)."""
    f = torch.fft.fft2(y.double())
    h, w = y.shape[-2:]
    power = f.abs() ** 2
    nyquist = power[..., h // 2, 0] + power[..., 0, w // 2] + power[..., h // 2, w // 2]
    return (nyquist.sum() / (power.sum((-2, -1)) - power[..., 0, 0]).sum()).item()


def test_the_checkerboard_measure_on_known_images() -> None:
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    board = ((i + j) % 2).float().reshape(1, 1, 16, 16)  # the pattern itself: all of it
    assert checkerboard(board) == pytest.approx(1.0)
    stripes = (i % 2).float().reshape(1, 1, 16, 16)  # (pi, 0) alone
    assert checkerboard(stripes) == pytest.approx(1.0)
    wave = torch.cos(2 * math.pi * (i + 2 * j) / 16).reshape(1, 1, 16, 16)  # low frequencies
    assert checkerboard(wave + 3) == pytest.approx(0.0, abs=1e-12)
    torch.manual_seed(0)
    noise = torch.randn(200, 1, 16, 16)  # white: 3 frequencies of the 255 non-constant ones
    assert checkerboard(noise) == pytest.approx(3 / 255, rel=0.1)
    assert checkerboard(0.5 * board + noise) > checkerboard(noise) + 0.05


def _decoder_output(model: VAE, n: int = 64) -> torch.Tensor:
    shape = model.config.image_shape or model.config.data_shape
    with torch.no_grad():
        params = model.decoder(torch.randn(n, model.config.latent_dim))
    return params.reshape(n, -1, *shape[1:])  # (n, n_params * C, H, W)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_new_conv_decoder_draws_no_checkerboard(shape, activation) -> None:
    """Freshly initialised decoders, five seeds each: the default (resize) puts under 0.5% of
    the images' energy in the 2x2 pattern (white noise would put 3 / (H*W - 1) there); the
    transposed convolutions of the same seeds put over 1% there, and ten times the resize's."""
    fields = dict(
        data_shape=shape, network="conv", channels=(32, 64), hidden=(256,), latent_dim=16,
        activation=activation, likelihood="gaussian",
    )  # fmt: skip
    for seed in range(5):
        torch.manual_seed(seed)
        resize = VAE(**fields)  # the default
        torch.manual_seed(seed)
        transpose = VAE(**fields, conv_upsample="transpose")
        torch.manual_seed(100 + seed)
        smooth = checkerboard(_decoder_output(resize))
        torch.manual_seed(100 + seed)
        board = checkerboard(_decoder_output(transpose))
        assert resize.config.conv_upsample == "resize"
        assert smooth < 0.005, (seed, smooth)
        assert board > 0.01 and board > 10 * smooth, (seed, board, smooth)


def test_resize_stages_are_upsampling_then_a_3x3_convolution() -> None:
    decoder = ConvDecoder((3, 16, 8), (4, 8), (), 2, out_channels=6, activation="relu")
    kinds = [type(m).__name__ for m in decoder.convs]
    assert kinds == ["Upsample", "Conv2d", "ReLU", "Upsample", "Conv2d"]
    convs = [m for m in decoder.convs if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (8, 4, (3, 3), (1, 1)),
        (4, 6, (3, 3), (1, 1)),
    ]
    assert decoder(torch.randn(5, 2)).shape == (5, 6 * 16 * 8)
    # a constant feature map comes out constant away from the zero-padded border; transposed
    # convolutions make a 2x2 pattern of it (each output phase sums its own quarter of the kernel)
    torch.manual_seed(0)
    for how, flat in (("resize", True), ("transpose", False)):
        one = ConvDecoder((1, 16, 16), (4,), (), 2, 1, "relu", upsample=how)
        with torch.no_grad():
            out = one.convs(torch.ones(1, *one.start))[0, 0, 1:-1, 1:-1]
        assert torch.allclose(out, out[0, 0].expand_as(out), atol=1e-5) is flat
    old = ConvDecoder((3, 16, 8), (4, 8), (), 2, 6, "relu", upsample="transpose")
    assert [type(m).__name__ for m in old.convs] == ["ConvTranspose2d", "ReLU", "ConvTranspose2d"]


def test_an_unknown_upsampling_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown conv_upsample 'bicubic'; choose one of resize"):
        VAE(data_shape=(1, 8, 8), network="conv", channels=(4,), conv_upsample="bicubic")


def _as_saved_before_the_setting(run: Path) -> None:
    """Rewrite the run folder ``run`` as vaekit wrote it before conv_upsample existed: no such
    key in config.json's model table nor in the checkpoint's run record."""
    config = json.loads((run / "config.json").read_text())
    del config["model"]["conv_upsample"]
    (run / "config.json").write_text(json.dumps(config, indent=2))
    state = run / "checkpoint.safetensors"
    if state.exists():
        with safe_open(state, "pt") as f:
            meta = f.metadata()
        record = json.loads(meta["run"])
        del record["model"]["conv_upsample"]
        meta["run"] = json.dumps(record)
        save_file(load_file(state), state, metadata=meta)


def test_a_model_saved_before_the_setting_loads_as_transpose_bit_for_bit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fields = dict(data_shape=(1, 8, 8), network="conv", channels=(4, 8), hidden=(16,))
    old = VAE(**fields, latent_dim=3, likelihood="gaussian", conv_upsample="transpose")
    old.save(tmp_path / "run")
    _as_saved_before_the_setting(tmp_path / "run")
    assert (
        "conv_upsample" not in json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    )
    model = vaekit.load(tmp_path / "run")
    assert model.config.conv_upsample == "transpose"
    assert any(isinstance(m, nn.ConvTranspose2d) for m in model.decoder.modules())
    z = torch.randn(7, 3)
    with torch.no_grad():
        assert torch.equal(model.decoder(z), old.eval().decoder(z))
    # a new model from the same settings, not read from a run, takes the new default
    assert VAE(**fields).config.conv_upsample == "resize"
    model.save(tmp_path / "again")  # and a model saved now names it
    saved = json.loads((tmp_path / "again" / "config.json").read_text())["model"]
    assert saved["conv_upsample"] == "transpose"


def test_a_run_saved_before_the_setting_resumes_and_evaluates(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    images = tmp_path / "images.npy"
    np.save(images, rng.random((40, 1, 8, 8)).astype(np.float32))
    run = tmp_path / "run"
    sets = ["network=conv", "channels=[4,8]", "hidden=[16]", "latent_dim=2"]
    sets += ["conv_upsample=transpose", "batch_size=10"]
    argv = ["train", "--data", str(images), "--out", str(run), "--epochs", "1", "--quiet"]
    main([*argv, *(a for s in sets for a in ("--set", s))])
    before = load_file(run / "model.safetensors")
    _as_saved_before_the_setting(run)
    main(["evaluate", str(run), "-k", "2", "--quiet"])
    main(["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    assert "error" not in capsys.readouterr().err
    model = vaekit.load(run)
    assert model.config.conv_upsample == "transpose"
    after = load_file(run / "model.safetensors")
    assert before.keys() == after.keys()  # the same networks, trained one epoch further
    assert any(not torch.equal(before[k], after[k]) for k in before)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def test_a_one_file_model_saved_before_the_setting_loads_as_transpose(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = VAE(data_shape=(1, 8, 8), network="conv", channels=(4,), hidden=(), latent_dim=2,
              conv_upsample="transpose")  # fmt: skip
    file = old.save(tmp_path / "model.safetensors")
    with safe_open(file, "pt") as f:
        meta = f.metadata()
    config = json.loads(meta["vaekit_config"])
    del config["model"]["conv_upsample"]
    meta["vaekit_config"] = json.dumps(config)
    save_file(load_file(file), file, metadata=meta)
    model = vaekit.load(file)
    assert model.config.conv_upsample == "transpose"
    z = torch.randn(3, 2)
    with torch.no_grad():
        assert torch.equal(model.decoder(z), old.eval().decoder(z))

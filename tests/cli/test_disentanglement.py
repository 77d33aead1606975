"""``vaekit train --data shapes / --factors``, ``vaekit evaluate RUN --disentanglement`` and
``vaekit traverse RUN`` end to end on tiny runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import png, run_cli, snapshot

from vaekit import load
from vaekit.cli import main
from vaekit.data import load as load_data
from vaekit.viz import traversal_latents

TINY = ["--epochs", "1", "--set", "network=mlp", "--set", "hidden=[16]", "--set", "latent_dim=3",
        "-k", "2", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MLP run on 60 shapes."""
    folder = tmp_path_factory.mktemp("shapes") / "run"
    main(["train", "--data", "shapes", "--examples", "60", "--out", str(folder), *TINY])
    return folder


def test_a_shapes_run_records_its_examples(shapes_run: Path) -> None:
    data = json.loads((shapes_run / "config.json").read_text())["data"]
    assert data["name"] == "shapes" and data["examples"] == 60
    assert data["image_shape"] == [1, 64, 64]


def test_evaluate_disentanglement(
    shapes_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.json"
    code, stdout, err = run_cli(
        capsys, "evaluate", shapes_run, "--disentanglement", "--votes", "6", "-o", out
    )
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["data"] == "shapes" and report["fit_examples"] == 48
    assert report["test_examples"] == 6 and report["votes"] == 6
    values = [report["mig"], report["sap"], *report["dci"].values()]
    values += [report["factor_vae_score"], report["beta_vae_score"]]
    assert all(0.0 <= v <= 1.0 for v in values), values
    for name in ("MIG", "SAP", "DCI disentanglement", "FactorVAE score", "beta-VAE score"):
        assert name in stdout
    # the scores are those of the library on the same latents
    from vaekit import metrics

    ds = load_data("shapes", examples=60)
    z = metrics.representation(load(shapes_run), ds.train)
    assert report["mig"] == pytest.approx(metrics.mig(z, ds.train_factors))


def test_disentanglement_needs_factors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "digits"
    main(["train", "--data", "digits", "--out", str(run), *TINY])
    before = snapshot(run)
    code, _, err = run_cli(capsys, "evaluate", run, "--disentanglement")
    assert code == 2 and err.count("\n") == 1 and "no factors of variation" in err
    assert snapshot(run) == before
    code, _, err = run_cli(capsys, "evaluate", run, "--disentanglement", "--gaps", "3")
    assert code == 2 and "leave out --gaps" in err
    code, _, err = run_cli(capsys, "evaluate", run, "--votes", "4")
    assert code == 2 and "--votes and --dci go with --disentanglement" in err


def test_a_factors_file_from_train_to_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 3, size=(90, 2))
    x = np.concatenate([factors, rng.random((90, 2))], 1).astype(np.float32) / 3
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "f.npy", factors)
    np.save(tmp_path / "short.npy", factors[:80])
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "x.npy", "--factors",
                           tmp_path / "short.npy", "--out", run, *TINY)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "80 rows but the data has 90" in err
    assert not (run / "config.json").exists()
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "x.npy", "--factors",
                           tmp_path / "f.npy", "--out", run, *TINY,
                           "--set", "likelihood=gaussian")  # fmt: skip
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["factors"] == str(
        (tmp_path / "f.npy").resolve()
    )
    code, stdout, err = run_cli(
        capsys, "evaluate", run, "--disentanglement", "--votes", "4", "--dci", "forest"
    )
    assert code == 0, err
    assert json.loads((run / "disentanglement.json").read_text())["dci_importance"] == "forest"
    assert "FactorVAE score" in stdout and (run / "disentanglement.json").is_file()
    code, _, err = run_cli(capsys, "train", "--data", "shapes", "--factors", tmp_path / "f.npy",
                           "--out", tmp_path / "other", *TINY)  # fmt: skip
    assert code == 2 and "--factors does not apply to 'shapes'" in err


def test_traverse_draws_the_decoded_sweeps(
    shapes_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.png"
    code, stdout, err = run_cli(
        capsys, "traverse", shapes_run, "--example", "2", "--steps", "5", "-o", out
    )
    assert code == 0, err
    pixels = png(out)
    assert pixels.shape == (3 * 65 + 1, 5 * 65 + 1)  # 3 rows of 5 tiles of 64 pixels, 1 apart
    # every row is the decoding of example 2's posterior mean with one dim swept over -3..3,
    # the dims in the order printed (largest KL first)
    dims = [int(d.split(" ")[0]) for d in stdout.split("(KL in nats): ")[1].split(", ")]
    assert sorted(dims) == [0, 1, 2]
    model = load(shapes_run)
    x = load_data("shapes", examples=60).test[2:3]
    with torch.no_grad():
        z = traversal_latents(model.encode(x).mean[0], dims, 5)
        want = model.decode(z).mean.numpy()[:, 0]  # (15, 64, 64)
    assert z[0, dims[0]] == -3 and z[4, dims[0]] == 3
    for i in range(15):
        r, c = divmod(i, 5)
        tile = pixels[1 + 65 * r : 65 + 65 * r, 1 + 65 * c : 65 + 65 * c]
        assert np.abs(tile - np.round(want[i] * 255)).max() <= 1


def test_traverse_options_and_mistakes(
    shapes_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "traverse", shapes_run, "--rows", "2", "-o", tmp_path / "a.png")
    assert code == 0, err
    assert png(tmp_path / "a.png").shape == (2 * 65 + 1, 10 * 65 + 1)
    code, _, err = run_cli(capsys, "traverse", shapes_run, "--example", "6")
    assert code == 2 and err.count("\n") == 1 and "0..5" in err
    code, _, err = run_cli(capsys, "traverse", shapes_run, "-o", tmp_path / "a.jpg")
    assert code == 2 and err.count("\n") == 1
    assert not (shapes_run / "figures" / "traverse.png").exists()
    code, _, _ = run_cli(capsys, "traverse", shapes_run)
    assert code == 0 and (shapes_run / "figures" / "traverse.png").is_file()


def test_traversal_latents_of_a_learned_prior() -> None:
    draws = torch.randn(20000, 2) * torch.tensor([1.0, 2.0]) + torch.tensor([0.0, 5.0])
    z = traversal_latents(torch.zeros(2), [1], 3, draws)
    assert z[:, 0].tolist() == [0, 0, 0]
    assert z[:, 1].tolist() == pytest.approx([5 - 6, 5, 5 + 6], abs=0.3)  # mean +- 3 sd

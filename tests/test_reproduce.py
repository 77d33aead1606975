"""Paper recipes and the reproduction script: the IWAE and AEVB recipes hold the papers'
settings, benchmarks/reproduce.py runs end to end on small data, and curves overlay runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VAE, fit, load, viz
from vaekit.cli import main, resolve_config
from vaekit.models import HVAEConfig, VAEConfig
from vaekit.train import IWAE_PASSES

REPO = Path(__file__).resolve().parents[1]
MNIST = SimpleNamespace(name="mnist", defaults=None, data_shape=(784,), binary=True)


def recipe(name: str) -> tuple:
    model, train, _ = resolve_config(str(REPO / "configs" / f"{name}.toml"), (), MNIST, {})
    return model, train


@pytest.mark.parametrize(
    ("name", "two_layers", "objective", "k"),
    [
        ("iwae-vae1", False, "elbo", 1),
        ("iwae-iwae1-k50", False, "iwae", 50),
        ("iwae-vae2", True, "elbo", 1),
        ("iwae-iwae2-k50", True, "iwae", 50),
    ],
)
def test_iwae_recipes_hold_the_papers_settings(
    name: str, two_layers: bool, objective: str, k: int
) -> None:
    m, t = recipe(name)
    if two_layers:
        assert isinstance(m, HVAEConfig)
        assert (m.hidden, m.latent_dim, m.hidden2, m.latent_dim2) == (
            (200, 200),
            100,
            (100, 100),
            50,
        )
    else:
        assert isinstance(m, VAEConfig)
        assert (m.hidden, m.latent_dim) == ((200, 200), 50)
    assert (m.activation, m.likelihood) == ("tanh", "bernoulli")
    assert (t.optimizer, t.lr, t.adam_eps, t.batch_size) == ("adam", 1e-3, 1e-4, 20)
    assert (t.lr_schedule, t.epochs, t.epochs == IWAE_PASSES) == ("iwae", 3280, True)
    assert (t.objective, t.samples, t.binarize) == (objective, k, "dynamic")


def test_figure2_and_frey_face_recipes() -> None:
    m, t = recipe("aevb-mnist")
    assert (m.hidden, m.activation, t.optimizer, t.batch_size, t.samples) == (
        (500,),
        "tanh",
        "adagrad",
        100,
        1,
    )
    frey = SimpleNamespace(name="frey-face", defaults=None, data_shape=(560,), binary=False)
    m, t, _ = resolve_config(str(REPO / "configs" / "frey-face.toml"), (), frey, {})
    assert (m.hidden, m.likelihood, m.data_shape) == ((200,), "gaussian", (560,))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.float64)


def test_curves_overlay_several_runs(tmp_path: Path) -> None:
    def run(offset: float) -> list[dict]:
        return [
            {"examples_seen": 10**i, "train_bound": offset + i, "valid_elbo": offset + i - 1}
            for i in range(1, 6)
        ]

    one = viz.curves(run(-50.0))
    many = viz.curves({"z3": run(-50.0), "z5": run(-40.0), "z10": run(-30.0)})
    assert len(one.axes[0].lines) == 2 and len(many.axes[0].lines) == 6
    dashed = [line for line in many.axes[0].lines if line.get_linestyle() == "--"]
    assert len(dashed) == 3  # validation dashed, in its run's colour
    assert {line.get_color() for line in dashed} == {
        line.get_color() for line in many.axes[0].lines if line.get_linestyle() == "-"
    }
    labels = [t.get_text() for t in many.axes[0].get_legend().get_texts()]
    assert labels[:3] == ["z3", "z5", "z10"] and "validation ELBO" in labels
    assert pixels(viz.save(many, tmp_path / "m.png")).std() > 0


def test_cli_curves_overlays_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x = torch.rand(60, 6, generator=torch.Generator().manual_seed(0))
    for name, size in (("z2", 2), ("z3", 3)):
        fit(VAE(data_shape=(6,), latent_dim=size, hidden=(8,)), x, valid=x[:10], epochs=2,
            batch_size=20, out=tmp_path / name)  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "both.png"
    main(["curves", str(tmp_path / "z2"), str(tmp_path / "z3"), "-o", str(out)])
    text = capsys.readouterr().out
    assert "z2: 2 epochs" in text and "z3: 2 epochs" in text and f"wrote {out}" in text
    assert pixels(out).std() > 0


def test_reproduce_script_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A two-layer IWAE row and a figure-2 pair of latent sizes on digits."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import reproduce
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    small = ["--data", "digits", "--epochs", "2", "--out", str(tmp_path), "--device", "cpu"]
    reproduce.main(
        ["table", str(REPO / "configs" / "iwae-iwae2-k50.toml"), *small, "-k", "10",
         "--schedule", "scaled",
         "--set", "hidden=[16]", "--set", "latent_dim=3", "--set", "hidden2=[8]",
         "--set", "latent_dim2=2", "--set", "samples=3"]
    )  # fmt: skip
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "table.json").read_text())
    (row,) = summary["rows"]
    assert row["recipe"] == "iwae-iwae2-k50" and row["epochs"] == 2 and row["k"] == 10
    assert row["settings"]["train"]["lr_schedule"] == "iwae_scaled"  # squeezed into 2 epochs
    assert row["test_log_px"] >= row["test_elbo"] - 1.0 and row["paper_test_log_px"] is None
    assert "iwae-iwae2-k50" in out and "log p(x) K=10" in out
    reproduce.main(["fig2", *small, "--sizes", "2", "3", "--set", "hidden=[8]"])
    summary = json.loads((tmp_path / "fig2.json").read_text())
    assert [r["latent_dim"] for r in summary["runs"]] == [2, 3]
    assert len(summary["runs"][0]["curve"]) == 2
    assert pixels(Path(summary["figure"])).std() > 0


def test_frey_face_recipe_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The recipe on random faces of the real file's shape: a frey_rawface.mat holding 200
    random 28x20 uint8 images, found offline in $VAEKIT_DATA; and a .npy of (N, 560) floats."""
    import scipy.io

    ff = np.random.default_rng(0).integers(0, 256, (560, 200), dtype=np.uint8)
    (tmp_path / "data").mkdir()
    scipy.io.savemat(tmp_path / "data" / "frey_rawface.mat", {"ff": ff})
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("VAEKIT_OFFLINE", "1")
    recipe = str(REPO / "configs" / "frey-face.toml")
    run = tmp_path / "run"
    capsys.readouterr()
    main(["train", "--config", recipe, "--out", str(run), "--epochs", "3", "-k", "10", "-q"])
    out = capsys.readouterr().out
    assert "frey-face (560,), 160 train" in out
    assert 'likelihood="gaussian"' in out and "hidden=[200]" in out and "latent_dim=2" in out
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["name"] == "frey-face" and config["data"]["image_shape"] == [1, 28, 20]
    main(["evaluate", str(run), "-k", "10", "-q"])
    report = json.loads((run / "eval.json").read_text())
    assert np.isfinite(report["log_likelihood"]) and report["n"] == 20
    main(["manifold", str(run), "-n", "4"])
    assert pixels(run / "figures" / "manifold.png").std() > 0

    x = np.random.default_rng(1).random((120, 560), dtype=np.float32)  # continuous, in [0, 1]
    np.save(tmp_path / "faces.npy", x)
    capsys.readouterr()
    main(["train", "--config", recipe, "--data", str(tmp_path / "faces.npy"), "--out",
          str(tmp_path / "npy"), "--epochs", "2", "-k", "5", "-q"])  # fmt: skip
    out = capsys.readouterr().out
    assert "(560,), 96 train" in out and 'likelihood="gaussian"' in out
    assert load(tmp_path / "npy").config.hidden == (200,)

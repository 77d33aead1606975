"""Training on beta-TCVAE's and FactorVAE's objectives: fit fills in what they take from the data,
refuses the models and settings they cannot use, runs them on the eager and the fast loop alike,
and the command line trains, saves, loads and evaluates them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli

import vaekit
from vaekit import VAE
from vaekit.errors import ConfigError
from vaekit.models import HVAE
from vaekit.train import FastRun, TrainConfig, fit
from vaekit.train.objective import check_objective, objective_options


def small_model(**kw):
    torch.manual_seed(0)
    return VAE(data_shape=(12,), latent_dim=3, hidden=(16,), **kw)


def data(n=256):
    return torch.rand(n, 12, generator=torch.Generator().manual_seed(1))


SETTINGS = [
    ({"objective": "btcvae", "beta": 6.0}, {}),
    ({"objective": "btcvae", "beta": 6.0, "tc_estimator": "mss"}, {}),
    ({"objective": "factorvae", "gamma": 10.0}, {"discriminator": (32, 32)}),
]
IDS = ["btcvae-mws", "btcvae-mss", "factorvae"]


@pytest.mark.parametrize(("train", "model"), SETTINGS, ids=IDS)
def test_the_fast_loop_matches_the_eager_loop(train, model) -> None:
    """The fast path's loop (step by step on CPU) and fit's eager loop draw the same noise and
    take the same steps; the objectives, the discriminator included, come out alike."""
    cfg = TrainConfig(epochs=3, batch_size=32, seed=3, dataset_size=256, **train)
    fast = list(FastRun(small_model(**model), data(), cfg, "graph").epochs(False))
    eager = fit(small_model(**model), data(), config=cfg)
    assert fast[-1]["step"] == eager[-1]["step"] == 3 * 8
    assert abs(fast[-1]["train_bound"] - eager[-1]["train_bound"]) < 0.05


@pytest.mark.parametrize(("train", "model"), SETTINGS, ids=IDS)
def test_a_fast_step_reads_nothing_back_to_the_host(train, model, monkeypatch) -> None:
    """As for the ELBO (tests/train/test_fastpath.py): the estimators of q(z), the shuffle and
    the discriminator must be capturable by a CUDA graph."""
    cfg = TrainConfig(epochs=1, batch_size=32, seed=3, dataset_size=256, **train)
    run = FastRun(small_model(**model), data(), cfg, "graph")

    def read_back(*args, **kwargs):
        raise AssertionError("a host read inside a fast step")

    for name in ("__bool__", "item", "tolist", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, read_back)
    run._step(0)
    run._step(1)


def test_fit_fills_in_the_data_set_size_and_gamma_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(small_model(), data(), out=out, epochs=1, batch_size=32, objective="btcvae", beta=6.0)
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["dataset_size"] == 256 and train["gamma"] == 1.0 and train["beta"] == 6.0
    model = vaekit.load(out)
    history = fit(model, data(), out=out, resume=True, epochs=2, batch_size=32,
                  objective="btcvae", beta=6.0)  # fmt: skip
    assert [r["epoch"] for r in history] == [1, 2]
    factor = fit(small_model(discriminator=(8,)), data(), epochs=1, objective="factorvae")
    assert factor[-1]["step"] == 3


def test_warm_up_ramps_every_weight() -> None:
    cfg = TrainConfig(objective="btcvae", beta=6.0, alpha=2.0, gamma=3.0, dataset_size=100)
    options = objective_options(small_model(), cfg, beta=1.5)  # a quarter of the way
    assert options["alpha"] == 0.5 and options["gamma"] == 0.75
    assert options["dataset_size"] == 100 and options["estimator"] == "mws"
    cfg = TrainConfig(objective="factorvae", beta=2.0)
    options = objective_options(small_model(discriminator=(4,)), cfg, beta=1.0)
    assert options["gamma"] == 5.0  # half of the default 10
    assert objective_options(small_model(), TrainConfig(), beta=1.0) == {}


@pytest.mark.parametrize(
    ("model", "train", "message"),
    [
        (lambda: HVAE(data_shape=(12,), latent_dim=3, hidden=(8,), hidden2=(8,), latent_dim2=2),
         {"objective": "btcvae"}, "needs q(z|x) as one diagonal Gaussian"),
        (lambda: small_model(prior="mog"), {"objective": "btcvae"}, "factorises"),
        (lambda: small_model(), {"objective": "factorvae"}, "discriminator=[1000"),
        (lambda: small_model(), {"objective": "btcvae", "batch_size": 1}, "at least 2"),
        (lambda: small_model(), {"objective": "btcvae", "dataset_size": 10, "batch_size": 32},
         "dataset_size 10 is smaller than a batch"),
    ],
    ids=["hvae", "mog-prior", "no-discriminator", "batch-of-one", "small-dataset-size"],
)  # fmt: skip
def test_models_and_settings_an_objective_cannot_use(model, train, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        fit(model(), data(), epochs=1, **train)
    with pytest.raises(ConfigError, match="one process"):
        check_objective(small_model(), TrainConfig(objective="btcvae"), 256, processes=2)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("tc_estimator", "exact", "unknown tc_estimator 'exact'; choose one of mws, mss"),
     ("gamma", -1.0, "gamma must be a positive number, got -1.0"),
     ("alpha", float("nan"), "alpha must be a positive number"),
     ("dataset_size", -5, "dataset_size must be zero or more, got -5"),
     ("objective", "tcvae", "choose one of elbo, iwae, btcvae, factorvae")],
)  # fmt: skip
def test_bad_settings_name_the_setting(field, value, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(**{field: value})


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["btcvae", "factorvae"])
def test_cli_trains_saves_loads_and_evaluates(objective, tmp_path, capsys) -> None:
    run = tmp_path / objective
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", run, "--epochs", "1",
                           "-q", "-k", "5", "--set", f"objective={objective}",
                           "--set", "hidden=[32]", "--set", "beta=4")  # fmt: skip
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["objective"] == objective
    model = vaekit.load(run)
    if objective == "factorvae":  # the paper's discriminator, saved and loaded with the model
        assert config["model"]["discriminator"] == [1000] * 6
        assert model.discriminator is not None and len(model.discriminator.layers) == 7
        assert config["train"]["gamma"] == 10.0
    else:
        assert config["train"]["dataset_size"] > 1000 and model.discriminator is None
    code, out, err = run_cli(capsys, "evaluate", run, "-k", "10")
    assert code == 0, err
    assert "elbo" in out.lower()


@pytest.mark.parametrize(
    ("settings", "message"),
    [(["objective=btcvae", "tc_estimator=exact"], "unknown tc_estimator 'exact'"),
     (["objective=factorvae", "discriminator=[]"], "has none"),
     (["objective=btcvae", "prior=vamp"], "factorises"),
     (["objective=factorvae", "gamma=-2"], "gamma must be a positive number")],
)  # fmt: skip
def test_cli_bad_settings_one_line_exit_2(settings, message, tmp_path, capsys) -> None:
    args = [a for s in settings for a in ("--set", s)]
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", tmp_path / "r",
                             "--epochs", "1", "-q", *args)  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error:") and message in lines[0]
    assert not (tmp_path / "r").exists()

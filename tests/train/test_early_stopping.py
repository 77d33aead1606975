"""Early stopping on the validation bound (``patience``, ``min_delta``): the run stops after
``patience`` epochs without an improvement, its record says where and why, the saved model holds
the best epoch's weights (its validation ELBO, recomputed from the saved file, is the best one
recorded), and a resumed run that early stopping ended is finished."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from torch import Tensor

import vaekit
from vaekit import VAE, ConfigError, TrainConfig, fit, load
from vaekit.checkpoint import read_training_info
from vaekit.estimators.sharded import elbo as elbo_per_example

D = 6


def tiny(n: int, seed: int) -> Tensor:
    """``n`` rows of D correlated Gaussian columns: a table small enough to overfit."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2, D, generator=torch.Generator().manual_seed(7))
    return torch.randn(n, 2, generator=g) @ a + 0.3 * torch.randn(n, D, generator=g)


def model(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(data_shape=(D,), latent_dim=2, hidden=(64, 64), likelihood="gaussian")


def recomputed(run: Path, x_valid: Tensor, seed: int = 0) -> float:
    """The validation ELBO of the model saved in ``run``, measured as fit measures it."""
    return float(elbo_per_example(load(run), x_valid, seed=seed).mean())


X, XV = tiny(24, 0), tiny(40, 1)
# An overfitting run: 24 training rows, a wide network, a large learning rate.
OVERFIT = {"epochs": 400, "batch_size": 8, "lr": 3e-3, "patience": 10}


def test_stops_at_the_rule_and_saves_the_best_epoch(tmp_path: Path) -> None:
    history = fit(model(), X, valid=XV, out=tmp_path, **OVERFIT)
    last = history[-1]
    elbos = [r["valid_elbo"] for r in history]
    best = int(np.argmax(elbos)) + 1  # the first epoch with the highest ELBO (min_delta 0)
    assert last["stopped"] == "early"
    assert len(history) < OVERFIT["epochs"], "the tiny table overfits: the run stops early"
    assert last["best_epoch"] == best and last["epoch"] == best + OVERFIT["patience"]
    assert last["best_valid_elbo"] == elbos[best - 1]
    assert all(e <= elbos[best - 1] for e in elbos[best:])  # nothing later improved
    assert best > 1 and elbos[-1] < elbos[best - 1]  # the last weights are worse than the best
    assert recomputed(tmp_path, XV) == pytest.approx(elbos[best - 1], abs=1e-5)
    info = read_training_info(tmp_path)
    assert info["finished"] and info["stopped_early"] and info["best_epoch"] == best
    assert info["epochs_done"] == last["epoch"]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["stopped"] == "early" and len(metrics) == len(history)


def test_min_delta_counts_only_large_improvements() -> None:
    """No epoch beats the first by a million nats: the run stops at 1 + patience and the model
    fit leaves is the first epoch's, not the last one's."""
    m = model()
    history = fit(m, X, valid=XV, epochs=50, batch_size=8, lr=3e-3, patience=3, min_delta=1e6)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["stopped"] == "early" and history[-1]["best_epoch"] == 1
    now = float(elbo_per_example(m, XV, seed=0).mean())
    assert now == pytest.approx(history[0]["valid_elbo"], abs=1e-5)
    assert abs(history[-1]["valid_elbo"] - history[0]["valid_elbo"]) > 1e-2  # it did train


def test_off_by_default_trains_every_epoch_and_keeps_the_last_weights() -> None:
    assert (TrainConfig().patience, TrainConfig().min_delta) == (0, 0.0)
    m = model()
    history = fit(m, X, valid=XV, epochs=30, batch_size=8, lr=3e-3)
    assert len(history) == 30 and all("stopped" not in r and "best_epoch" not in r for r in history)
    now = float(elbo_per_example(m, XV, seed=0).mean())
    assert now == pytest.approx(history[-1]["valid_elbo"], abs=1e-5)


def test_no_early_stop_still_saves_the_best_epoch(tmp_path: Path) -> None:
    """With patience on, a run that runs out of epochs keeps its best epoch's weights too."""
    history = fit(model(), X, valid=XV, out=tmp_path, **{**OVERFIT, "epochs": 60, "patience": 59})
    elbos = [r["valid_elbo"] for r in history]
    best = int(np.argmax(elbos)) + 1
    assert len(history) == 60 and "stopped" not in history[-1]
    assert history[-1]["best_epoch"] == best < 60
    assert recomputed(tmp_path, XV) == pytest.approx(elbos[best - 1], abs=1e-5)


def test_resume_of_an_early_stopped_run_is_finished_unless_patience_grows(tmp_path: Path) -> None:
    history = fit(model(), X, valid=XV, out=tmp_path, **OVERFIT)
    best, done = history[-1]["best_epoch"], history[-1]["epoch"]
    weights = (tmp_path / "model.safetensors").read_bytes()
    again = fit(model(1), X, valid=XV, out=tmp_path, resume=True, **{**OVERFIT, "epochs": 900})
    assert len(again) == done, "a run that early stopping ended trains no further"
    assert (tmp_path / "model.safetensors").read_bytes() == weights  # still the best epoch's
    assert recomputed(tmp_path, XV) == pytest.approx(history[best - 1]["valid_elbo"], abs=1e-5)
    longer = {**OVERFIT, "patience": done - best + 5}
    more = fit(model(1), X, valid=XV, out=tmp_path, resume=True, **longer)
    assert len(more) > done  # a larger patience trains on, from the last epoch's weights
    elbos = [r["valid_elbo"] for r in more]
    assert recomputed(tmp_path, XV) == pytest.approx(max(elbos), abs=1e-5)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="patience must be zero or more"):
        TrainConfig(patience=-1)
    with pytest.raises(ConfigError, match="min_delta must be a positive number"):
        TrainConfig(min_delta=-0.5)
    with pytest.raises(ConfigError, match="patience=3 stops on the validation ELBO: give valid"):
        fit(model(), X, epochs=5, patience=3)
    assert "patience" in vaekit.train.RESUMABLE and "min_delta" in vaekit.train.RESUMABLE


def _table(path: Path) -> Path:
    x = tiny(60, 2).numpy()
    np.savetxt(path, x, delimiter=",", header=",".join(f"c{i}" for i in range(D)), comments="")
    return path


def test_cli_prints_the_stop_and_resume_says_it_is_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = _table(tmp_path / "t.csv"), tmp_path / "run"
    args = ["--set", "patience=3", "--set", "min_delta=1e6", "--set", "hidden=[32]", "-q"]
    code, out, err = run_cli(capsys, "train", "--data", data, "--out", run, "--epochs", 50, *args)
    assert code == 0, err
    assert "stopped early at epoch 4; best validation ELBO at epoch 1 (" in out
    assert "whose weights are saved" in out
    code, out, err = run_cli(capsys, "info", run)
    assert code == 0, err
    assert "note   early stopping ended the run; the model holds epoch 1's weights" in out
    code, out, err = run_cli(capsys, "train", "--resume", run, "--epochs", 80, "-q")
    assert code == 0, err
    assert "stopped early at epoch 4; best validation ELBO at epoch 1 (patience 3)" in out
    assert "the run is finished" in out and "--set patience=N for N more than 3" in out
    code, out, err = run_cli(capsys, "train", "--data", data, "--out", tmp_path / "r2",
                             "--set", "patience=-2", "-q")  # fmt: skip
    assert code == 2 and err.strip() == "vaekit: error: patience must be zero or more, got -2"


def test_the_fast_loop_stops_early_as_the_eager_loop_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit's epochs are the same for both loops: the fast loop (step by step off CUDA) stops
    at the same epoch and keeps its best epoch's weights."""
    import vaekit.train.fast as fast

    monkeypatch.setattr(fast, "select_path", lambda *a, **k: ("graph", None))
    settings = {**OVERFIT, "steps_per_launch": 1}
    history = fit(model(), X, valid=XV, out=tmp_path, **settings)
    assert {r["path"] for r in history} == {"graph"}
    elbos = [r["valid_elbo"] for r in history]
    best = int(np.argmax(elbos)) + 1
    assert history[-1]["stopped"] == "early" and history[-1]["best_epoch"] == best
    assert history[-1]["epoch"] == best + OVERFIT["patience"] < OVERFIT["epochs"]
    assert recomputed(tmp_path, XV) == pytest.approx(elbos[best - 1], abs=1e-5)


def test_processes_of_a_group_stop_together(tmp_path: Path) -> None:
    """Two gloo processes share the validation ELBO, so they stop after the same epoch, and the
    run is the one-process run: same records, the first epoch's weights saved."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    worker = Path(__file__).parent / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAEKIT_DIST_TIMEOUT": "60"}
    argv = [sys.executable, str(worker), "early"]
    init, out = tmp_path / "rendezvous", tmp_path / "two"
    procs = [
        subprocess.Popen([*argv, str(r), "2", str(init), str(out)], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for r in range(2)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    sys.path.insert(0, str(worker.parent))
    try:
        import ddp_worker
    finally:
        sys.path.remove(str(worker.parent))
    m, x, valid = ddp_worker.setup()
    one = fit(m, x, valid=valid, out=tmp_path / "one", **ddp_worker.EARLY)
    two = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in two] == [1, 2, 3] == [r["epoch"] for r in one]
    assert two[-1]["stopped"] == "early" and two[-1]["best_epoch"] == 1
    for a, b in zip(one, two, strict=True):
        assert a["valid_elbo"] == pytest.approx(b["valid_elbo"], abs=1e-4)
    wa, wb = load_file(tmp_path / "one" / "model.safetensors"), load_file(out / "model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5
    seed = ddp_worker.SETTINGS["seed"]  # validation data binarised once, as fit does
    assert recomputed(out, vaekit.train.binarize(valid, seed=seed + 1), seed) == pytest.approx(
        two[0]["valid_elbo"], abs=1e-4
    )

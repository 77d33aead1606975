"""Learning-rate schedules: the IWAE paper's staircase (3^i passes at lr * 10^(-i/7), i = 0..7),
its stretched form, and that both training loops apply the rate each epoch; Adam's epsilon."""

from __future__ import annotations

import itertools

import pytest
import torch

import vaekit.train as train
import vaekit.train.step as step
from vaekit import VAE, ConfigError, TrainConfig, fit
from vaekit.train import IWAE_PASSES, FastRun, learning_rate


def paper_staircase(lr: float) -> list[float]:
    """The rate of each of the 3280 passes, written out stage by stage."""
    rates: list[float] = []
    for i in range(8):
        rates += [lr * 10 ** (-i / 7)] * 3**i
    return rates


def test_iwae_schedule_is_the_papers_staircase() -> None:
    expected = paper_staircase(1e-3)
    assert len(expected) == IWAE_PASSES == 3280
    cfg = TrainConfig(epochs=3300, lr=1e-3, lr_schedule="iwae")
    got = [learning_rate(cfg, e) for e in range(1, 3281)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert learning_rate(cfg, 3300) == pytest.approx(1e-4)  # after the schedule: the last rate
    assert learning_rate(TrainConfig(lr=0.3), 50) == 0.3  # constant


def test_scaled_schedule_stretches_the_stages_to_the_run() -> None:
    full = TrainConfig(epochs=IWAE_PASSES, lr=1e-3, lr_schedule="iwae_scaled")
    paper = TrainConfig(epochs=IWAE_PASSES, lr=1e-3, lr_schedule="iwae")
    assert [learning_rate(full, e) for e in range(1, 3281, 7)] == [
        learning_rate(paper, e) for e in range(1, 3281, 7)
    ]
    short = TrainConfig(epochs=40, lr=1e-3, lr_schedule="iwae_scaled")
    rates = [learning_rate(short, e) for e in range(1, 41)]
    assert rates[0] == 1e-3 and rates[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in itertools.pairwise(rates))
    # the last stage takes 3^7 / 3280 = two thirds of the run, as in the paper
    assert sum(r == pytest.approx(1e-4) for r in rates) == pytest.approx(40 * 2187 / 3280, abs=1)


def model() -> VAE:
    torch.manual_seed(0)
    return VAE(data_shape=(6,), latent_dim=2, hidden=(8,))


def data() -> torch.Tensor:
    return torch.rand(40, 6, generator=torch.Generator().manual_seed(0))


def test_eager_loop_steps_with_the_scheduled_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    make = train.make_optimizer

    def spy(m: VAE, config: TrainConfig) -> torch.optim.Optimizer:
        opt = make(m, config)
        assert opt.defaults["eps"] == config.adam_eps
        opt.register_step_pre_hook(lambda o, a, k: seen.append(float(o.param_groups[0]["lr"])))
        return opt

    monkeypatch.setattr(step, "make_optimizer", spy)
    cfg = TrainConfig(epochs=5, batch_size=20, lr=1e-2, lr_schedule="iwae", adam_eps=1e-4)
    history = fit(model(), data(), config=cfg)
    per_epoch = [learning_rate(cfg, e) for e in range(1, 6) for _ in range(2)]
    assert seen == pytest.approx(per_epoch)
    assert [r["lr"] for r in history] == pytest.approx(per_epoch[::2])
    assert len(set(per_epoch)) == 3  # stages 0, 1 and 2


def test_fast_loop_reads_the_rate_from_a_device_tensor() -> None:
    cfg = TrainConfig(epochs=5, batch_size=20, lr=1e-2, lr_schedule="iwae_scaled", adam_eps=1e-4)
    run = FastRun(model(), data(), cfg, "graph")
    history = list(run.epochs(False))
    lr = run.optimizer.lr
    assert isinstance(lr, torch.Tensor) and float(lr) == pytest.approx(learning_rate(cfg, 5))
    assert [r["lr"] for r in history] == pytest.approx([learning_rate(cfg, e) for e in range(1, 6)])
    assert run.optimizer.options["eps"] == 1e-4


@pytest.mark.parametrize(
    ("fields", "name"),
    [({"lr_schedule": "cosine"}, "lr_schedule.*iwae"), ({"adam_eps": 0.0}, "adam_eps")],
)
def test_bad_settings_name_themselves(fields: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        TrainConfig(**fields)


def test_a_scheduled_run_stopped_and_resumed_is_the_same_run(tmp_path) -> None:
    """Stopped mid-way (in stage 1 of the staircase) and resumed: bit for bit the whole run."""
    cfg = {"epochs": 5, "batch_size": 20, "lr": 1e-2, "lr_schedule": "iwae", "seed": 2}
    whole = model()
    fit(whole, data(), out=tmp_path / "whole", **cfg)
    steps = iter(range(100))
    with pytest.raises(train.TrainingInterrupted):
        fit(model(), data(), out=tmp_path / "part", stop=lambda: next(steps) == 5, **cfg)
    part = VAE(data_shape=(6,), latent_dim=2, hidden=(8,))
    history = fit(part, data(), out=tmp_path / "part", resume=True, **cfg)
    assert [r["lr"] for r in history] == pytest.approx([learning_rate(TrainConfig(**cfg), e)
                                                        for e in range(1, 6)])  # fmt: skip
    for a, b in zip(whole.parameters(), part.parameters(), strict=True):
        assert torch.equal(a, b)

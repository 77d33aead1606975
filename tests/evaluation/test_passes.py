"""The cost of log p(x) before it starts: K x examples decoder passes, refused past
MAX_DECODER_PASSES (10^10) with the count, shown otherwise; the progress bar counts passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import digest, run_cli

import vaekit.estimators as estimators
from vaekit import ConfigError, VAEConfig
from vaekit.estimators import MAX_DECODER_PASSES, check_passes, log_likelihood, work_line
from vaekit.estimators.sharded import log_likelihood as sharded_log_likelihood
from vaekit.models.registry import build_model


def test_the_count_and_the_bound() -> None:
    assert MAX_DECODER_PASSES == 10**10
    assert check_passes(5000, 10_000) == 50_000_000
    assert check_passes(10**6, 10**4) == MAX_DECODER_PASSES  # the bound itself is allowed
    with pytest.raises(ConfigError) as err:
        check_passes(10**9, 10_000)
    message = str(err.value)
    assert message.startswith("log p(x) with k=1000000000 on 10000 examples takes 1.0e+13 ")
    assert "lower k (at most 1000000 for 10000 examples)" in message
    assert check_passes(10**9, 10_000, max_passes=None) == 10**13
    assert work_line(5000, 10_000) == "log p(x): K=5000 on 10000 examples, 5.0e+07 decoder passes"


@pytest.fixture
def model_and_x() -> tuple[Any, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(VAEConfig(data_shape=(6,), latent_dim=2, hidden=(4,)))
    return model, (torch.rand(3, 6) < 0.5).float()


@pytest.mark.parametrize("estimate", [log_likelihood, sharded_log_likelihood])
def test_log_likelihood_refuses_before_any_work(model_and_x: Any, estimate: Any) -> None:
    model, x = model_and_x
    with pytest.raises(ConfigError, match=r"takes 3\.0e\+10 decoder passes"):
        estimate(model, x, k=10**10)  # hours of work if it started
    with pytest.raises(ConfigError, match=r"k=10 on 3 examples takes 3\.0e\+01"):
        estimate(model, x, k=10, max_passes=29)
    bounded = estimate(model, x, k=10, max_passes=30)
    assert torch.equal(bounded, estimate(model, x, k=10))


def test_the_progress_bar_counts_decoder_passes(
    model_and_x: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x = model_and_x
    bars: list[dict[str, Any]] = []

    class Bar:
        def __init__(self, **options: Any) -> None:
            self.options, self.done = options, 0
            bars.append(self.__dict__)

        def update(self, n: int) -> None:
            self.done += n

        def close(self) -> None:
            pass

    monkeypatch.setattr(estimators, "tqdm", Bar)
    log_likelihood(model, x, k=7, rows_per_chunk=4, progress=True)  # chunks of 1 x 4 samples
    (bar,) = bars
    assert bar["options"]["total"] == 21 and bar["options"]["unit"] == "pass"
    assert bar["done"] == 21


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("k") / "run"
    try:
        main(["train", "--data", "digits", "--out", str(out), "--epochs", "1", "-k", "2", "-q",
              "--set", "hidden=[8]", "--set", "latent_dim=2"])  # fmt: skip
    except SystemExit as exit_:
        assert not exit_.code
    return out


def test_evaluate_with_a_huge_k_is_refused_in_one_line(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "evaluate", run, "-k", "1000000000")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "log p(x) with k=1000000000 on 270 examples takes 2.7e+11 decoder passes" in err
    assert not (run / "eval.json").exists()


def test_evaluate_says_what_it_will_cost(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "evaluate", run, "-k", "3")
    assert code == 0, err
    assert "log p(x): K=3 on 270 examples, 8.1e+02 decoder passes" in err
    code, _, err = run_cli(capsys, "evaluate", run, "-k", "3", "-q")
    assert code == 0 and "decoder passes" not in err


def test_train_with_a_huge_k_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", out, "--epochs", "1",
                           "-k", "1000000000", "--report-examples", "100")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "k=1000000000 on 100 examples takes 1.0e+11 decoder passes" in err
    assert not out.exists()


def test_resume_with_a_huge_k_is_refused_before_training(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(run)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2", "-k", "1000000000")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "k=1000000000 on 270 examples takes 2.7e+11 decoder passes" in err
    assert digest(run) == before

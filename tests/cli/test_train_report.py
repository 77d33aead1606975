"""The end-of-training report is cheap by default: log p(x) with K=100 on at most 1,000
validation examples (``-k`` and ``--report-examples`` choose), and it says what it estimated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli

import vaekit
from vaekit.cli.report import valid_split
from vaekit.estimators import log_likelihood

SMALL = ["--data", "digits", "--epochs", "2", "--set", "hidden=[16]", "--set", "latent_dim=2"]


def _reported(out: str) -> tuple[int, float, str]:
    match = re.search(r"valid log p\(x\), K=(\d+)\s+(-?[\d.]+) nats(.*)", out)
    assert match, out
    return int(match[1]), float(match[2]), match[3].strip()


def test_report_estimates_on_the_examples_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *SMALL, "--out", run, "-q", "--report-examples", 2)
    assert code == 0, err
    k, reported, where = _reported(out)
    assert k == 100  # the default K
    assert where == "(2 of 270 examples)"
    model = vaekit.load(run)
    dataset = vaekit.data.load("digits", seed=0)
    train_config = vaekit.TrainConfig(**vaekit.checkpoint.read_config(run)["train"])
    x = valid_split(dataset, train_config)
    torch.manual_seed(0)
    first = log_likelihood(model, x[:2], k=2000).mean().item()
    everything = log_likelihood(model, x, k=2000).mean().item()
    assert abs(reported - first) < 0.25, (reported, first)  # the first 2, not the whole split
    assert abs(first - everything) > 0.5, "pick examples whose mean differs from the split's"


@pytest.mark.parametrize("examples", [None, "0"])
def test_report_on_every_example_says_no_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], examples: str | None
) -> None:
    more = [] if examples is None else ["--report-examples", examples]
    code, out, err = run_cli(capsys, "train", *SMALL, "--out", tmp_path / "r", "-q", "-k", 7, *more)
    assert code == 0, err
    k, _, where = _reported(out)
    assert (k, where) == (7, "")  # digits' 270 valid examples are under the default 1,000


def test_report_examples_must_not_be_negative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "train", *SMALL, "--out", tmp_path / "r", "--report-examples", -1
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()

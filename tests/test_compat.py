"""Run folders written before the package was restructured (at c6fb4d5) still load, give the
same numbers, resume and answer every reading command."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "runs-c6fb4d5"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("kind", ["vae", "hvae", "categorical"])
def test_old_runs_give_the_same_estimates(kind: str) -> None:
    x = vaekit.data.load("digits").test[:5]
    model = vaekit.load(FIXTURES / kind)
    assert model.kind == kind
    elbo = model.elbo(x, seed=0)
    log_px = model.log_likelihood(x, k=10, seed=0)
    assert torch.allclose(elbo, torch.tensor(EXPECTED[kind]["elbo"]), atol=1e-4)
    expected = torch.tensor(EXPECTED[kind]["log_likelihood"])  # the model's dtype, as elbo
    assert torch.allclose(log_px, expected, atol=1e-4)


def test_old_text_run_samples_the_same_strings() -> None:
    model = vaekit.load(FIXTURES / "text")
    torch.manual_seed(0)
    assert model.texts(model.sample(3)) == EXPECTED["text"]["samples"]


@pytest.mark.parametrize("kind", ["vae", "hvae", "categorical", "text"])
def test_old_runs_answer_the_commands(kind: str, tmp_path: Path, capsys) -> None:
    run = tmp_path / kind
    shutil.copytree(FIXTURES / kind, run)
    # the text run was trained on a word list that lies beside the fixtures, not where it was
    data = ["--data", str(FIXTURES / "words.txt")] if kind == "text" else []
    main(["info", str(run)])
    main(["evaluate", str(run), "-k", "5", "--quiet", *data])
    main(["train", "--resume", str(run), "--epochs", "3", "--quiet", *data])
    assert "error" not in capsys.readouterr().err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3

"""A model too large for the machine is refused with its size before anything is allocated:
at build (training, the Python API) and when a run's config.json asks for one (loading)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import digest, run_cli

import vaekit
from vaekit import ConfigError, VAEConfig
from vaekit.models.registry import build_model, weight_bytes

HUGE = [10**6, 10**6]  # 10^12 weights: terabytes


def test_weight_bytes_counts_without_allocating() -> None:
    config = VAEConfig(data_shape=(6,), latent_dim=2, hidden=(4,))
    built = build_model(config)
    expected = sum(p.numel() * p.element_size() for p in built.parameters())
    expected += sum(b.numel() * b.element_size() for b in built.buffers())
    assert weight_bytes(config) == expected
    assert weight_bytes(VAEConfig(data_shape=(6,), latent_dim=2, hidden=HUGE)) > 4 * 10**12


def test_building_a_huge_model_is_refused_with_its_size() -> None:
    with pytest.raises(ConfigError, match=r"needs \d.* TiB for its weights alone, more than"):
        build_model(VAEConfig(data_shape=(6,), latent_dim=2, hidden=HUGE))


def test_training_a_huge_model_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", out, "--set",
                           f"hidden={HUGE}", "--epochs", "1")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "for its weights alone" in err
    assert not out.exists()


@pytest.mark.parametrize(("key", "value"), [("data_shape", [2**62]), ("latent_dim", 10**9)])
def test_a_config_asking_for_a_huge_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: object
) -> None:
    run = tmp_path / "run"
    small = ["--epochs", "1", "-k", "2", "-q", "--set", "hidden=[4]", "--set", "latent_dim=2"]
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", run, *small)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    config["model"][key] = value
    (run / "config.json").write_text(json.dumps(config))
    before = digest(run)
    with pytest.raises(vaekit.VaekitError):
        vaekit.load(run)
    code, _, err = run_cli(capsys, "sample", run, "-n", "4")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert digest(run) == before

"""Runs of every kind, served by real servers on free loopback ports.

Trained here through the command line: a digits run (3 latent dims: a plane and a slider), a
conditional digits run, a sound run on generated tones, a table and a folder of colour images;
the committed fixture runs (vae, hvae, categorical, text) are served in place, read-only. The
servers are uvicorn on 127.0.0.1 in a thread of this process (so a test can hold a run's lock);
one more test starts ``vaekit serve`` as a process of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="vaekit serve needs the serve extra (FastAPI)")
pytest.importorskip("uvicorn", reason="vaekit serve needs the serve extra (uvicorn)")
pytest.importorskip("httpx", reason="the server tests talk to it with httpx")

from vaekit.cli import main
from vaekit.cli.run import Run
from vaekit.serve import ServedRun, build_app
from vaekit.serve.server import Background

from .serve_helpers import FIXTURES, LIMITS, Client

TINY = ["--epochs", "2", "--set", "hidden=[16]", "--set", "latent_dim=2", "-k", "5", "-q"]


def train(*args: object) -> None:
    try:
        main(["train", *map(str, args)])
    except SystemExit as exit_:
        assert not exit_.code, f"vaekit train {args} exited with {exit_.code}"


@dataclass
class Trained:
    digits: Path
    conditional: Path
    sound: Path
    table: Path
    wavs: Path
    colour: Path
    pictures: Path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Runs trained through the command line for the server tests (about 10 s in all)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = tmp_path_factory.mktemp("serve-runs")
    config = Path(__file__).resolve().parents[2] / "configs" / "digits.toml"
    train("--config", config, "--out", root / "digits", "--epochs", "150",
          "--set", "latent_dim=3", "--set", "hidden=[128]", "-k", "5", "-q")  # fmt: skip
    train("--data", "digits", "--out", root / "conditional", *TINY,
          "--set", "condition_dim=10")  # fmt: skip
    wavs = root / "wavs"
    wavs.mkdir()
    from vaekit.data.audio import wav_bytes

    t = np.arange(4000) / 8000
    for i in range(8):
        wave = 0.5 * np.sin(2 * np.pi * (200 + 60 * i) * t)
        (wavs / f"{i}.wav").write_bytes(wav_bytes(wave.astype(np.float32), 8000))
    train("--data", wavs, "--out", root / "sound", *TINY, "--audio", "sample_rate=8000",
          "--audio", "n_fft=256", "--audio", "hop=64", "--audio", "n_mels=16")  # fmt: skip
    rng = np.random.default_rng(0)
    rows = ["a,b,c"] + [",".join(f"{v:.3f}" for v in rng.normal(size=3)) for _ in range(90)]
    (root / "table.csv").write_text("\n".join(rows) + "\n")
    train("--data", root / "table.csv", "--out", root / "table", *TINY,
          "--set", "likelihood=gaussian")  # fmt: skip
    pictures = root / "pictures"
    for name, colour in (("red", (220, 40, 30)), ("blue", (20, 60, 230))):
        (pictures / name).mkdir(parents=True)
        for i in range(10):
            shade = rng.uniform(0.4, 1.0, (8, 8, 1))
            pixels = (np.array(colour)[None, None] * shade).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(pictures / name / f"{i}.png")
    train("--data", pictures, "--out", root / "colour", *TINY)
    return Trained(
        root / "digits", root / "conditional", root / "sound", root / "table", wavs,
        root / "colour", pictures,
    )  # fmt: skip


def served(name: str, path: Path, data: str | None = None, points: int = 300) -> ServedRun:
    """A run as ``vaekit serve`` holds it, with its test split as the explorer's dots."""
    x, labels, _ = Run(path).split(data, "test")
    return ServedRun.open(path, name, examples=x, labels=labels, max_points=points)


@pytest.fixture(scope="session")
def runs(trained: Trained) -> dict[str, ServedRun]:
    """Every kind of run, by name."""
    words = str(FIXTURES / "words.txt")
    out = [
        served("digits", trained.digits),
        served("conditional", trained.conditional),
        served("sound", trained.sound),
        served("table", trained.table),
        served("colour", trained.colour),
        served("vae", FIXTURES / "vae"),
        served("hvae", FIXTURES / "hvae"),
        served("categorical", FIXTURES / "categorical"),
        served("text", FIXTURES / "text", data=words),
    ]
    return {r.name: r for r in out}


@pytest.fixture(scope="session")
def server(runs: dict[str, ServedRun]) -> Iterator[Client]:
    """A server of every run with small limits (:data:`LIMITS`), on a free loopback port."""
    with Background(build_app(list(runs.values()), LIMITS)) as background:
        client = Client(background.url)
        yield client
        client.http.close()

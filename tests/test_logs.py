"""Training logs: fit's callbacks and the TensorBoard log, read back with TensorBoard's own
EventAccumulator; a log that cannot write warns once and leaves the run's weights unchanged."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import run_cli

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)

from vaekit import VAE, fit
from vaekit.data import load
from vaekit.logs import TensorBoardLog
from vaekit.train.callbacks import Callbacks

EPOCHS, BATCH = 2, 100


@pytest.fixture(scope="module")
def digits() -> Any:
    return load("digits")


def _model(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(data_shape=(64,), latent_dim=3, hidden=(16,), likelihood="bernoulli")


def _train(digits: Any, callbacks: list[Any], out: Path | None = None) -> VAE:
    model = _model()
    fit(model, digits.train, valid=digits.valid, epochs=EPOCHS, batch_size=BATCH,
        callbacks=callbacks, out=out)  # fmt: skip
    return model


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _same_weights(a: VAE, b: VAE) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_the_event_files_hold_every_scalar_picture_and_the_projector(
    digits: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "tb"
    log = TensorBoardLog(
        folder, valid=digits.valid, test=digits.test, test_labels=digits.test_labels,
        image_shape=(8, 8), embed=50,
    )  # fmt: skip
    model = _train(digits, [log])
    acc = _events(folder)
    tags = acc.Tags()
    n = digits.train.shape[0]
    steps = EPOCHS * math.ceil(n / BATCH)
    for tag in ("step/bound", "step/lr", "step/beta", "step/skipped_steps", "step/examples_per_s"):
        assert len(acc.Scalars(tag)) == steps, tag
    assert [e.step for e in acc.Scalars("step/bound")] == list(range(1, steps + 1))
    for tag in ("epoch/train_bound", "epoch/valid_elbo", "epoch/recon", "epoch/kl"):
        assert len(acc.Scalars(tag)) == EPOCHS, tag
    assert {f"kl_per_dim/z{d:02d}" for d in range(3)} <= set(tags["scalars"])
    # the step bounds, weighted by their batches, are the epoch's training bound
    sizes = [min(BATCH, n - i) for i in range(0, n, BATCH)] * EPOCHS
    bounds = np.array([e.value for e in acc.Scalars("step/bound")])
    per_epoch = [e.value for e in acc.Scalars("epoch/train_bound")]
    per_step = len(sizes) // EPOCHS
    for j in range(EPOCHS):
        part = slice(j * per_step, (j + 1) * per_step)
        mean = float(np.dot(bounds[part], sizes[part]) / n)
        assert mean == pytest.approx(per_epoch[j], rel=1e-5)
    # the KL per dimension sums to the epoch's KL (the model's closed form on the same data)
    kl_dims = sum(acc.Scalars(f"kl_per_dim/z{d:02d}")[-1].value for d in range(3))
    assert kl_dims == pytest.approx(acc.Scalars("epoch/kl")[-1].value, rel=1e-4)
    assert {"samples", "reconstructions"} <= set(tags["images"])
    assert len(acc.Images("samples")) == EPOCHS
    assert acc.Images("samples")[0].width > 0
    # the projector: its config and the test latents with their labels and thumbnails
    config = (folder / "projector_config.pbtxt").read_text()
    assert "test_latents" in config and "sprite" in config
    (tensors,) = folder.rglob("tensors.tsv")
    rows = [line.split("\t") for line in tensors.read_text().splitlines()]
    z = model.encode(digits.test[:50]).mean.detach().numpy()
    np.testing.assert_allclose(np.array(rows, dtype=float), z, rtol=1e-4, atol=1e-5)
    labels = (tensors.parent / "metadata.tsv").read_text().split()
    assert labels == [str(int(y)) for y in digits.test_labels[:50]]
    assert (tensors.parent / "sprite.png").stat().st_size > 0


def test_a_log_that_cannot_write_warns_once_and_the_weights_are_unchanged(
    digits: Any, tmp_path: Path
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the log's folder would be")
    messages: list[str] = []
    log = TensorBoardLog(blocked / "tb", valid=digits.valid, image_shape=(8, 8),
                         warn=messages.append)  # fmt: skip
    logged = _train(digits, [log], out=tmp_path / "run")
    plain = _train(digits, [])
    assert len(messages) == 1 and "failed" in messages[0], messages
    _same_weights(logged, plain)
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_a_working_log_changes_no_weight(digits: Any, tmp_path: Path) -> None:
    log = TensorBoardLog(tmp_path / "tb", valid=digits.valid, test=digits.test, image_shape=(8, 8))
    _same_weights(_train(digits, [log]), _train(digits, []))


class Raises:
    def __init__(self) -> None:
        self.calls = 0

    def on_step(self, event: dict[str, Any], model: Any) -> None:
        self.calls += 1
        if self.calls == 3:
            raise OSError("disk full")


def test_a_callback_that_raises_is_dropped_with_one_warning(digits: Any) -> None:
    cb = Raises()
    with pytest.warns(RuntimeWarning, match="Raises.on_step failed.*disk full") as caught:
        logged = _train(digits, [cb])
    assert cb.calls == 3
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    _same_weights(logged, _train(digits, []))


def test_a_loop_without_step_events_gives_one_per_epoch() -> None:
    """The fast loop never calls the step hook: the epoch's record stands in for it."""

    class Loop:
        epoch, pos = 1, 0
        on_step = None

    class Keep:
        def __init__(self) -> None:
            self.steps: list[dict[str, Any]] = []
            self.epochs: list[dict[str, Any]] = []

        def on_step(self, event: dict[str, Any], model: Any) -> None:
            self.steps.append(event)

        def on_epoch(self, event: dict[str, Any], model: Any) -> None:
            self.epochs.append(event)

    keep, loop = Keep(), Loop()
    from vaekit import TrainConfig

    hooks = Callbacks([keep], _model(), TrainConfig(batch_size=10), loop, 100)
    assert loop.on_step == hooks.step
    record = {"epoch": 1, "step": 10, "examples_seen": 100, "train_bound": -40.0,
              "skipped_steps": 0, "lr": 1e-3, "beta": 1.0}  # fmt: skip
    hooks.epoch(record)
    assert len(keep.steps) == 1 and keep.epochs == [record]
    assert keep.steps[0]["bound"] == -40.0 and keep.steps[0]["step"] == 10
    assert keep.steps[0]["examples_per_s"] > 0


# -- the command line ---------------------------------------------------------------------------

TINY = ["--epochs", "2", "--set", "hidden=[16]", "--set", "latent_dim=3", "-k", "5", "-q"]


def test_train_log_tensorboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", out, *TINY,
                           "--log", "tensorboard")  # fmt: skip
    assert code == 0, err
    acc = _events(out / "tensorboard")
    assert len(acc.Scalars("epoch/valid_elbo")) == 2
    assert "samples" in acc.Tags()["images"]
    assert (out / "tensorboard" / "projector_config.pbtxt").is_file()
    # a new run in the folder sets the old log aside with the old weights: no stale events
    old = sorted(p.relative_to(out) for p in (out / "tensorboard").rglob("*") if p.is_file())
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", out, *TINY,
                           "--overwrite")  # fmt: skip
    assert code == 0, err
    assert not [p for p in (out / "tensorboard").rglob("*") if p.is_file()]
    assert not (out / ".vaekit-previous").exists()  # dropped once the new run finished
    assert old


def test_train_log_that_cannot_write_is_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "tensorboard").write_text("not a folder")
    code, stdout, err = run_cli(capsys, "train", "--data", "digits", "--out", out, *TINY,
                                "--log", "tensorboard")  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vaekit: warning: TensorBoard log"), err
    assert (out / "model.safetensors").is_file() and "trained 2 epochs" in stdout


def test_train_log_without_tensorboard_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--data", "digits", "--out", out, *TINY,
                                "--log", "tensorboard")  # fmt: skip
    assert code == 2
    assert err.strip().splitlines() == [
        "vaekit: error: TensorBoard logs need the tensorboard package: pip install "
        "'vaekit[tensorboard]'"
    ]
    assert not out.exists() and stdout == ""


def test_the_fast_loop_logs_a_step_a_epoch(
    digits: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast loop (run step by step on CPU, as in its own tests) reads its numbers once an
    epoch: one step event an epoch, the epoch's mean bound."""
    import vaekit.train.fast as fast

    monkeypatch.setattr(fast, "select_path", lambda *args: ("graph", None))
    folder = tmp_path / "tb"
    model = _model()
    history = fit(model, digits.train, epochs=EPOCHS, batch_size=BATCH,
                  callbacks=[TensorBoardLog(folder, valid=digits.valid)])  # fmt: skip
    assert history[-1]["path"] == "graph"
    acc = _events(folder)
    bounds = acc.Scalars("step/bound")
    assert [e.step for e in bounds] == [r["step"] for r in history]
    np.testing.assert_allclose([e.value for e in bounds], [r["train_bound"] for r in history],
                               rtol=1e-6)  # fmt: skip
    assert len(acc.Scalars("epoch/kl")) == EPOCHS

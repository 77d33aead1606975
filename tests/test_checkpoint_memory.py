"""Out of memory while writing a checkpoint: one line naming the file and the sizes, exit status
2, and the run folder as it was. Checkpoints are written tensor by tensor (vaekit.tensorfile),
byte for byte as safetensors writes them, never whole in memory."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import digest
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from vaekit import CheckpointError, VAEConfig, tensorfile
from vaekit import checkpoint as ckpt
from vaekit.memory import is_out_of_memory, size_text
from vaekit.models.registry import build_model, weight_bytes
from vaekit.tensorfile import DTYPES, file_size, write_tensors

#: Runs vaekit's command line in a fresh interpreter; on exit it reports the peak of the
#: process's address space (VmPeak) on stderr, the base a limit is set above.
PEAK = """
import atexit, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmPeak:"):
            sys.stderr.write("vmpeak " + line.split()[1] + "\\n")
atexit.register(peak)
from vaekit.cli import main
main(sys.argv[1:])
"""
#: Switches off the estimates of the memory training takes (train's, before the model is built,
#: and fit's), which refuse before training a run whose checkpoint would not fit: the way to
#: reach a write that runs out of memory.
NO_ESTIMATE = (
    "import vaekit.cli.budget as b, vaekit.models.registry as r\n"
    "b.check_training_fits = r.check_training_fits = lambda *a, **k: None\n"
)


def _every_dtype() -> dict[str, torch.Tensor]:
    out = {}
    for i, dtype in enumerate(DTYPES):
        values = torch.arange(6, dtype=torch.float64).reshape(2, 3)
        out[f"t{i % 4}{dtype}"] = values.to(dtype)
    out["scalar"] = torch.tensor(2.5)
    out["empty"] = torch.zeros(0, 3)
    return out


def test_the_streamed_file_is_safetensors_own_bytes() -> None:
    tensors = _every_dtype()
    metadata = {"state": '{"a": [1, "é\\n\\u0001"]}', "format_version": "1"}
    buffer = io.BytesIO()
    write_tensors(buffer, tensors, metadata)
    ours, theirs = buffer.getvalue(), save_bytes(tensors, metadata=metadata)
    assert len(ours) == len(theirs) == file_size(tensors, metadata)
    n = int.from_bytes(ours[:8], "little")
    assert ours[:8] == theirs[:8] and ours[8 + n :] == theirs[8 + n :]  # the same data, in order
    # safetensors orders the metadata as a hash map happens to; here it is sorted
    assert json.loads(ours[8 : 8 + n]) == json.loads(theirs[8 : 8 + n])
    assert list(json.loads(ours[8 : 8 + n])["__metadata__"]) == sorted(metadata)
    plain = {k: v for k, v in tensors.items() if v.dtype == torch.float32}
    assert _bytes(plain, {"one": "1"}) == save_bytes(plain, metadata={"one": "1"})
    back = load_bytes(buffer.getvalue())
    assert back.keys() == tensors.keys()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        assert torch.equal(
            back[name].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)
        )


def _bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    write_tensors(buffer, tensors, metadata)
    return buffer.getvalue()


def test_tied_and_viewed_tensors_are_written_whole() -> None:
    base = torch.arange(12.0)
    tensors = {"all": base, "tail": base[6:], "tied": base}  # safetensors refuses shared memory
    buffer = io.BytesIO()
    write_tensors(buffer, tensors)
    back = load_bytes(buffer.getvalue())
    assert torch.equal(back["tail"], base[6:]) and torch.equal(back["tied"], base)


def test_saved_models_and_states_round_trip(tmp_path: Path) -> None:
    model = build_model(VAEConfig(data_shape=(6,), latent_dim=2, hidden=(4,)))
    ckpt.save(model, tmp_path / "run")
    ckpt.save(model, tmp_path / "one.safetensors")
    weights = load_bytes((tmp_path / "run" / "model.safetensors").read_bytes())
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    state = {"loop": {"w": torch.ones(3), "rng": torch.get_rng_state()}, "run": {"step": 4}}
    ckpt.save_training_state(tmp_path / "run", state)
    back = ckpt.load_training_state(tmp_path / "run")
    assert torch.equal(back["loop"]["rng"], state["loop"]["rng"]) and back["run"] == {"step": 4}


def test_a_write_that_does_not_fit_is_refused_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    state = {"loop": {"w": torch.ones(1000)}, "run": {}}
    ckpt.save_training_state(run, state)
    before = digest(run)
    monkeypatch.setattr(tensorfile, "available_memory", lambda: 1000)
    with pytest.raises(CheckpointError) as err:
        ckpt.save_training_state(run, {"loop": {"w": torch.zeros(1000)}, "run": {}})
    expected = f"out of memory while writing {str(run / 'checkpoint.safetensors')!r} (needs 3.9 KiB"
    assert expected in str(err.value) and "1000 bytes free" in str(err.value)
    assert digest(run) == before


def test_an_allocation_failing_while_writing_is_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    ckpt.save_training_state(run, {"loop": {"w": torch.ones(10)}, "run": {}})
    before = digest(run)

    def raiser(error: BaseException) -> object:
        def fail(*args: object) -> None:
            raise error

        return fail

    cpu = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 40")
    for error in (cpu, MemoryError(), OSError(12, "Cannot allocate memory")):
        monkeypatch.setattr(tensorfile, "write_tensors", raiser(error))
        with pytest.raises(CheckpointError, match=r"^out of memory while writing .*checkpoint"):
            ckpt.save_training_state(run, {"loop": {"w": torch.zeros(10)}, "run": {}})
        with pytest.raises(CheckpointError, match=r"^out of memory while writing .*model\."):
            ckpt.save(build_model(VAEConfig(data_shape=(6,), latent_dim=2, hidden=(4,))), run)
        assert digest(run) == before
    monkeypatch.setattr(tensorfile, "write_tensors", raiser(RuntimeError("x")))
    with pytest.raises(RuntimeError, match=r"^x$"):  # other errors are not called memory
        ckpt.save_training_state(run, {"loop": {"w": torch.zeros(10)}, "run": {}})
    assert digest(run) == before


def test_out_of_memory_errors_are_told_apart() -> None:
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(OSError(12, "no memory"))
    assert not is_out_of_memory(OSError(28, "No space left on device"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert size_text(1000) == "1000 bytes" and size_text(3 * 2**30) == "3.0 GiB"


def _vaekit(
    args: list[object], limit: int | None = None, estimate: bool = True
) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", PEAK if estimate else NO_ESTIMATE + PEAK, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=cap,
        timeout=600,
    )


SMALL = ["--epochs", "1", "-k", "2", "-q", "--set", "latent_dim=2"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """(a data file, a run folder of a small model trained on it, the peak address space of
    the process that trained it, in bytes)."""
    folder = tmp_path_factory.mktemp("small")
    data = folder / "bits.npy"
    rng = np.random.default_rng(0)
    np.save(data, (rng.random((200, 16)) < 0.5).astype(np.float32))
    run = folder / "run"
    first = _vaekit(["train", "--data", data, "--out", run, *SMALL, "--set", "hidden=[8]"])
    assert first.returncode == 0, first.stderr
    return data, run, int(first.stderr.split("vmpeak ")[-1].split()[0]) * 1024


def _big_run(
    small_run: tuple[Path, Path, int], tmp_path: Path, room: float, estimate: bool = True
) -> tuple[Path, dict[str, str], str, int]:
    """A copy of the small run, then the same command replacing it with a large model (W bytes
    of weights) in a process whose address space may grow ``room`` W above what the small run's
    took: (the run, its digest before, the second command's stderr, its exit status)."""
    data, small, base = small_run
    run = shutil.copytree(small, tmp_path / "run")
    before = digest(run)
    weights = weight_bytes(VAEConfig(data_shape=(16,), latent_dim=2, hidden=(5000, 5000)))
    big = ["--set", "hidden=[5000,5000]", "--overwrite"]
    limit = base + int(room * weights)
    second = _vaekit(["train", "--data", data, "--out", run, *SMALL, *big], limit, estimate)
    err = "".join(line for line in second.stderr.splitlines(True) if "vmpeak" not in line)
    return run, before, err, second.returncode


def test_out_of_memory_while_writing_a_checkpoint_keeps_the_run(
    small_run: tuple[Path, Path, int], tmp_path: Path
) -> None:
    """A real process under an address-space limit (ulimit -v) that leaves room to train a model
    but not to write its checkpoint: replacing a run with it is one line, exit status 2, and the
    run that was there is back byte for byte."""
    # hidden [5000, 5000]: 50.2M weights, W = 201 MB. Training takes about 4W (weights,
    # gradients, Adam's two moments) above the base; the checkpoint's snapshot of weights and
    # moments 3W more. 5.5 W above the base fits the one, not the other.
    run, before, err, code = _big_run(small_run, tmp_path, 5.5, estimate=False)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaekit: error: out of memory while writing ")
    assert f"{str(run / 'checkpoint.safetensors')!r} (needs " in err and " free)" in err
    assert digest(run) == before


def test_training_that_would_not_fit_is_refused_before_it_starts(
    small_run: tuple[Path, Path, int], tmp_path: Path
) -> None:
    """The same process and limit, with train's estimate on: weights, gradients and Adam's
    moments (4W), then a checkpoint's snapshot (3W), do not fit in 5.5 W; refused in one line
    with the estimate before the model is built, the run there untouched."""
    run, before, err, code = _big_run(small_run, tmp_path, 5.5)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaekit: error: training a vae model with these settings would run ")
    assert "to write a checkpoint), more than the " in err and "hidden, channels" in err
    assert digest(run) == before


def test_a_checkpoint_is_written_without_a_copy_of_the_whole_file(
    small_run: tuple[Path, Path, int], tmp_path: Path
) -> None:
    """8.5 W above the base holds training (4W) and the checkpoint's snapshot (3W), not a
    serialised copy of the file besides (3W more, twice in safetensors' own save, whose failed
    allocation aborted the process): the run trains and saves."""
    run, _, err, code = _big_run(small_run, tmp_path, 8.5)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["model"]["hidden"] == [5000, 5000]
    state = ckpt.load_training_state(run)
    assert state["run"]["finished"] is True

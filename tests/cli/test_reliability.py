"""Resources run out: out of memory and a full disk give one line and exit status 2, and the files
of an existing run stay as they were. Real subprocesses, real file-size limits."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SMALL = ["--epochs", "2", "-k", "5", "--quiet", "--set", "latent_dim=2", "--set", "hidden=[8]"]


def vaekit(*args: str, preexec_fn=None) -> tuple[int, str, str]:
    env = {**os.environ, "VAEKIT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "vaekit", *args],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=preexec_fn,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def one_line_exit_2(*args: str, preexec_fn=None) -> str:
    code, out, err = vaekit(*args, preexec_fn=preexec_fn)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def limit_file_size(size: int = 65536) -> None:
    """Any write past ``size`` bytes (64 KiB) fails with EFBIG, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    data = tmp_path_factory.mktemp("data") / "bits.npy"
    np.save(data, (rng.random((120, 16)) < 0.3).astype(np.float32))
    run = tmp_path_factory.mktemp("runs") / "run"
    code, _, err = vaekit("train", "--data", str(data), "--out", str(run), *SMALL)
    assert code == 0, err
    return run


def test_out_of_memory_is_one_line(tmp_path: Path) -> None:
    # A hidden layer of 3e9 units needs ~36 GB of weights: more than a test machine has.
    out = tmp_path / "huge"
    line = one_line_exit_2(
        "train", "--data", "digits", "--out", str(out), *SMALL, "--set", "hidden=[3000000000]"
    )
    assert "for its weights alone, more than the" in line and "memory free" in line  # estimated
    assert not (out / "config.json").exists()


def test_full_disk_during_training_is_one_line(run: Path, tmp_path: Path) -> None:
    data = tmp_path / "bits.npy"
    np.save(data, np.zeros((40, 16), dtype=np.float32))
    wide = [*SMALL, "--set", "hidden=[3000]"]  # weights of ~400 KB cannot be written
    line = one_line_exit_2(
        "train", "--data", str(data), "--out", str(tmp_path / "new"), *wide,
        preexec_fn=limit_file_size,
    )  # fmt: skip
    assert "cannot write" in line


def test_full_disk_leaves_an_existing_run_unchanged(run: Path) -> None:
    before = snapshot(run)
    line = one_line_exit_2(
        "sample", str(run), "-n", "4096", "--output", str(run / "figures" / "big.png"),
        preexec_fn=limit_file_size,
    )  # fmt: skip
    assert "cannot write" in line
    assert snapshot(run) == before


# -- killed at random moments, resumed, the same weights ---------------------------------------


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "VAEKIT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "vaekit", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def saved_step(run: Path) -> int:
    """The step of the checkpoint in ``run`` (-1 before the first), read from its header."""
    from vaekit.checkpoint import read_training_info
    from vaekit.errors import CheckpointError

    try:
        return int(read_training_info(run)["step"])
    except CheckpointError:
        return -1


def temporaries(run: Path) -> list[Path]:
    return list(run.glob(".*.tmp")) if run.is_dir() else []


def kill_at(proc: subprocess.Popen, run: Path, step: int, delay: float | None) -> bool:
    """SIGKILL ``proc`` once its checkpoint has reached ``step``: as soon as the temporary file
    of the next checkpoint shows (``delay`` None, inside a write), or ``delay`` seconds later.
    Returns False when the process finished first."""
    while proc.poll() is None and saved_step(run) < step:
        time.sleep(0.001)
    if delay is None:
        while proc.poll() is None and not temporaries(run):
            time.sleep(0.0002)
    else:
        time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def weights(file: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(file)


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    """Training is killed with SIGKILL at 4 random steps (inside a checkpoint write, or at a
    random moment after one), resumed each time with ``vaekit train --resume``, and must end
    with the weights and the metrics of a run never killed, with no temporary file left."""
    import random

    rng = random.Random(5)
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(1).random((120, 12), dtype=np.float32))
    common = ["--data", str(data), "--epochs", "4", "-k", "2", "-q", "--set", "hidden=[8]",
              "--set", "latent_dim=2", "--set", "batch_size=8", "--set", "likelihood=bernoulli",
              "--set", "binarize=dynamic"]  # fmt: skip
    reference = tmp_path / "reference"
    uninterrupted = start("train", "--out", str(reference), *common)  # alongside, on the other core

    run = tmp_path / "run"
    proc = start("train", "--out", str(run), *common, "--set", "checkpoint_every=1")
    kills = mid_write = 0

    def kill_and_resume(step: int, delay: float | None) -> bool:
        nonlocal proc, kills, mid_write
        if not kill_at(proc, run, step, delay):
            return False
        kills += 1
        mid_write += bool(temporaries(run))
        assert (run / "checkpoint.safetensors").is_file()  # the last good one, always there
        proc = start("train", "--resume", str(run), "-k", "2", "-q")
        return True

    # 4 epochs of 12 steps; the kill points are random steps, every other one inside a write.
    for n, step in enumerate(sorted(rng.sample(range(0, 44), 4))):
        kill_and_resume(step, None if n % 2 == 0 else rng.uniform(0.0, 0.03))
    # Where writes are too quick to catch (tmpfs), a few more tries to kill inside one.
    for _ in range(3):
        if mid_write or not kill_and_resume(saved_step(run) + 1, None):
            break
    _, err = proc.communicate()
    assert proc.returncode == 0, err

    print(f"{kills} SIGKILLs, {mid_write} inside a checkpoint write")  # shown with pytest -s
    assert kills >= 4 and mid_write >= 1, (kills, mid_write)
    _, err = uninterrupted.communicate()
    assert uninterrupted.returncode == 0, err
    expected, got = weights(reference / "model.safetensors"), weights(run / "model.safetensors")
    assert expected.keys() == got.keys()
    assert all(np.array_equal(expected[k], got[k]) for k in expected)

    def records(folder: Path) -> list[dict]:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    assert records(run) == records(reference)
    assert temporaries(run) == []


# -- the catalogue of bad input: one line, exit status 2, the run's files byte for byte ---------


def copy_run(run: Path, tmp: Path, change=None) -> Path:
    import shutil

    target = tmp / "target"
    shutil.copytree(run, target)
    if change is not None:
        change(target)
    return target


def truncate(file: str, keep: float):
    def change(run: Path) -> None:
        raw = (run / file).read_bytes()
        (run / file).write_bytes(raw[: int(len(raw) * keep)])

    return change


def garbage(file: str):
    return lambda run: (run / file).write_bytes(os.urandom(256))


def newer_checkpoint(run: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    file = run / "checkpoint.safetensors"
    with safe_open(str(file), framework="np") as f:
        meta = f.metadata()
    tensors = load_file(file)
    save_file(tensors, file, metadata={**meta, "format_version": "99"})


def newer_config(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "format_version": 99}))


def unfinished(run: Path) -> None:
    (run / "model.safetensors").unlink()


NEW = ["train", "--out", "{tmp}/new", "-q", "-k", "2", "--epochs", "1"]
RESUME = ["train", "--resume", "{run}", "-q", "-k", "2"]

#: Every kind of bad input the reliability issue names: (command, message, how the run folder the
#: command is given was damaged first, if it was).
CATALOGUE: dict[str, tuple[list[str], str, Any]] = {
    "missing file": ([*NEW, "--data", "{tmp}/missing.npy"], "does not exist", None),
    "missing file, resuming": ([*RESUME, "--epochs", "3", "--data", "{tmp}/missing.npy"],
                               "does not exist", None),
    "unreadable file": ([*NEW, "--data", "{tmp}/garbage.npy"], "cannot read .*not a .npy", None),
    "unreadable latents": (["decode", "{run}", "{tmp}/garbage.npy"], "cannot read", None),
    "empty dataset": ([*NEW, "--data", "{tmp}/empty.npy"], r"shape \(0, 16\)", None),
    "empty latents": (["decode", "{run}", "{tmp}/empty.csv"], "empty", None),
    "NaN in data": ([*NEW, "--data", "{tmp}/nan.npy"], "NaN or infinite.*example 5", None),
    "inf in data": ([*NEW, "--data", "{tmp}/inf.npy"], "NaN or infinite.*example 5", None),
    "NaN in data, resuming": ([*RESUME, "--epochs", "3", "--data", "{tmp}/nan.npy"],
                              "NaN or infinite", None),
    "outside the likelihood's support": ([*NEW, "--data", "{tmp}/big.npy", "--set",
                                          "likelihood=bernoulli"], r"\[0, 1\]", None),
    "outside the support, resuming": ([*RESUME, "--epochs", "3", "--data", "{tmp}/big.npy"],
                                      r"values in .*, 2\.9.* but the bernoulli", None),
    "wrong shape for the checkpoint, resuming": (
        [*RESUME, "--epochs", "3", "--data", "{tmp}/wide.npy"],
        r"shape \(17,\) but the model expects \(16,\)", None),
    "wrong shape for the checkpoint, evaluating": (
        ["evaluate", "{run}", "-k", "2", "--data", "{tmp}/wide.npy"], r"\(17,\).*\(16,\)", None),
    "other data, resuming": ([*RESUME, "--epochs", "3", "--data", "{tmp}/other.npy"],
                             "not the data the run .* was trained on", None),
    "config with an unknown key": ([*NEW, "--config", "{tmp}/unknown.toml"],
                                   "unknown setting model.colour", None),
    "config with a wrong type": ([*NEW, "--config", "{tmp}/wrongtype.toml"],
                                 "model.latent_dim must be an integer, got 'three'", None),
    "--set with a wrong type": ([*NEW, "--set", "lr=fast"], "train.lr must be a number", None),
    "zero size": ([*NEW, "--epochs", "0"], "epochs must be a positive integer, got 0", None),
    "negative size": ([*NEW, "--set", "batch_size=-5"], "batch_size must be a positive", None),
    "zero latent size": ([*NEW, "--set", "latent_dim=0"], "latent_dim", None),
    "negative -k": ([*NEW, "-k", "-1"], "-k must be at least 1", None),
    "zero epochs, resuming": ([*RESUME, "--epochs", "0"], "epochs must be a positive", None),
    "fewer epochs than done, resuming": ([*RESUME, "--epochs", "1"],
                                         "epochs 1 is fewer than the 2 epochs", None),
    "a setting changed, resuming": ([*RESUME, "--set", "lr=0.1"], "keeps its settings", None),
    "a new seed, resuming": ([*RESUME, "--seed", "3"], "--seed would change them", None),
    "truncated checkpoint": ([*RESUME, "--epochs", "3"], "truncated or corrupt",
                             truncate("checkpoint.safetensors", 0.6)),
    "checkpoint cut inside its header": ([*RESUME, "--epochs", "3"], "truncated or corrupt",
                                         truncate("checkpoint.safetensors", 0.001)),
    "corrupt checkpoint": ([*RESUME, "--epochs", "3"], "truncated or corrupt",
                           garbage("checkpoint.safetensors")),
    "truncated weights": (["sample", "{run}", "-o", "{tmp}/s.png"], "truncated or corrupt",
                          truncate("model.safetensors", 0.5)),
    "checkpoint from a newer format": ([*RESUME, "--epochs", "3"], "format 99.*upgrade vaekit",
                                       newer_checkpoint),
    "run from a newer format": (["sample", "{run}", "-o", "{tmp}/s.png"],
                                "format 99.*upgrade vaekit", newer_config),
    "no run to resume": (["train", "--resume", "{tmp}"], "no checkpoint.safetensors", None),
    "a new run over an unfinished one": (["train", "--out", "{run}", "--epochs", "1"],
                                         "unfinished run; continue it with vaekit train "
                                         "--resume", unfinished),
    "output that cannot be written, training": ([*NEW[:2], "{run}/config.json/new", *NEW[3:]],
                                                "not a writable folder", None),
    "output that cannot be written, sampling": (["sample", "{run}", "-o",
                                                 "{run}/config.json/s.png"],
                                                "not a writable folder", None),
}  # fmt: skip


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    (tmp / "garbage.npy").write_bytes(rng.bytes(100))
    np.save(tmp / "empty.npy", np.zeros((0, 16), np.float32))
    (tmp / "empty.csv").write_text("z0,z1\n")
    x = (rng.random((120, 16)) < 0.3).astype(np.float32)
    x[5, 3] = np.nan
    np.save(tmp / "nan.npy", x)
    x[5, 3] = np.inf
    np.save(tmp / "inf.npy", x)
    np.save(tmp / "big.npy", 3 * rng.random((120, 16), dtype=np.float32))
    np.save(tmp / "wide.npy", (rng.random((120, 17)) < 0.3).astype(np.float32))
    np.save(tmp / "other.npy", (rng.random((120, 16)) < 0.3).astype(np.float32))
    (tmp / "unknown.toml").write_text('[model]\ncolour = "red"\n')
    (tmp / "wrongtype.toml").write_text('[model]\nlatent_dim = "three"\n')
    return tmp


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_input_catalogue(
    case: str, run: Path, bad_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.cli import main

    args, message, damage = CATALOGUE[case]
    target = copy_run(run, tmp_path, damage) if damage is not None else run
    empty = tmp_path / "empty"
    empty.mkdir()
    before = contents(target)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([a.format(run=target, tmp=bad_files if "{tmp}/" in a else empty) for a in args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("vaekit: error: "), err
    assert "Traceback" not in err
    assert re.search(message, err), (message, err)
    assert contents(target) == before  # byte for byte, nothing added, nothing removed
    assert not (bad_files / "new").exists()


# -- resources and signals while a run is resumed -----------------------------------------------


def test_full_disk_while_resuming_leaves_the_run_byte_for_byte(run: Path, tmp_path: Path) -> None:
    """Two more epochs train, then the checkpoint cannot be written: one line, exit status 2,
    and metrics.jsonl is cut back to the epochs the (untouched) checkpoint holds."""
    target = copy_run(run, tmp_path)
    before = contents(target)
    line = one_line_exit_2(
        "train", "--resume", str(target), "--epochs", "4", "-q", "-k", "2",
        preexec_fn=lambda: limit_file_size(4096),
    )  # fmt: skip
    assert "cannot write" in line and "checkpoint.safetensors" in line
    assert contents(target) == before


def test_samples_too_many_for_memory_is_one_line(run: Path, tmp_path: Path) -> None:
    data = tmp_path / "bits.npy"
    np.save(data, np.zeros((40, 16), dtype=np.float32))
    line = one_line_exit_2(
        "train", "--data", str(data), "--out", str(tmp_path / "new"), *SMALL,
        "--set", "samples=1000000000",
    )  # fmt: skip
    assert "out of memory" in line and "samples" in line


def test_ctrl_c_saves_the_state_and_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.checkpoint import read_training_info

    data = tmp_path / "bits.npy"
    np.save(data, (np.random.default_rng(0).random((120, 16)) < 0.3).astype(np.float32))
    target = tmp_path / "run"
    proc = start("train", "--data", str(data), "--out", str(target), *SMALL, "--epochs", "60",
                 "--set", "batch_size=8")  # fmt: skip
    metrics = target / "metrics.jsonl"
    while proc.poll() is None and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    info = read_training_info(target)
    assert err.splitlines() == [
        f"vaekit: interrupted at step {info['step']}; continue with: vaekit train --resume {target}"
    ]
    assert not info["finished"] and info["step"] > 0
    assert metrics.read_text().count("\n") == info["epochs_done"]
    assert not (target / "model.safetensors").exists()
    from vaekit.cli import main

    main(["info", str(target)])
    assert f"stopped in epoch {info['epochs_done'] + 1} at step {info['step']}; continue it " in (
        capsys.readouterr().out
    )
    code, out, err = vaekit("train", "--resume", str(target), "-q", "-k", "2")
    assert code == 0, err
    assert f"resume {target} at epoch {info['epochs_done'] + 1} of 60" in out
    assert metrics.read_text().count("\n") == 60
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == list(
        range(1, 61)
    )
    before = contents(target)
    main(["train", "--resume", str(target), "-q"])
    assert "already finished its 60 epochs" in capsys.readouterr().out
    assert contents(target) == before


def test_importing_vaekit_leaves_torch_until_a_name_needs_it() -> None:
    code = (
        "import sys, vaekit\n"
        "assert 'torch' not in sys.modules, 'import vaekit imported torch'\n"
        "from vaekit.models import model_config\n"  # every kind, whatever was imported before
        "assert type(model_config({'kind': 'categorical'})).__name__ == 'CategoricalConfig'\n"
        "assert type(model_config({'kind': 'hvae'})).__name__ == 'HVAEConfig'\n"
        "from vaekit import VAE, fit\n"
        "assert 'torch' in sys.modules and VAE.__module__ == 'vaekit.models.vae'\n"
        "assert set(vaekit.__all__) <= set(dir(vaekit)) and 'models' in dir(vaekit)\n"
        "assert vaekit.models.categorical.log_likelihood_exact and vaekit.runs.STATE_FILE\n"
        "import vaekit.evaluation\n"  # the package of the report beside the function
        "from vaekit import evaluate\n"
        "assert vaekit.evaluate is evaluate and type(evaluate).__name__ == 'function'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_help_on_the_package_documents_it_and_runs_no_command() -> None:
    """help(vaekit) and inspect.getmembers(vaekit) read every attribute the package lists; the
    command's own modules (``__main__``, ``_entry``) are not among them, so neither prints the
    command's usage nor exits."""
    code = (
        "import inspect, pydoc, vaekit\n"
        "text = pydoc.render_doc(vaekit, renderer=pydoc.plaintext)\n"
        "names = dict(inspect.getmembers(vaekit))\n"
        "assert 'class VAE(' in text and 'def fit(' not in text, text[:300]\n"
        "assert 'VAE' in names and '__main__' not in names and '_entry' not in names\n"
        "print('read the docs')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "read the docs\n" and "Usage: vaekit" not in proc.stdout


def test_ctrl_c_while_the_command_is_importing_is_one_line_and_exit_130() -> None:
    """A KeyboardInterrupt raised while vaekit.cli (and torch with it) is being imported, as
    Ctrl-C in the command's first second raises it."""
    code = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'vaekit.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from vaekit._entry import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 130 and proc.stderr == "vaekit: interrupted\n", proc.stderr

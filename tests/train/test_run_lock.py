"""One writer per run folder: a second `vaekit train` (new run, --overwrite, --resume) or a
``fit(out=...)`` refuses in one line naming the process that trains the folder; readers read a
consistent run or say it is training; a lock left by a killed process is taken over. Real
processes and real locks; a training process is frozen with SIGSTOP while the second one runs,
so what the test sees does not depend on the machine's speed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from vaekit import VAE, fit, load
from vaekit.errors import CheckpointError, RunBusy
from vaekit.lock import _best_effort, acquire, holder
from vaekit.runs import LOCK_FILE, PREVIOUS_FOLDER

SMALL = ["-k", "5", "--quiet", "--set", "latent_dim=2", "--set", "hidden=[8]"]
ENV = {**os.environ, "VAEKIT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def vaekit(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "vaekit", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def refused(*args: str) -> str:
    """The one line of a command that must fail with exit status 2."""
    code, out, err = vaekit(*args)
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


def wait_for(condition, proc: subprocess.Popen | None = None, seconds: float = 120.0) -> None:
    """Poll ``condition`` until it holds; fail if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + seconds
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the training ended (exit {proc.returncode}) before the condition held")
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


@contextmanager
def training(run: Path, *args: str) -> Iterator[subprocess.Popen]:
    """A `vaekit train` of ``run`` frozen (SIGSTOP) as soon as it holds the folder's lock; it
    goes on (SIGCONT) when the block ends. Yields the process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaekit", "train", *args, *SMALL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        wait_for(lambda: (holder(run) or {}).get("commits") == 2, proc)  # laid out, training
        proc.send_signal(signal.SIGSTOP)
        yield proc
    finally:
        proc.send_signal(signal.SIGCONT)
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.kill()
        proc.wait(timeout=300)


def epochs_in(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_second_train_of_a_folder_in_training_refuses_naming_the_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with training(run, "--data", "digits", "--out", str(run), "--epochs", "300") as first:
        before = snapshot(run)
        for args in (["--out", str(run)], ["--resume", str(run)]):
            line = refused("train", "--data", "digits", *args, "--epochs", "3", *SMALL[:3])
            assert line.startswith("vaekit: error: ") and f"PID {first.pid} " in line, line
            assert "is being trained" in line and "since" in line and "--epochs 300" in line
        assert snapshot(run) == before  # nothing written by the second
    out, err = first.communicate()
    assert first.returncode == 0, err
    assert "trained 300 epochs" in out
    assert epochs_in(run) == list(range(1, 301))  # the first run's epochs, once each, in order
    assert not (run / LOCK_FILE).exists() and holder(run) is None


def test_two_trains_started_together_one_runs_the_other_refuses(tmp_path: Path) -> None:
    """The issue's case, unfrozen: two `vaekit train --out RUN` at once. One trains to the end;
    the other ends with one line and exit 2 (naming the first when they overlapped); the
    metrics hold the winner's epochs once each."""
    run = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", str(run), "--epochs", "200", *SMALL]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "vaekit", *args, "--seed", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for seed in (1, 2)
    ]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, err) for p, _, err in results]
    (winner, _, _), (_, _, err) = sorted(results, key=lambda r: r[0].returncode)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"PID {winner.pid} " in lines[0] or "already holds a run" in lines[0], lines[0]
    assert epochs_in(run) == list(range(1, 201))
    seed = 1 if winner is procs[0] else 2
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == seed


def test_overwrite_while_another_run_trains_refuses(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = vaekit("train", "--data", "digits", "--out", str(run), "--epochs", "2", *SMALL)
    assert code == 0, err
    replacing = ["--data", "digits", "--out", str(run), "--overwrite", "--epochs", "300"]
    with training(run, *replacing) as first:
        assert (run / PREVIOUS_FOLDER).is_dir()  # the first run set the old one aside
        before = snapshot(run)
        line = refused("train", "--data", "digits", "--out", str(run), "--overwrite", *SMALL)
        assert f"PID {first.pid} " in line and "is being trained" in line, line
        assert snapshot(run) == before
    _, err = first.communicate()
    assert first.returncode == 0, err
    assert epochs_in(run) == list(range(1, 301))
    assert not (run / PREVIOUS_FOLDER).exists()
    assert load(run).config.latent_dim == 2


def test_evaluate_while_a_run_trains_says_it_is_training(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with training(run, "--data", "digits", "--out", str(run), "--epochs", "300") as first:
        line = refused("evaluate", str(run), "-k", "2")
        assert f"is training: PID {first.pid} " in line, line
        assert "model.safetensors is written when training ends" in line
        with pytest.raises(RunBusy, match=f"PID {first.pid} "):
            load(run)
        code, out, err = vaekit("info", str(run))
        assert code == 0, err
        assert f"training now: PID {first.pid} " in out and "--resume" not in out, out
    assert first.wait() == 0
    code, _, err = vaekit("evaluate", str(run), "-k", "2")  # the finished run reads
    assert code == 0, err


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with training(run, "--data", "digits", "--out", str(run), "--epochs", "300") as first:
        first.send_signal(signal.SIGKILL)
        first.wait()
    left = json.loads((run / LOCK_FILE).read_text())
    assert left["pid"] == first.pid  # the record stays behind; no flock does
    assert holder(run) is None
    # Even a record naming a live process (a PID used again) is not a holder without the flock.
    (run / LOCK_FILE).write_text(json.dumps({**left, "pid": os.getpid()}))
    assert holder(run) is None
    line = refused("evaluate", str(run), "-k", "2")
    assert "is training" not in line and "--resume" in line, line  # the run stopped, not busy
    code, _, err = vaekit("train", "--resume", str(run), "--epochs", "4")
    assert code == 0, err
    assert epochs_in(run) == [1, 2, 3, 4]
    assert not (run / LOCK_FILE).exists()


HOLD = "import sys; from vaekit.lock import acquire; lock = acquire(sys.argv[1]); print('held', flush=True); sys.stdin.read()"  # noqa: E501


def test_fit_into_a_folder_another_process_writes_raises(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "held\n"
        x = (torch.rand(64, 8) < 0.5).float()
        for resume in (False, True):
            with pytest.raises(RunBusy, match=f"PID {other.pid} .*wait for it to end") as err:
                fit(VAE(data_shape=(8,), latent_dim=2, hidden=(8,)), x, epochs=1, out=run,
                    resume=resume)  # fmt: skip
            assert isinstance(err.value, CheckpointError)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # nothing written
    finally:
        other.communicate("")  # the holder ends: its lock goes with it
    fit(VAE(data_shape=(8,), latent_dim=2, hidden=(8,)), x, epochs=1, out=run)
    assert load(run).config.latent_dim == 2 and not (run / LOCK_FILE).exists()


def test_a_reader_never_sees_config_and_weights_of_two_states(tmp_path: Path) -> None:
    """A writer replaces config.json and then model.safetensors (a model of another size); a
    load that starts in between waits for the commit to end and reads the new pair whole."""
    run, new = tmp_path / "run", tmp_path / "new"
    VAE(data_shape=(8,), latent_dim=2, hidden=(8,)).save(run)
    VAE(data_shape=(8,), latent_dim=5, hidden=(8,)).save(new)
    lock = acquire(run)
    loaded: list[object] = []
    try:
        with lock.commit():
            os.replace(new / "config.json", run / "config.json")  # the old weights still there
            reader = threading.Thread(target=lambda: loaded.append(_load_or_error(run)))
            reader.start()
            time.sleep(0.3)  # the reader is waiting (or not started yet): either way it must wait
            os.replace(new / "model.safetensors", run / "model.safetensors")
        reader.join(timeout=60)
    finally:
        lock.release()
    assert not isinstance(loaded[0], Exception), loaded
    assert loaded[0].config.latent_dim == 5  # type: ignore[attr-defined]


def _load_or_error(run: Path) -> object:
    try:
        return load(run)
    except CheckpointError as err:
        return err


def test_without_flock_a_live_recorded_holder_refuses_and_a_dead_one_is_taken_over(
    tmp_path: Path,
) -> None:
    """Where flock fails (ENOLCK, EOPNOTSUPP) acquire falls back to the recorded PID: a live
    process on this host refuses the writer, otherwise it proceeds with a warning."""
    waiting = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    other = subprocess.Popen(waiting, stdin=subprocess.PIPE, text=True)
    file = tmp_path / LOCK_FILE
    file.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "started": 0}))
    try:
        with pytest.raises(RunBusy, match=f"PID {other.pid} on "):
            _best_effort(tmp_path, os.open(file, os.O_RDWR))
    finally:
        other.communicate("")
    with pytest.warns(RuntimeWarning, match="no file locks"):
        taken = _best_effort(tmp_path, os.open(file, os.O_RDWR))
    assert json.loads(file.read_text())["pid"] == os.getpid()
    taken.release()
    assert not file.exists()

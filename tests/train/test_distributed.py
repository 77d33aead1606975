"""A run over several processes is the run of one process: `vaekit train` under torchrun and
`vaekit.fit` inside a process group that the caller set up, on CPU with gloo, 2 processes.

Every process draws each step's random numbers for the whole global batch and keeps its rows,
and the gradients are summed over the processes: the runs differ only in the order of
floating-point sums (one process's loss is the mean of B bounds; two processes' is the sum of two
partial sums, each divided by B). In float32 that is a relative difference of ~1e-7 in a
gradient, which Adam turns into a difference of about lr * 1e-7 per step in a weight; over the
tens to hundreds of steps here the weights measure within 3e-7 of each other. The tests allow
1e-5 (max abs over all weights, of size ~0.1 to 1): thirty times the measured difference, and a
hundred times smaller than one step's change (lr = 1e-3), so a wrong batch share, a noise drawn
per process or a gradient averaged twice fails them.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaekit
from vaekit.checkpoint import read_training_info
from vaekit.dist import Group, shard
from vaekit.errors import CheckpointError
from vaekit.train import FastRun, TrainConfig
from vaekit.train.step import bernoulli_16bit, bernoulli_16bit_rows

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch without gloo",
)

WORKER = Path(__file__).with_name("ddp_worker.py")
#: max abs difference of weights between the 1- and 2-process runs (see the module docstring)
WEIGHTS_TOL = 1e-5
#: Settings of the CLI runs: digits (1257 train examples), a ragged last batch of 57 (29 + 28)
TRAIN = ["--data", "digits", "--epochs", "3", "-q", "--set", "latent_dim=4", "--set", "hidden=[64]"]


def env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "VAEKIT_DIST_TIMEOUT": "60",
        "PYTHONUNBUFFERED": "1",
    }


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    """The torchrun command line that runs ``python -m vaekit ARGS`` in ``nproc`` processes."""
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", "--nproc_per_node", str(nproc), "-m", "vaekit", *args]


def vaekit_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaekit", *args]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def same_metrics(a: list[dict], b: list[dict]) -> None:
    """Same epochs, steps and examples; bounds equal to 4 decimals (nats)."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        for key in ("epoch", "step", "examples_seen", "skipped_steps"):
            assert ra[key] == rb[key], key
        for key in ("train_bound", "valid_elbo"):
            assert ra[key] == pytest.approx(rb[key], abs=1e-4), key


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same run trained by one process and by two under torchrun."""
    root = tmp_path_factory.mktemp("ddp")
    one = run(vaekit_cli("train", *TRAIN, "--out", str(root / "one")))
    two = run(torchrun("train", *TRAIN, "--out", str(root / "two")))
    return {"root": root, "one": one, "two": two}


# -- pieces ---------------------------------------------------------------------------------------


def test_shards_cover_the_rows_in_order() -> None:
    for n in (0, 1, 5, 57, 100):
        for world in (1, 2, 3, 4):
            parts = [shard(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1
    assert Group(rank=1, world_size=2).shard(57) == (29, 57)


def test_a_share_of_a_batch_binarises_its_rows_as_the_whole_batch_does() -> None:
    p = torch.rand(7, 5)
    whole = bernoulli_16bit(p, torch.Generator().manual_seed(4))
    for lo, hi in ((0, 4), (4, 7), (3, 3), (2, 5)):
        g = torch.Generator().manual_seed(4)
        part = bernoulli_16bit_rows(p[lo:hi], 7, lo, g)
        assert torch.equal(part, whole[lo:hi])
        # the generator moved on as for the whole batch
        after = torch.Generator().manual_seed(4)
        bernoulli_16bit(p, after)
        assert torch.equal(g.get_state(), after.get_state())


# -- the command line under torchrun ---------------------------------------------------------------


def test_two_processes_under_torchrun_train_the_one_process_run(cli_runs: dict) -> None:
    root: Path = cli_runs["root"]
    one, two = root / "one", root / "two"
    diff = max_weight_diff(one / "model.safetensors", two / "model.safetensors")
    assert diff <= WEIGHTS_TOL
    same_metrics(metrics(one), metrics(two))
    out = cli_runs["two"].stdout
    assert "dist   world_size=2 backend=gloo" in out
    assert "dist" not in cli_runs["one"].stdout.split()
    # rank 0 alone prints and writes: one report, one record per epoch, the usual files
    assert out.count("trained 3 epochs") == 1
    assert len(metrics(two)) == 3
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert json.loads((two / "config.json").read_text()) == json.loads(
        (one / "config.json").read_text()
    )


def test_sharded_evaluate_equals_one_process(cli_runs: dict) -> None:
    root: Path = cli_runs["root"]
    a, b = root / "eval-one.json", root / "eval-two.json"
    args = ("evaluate", str(root / "one"), "-k", "40", "-q")
    run(vaekit_cli(*args, "--output", str(a)))
    done = run(torchrun(*args, "--output", str(b)))
    assert done.stdout.count("log p(x)") == 1  # rank 0 alone prints
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["n"] == rb["n"] == 270
    for key in ("elbo", "log_likelihood", "bits_per_dim", "kl", "reconstruction_mse"):
        assert rb[key] == pytest.approx(ra[key], rel=1e-6, abs=1e-6), key


def test_a_killed_rank_stops_the_other_and_the_run_resumes_in_one_process(tmp_path: Path) -> None:
    args = [*TRAIN, "--epochs", "60", "--set", "checkpoint_every=10"]
    out = tmp_path / "run"
    proc = subprocess.Popen(
        torchrun("train", *args, "--out", str(out)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # a checkpoint some steps into the run
            try:
                if read_training_info(out).get("step", 0) >= 20:
                    break
            except CheckpointError:
                pass
            time.sleep(0.05)
        rank1 = [p for p in children(proc.pid) if environ(p).get("RANK") == "1"]
        assert len(rank1) == 1
        os.kill(rank1[0], signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=90)
        assert time.monotonic() - killed < 90
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "another process of the run died or stopped answering" in stderr
    assert f"continue it with vaekit train --resume {out}" in stderr
    info = read_training_info(out)
    assert 20 <= info["step"] < 60 * 13 and not info["finished"]

    run(vaekit_cli("train", "--resume", str(out), "-q"))  # one process, no torchrun
    whole = tmp_path / "whole"
    run(vaekit_cli("train", *args, "--out", str(whole)))
    assert max_weight_diff(whole / "model.safetensors", out / "model.safetensors") <= WEIGHTS_TOL
    same_metrics(metrics(whole), metrics(out))


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


# -- vaekit.fit inside a process group the caller set up -------------------------------------------


def workers(mode: str, tmp_path: Path, world: int = 2) -> list[subprocess.CompletedProcess[str]]:
    """``ddp_worker.py MODE`` as ranks 0..world-1 of one gloo group (file:// rendezvous)."""
    init = tmp_path / f"rendezvous-{mode}"
    out = tmp_path / mode
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), mode, str(r), str(world), str(init), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for r in range(world)
    ]
    done = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


def load_worker() -> object:
    sys.path.insert(0, str(WORKER.parent))
    try:
        import ddp_worker
    finally:
        sys.path.remove(str(WORKER.parent))
    return ddp_worker


def test_fit_in_a_process_group_trains_the_one_process_run(tmp_path: Path) -> None:
    worker = load_worker()
    for p in workers("fit", tmp_path):
        assert p.returncode == 0, p.stderr[-3000:]
    model, x, valid = worker.setup()
    vaekit.fit(model, x, valid=valid, out=tmp_path / "one", **worker.SETTINGS)
    one, two = tmp_path / "one", tmp_path / "fit"
    assert max_weight_diff(one / "model.safetensors", two / "model.safetensors") <= WEIGHTS_TOL
    same_metrics(metrics(one), metrics(two))


def test_a_run_stopped_in_one_process_resumes_in_two(tmp_path: Path) -> None:
    worker = load_worker()
    model, x, valid = worker.setup()
    calls = iter(range(10**6))  # stop before the 16th step: mid-epoch (26 steps an epoch)
    with pytest.raises(vaekit.TrainingInterrupted):
        vaekit.fit(
            model,
            x,
            valid=valid,
            out=tmp_path / "resume",
            stop=lambda: next(calls) >= 15,
            **worker.SETTINGS,
        )
    assert read_training_info(tmp_path / "resume")["mid_epoch"]
    for p in workers("resume", tmp_path):
        assert p.returncode == 0, p.stderr[-3000:]
    model, x, valid = worker.setup()
    vaekit.fit(model, x, valid=valid, out=tmp_path / "one", **worker.SETTINGS)
    one, two = tmp_path / "one", tmp_path / "resume"
    assert max_weight_diff(one / "model.safetensors", two / "model.safetensors") <= WEIGHTS_TOL
    same_metrics(metrics(one), metrics(two))


def test_the_fast_loop_under_a_process_group_is_the_one_process_loop(tmp_path: Path) -> None:
    worker = load_worker()
    for p in workers("fast", tmp_path):
        assert p.returncode == 0, p.stderr[-3000:]
    model, x, _ = worker.setup()
    cfg = TrainConfig(**{**worker.SETTINGS, "fast": "graph", "steps_per_launch": 4})
    records = list(FastRun(model, x, cfg, "graph").epochs(False))
    (tmp_path / "one").mkdir()
    vaekit.save(model, tmp_path / "one")
    assert (
        max_weight_diff(
            tmp_path / "one" / "model.safetensors", tmp_path / "fast" / "fast.safetensors"
        )
        <= WEIGHTS_TOL
    )
    theirs = json.loads((tmp_path / "fast" / "fast.json").read_text())
    for a, b in zip(records, theirs, strict=True):
        assert (a["step"], a["examples_seen"]) == (b["step"], b["examples_seen"])
        assert a["train_bound"] == pytest.approx(b["train_bound"], abs=1e-4)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("mismatch", "the settings differ between the processes of the run"),
        ("tiny", "2 processes for 1 training examples"),
    ],
)
def test_bad_input_across_processes_is_one_line_on_every_rank(
    tmp_path: Path, mode: str, message: str
) -> None:
    for p in workers(mode, tmp_path):
        assert p.returncode == 2, p.stderr[-3000:]
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], p.stderr
    assert not (tmp_path / mode).exists()  # no run folder written


def test_a_rank_that_stops_answering_ends_the_others_after_the_group_timeout(
    tmp_path: Path,
) -> None:
    start = time.monotonic()
    rank0, rank1 = workers("hang", tmp_path)
    assert rank1.returncode == 0
    assert rank0.returncode == 2, rank0.stderr[-3000:]
    lines = rank0.stderr.strip().splitlines()
    assert len(lines) == 1 and "another process of the run died or stopped answering" in lines[0]
    assert time.monotonic() - start < 120  # a timeout of 5 s, not a hang
    assert not (tmp_path / "hang").exists()

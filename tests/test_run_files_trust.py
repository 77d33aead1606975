"""Nothing read from a run folder is trusted: every damaged tensor or JSON value of config.json,
model.safetensors, checkpoint.safetensors and metrics.jsonl gives one line naming the file,
exit status 2, and the folder byte-identical; files that are not regular files are refused
without blocking; weights of another floating dtype load where no value changes.

A real digits run is trained once for the module; each case damages a copy of it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from vaekit.checkpoint import load_training_state, save_training_state
from vaekit.cli import main

TINY = ["--epochs", "2", "--set", "hidden=[16]", "--set", "latent_dim=3", "-k", "5", "-q"]
RESUME = ["train", "--resume", "{run}", "--epochs", "3", "-q"]
ENV = {**os.environ, "VAEKIT_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny digits run: 2 epochs, 16 hidden units, 3 latent dims."""
    folder = tmp_path_factory.mktemp("trust") / "run"
    main(["train", "--data", "digits", "--out", str(folder), *TINY])
    return folder


def copy_run(trained: Path, where: Path) -> Path:
    run = where / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(trained, run, symlinks=True)
    return run


def invoke(*args: str) -> tuple[int, str, str]:
    """``vaekit args`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def subprocess_vaekit(*args: str, timeout: float = 120, memory: int | None = None) -> Any:
    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "vaekit", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        preexec_fn=limit,
    )


def refused(code: int, err: str) -> str:
    """The one error line of a refusal (exit 2, one line, no traceback)."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), err
    return lines[0]


# -- damaging a run's files ----------------------------------------------------------------------


def edit_state(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Load checkpoint.safetensors, ``change`` its state in place, write it back."""
    state = load_training_state(run)
    change(state)
    save_training_state(run, state)


def edit_header(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """``change`` the JSON header (with its ``__metadata__``) of checkpoint.safetensors."""
    file = run / "checkpoint.safetensors"
    blob = file.read_bytes()
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    change(header)
    head = json.dumps(header).encode()
    file.write_bytes(len(head).to_bytes(8, "little") + head + blob[8 + size :])


def nested(depth: int) -> str:
    """JSON text of lists nested ``depth`` deep."""
    return "[" * depth + "]" * depth


def examples(run: Path) -> int:
    """The training examples of the run (an epoch's examples)."""
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["examples_seen"]


def mid_epoch(state: dict[str, Any], order: torch.Tensor) -> None:
    """Make the state one stopped after the first step of an epoch with data order ``order``."""
    loop = state["loop"]
    loop["pos"], loop["order"] = 1, order
    loop["bound_sum"], loop["seen"] = torch.zeros((), dtype=torch.float64), 100


def deep_metrics(run: Path) -> None:
    line = '{"examples_seen": 1, "train_bound": 0, "x": ' + nested(5000) + "}\n"
    (run / "metrics.jsonl").write_text(line)


def string_bound(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    record["train_bound"] = "-12.5"
    (run / "metrics.jsonl").write_text("\n".join([*lines[:-1], json.dumps(record)]) + "\n")


def optimizer_entry(key: str, value: torch.Tensor) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state["loop"]["optimizer"]["state"][0][key] = value

    return change


def rng_cut(state: dict[str, Any]) -> None:
    state["loop"]["generator"] = state["loop"]["generator"][:100]


# (name, damage of the run folder, command, a word the error line must hold)
KNOWN: list[tuple[str, Callable[[Path], None], list[str], str]] = [
    (
        "step counter of the wrong shape",
        lambda r: edit_state(r, optimizer_entry("step", torch.zeros(3))),
        RESUME,
        "step",
    ),
    ("rng state of the wrong size", lambda r: edit_state(r, rng_cut), RESUME, "generator"),
    (
        "data order out of range",
        lambda r: edit_state(
            r, lambda s: mid_epoch(s, torch.arange(examples(r), dtype=torch.int64) + 5)
        ),
        RESUME,
        "order",
    ),
    (
        "data order of float dtype",
        lambda r: edit_state(
            r, lambda s: mid_epoch(s, torch.randperm(examples(r)).to(torch.float32))
        ),
        RESUME,
        "order",
    ),
    (
        "deeply nested checkpoint metadata",
        lambda r: edit_header(r, lambda h: h["__metadata__"].update(state=nested(5000))),
        RESUME,
        "nested",
    ),
    (
        "deeply nested run record",
        lambda r: edit_header(r, lambda h: h["__metadata__"].update(run=nested(5000))),
        RESUME,
        "nested",
    ),
    ("deeply nested metrics.jsonl", deep_metrics, ["curves", "{run}"], "metrics.jsonl"),
    ("a string train bound, curves", string_bound, ["curves", "{run}"], "train_bound"),
    (
        "int weights",
        lambda r: save_file(
            {k: v.to(torch.int32) for k, v in load_file(r / "model.safetensors").items()},
            r / "model.safetensors",
        ),
        ["sample", "{run}", "-n", "4", "-o", "{tmp}/s.png"],
        "int32",
    ),
    (
        "float64 weights float32 cannot hold, beside float32 ones",
        lambda r: save_file(
            {
                k: (v.double() + 1e-12 if i == 0 else v)
                for i, (k, v) in enumerate(load_file(r / "model.safetensors").items())
            },
            r / "model.safetensors",
        ),
        ["evaluate", "{run}", "-k", "2", "-q", "-o", "{tmp}/e.json"],
        "float64",
    ),
]


@pytest.mark.parametrize("case", KNOWN, ids=[c[0] for c in KNOWN])
def test_a_damaged_file_is_one_line_and_the_folder_unchanged(
    trained: Path, tmp_path: Path, case: tuple[str, Callable[[Path], None], list[str], str]
) -> None:
    _, damage, command, word = case
    run = copy_run(trained, tmp_path)
    damage(run)
    before = digest(run)
    args = [a.format(run=run, tmp=tmp_path) for a in command]
    line = refused(*invoke(*args)[::2])
    assert word in line and str(run) in line, line
    assert digest(run) == before
    assert not (run / "figures").exists() or "figures" in str(before)


def test_a_string_train_bound_does_not_crash_info(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path)
    string_bound(run)
    code, out, err = invoke("info", str(run))
    assert code == 0 and "Traceback" not in err, err
    assert "train bound" not in out  # the damaged metrics are left out, not printed


@pytest.mark.parametrize("damage", ["deep", "huge", "not a dict"])
def test_a_damaged_eval_json_is_reported_not_raised(
    trained: Path, tmp_path: Path, damage: str
) -> None:
    """info (and the server's run list, which reads it the same way) says eval.json is
    unreadable: deep nesting was a RecursionError, a huge file was read whole."""
    from vaekit.errors import DataError
    from vaekit.reading import read_json

    run = copy_run(trained, tmp_path)
    report = run / "eval.json"
    if damage == "deep":
        report.write_text(nested(100_000))
    elif damage == "huge":
        with report.open("wb") as f:
            f.truncate(2**40)  # a sparse terabyte: read whole, it would exhaust the memory
    else:
        report.write_text("[1, 2]")
    code, out, err = invoke("info", str(run))
    assert code == 0 and "Traceback" not in err, err
    assert "eval   eval.json is unreadable" in out
    if damage != "not a dict":
        with pytest.raises(DataError, match=r"eval\.json"):
            read_json(report, DataError, "evaluation report")


def test_adam_moments_of_the_wrong_shape_are_refused_before_any_write(
    trained: Path, tmp_path: Path
) -> None:
    """A subprocess: today's main dies of SIGSEGV here, after rewriting the run's files."""
    run = copy_run(trained, tmp_path)
    edit_state(run, optimizer_entry("exp_avg", torch.zeros(3)))
    before = digest(run)
    proc = subprocess_vaekit("train", "--resume", str(run), "--epochs", "3", "-q")
    line = refused(proc.returncode, proc.stderr)
    assert "optimizer.state[0].exp_avg" in line and "shape" in line, line
    assert digest(run) == before


def test_a_fifo_config_is_refused_without_blocking(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path)
    (run / "config.json").unlink()
    os.mkfifo(run / "config.json")
    for command in (["info", str(run)], ["sample", str(run), "-o", str(tmp_path / "s.png")]):
        proc = subprocess_vaekit(*command, timeout=120)  # a regression fails, never hangs
        line = refused(proc.returncode, proc.stderr)
        assert "config.json" in line and "not a regular file" in line, line


def test_a_config_linked_to_dev_zero_is_named(trained: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path)
    (run / "config.json").unlink()
    (run / "config.json").symlink_to("/dev/zero")
    proc = subprocess_vaekit("info", str(run), memory=8 * 2**30)  # main reads until out of memory
    line = refused(proc.returncode, proc.stderr)
    assert "config.json" in line and "not a regular file" in line, line


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float8_e4m3fn])
def test_narrow_float_weights_load_as_float32_with_the_same_samples(
    trained: Path, tmp_path: Path, dtype: torch.dtype
) -> None:
    import vaekit

    wide, narrow = copy_run(trained, tmp_path / "a"), copy_run(trained, tmp_path / "b")
    weights = load_file(trained / "model.safetensors")
    save_file({k: v.to(dtype).float() for k, v in weights.items()}, wide / "model.safetensors")
    save_file({k: v.to(dtype) for k, v in weights.items()}, narrow / "model.safetensors")
    a, b = vaekit.load(wide), vaekit.load(narrow)
    assert all(v.dtype == torch.float32 for v in b.state_dict().values())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.decode(z).mean, b.decode(z).mean)
    for run in (wide, narrow):
        code, _, err = invoke("sample", str(run), "-n", "9", "-o", str(run.parent / "s.png"))
        assert code == 0, err
    assert (wide.parent / "s.png").read_bytes() == (narrow.parent / "s.png").read_bytes()


# -- searching: random damage to a real run --------------------------------------------------------

FILES = ("checkpoint.safetensors", "model.safetensors", "config.json", "metrics.jsonl")
DTYPES = (torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64, torch.uint8)
VALUES = (float("nan"), float("inf"), -1.0, 1e30, 2.0**40, 0.0)
#: JSON values put in place of a field: wrong types, out of range, deep nesting.
JSON_VALUES = st.one_of(
    st.sampled_from([None, True, -1, 0, 2**70, 1e308, -0.5, "x", "", [], {}, [1, 2], {"a": 1}]),
    st.integers(min_value=10, max_value=3000).map(lambda d: {"__deep__": d}),
)


def _materialise(value: Any) -> str:
    """JSON text of a drawn value (a deep nesting marker becomes nested lists)."""
    if isinstance(value, dict) and "__deep__" in value:
        return nested(value["__deep__"])
    return json.dumps(value)


def replace_in_json(text: str, pick: int, value: Any, delete: bool) -> str:
    """``text`` with the ``pick``-th node (mod the number of nodes, in document order) replaced
    by ``value`` or deleted."""
    tree = json.loads(text)
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if len(paths) > 5000:
            return
        if path:
            paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(tree, ())
    if not paths:
        return _materialise(value)
    path = paths[pick % len(paths)]
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    marker = "\u0000MARK\u0000"
    if delete:
        del parent[path[-1]]
        return json.dumps(tree)
    parent[path[-1]] = marker
    return json.dumps(tree).replace(json.dumps(marker), _materialise(value))


def mutate_tensors(file: Path, pick: int, op: str, arg: int) -> None:
    """Change one tensor of a safetensors file (keeping its metadata)."""
    from safetensors import safe_open

    with safe_open(str(file), "pt") as f:
        meta = f.metadata()
    tensors = load_file(file)
    name = sorted(tensors)[pick % len(tensors)]
    t = tensors[name]
    if op == "shape":
        n = max(t.numel() + (arg % 7) - 3, 0)
        tensors[name] = torch.zeros(n).to(t.dtype) if n != t.numel() else t.reshape(-1, 1)
    elif op == "dtype":
        tensors[name] = t.to(DTYPES[arg % len(DTYPES)])
    elif op == "value" and t.numel():
        t = t.clone()
        flat = t.view(-1)
        v = VALUES[arg % len(VALUES)]
        flat[arg % flat.numel()] = v if t.is_floating_point() else int(min(abs(v), 2**30) or 7)
        tensors[name] = t
    elif op == "drop":
        del tensors[name]
    save_file(tensors, file, metadata=meta)


def mutate_header(file: Path, key: str, pick: int, value: Any, delete: bool) -> None:
    """Change one field of the JSON held in a checkpoint's metadata entry ``key``."""

    def change(header: dict[str, Any]) -> None:
        meta = header["__metadata__"]
        meta[key] = replace_in_json(meta[key], pick, value, delete)

    edit_header(file.parent, change)


#: The commands that read each file (a damage is tried on one of them).
READERS = {
    "checkpoint.safetensors": ("resume", "resume", "info"),
    "model.safetensors": ("sample", "evaluate"),
    "config.json": ("resume", "evaluate", "sample", "info"),
    "metrics.jsonl": ("info", "curves", "resume"),
}


@st.composite
def damages(draw: Any) -> tuple[tuple[Any, ...], str]:
    """One random damage to a run folder (applied by :func:`apply`) and a command to try."""
    kind = draw(st.sampled_from(["tensor", "header", "truncate", "config", "metrics"]))
    pick = draw(st.integers(0, 10**6))
    if kind == "tensor":
        file = draw(st.sampled_from(["checkpoint.safetensors", "model.safetensors"]))
        op = draw(st.sampled_from(["shape", "dtype", "value", "drop"]))
        damage: tuple[Any, ...] = (kind, file, op, pick, draw(st.integers(0, 10**6)))
    elif kind == "truncate":
        file = draw(st.sampled_from(FILES))
        damage = (kind, file, draw(st.floats(0, 1)))
    else:
        value, delete = draw(JSON_VALUES), draw(st.booleans())
        if kind == "header":
            file = "checkpoint.safetensors"
            damage = (kind, draw(st.sampled_from(["state", "run"])), pick, value, delete)
        else:
            file = "config.json" if kind == "config" else "metrics.jsonl"
            damage = (kind, pick, value, delete)
    return damage, draw(st.sampled_from(READERS[file]))


def apply(run: Path, damage: tuple[Any, ...]) -> None:
    kind = damage[0]
    if kind == "tensor":
        mutate_tensors(run / damage[1], damage[3], damage[2], damage[4])
    elif kind == "truncate":
        file = run / damage[1]
        data = file.read_bytes()
        file.write_bytes(data[: int(len(data) * damage[2])])
    elif kind == "header":
        mutate_header(run / "checkpoint.safetensors", damage[1], damage[2], damage[3], damage[4])
    elif kind == "config":
        text = (run / "config.json").read_text()
        (run / "config.json").write_text(replace_in_json(text, *damage[1:]))
    else:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        i = damage[1] % len(lines)
        lines[i] = replace_in_json(lines[i], damage[1] // len(lines), damage[2], damage[3])
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


COMMANDS = {
    "resume": RESUME,
    "evaluate": ["evaluate", "{run}", "-k", "2", "-q", "-o", "{tmp}/e.json"],
    "sample": ["sample", "{run}", "-n", "4", "-o", "{tmp}/s.png"],
    "info": ["info", "{run}"],
    "curves": ["curves", "{run}"],
}


def test_random_damage_is_refused_in_one_line_or_harmless(trained: Path) -> None:
    """Hypothesis damages a copy of a real run (tensor shapes, dtypes and values, truncation,
    JSON fields of the checkpoint's header, config.json and metrics.jsonl replaced by values of
    the wrong type, out of range or nested thousands deep) and runs a command on it: it either
    works, or exits 2 with one line and leaves the folder byte-identical."""
    import tempfile

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(case=damages())
    def check(case: tuple[tuple[Any, ...], str]) -> None:
        damage, command = case
        with tempfile.TemporaryDirectory() as tmp:
            run = copy_run(trained, Path(tmp))
            apply(run, damage)
            before = digest(run)
            args = [a.format(run=run, tmp=tmp) for a in COMMANDS[command]]
            code, _, err = invoke(*args)
            assert "Traceback" not in err, (damage, command, err)
            if code != 0:
                refused(code, err)
                assert digest(run) == before, (damage, command, err)

    check()

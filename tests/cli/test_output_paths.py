"""Where every command that writes puts its output (cli/output.py's rule): never onto a run's own
file however the path is spelled ('..', links); a default output stays inside its run folder; an
existing --output is replaced only with --force; a default output is named for what it shows
(another data set, split, class or input), so one picture never silently replaces another."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import digest, run_cli

from vaekit.runs import LOCK_FILE, PREVIOUS_FOLDER

SMALL = ["--epochs", "1", "-k", "2", "-q", "--set", "hidden=[8]", "--set", "latent_dim=2"]

#: Every command that writes: its arguments ({run}: the run folder, {z}: a latents file outside
#: it), the suffix of its output ("" for a folder), its default output inside the run folder, and
#: the run it needs ("digits", or "shapes": a data set with factors).
COMMANDS = {
    "sample": (["sample", "{run}", "-n", "4"], ".png", "figures/samples.png", "digits"),
    "reconstruct": (
        ["reconstruct", "{run}", "-n", "2"],
        ".png",
        "figures/reconstructions.png",
        "digits",
    ),
    "interpolate": (
        ["interpolate", "{run}", "--steps", "2"],
        ".png",
        "figures/interpolation.png",
        "digits",
    ),
    "manifold": (["manifold", "{run}", "-n", "2"], ".png", "figures/manifold.png", "digits"),
    "latents": (["latents", "{run}", "-n", "20"], ".png", "figures/latents.png", "digits"),
    "traverse": (["traverse", "{run}", "--steps", "2"], ".png", "figures/traverse.png", "digits"),
    "curves": (["curves", "{run}"], ".png", "figures/curves.png", "digits"),
    "evaluate": (["evaluate", "{run}", "-k", "2", "-q"], ".json", "eval.json", "digits"),
    "encode": (["encode", "{run}", "-n", "3", "-q"], ".npy", "latents.npy", "digits"),
    "decode": (["decode", "{run}", "{z}"], ".npy", "decoded-z.npy", "digits"),
    "decode --png": (
        ["decode", "{run}", "{z}", "--png"],
        ".npy",
        "figures/decoded-z.png",
        "digits",
    ),
    "score": (["score", "{run}", "-k", "2", "-q"], ".csv", "scores.csv", "digits"),
    "export": (["export", "{run}"], "", "onnx", "digits"),
    "disentanglement": (
        ["evaluate", "{run}", "--disentanglement", "--votes", "6"],
        ".json",
        "disentanglement.json",
        "shapes",
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small trained run of each kind the commands need, shared by the module (each test
    works on copies)."""
    from vaekit.cli import main

    top = tmp_path_factory.mktemp("outputs")
    main(["train", "--data", "digits", "--out", str(top / "digits"), *SMALL])
    main(["train", "--data", "shapes", "--examples", "60", "--out", str(top / "shapes"), *SMALL,
          "--set", "network=mlp"])  # fmt: skip
    main(["train", "--data", "digits", "--out", str(top / "cvae"), *SMALL,
          "--set", "condition_dim=10"])  # fmt: skip
    return {"digits": top / "digits", "shapes": top / "shapes", "cvae": top / "cvae"}


def _copy(runs: dict[str, Path], kind: str, to: Path) -> Path:
    shutil.copytree(runs[kind], to)
    return to


def _args(name: str, run: Path, z: Path, *more: object) -> list[object]:
    """Command ``name``'s arguments for ``run``, with latents ``z`` (written if missing), then
    ``more``."""
    if not z.exists():
        np.save(z, np.zeros((3, 2), np.float32))
    args, *_ = COMMANDS[name]
    return [run if a == "{run}" else z if a == "{z}" else a for a in args] + list(more)


def _refused(code: int, err: str) -> None:
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaekit: error: ") and "Traceback" not in err


def _other_run(runs: dict[str, Path], tmp_path: Path) -> Path:
    """Another run folder, as one looks while it trains: its lock file held, the run it replaces
    set aside in .vaekit-previous."""
    other = _copy(runs, "digits", tmp_path / "other")
    (other / LOCK_FILE).write_text('{"pid": 1, "host": "elsewhere"}\n')
    keep = other / PREVIOUS_FOLDER
    keep.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(other / name, keep / name)
    return other


#: Ways of spelling an output that lands on another run's own file: the path as '..' spells it,
#: or a link at the output's path, or a link to a folder on the way.
ONTO = ["dots", "config.json", "model.safetensors", LOCK_FILE, f"{PREVIOUS_FOLDER}/config.json",
        "linked-folder"]  # fmt: skip


@pytest.mark.parametrize("onto", ONTO)
@pytest.mark.parametrize("name", COMMANDS)
def test_an_output_onto_another_runs_own_file_is_refused(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, onto: str
) -> None:
    _, suffix, _, kind = COMMANDS[name]
    run, other = _copy(runs, kind, tmp_path / "run"), _other_run(runs, tmp_path)
    if onto == "dots":  # RUN/../other/config.json (a folder: RUN/../other)
        output = run / ".." / "other" / ("config.json" if suffix else "")
    elif onto == "linked-folder":  # a folder linked into the other run's set-aside run
        (tmp_path / "elsewhere").symlink_to(other / PREVIOUS_FOLDER, target_is_directory=True)
        output = tmp_path / "elsewhere" / f"out{suffix}"
    else:
        output = tmp_path / f"out{suffix}"
        output.symlink_to(other / onto)
    before, kept = digest(run), digest(other)
    code, _, err = run_cli(capsys, *_args(name, run, tmp_path / "z.npy"), "--output", output,
                           "--force")  # fmt: skip
    _refused(code, err)
    assert digest(other) == kept and digest(run) == before
    assert onto in ("dots", "linked-folder") or output.is_symlink()


def _leave(run: Path, default: str, outside: Path) -> Path:
    """Make the first part of ``default`` inside ``run`` (figures/, or the file or folder itself)
    a link to ``outside`` (a folder, or a file in it); returns the link."""
    first = default.split("/")[0]
    outside.mkdir()
    (outside / "keep.txt").write_text("someone else's file")
    link = run / first
    if link.is_dir():
        shutil.rmtree(link)
    link.unlink(missing_ok=True)
    if "/" in default or not Path(default).suffix:  # figures/NAME.png or a folder (onnx)
        link.symlink_to(outside, target_is_directory=True)
    else:  # RUN/eval.json -> outside/eval.json
        (outside / first).write_text("someone else's file of that name")
        link.symlink_to(outside / first)
    return link


@pytest.mark.parametrize("name", COMMANDS)
def test_a_default_output_never_follows_a_link_out_of_the_run(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    _, _, default, kind = COMMANDS[name]
    run = _copy(runs, kind, tmp_path / "run")
    outside = tmp_path / "outside"
    link = _leave(run, default, outside)
    before, kept = digest(run), digest(outside)
    code, _, err = run_cli(capsys, *_args(name, run, tmp_path / "z.npy"))
    _refused(code, err)
    assert f"{str(link)!r} is a symbolic link" in err and "outside the run folder" in err
    assert digest(outside) == kept and digest(run) == before


@pytest.mark.parametrize("name", COMMANDS)
def test_an_existing_output_is_replaced_only_with_force(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    _, suffix, _, kind = COMMANDS[name]
    run = _copy(runs, kind, tmp_path / "run")
    _args(name, run, tmp_path / "z.npy")  # the latents decode reads, written before the digest
    output = tmp_path / f"out{suffix}"
    if suffix:
        output.write_bytes(b"the user's own file")
    else:  # export's folder: an earlier export there
        assert run_cli(capsys, *_args(name, run, tmp_path / "z.npy"), "-o", output)[0] == 0
    kept = digest(tmp_path)
    code, _, err = run_cli(capsys, *_args(name, run, tmp_path / "z.npy"), "--output", output)
    _refused(code, err)
    assert f"{str(output)!r}" in err and "give --force to replace it, or --output NAME" in err
    assert digest(tmp_path) == kept
    code, out, err = run_cli(capsys, *_args(name, run, tmp_path / "z.npy"), "-o", output, "--force")
    assert code == 0, err
    assert f"wrote {output}" in out
    assert not suffix or output.read_bytes() != b"the user's own file"


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c[2] != "onnx"])
def test_a_link_at_the_output_is_replaced_never_written_through(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    _, suffix, _, kind = COMMANDS[name]
    run = _copy(runs, kind, tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "theirs").write_bytes(b"someone else's file")
    output = tmp_path / f"out{suffix}"
    output.symlink_to(outside / "theirs")
    code, _, err = run_cli(capsys, *_args(name, run, tmp_path / "z.npy"), "-o", output)
    _refused(code, err)  # it exists (as a link): --force replaces it
    code, _, err = run_cli(capsys, *_args(name, run, tmp_path / "z.npy"), "-o", output, "--force")
    assert code == 0, err
    assert (outside / "theirs").read_bytes() == b"someone else's file"
    assert output.is_file() and not output.is_symlink()


@pytest.mark.parametrize("name", COMMANDS)
def test_the_same_default_command_again_regenerates_its_output(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A default output is derived from the run: running the command again needs no --force."""
    _, _, default, kind = COMMANDS[name]
    run = _copy(runs, kind, tmp_path / "run")
    for _ in range(2):
        code, out, err = run_cli(capsys, *_args(name, run, tmp_path / "z.npy"))
        assert code == 0, err
        assert f"wrote {run / default}" in out


# -- default names say what the output shows ---------------------------------------------------

#: (run, the default command, the command with another input, what each writes).
DISTINCT = [
    ("cvae", ["sample", "-n", "4"], ["sample", "-n", "4", "--label", "3"],
     "figures/samples.png", "figures/samples-label3.png"),
    ("cvae", ["manifold", "-n", "2", "--label", "0"], ["manifold", "-n", "2", "--label", "3"],
     "figures/manifold-label0.png", "figures/manifold-label3.png"),
    ("digits", ["reconstruct", "-n", "2"], ["reconstruct", "-n", "2", "--data", "{other}"],
     "figures/reconstructions.png", "figures/reconstructions-other.png"),
    ("digits", ["reconstruct", "-n", "2"], ["reconstruct", "-n", "2", "--split", "train"],
     "figures/reconstructions.png", "figures/reconstructions-train.png"),
    ("digits", ["interpolate"], ["interpolate", "--data", "{other}", "--split", "valid"],
     "figures/interpolation.png", "figures/interpolation-other-valid.png"),
    ("digits", ["latents"], ["latents", "--split", "train"],
     "figures/latents.png", "figures/latents-train.png"),
    ("digits", ["traverse", "--steps", "2"], ["traverse", "--steps", "2", "--data", "{other}"],
     "figures/traverse.png", "figures/traverse-other.png"),
    ("digits", ["evaluate", "-k", "2", "-q"], ["evaluate", "-k", "2", "-q", "--split", "valid"],
     "eval.json", "eval-valid.json"),
    ("digits", ["evaluate", "-k", "2", "-q"], ["evaluate", "-k", "2", "-q", "--data", "{other}"],
     "eval.json", "eval-other.json"),
    ("digits", ["encode", "-q"], ["encode", "-q", "--input", "{other}"],
     "latents.npy", "latents-other.npy"),
    ("digits", ["decode", "{own_z}", "--png"], ["decode", "{z}", "--png"],
     "figures/decoded.png", "figures/decoded-z.png"),
    ("digits", ["score", "-k", "2", "-q"], ["score", "-k", "2", "-q", "--data", "{other}"],
     "scores.csv", "scores-other.csv"),
    ("digits", ["curves"], ["curves", "{other_run}"],
     "figures/curves.png", "figures/curves-with-mine.png"),
    ("shapes", ["evaluate", "--disentanglement", "--votes", "6"],
     ["evaluate", "--disentanglement", "--votes", "6", "--data", "shapes", "--seed", "1"],
     "disentanglement.json", "disentanglement.json"),  # the run's own data keeps its name
]  # fmt: skip


@pytest.mark.parametrize(("kind", "first", "then", "default", "named"), DISTINCT)
def test_a_default_output_of_other_inputs_has_its_own_name(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    first: list[str],
    then: list[str],
    default: str,
    named: str,
) -> None:
    run = _copy(runs, kind, tmp_path / "run")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "other.npy", rng.random((30, 64), dtype=np.float32))
    np.save(tmp_path / "z.npy", np.zeros((3, 2), np.float32))
    np.save(run / "latents.npy", np.ones((2, 2), np.float32))
    mine = _copy(runs, "digits", tmp_path / "mine")
    places = {"{other}": tmp_path / "other.npy", "{z}": tmp_path / "z.npy",
              "{own_z}": run / "latents.npy", "{other_run}": mine}  # fmt: skip

    def command(args: list[str]) -> list[object]:
        return [args[0], run, *(places.get(a, a) for a in args[1:])]

    code, _, err = run_cli(capsys, *command(first))
    assert code == 0, err
    kept = (run / default).read_bytes()
    code, out, err = run_cli(capsys, *command(then))
    assert code == 0, err
    assert f"wrote {run / named}" in out
    if named != default:
        assert (run / default).read_bytes() == kept  # not replaced by a picture of other inputs


def test_a_new_run_removes_the_outputs_named_for_other_inputs(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train --overwrite removes what was derived from the old weights, under every name, and
    leaves the user's own files."""
    run = _copy(runs, "cvae", tmp_path / "run")
    for args in (["sample", run, "-n", "4", "--label", "3"], ["evaluate", run, "-k", "2", "-q",
                 "--split", "valid"]):  # fmt: skip
        assert run_cli(capsys, *args)[0] == 0
    (run / "figures" / "mine.png").write_bytes(b"the user's picture")
    assert (run / "figures" / "samples-label3.png").is_file() and (run / "eval-valid.json").exists()
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", run, "--overwrite", *SMALL,
                           "--set", "condition_dim=10")  # fmt: skip
    assert code == 0, err
    assert not (run / "figures" / "samples-label3.png").exists()
    assert not (run / "eval-valid.json").exists()
    assert (run / "figures" / "mine.png").read_bytes() == b"the user's picture"


# -- runs of strings, sounds and table rows ----------------------------------------------------


@pytest.fixture(scope="module")
def media_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A text run (strings: RUN/NAME.txt), a sound run (folders of WAV files: RUN/NAME/) and a
    table run (rows: RUN/NAME.csv)."""
    from vaekit.cli import main
    from vaekit.data.audio import wav_bytes

    top = tmp_path_factory.mktemp("media")
    words = Path(__file__).resolve().parents[1] / "fixtures" / "runs-c6fb4d5" / "words.txt"
    main(["train", "--data", str(words), "--out", str(top / "text"), *SMALL])
    wavs = top / "wavs"
    wavs.mkdir()
    t = np.arange(4000) / 8000
    for i in range(6):
        wave = 0.5 * np.sin(2 * np.pi * (200 + 50 * i) * t)
        (wavs / f"{i}.wav").write_bytes(wav_bytes(wave.astype(np.float32), 8000))
    main(["train", "--data", str(wavs), "--out", str(top / "sound"), *SMALL,
          "--audio", "sample_rate=8000", "--audio", "n_fft=256", "--audio", "hop=64",
          "--audio", "n_mels=16"])  # fmt: skip
    rng = np.random.default_rng(0)
    rows = ["a,b,c"] + [",".join(f"{v:.3f}" for v in rng.normal(size=3)) for _ in range(60)]
    (top / "table.csv").write_text("\n".join(rows) + "\n")
    main(["train", "--data", str(top / "table.csv"), "--out", str(top / "table"), *SMALL,
          "--set", "likelihood=gaussian"])  # fmt: skip
    return {"text": top / "text", "sound": top / "sound", "table": top / "table"}


#: Where each kind of run's drawing commands write: a suffix, or "/" for a folder.
ENDS = {"text": ".txt", "sound": "/", "table": ".csv"}


@pytest.mark.parametrize("kind", ENDS)
def test_strings_sounds_and_rows_follow_the_same_rule(
    media_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    run = _copy(media_runs, kind, tmp_path / "run")
    end = ENDS[kind]

    def at(name: str) -> Path:
        return run / name if end == "/" else run / f"{name}{end}"

    for _ in range(2):  # the same default command again regenerates its output
        code, _, err = run_cli(capsys, "sample", run, "-n", "2")
        assert code == 0, err
    code, _, err = run_cli(capsys, "reconstruct", run, "-n", "2", "--split", "train")
    assert code == 0, err
    assert at("reconstructions-train").exists() and not at("reconstructions").exists()

    # an existing --output (a folder holding files, for sounds) needs --force
    output = tmp_path / ("out" if end == "/" else f"out{end}")
    if end == "/":
        output.mkdir()
        (output / "mine.wav").write_bytes(b"the user's sound")
    else:
        output.write_bytes(b"the user's file")
    kept = digest(tmp_path)
    code, _, err = run_cli(capsys, "sample", run, "-n", "2", "-o", output)
    _refused(code, err)
    assert "give --force to replace it, or --output NAME" in err and digest(tmp_path) == kept
    code, _, err = run_cli(capsys, "sample", run, "-n", "2", "-o", output, "--force")
    assert code == 0, err

    # a default output linked out of the run folder is refused
    outside = tmp_path / "outside"
    link = _leave(run, "samples" if end == "/" else f"samples{end}", outside)
    before, kept = digest(run), digest(outside)
    code, _, err = run_cli(capsys, "sample", run, "-n", "2")
    _refused(code, err)
    assert f"{str(link)!r} is a symbolic link" in err
    assert digest(run) == before and digest(outside) == kept


def test_sounds_are_never_written_into_a_run_folder(
    media_runs: dict[str, Path], runs: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run = _copy(media_runs, "sound", tmp_path / "run")
    other = _other_run(runs, tmp_path)
    kept = digest(other)
    for output in (other, tmp_path / "run" / ".." / "other", other / PREVIOUS_FOLDER):
        code, _, err = run_cli(capsys, "sample", run, "-n", "2", "-o", output)
        _refused(code, err)
        assert "is a run folder" in err or "would replace a run's own file" in err
        assert digest(other) == kept


def test_a_new_run_removes_sound_folders_named_for_other_inputs(
    media_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(media_runs, "sound", tmp_path / "run")
    assert run_cli(capsys, "reconstruct", run, "-n", "2", "--split", "train")[0] == 0
    assert list((run / "reconstructions-train").glob("*.wav"))
    code, _, err = run_cli(capsys, "train", "--data", media_runs["sound"].parent / "wavs",
                           "--out", run, "--overwrite", *SMALL, "--audio", "sample_rate=8000",
                           "--audio", "n_fft=256", "--audio", "hop=64",
                           "--audio", "n_mels=16")  # fmt: skip
    assert code == 0, err
    assert not list((run / "reconstructions-train").glob("*.wav"))

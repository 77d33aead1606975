"""The ``vaekit`` command end to end, on a tiny digits run trained once for the module.

Each command is driven through ``vaekit.cli.main`` and its files are checked; each bad input must
give exactly one line on stderr, exit status 2, and leave the run's files as they were.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import png, run_cli, snapshot

from vaekit.cli import main, resolve_config

REPO = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "2", "--set", "hidden=[16]", "--set", "latent_dim=3", "-k", "5", "-q"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny digits run: 2 epochs, 16 hidden units, 3 latent dims."""
    folder = tmp_path_factory.mktemp("cli") / "run"
    main(["train", "--data", "digits", "--out", str(folder), *TINY])
    return folder


@pytest.fixture(scope="module")
def flat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gaussian run on a .npy of 6x4 'images' (24 values each: not a square)."""
    folder = tmp_path_factory.mktemp("flat")
    rng = np.random.default_rng(0)
    np.save(folder / "faces.npy", rng.random((60, 24), dtype=np.float32))
    out = folder / "run"
    main(["train", "--data", str(folder / "faces.npy"), "--out", str(out), *TINY,
          "--set", "likelihood=gaussian", "--set", "latent_dim=2"])  # fmt: skip
    return out


# -- train, info, evaluate ---------------------------------------------------------------------


def test_every_default_output_of_a_command_is_a_derived_file(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train --overwrite removes runs.DERIVED_FILES: every file a command writes into the run
    folder by default must be listed there (sound folders in DERIVED_SOUND_FOLDERS)."""
    from vaekit.runs import DERIVED_FILES, RUN_NAMES

    work = tmp_path / "run"
    shutil.copytree(run, work)
    before = {p for p in work.rglob("*") if p.is_file()}
    commands = [["evaluate", work, "-k", "2"], ["sample", work, "-n", "4"],
                ["reconstruct", work, "-n", "2"], ["encode", work],
                ["decode", work, work / "latents.npy", "--png"], ["interpolate", work],
                ["manifold", work, "-n", "3"], ["latents", work], ["curves", work]]  # fmt: skip
    for command in commands:
        code, _, err = run_cli(capsys, *command)
        assert code == 0, (command, err)
    new = {str(p.relative_to(work)) for p in work.rglob("*") if p.is_file()} - {
        str(p.relative_to(work)) for p in before
    }
    assert len(new) >= 10, new  # every command wrote its default output
    assert new <= set(DERIVED_FILES) | set(RUN_NAMES), new - set(DERIVED_FILES)


def test_overwrite_removes_what_the_old_run_wrote(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "run"
    shutil.copytree(run, work)
    for command in (["evaluate", work, "-k", "2"], ["sample", work], ["manifold", work]):
        assert run_cli(capsys, *command)[0] == 0
    (work / "figures" / "mine.png").write_bytes(b"a picture of the user's")
    (work / "notes.txt").write_text("the user's notes")
    derived = ["eval.json", "figures/samples.png", "figures/manifold.png"]
    assert all((work / name).is_file() for name in derived)
    before = {f: (work / f).read_bytes() for f in ("model.safetensors", *derived)}

    # a bad setting is refused before anything is touched
    code, _, err = run_cli(capsys, "train", "--out", work, "--overwrite", "--set", "latent_dim=0")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert {f: (work / f).read_bytes() for f in before} == before

    # a new run that fails in training puts the old run back as it was
    huge = tmp_path / "huge.npy"
    np.save(huge, np.full((64, 64), 1e30, dtype=np.float32))

    def everything() -> dict[str, tuple[bytes, int]]:
        files = [f for f in work.rglob("*") if f.is_file()]
        return {str(f.relative_to(work)): (f.read_bytes(), f.stat().st_mtime_ns) for f in files}

    files = everything()
    assert len(files) >= 8
    code, _, err = run_cli(capsys, "train", "--out", work, "--overwrite", "--data", huge, *TINY,
                           "--set", "likelihood=gaussian", "--set", "max_bad_steps=2",
                           "--set", "batch_size=8", "--set", "standardize=false")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "non-finite" in err and f"the run that was in {str(work)!r} is back" in err
    assert everything() == files

    code, _, _ = run_cli(capsys, "train", "--out", work, "--overwrite", *TINY, "--seed", "3")
    assert code == 0
    assert not any((work / name).exists() for name in derived)
    assert (work / "model.safetensors").read_bytes() != before["model.safetensors"]
    assert (work / "figures" / "mine.png").read_bytes() == b"a picture of the user's"
    assert (work / "notes.txt").read_text() == "the user's notes"
    assert not (work / ".vaekit-previous").exists()


def test_train_saves_and_prints_resolved_config(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden"] == [16] and config["model"]["latent_dim"] == 3
    assert config["train"]["epochs"] == 2 and config["train"]["binarize"] == "dynamic"
    assert config["data"]["name"] == "digits" and config["data"]["source"] == "digits"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_data_set_name_wins_over_a_folder_of_that_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "digits").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", "run", *TINY)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["source"] == "digits"
    code, _, err = run_cli(capsys, "evaluate", "run", "-k", "3", "-q")
    assert code == 0, err


def test_train_prints_config_and_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(
        capsys, "train", "--data", "digits", "--out", tmp_path / "r", *TINY, "--epochs", "1"
    )
    assert code == 0, err
    assert "latent_dim=3" in out and "epochs=1" in out and "binarize=" in out
    assert f"wrote {tmp_path / 'r' / 'model.safetensors'}" in out


def test_info(capsys: pytest.CaptureFixture[str], run: Path) -> None:
    code, out, _ = run_cli(capsys, "info", run)
    assert code == 0
    assert "digits" in out and "latent_dim=3" in out and "model.safetensors" in out
    assert "epochs 2" in out


def test_evaluate(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "evaluate", run, "-k", "20", "-q", "-o", tmp_path / "e.json")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    for key in ("elbo", "log_likelihood", "bits_per_dim", "reconstruction_mse", "kl_per_dim",
                "active_units", "k", "n", "binarized", "split"):  # fmt: skip
        assert key in report
    assert report["k"] == 20 and report["n"] == 270 and report["binarized"] is True
    assert len(report["kl_per_dim"]) == 3
    assert report["elbo"] <= report["log_likelihood"] + 1.0
    assert "log p(x), K=20" in out and "bits/dim" in out and str(tmp_path / "e.json") in out
    # the fixed binarisation makes the report repeat exactly
    run_cli(capsys, "evaluate", run, "-k", "20", "-q", "-o", tmp_path / "f.json")
    again = json.loads((tmp_path / "f.json").read_text())
    assert again["log_likelihood"] == report["log_likelihood"]


def test_evaluate_default_output_and_other_data(
    capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path
) -> None:
    work = tmp_path / "copy"
    shutil.copytree(run, work)
    code, _, err = run_cli(capsys, "evaluate", work, "-k", "2", "--split", "valid")
    assert code == 0, err  # named for the split it reports: the test split's eval.json stays
    assert json.loads((work / "eval-valid.json").read_text())["split"] == "valid"
    x = np.random.default_rng(0).random((50, 64), dtype=np.float32)
    np.save(tmp_path / "mine.npy", x)
    code, _, err = run_cli(capsys, "evaluate", work, "-k", "2", "--data", tmp_path / "mine.npy")
    assert code == 0, err
    assert json.loads((work / "eval-mine.json").read_text())["n"] == 5  # 10% test split


# -- pictures ----------------------------------------------------------------------------------


def test_sample(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "s.png"
    code, out, err = run_cli(capsys, "sample", run, "-n", "10", "--ncols", "5", "-o", out_file,
                             "--scale", "1")  # fmt: skip
    assert code == 0, err
    # 5 x 2 tiles of 8x8 with 1-pixel gaps
    assert png(out_file).shape == (2 * 9 + 1, 5 * 9 + 1)
    assert f"wrote {out_file}" in out


def test_sample_default_path(capsys: pytest.CaptureFixture[str], run: Path) -> None:
    code, out, _ = run_cli(capsys, "sample", run, "-n", "4", "--draw")
    assert code == 0
    assert png(run / "figures" / "samples.png").shape == (8 * 19, 8 * 19)  # 8x8 tiles: 64 px
    assert str(run / "figures" / "samples.png") in out


def test_reconstruct(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "r.png"
    code, _, err = run_cli(
        capsys, "reconstruct", run, "-n", "6", "--ncols", "3", "--scale", "1", "-o", out_file
    )
    assert code == 0, err
    assert png(out_file).shape == (4 * 9 + 1, 3 * 9 + 1)  # two pairs of rows of 3


def test_manifold(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "manifold", run, "-n", "5", "--scale", "1",
                             "-o", tmp_path / "m.png")  # fmt: skip
    assert code == 0, err
    picture = png(tmp_path / "m.png")
    assert picture.shape == (5 * 9 + 1, 5 * 9 + 1)  # a one-pixel gap between the tiles
    assert (picture[::9] == 128).all() and (picture[:, ::9] == 128).all()
    assert "largest KL" in out
    code, out, err = run_cli(capsys, "manifold", run, "-n", "3", "--dims", "2,0",
                             "-o", tmp_path / "m2.png")  # fmt: skip
    assert code == 0, err
    assert "dims 2 (down) and 0 (across)" in out


def test_latents(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "latents", run, "-o", tmp_path / "l.png")
    assert code == 0, err
    assert png(tmp_path / "l.png").shape == (500, 600)
    code, _, err = run_cli(capsys, "latents", run, "-n", "1", "-o", tmp_path / "l1.png")
    assert code == 0 and (tmp_path / "l1.png").is_file(), err
    code, out, err = run_cli(capsys, "latents", run, "-n", "50", "-o", tmp_path / "l50.png")
    assert code == 0 and out.startswith("50 latent means"), err


def test_curves(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "curves", run, "-o", tmp_path / "c.png")
    assert code == 0, err
    assert png(tmp_path / "c.png").shape == (400, 600)
    assert "2 epochs" in out


def test_interpolate(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "interpolate", run, "3", "7", "--steps", "4", "--scale", "1",
                             "-o", tmp_path / "i.png")  # fmt: skip
    assert code == 0, err
    assert png(tmp_path / "i.png").shape == (9 + 1, 6 * 9 + 1)  # x3, 4 steps, x7
    assert "examples 3 and 7" in out
    code, _, err = run_cli(capsys, "interpolate", run, "-o", tmp_path / "j.png")
    assert code == 0, err


def test_encode_decode_round_trip(
    capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "encode", run, "-o", tmp_path / "z.npy")
    assert code == 0, err
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (270, 3) and z.dtype == np.float32
    code, _, err = run_cli(capsys, "encode", run, "--sample", "-o", tmp_path / "z.csv")
    assert code == 0, err
    lines = (tmp_path / "z.csv").read_text().splitlines()
    assert lines[0] == "id,label,z0,z1,z2" and len(lines) == 271  # the split's ids and labels
    table = np.loadtxt(tmp_path / "z.csv", delimiter=",", skiprows=1)
    assert (table[:, 0] == np.arange(270)).all() and set(table[:, 1]) <= set(range(10))
    zs = table[:, 2:]
    assert zs.shape == (270, 3) and not np.allclose(zs, z, atol=1e-3)  # draws, not means
    code, out, err = run_cli(capsys, "decode", run, tmp_path / "z.csv", "-o", tmp_path / "x.npy",
                             "--png")  # fmt: skip
    assert code == 0, err
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (270, 64) and x.min() >= 0 and x.max() <= 1
    png(tmp_path / "x.png")
    assert str(tmp_path / "x.png") in out


def test_encode_input_file(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "in.npy", np.full((4, 8, 8), 0.5, np.float32))  # reshaped to (4, 64)
    code, _, err = run_cli(capsys, "encode", run, "--input", tmp_path / "in.npy",
                           "-o", tmp_path / "zin.npy")  # fmt: skip
    assert code == 0, err
    assert np.load(tmp_path / "zin.npy").shape == (4, 3)


def test_decode_defaults(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    work = tmp_path / "copy"
    shutil.copytree(run, work)
    np.savetxt(tmp_path / "one.csv", np.zeros((1, 3)), delimiter=",")  # no header
    code, _, err = run_cli(capsys, "decode", work, tmp_path / "one.csv", "--png")
    assert code == 0, err  # named for the latents file (RUN/latents.npy's: decoded.npy)
    assert np.load(work / "decoded-one.npy").shape == (1, 64)
    assert (work / "figures" / "decoded-one.png").is_file()


def test_flat_data_needs_image_shape(
    capsys: pytest.CaptureFixture[str], flat_run: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "sample", flat_run, "-o", tmp_path / "a.png")
    assert code == 2 and "--image-shape" in err and len(err.splitlines()) == 1
    assert "e.g. --image-shape 6x4" in err  # the most nearly square shape of its 24 values
    code, _, err = run_cli(capsys, "sample", flat_run, "-n", "4", "--image-shape", "6x4",
                           "--scale", "1", "-o", tmp_path / "a.png")  # fmt: skip
    assert code == 0, err
    assert png(tmp_path / "a.png").shape == (2 * 7 + 1, 2 * 5 + 1)
    code, _, err = run_cli(capsys, "manifold", flat_run, "-n", "3", "--image-shape", "6x4",
                           "-o", tmp_path / "m.png")  # fmt: skip
    assert code == 0, err  # 2 latent dims: no data needed


# -- bad input: one line, exit 2, run untouched ------------------------------------------------


BAD = {
    "missing run": ["sample", "{tmp}/nope"],
    "not a run": ["sample", "{tmp}"],
    "info not a run": ["info", "{tmp}"],
    "n zero": ["sample", "{run}", "-n", "0"],
    "n negative": ["sample", "{run}", "-n", "-3"],
    "n not a number": ["sample", "{run}", "-n", "many"],
    "k zero": ["evaluate", "{run}", "-k", "0"],
    "k negative": ["evaluate", "{run}", "-k", "-5"],
    "output under a file": ["sample", "{run}", "-o", "{run}/config.json/s.png"],
    "output wrong suffix": ["sample", "{run}", "-o", "{tmp}/s.jpg"],
    "output is a folder": ["evaluate", "{run}", "-o", "{tmp}"],
    "output onto config.json": ["evaluate", "{run}", "-k", "2", "-o", "{run}/config.json"],
    "encode output onto weights": ["encode", "{run}", "-o", "{run}/model.safetensors"],
    "unknown data": ["evaluate", "{run}", "-k", "2", "--data", "no-such-data"],
    "missing data file": ["evaluate", "{run}", "-k", "2", "--data", "{tmp}/none.npy"],
    "wrong data shape": ["evaluate", "{run}", "-k", "2", "--data", "{tmp}/wide.npy"],
    "bad split": ["latents", "{run}", "--split", "everything"],
    "latents wrong width": ["decode", "{run}", "{tmp}/z4.npy"],
    "latents 3-d": ["decode", "{run}", "{tmp}/z3d.npy"],
    "latents nan": ["decode", "{run}", "{tmp}/znan.csv"],
    "latents empty": ["decode", "{run}", "{tmp}/empty.csv"],
    "latents text": ["decode", "{run}", "{tmp}/words.csv"],
    "latents missing": ["decode", "{run}", "{tmp}/gone.npy"],
    "latents suffix": ["decode", "{run}", "{tmp}/z.txt"],
    "encode input wrong shape": ["encode", "{run}", "--input", "{tmp}/z4.npy", "-o", "{tmp}/o.npy"],
    "encode input out of [0,1]": ["encode", "{run}", "--input", "{tmp}/big.npy"],
    "index out of range": ["interpolate", "{run}", "0", "270"],
    "one index": ["interpolate", "{run}", "5"],
    "negative index": ["interpolate", "{run}", "0", "--", "-1"],
    "reconstruct too many": ["reconstruct", "{run}", "-n", "271"],
    "manifold same dims": ["manifold", "{run}", "--dims", "1,1"],
    "manifold dims out of range": ["manifold", "{run}", "--dims", "0,3"],
    "manifold dims text": ["manifold", "{run}", "--dims", "x,y"],
    "manifold n one": ["manifold", "{run}", "-n", "1"],
    "bad image shape": ["sample", "{run}", "--image-shape", "eight"],
    "image shape mismatch": ["sample", "{run}", "--image-shape", "7x7"],
    "unknown command": ["smaple", "{run}"],
    "unknown option": ["sample", "{run}", "--colour"],
    "train over a run": ["train", "--out", "{run}", "--epochs", "1"],
    "train out is a file": ["train", "--out", "{run}/config.json", "--epochs", "1"],
    "train unknown setting": ["train", "--out", "{tmp}/t", "--set", "latent=3"],
    "train bad value": ["train", "--out", "{tmp}/t", "--set", "latent_dim=0"],
    "train missing config": ["train", "--out", "{tmp}/t", "--config", "{tmp}/none.toml"],
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bad")
    np.save(tmp / "z4.npy", np.zeros((5, 4), np.float32))
    np.save(tmp / "z3d.npy", np.zeros((5, 3, 1), np.float32))
    np.save(tmp / "wide.npy", np.zeros((40, 65), np.float32))
    np.save(tmp / "big.npy", np.full((2, 64), 3.0, np.float32))
    (tmp / "znan.csv").write_text("z0,z1,z2\n0,nan,1\n")
    (tmp / "empty.csv").write_text("z0,z1,z2\n")
    (tmp / "words.csv").write_text("a,b,c\nd,e,f\n")
    (tmp / "z.txt").write_text("0 0 0\n")
    return tmp


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2_run_untouched(
    case: str, capsys: pytest.CaptureFixture[str], run: Path, bad_files: Path
) -> None:
    before = snapshot(run)
    figures = sorted((run / "figures").glob("*")) if (run / "figures").exists() else []
    args = [a.format(run=run, tmp=bad_files) for a in BAD[case]]
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (case, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaekit: error: ") and "Traceback" not in err
    assert snapshot(run) == before
    after = sorted((run / "figures").glob("*")) if (run / "figures").exists() else []
    assert after == figures
    assert not list(run.glob(".*.tmp"))


def test_newer_checkpoint_format_is_refused(
    capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path
) -> None:
    work = tmp_path / "newer"
    shutil.copytree(run, work)
    config = json.loads((work / "config.json").read_text())
    config["format_version"] = 99
    (work / "config.json").write_text(json.dumps(config))
    for command in ("sample", "info"):
        code, _, err = run_cli(capsys, command, work)
        assert code == 2 and "upgrade vaekit" in err and len(err.splitlines()) == 1


def test_damaged_metrics(capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path) -> None:
    work = tmp_path / "damaged"
    shutil.copytree(run, work)
    (work / "metrics.jsonl").write_text('{"epoch": 1,\n')
    code, _, err = run_cli(capsys, "curves", work)
    assert code == 2 and "damaged" in err and len(err.splitlines()) == 1


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "evaluate", "sample", "reconstruct", "encode", "decode",
                    "interpolate", "manifold", "latents", "curves", "info"):  # fmt: skip
        code, out, _ = run_cli(capsys, command, "--help")
        assert code == 0 and "Example:" in out and f"vaekit {command}" in out, command


# -- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_config_files_resolve(path: Path) -> None:
    from types import SimpleNamespace

    dataset = SimpleNamespace(name="x", defaults=None, data_shape=(784,), binary=True)
    model_config, train_config, _ = resolve_config(str(path), (), dataset, {})
    assert model_config.latent_dim >= 2 and train_config.epochs >= 1


def test_config_recipes_match_the_paper() -> None:
    from types import SimpleNamespace

    dataset = SimpleNamespace(name="x", defaults=None, data_shape=(784,), binary=True)
    m, t, _ = resolve_config(str(REPO / "configs" / "aevb-mnist.toml"), (), dataset, {})
    assert (m.hidden, m.latent_dim, m.activation, m.likelihood) == ((500,), 20, "tanh", "bernoulli")
    assert (t.optimizer, t.batch_size, t.samples) == ("adagrad", 100, 1)
    assert t.lr in (0.01, 0.02, 0.1)
    frey = SimpleNamespace(name="frey-face", defaults=None, data_shape=(560,), binary=False)
    m, t, _ = resolve_config(str(REPO / "configs" / "frey-face.toml"), (), frey, {})
    assert (m.hidden, m.likelihood, t.optimizer) == ((200,), "gaussian", "adagrad")


# -- true end to end, in a separate process ----------------------------------------------------


def test_subprocess_end_to_end(run: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "sub.png"
    done = subprocess.run(
        [sys.executable, "-m", "vaekit", "sample", str(run), "-n", "9", "-o", str(out_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out_file}" in done.stdout
    png(out_file)
    done = subprocess.run(
        [sys.executable, "-m", "vaekit", "decode", str(run), str(tmp_path / "none.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("vaekit: error: ")


# -- a categorical latent ----------------------------------------------------------------------

CATEGORICAL = ["--epochs", "1", "--set", "n_latents=2", "--set", "kind=categorical",
               "--set", "n_categories=4", "--set", "hidden=[16]", "-k", "5", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def categorical_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch digits run whose latent is 2 categorical variables of 4 values."""
    folder = tmp_path_factory.mktemp("categorical") / "run"
    main(["train", "--data", "digits", "--out", str(folder), *CATEGORICAL])
    return folder


def test_categorical_train_and_evaluate(
    capsys: pytest.CaptureFixture[str], categorical_run: Path, tmp_path: Path
) -> None:
    model = json.loads((categorical_run / "config.json").read_text())["model"]
    # the digits defaults' latent_dim (a Gaussian VAE's setting) is dropped, --set hidden kept
    assert model["kind"] == "categorical" and "latent_dim" not in model
    assert (model["n_latents"], model["n_categories"], model["hidden"]) == (2, 4, [16])
    code, out, err = run_cli(capsys, "train", "--data", "digits", "--out", tmp_path / "again",
                             *CATEGORICAL)  # fmt: skip
    assert code == 0, err
    assert "valid log p(x), exact" in out
    code, out, err = run_cli(capsys, "evaluate", categorical_run, "-k", "500", "-q",
                             "-o", tmp_path / "e.json")  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    assert "log p(x), exact" in out and "active units" in out
    assert report["elbo"] <= report["exact_log_likelihood"] + 0.05
    assert abs(report["log_likelihood"] - report["exact_log_likelihood"]) < 0.05
    assert len(report["kl_per_dim"]) == 2
    work = tmp_path / "copy"
    shutil.copytree(categorical_run, work)
    run_cli(capsys, "evaluate", work, "-k", "5", "-q")  # writes RUN/eval.json, which info reads
    code, out, err = run_cli(capsys, "info", work)
    assert code == 0, err
    exact = json.loads((work / "eval.json").read_text())["exact_log_likelihood"]
    assert f"(K=5; exact {exact:.3f})" in out


def test_categorical_sample_reconstruct_encode_decode(
    capsys: pytest.CaptureFixture[str], categorical_run: Path, tmp_path: Path
) -> None:
    for command in ("sample", "reconstruct"):
        code, _, err = run_cli(capsys, command, categorical_run, "-o", tmp_path / f"{command}.png")
        assert code == 0, err
        png(tmp_path / f"{command}.png")
    code, _, err = run_cli(capsys, "encode", categorical_run, "-o", tmp_path / "p.npy")
    assert code == 0, err
    probs = np.load(tmp_path / "p.npy")  # q(z_l = c | x), one block of 4 columns per latent
    assert probs.shape == (270, 8)
    assert np.allclose(probs.reshape(270, 2, 4).sum(-1), 1.0, atol=1e-5)
    code, _, err = run_cli(capsys, "encode", categorical_run, "--sample", "-o", tmp_path / "z.npy")
    assert code == 0, err
    z = np.load(tmp_path / "z.npy").reshape(270, 2, 4)
    assert set(np.unique(z)) == {0.0, 1.0} and (z.sum(-1) == 1).all()
    code, _, err = run_cli(capsys, "decode", categorical_run, tmp_path / "z.npy",
                           "-o", tmp_path / "x.npy")  # fmt: skip
    assert code == 0, err
    assert np.load(tmp_path / "x.npy").shape == (270, 64)


@pytest.mark.parametrize("command", ["manifold", "interpolate"])
def test_categorical_refuses_continuous_walks(
    command: str, capsys: pytest.CaptureFixture[str], categorical_run: Path
) -> None:
    before = snapshot(categorical_run)
    code, _, err = run_cli(capsys, command, categorical_run)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "categorical" in err and command in err and "Traceback" not in err
    assert snapshot(categorical_run) == before
    assert not (categorical_run / "figures" / f"{command}.png").exists()


# -- any latents file: an array or a DataError ---------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200) | st.text(alphabet="0123456789.,-enaif \n", max_size=60).map(
    str.encode), suffix=st.sampled_from([".npy", ".csv"]))  # fmt: skip
def test_any_latents_file_is_an_array_or_a_data_error(tmp_path: Path, raw: bytes, suffix: str):
    from vaekit.errors import DataError
    from vaekit.media import read_array as _read_array

    file = tmp_path / f"z{suffix}"
    file.write_bytes(raw)
    try:
        a = _read_array(file, "latent")
    except DataError as err:
        assert "\n" not in str(err) and "pickle=" not in str(err)
    else:
        assert a.dtype == np.float32 and a.size > 0 and np.isfinite(a).all()


# -- data options of train -------------------------------------------------------------------------


def _images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            pixels = rng.integers(0, 256, (h, w), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / cls / f"{i}.png")
    return folder


def test_image_size_resizes_and_later_commands_read_the_same_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _images(tmp_path / "photos", [(12, 10)] * 6 + [(30, 20)] * 2)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", photos, "--out", out, "--image-size", "6x4",
                           *TINY, "--set", "likelihood=gaussian")  # fmt: skip
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["image_shape"] == [1, 6, 4] == config["model"]["data_shape"]
    # another folder with other sizes is read at the run's size
    other = _images(tmp_path / "other", [(9, 9)] * 5, seed=1)
    for data in (photos, other):
        code, _, err = run_cli(capsys, "evaluate", out, "-k", "2", "--data", data, "-o",
                               tmp_path / "e.json", "--force")  # fmt: skip
        assert code == 0, err
    code, _, err = run_cli(capsys, "evaluate", out, "-k", "2", "-o", tmp_path / "e.json", "--force")
    assert code == 0, err


def test_label_column_gives_a_conditional_run_its_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    rows = ["kind,a,b,c,d"] + [
        f"{i % 3},{','.join(f'{v:.3f}' for v in rng.random(4))}" for i in range(60)
    ]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "t.csv", "--out", out,
                           "--label-column", "kind", *TINY, "--set", "condition_dim=3",
                           "--set", "likelihood=gaussian")  # fmt: skip
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["label_column"] == "kind" and config["model"]["data_shape"] == [4]
    code, _, err = run_cli(capsys, "evaluate", out, "-k", "2")  # labels read again
    assert code == 0, err


def test_audio_settings_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.data.audio import wav_bytes

    folder = tmp_path / "wavs"
    folder.mkdir()
    t = np.arange(4000) / 8000
    for i in range(6):
        wave = 0.5 * np.sin(2 * np.pi * (200 + 50 * i) * t)
        (folder / f"{i}.wav").write_bytes(wav_bytes(wave.astype(np.float32), 8000))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", folder, "--out", out, *TINY,
                           "--audio", "sample_rate=8000", "--audio", "n_fft=256",
                           "--audio", "hop=64", "--audio", "n_mels=16")  # fmt: skip
    assert code == 0, err
    media = json.loads((out / "config.json").read_text())["data"]["media"]
    assert (media["sample_rate"], media["n_fft"], media["hop"], media["n_mels"]) == (
        8000, 256, 64, 16)  # fmt: skip
    assert json.loads((out / "config.json").read_text())["data"]["image_shape"][1] == 16


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image-size", "0"], "--image-size expects a positive size"),
        (["--image-size", "6x4x2"], "--image-size expects a positive size"),
        (["--image-size", "²"], "--image-size expects a positive size"),  # a digit to isdigit
        (["--label-column", "kind"], "--label-column does not apply to 'digits': it is for CSV"),
        (["--image-size", "8"], "--image-size does not apply to 'digits': it is for folders"),
        (["--audio", "n_mels=8"], "--audio does not apply to 'digits': it is for WAV files"),
        (["--data", "missing.csv", "--label-column", "0"], "'missing.csv' does not exist"),
        (["--data", "DIGITS", "--image-size", "8"], "--image-size does not apply to 'DIGITS'"),
        (["--data", "no-folder/", "--image-size", "8"], "missing file 'no-folder'"),
        (["--audio", "n_mels"], "--audio expects key=value"),
    ],
)
def test_bad_data_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", *args, *TINY)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_bad_audio_settings_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.data.audio import wav_bytes

    folder = tmp_path / "wavs"
    folder.mkdir()
    (folder / "a.wav").write_bytes(wav_bytes(np.zeros(4000, np.float32), 8000))
    for setting, message in [("n_mel=8", "unknown audio setting 'n_mel'"),
                             ("hop=0", "audio hop must be a positive integer"),
                             ("n_mels=32.5", "audio n_mels must be an integer, got 32.5"),
                             ("sample_rate=true", "audio sample_rate must be an integer"),
                             ("trim_db=loud", "audio trim_db must be a number of dB"),
                             ("=32", "--audio expects key=value")]:  # fmt: skip
        code, _, err = run_cli(capsys, "train", "--data", folder, "--out", tmp_path / "run",
                               "--audio", setting, *TINY)  # fmt: skip
        assert code == 2 and err.count("\n") == 1 and message in err, err
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "run", "--image-size", "8")
    assert code == 2 and "leave out --image-size" in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("600", 600.0), ("90s", 90.0), ("10m", 600.0), ("5min", 300.0), ("1.5h", 5400.0), ("0", 0.0)],
)
def test_time_limit_durations(text: str, seconds: float) -> None:
    from vaekit.cli.params import duration as _duration

    assert _duration(text, "--time-limit") == seconds


@pytest.mark.parametrize("text", ["10x", "-1", "nan", "inf", "m", "", "10ms"])
def test_a_bad_time_limit_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--time-limit", text, *TINY)
    assert code == 2 and err.count("\n") == 1 and "--time-limit" in err, err
    assert not (tmp_path / "run").exists()


def test_a_run_its_time_limit_ended_says_so_and_resumes_with_a_longer_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--out", run, "--time-limit", "0.000001", *TINY)
    assert code == 0, err
    assert "trained 1 epochs" in out and "stopped by the time limit (1e-06 s) after 1 of 2" in out
    code, out, _ = run_cli(capsys, "info", run)
    assert code == 0 and "its time limit (1e-06 s) ended the run" in out
    before = snapshot(run)
    code, out, _ = run_cli(capsys, "train", "--resume", run, "-q")
    assert code == 0 and "reached its time limit of 1e-06 s after 1 epochs" in out
    assert snapshot(run) == before
    code, out, err = run_cli(
        capsys, "train", "--resume", run, "--time-limit", "1h", "-q", "-k", "5"
    )
    assert code == 0, err
    assert "trained 2 epochs" in out and "stopped by" not in out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert json.loads((run / "config.json").read_text())["train"]["time_limit"] == 3600


def test_a_resume_whose_new_time_limit_leaves_no_epoch_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", run, *TINY)
    assert code == 0, err
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "4", "--time-limit",
                           "0.000001", "-q")  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "has trained for" in err and "no epoch fits" in err and "or 0 for no limit" in err
    assert snapshot(run) == before
    code, out, err = run_cli(capsys, "train", "--resume", run, "--epochs", "4", "--time-limit",
                             "1h", "-q", "-k", "5")  # fmt: skip
    assert code == 0 and "trained 4 epochs" in out, err


def test_an_image_size_past_the_cap_is_one_line_before_any_resizing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit import data

    photos = _images(tmp_path / "photos", [(8, 8)] * 3)
    side = data.MAX_IMAGE_SIDE
    assert data.load(photos, image_size=(1, side)).data_shape == (1, 1, side)
    with pytest.raises(data.DataError, match=rf"image_size 1x{side + 1} .*image_size"):
        data.load(photos, image_size=(1, side + 1))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", photos, "--out", out,
                           "--image-size", "100000", *TINY)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "100000x100000" in err and "--image-size" in err
    assert not out.exists()


def test_images_too_big_for_memory_are_one_line_naming_image_size(tmp_path: Path) -> None:
    # 6 RGB images at 4096x4096 need 1.2 GB as float32; the process may grow by 400 MB only.
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    script = (
        "import resource, sys\n"
        "from vaekit import cli, data\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 400 * 2**20, resource.RLIM_INFINITY))\n"
        "cli.main(sys.argv[1:])\n"
    )
    out = tmp_path / "run"
    args = ["train", "--data", folder, "--out", out, "--image-size", "4096", *TINY]
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "6 images at 4096x4096" in result.stderr and "--image-size" in result.stderr
    assert not out.exists()


def test_train_with_no_finite_step_fails_without_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "big.npy", (rng.standard_normal((40, 6)) * 1e30).astype(np.float32))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "big.npy", "--out", out,
                           "--set", "likelihood=gaussian", "--set", "standardize=false",
                           *TINY)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no step of the run had a finite loss" in err and "scale" in err
    assert not (out / "model.safetensors").exists()


def test_encode_input_reads_uint8_data_as_train_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ints = np.random.default_rng(0).integers(0, 256, (30, 6), dtype=np.uint8)
    np.save(tmp_path / "ints.npy", ints)
    np.save(tmp_path / "scaled.npy", ints.astype(np.float32) / np.float32(255))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "ints.npy", "--out", out, *TINY)
    assert code == 0, err
    for name in ("ints", "scaled"):
        code, _, err = run_cli(capsys, "encode", out, "--input", tmp_path / f"{name}.npy",
                               "--output", tmp_path / f"z-{name}.npy")  # fmt: skip
        assert code == 0, err
    z = np.load(tmp_path / "z-ints.npy")
    assert z.shape == (30, 3) and np.array_equal(z, np.load(tmp_path / "z-scaled.npy"))


def test_data_outside_the_likelihood_s_support_is_one_line_before_anything_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "negative.npy"
    np.save(data, -np.random.default_rng(0).random((40, 6), dtype=np.float32))
    code, out, err = run_cli(capsys, "train", "--data", data, "--out", tmp_path / "run", *TINY,
                             "--set", "likelihood=bernoulli")  # fmt: skip
    assert code == 2 and out == "" and err.count("\n") == 1, (out, err)
    assert "train split has values in [-" in err and "needs [0, 1]" in err
    assert not (tmp_path / "run").exists()


def test_evaluate_gaps_and_encode_refine(
    capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path
) -> None:
    report_file = tmp_path / "e.json"
    code, out, err = run_cli(capsys, "evaluate", run, "-k", "50", "--gaps", "30",
                             "--refine-steps", "40", "-q", "-o", report_file)  # fmt: skip
    assert code == 0, err
    assert "inference gaps on the first 30 examples (q refined by 40 Adam steps" in out
    gaps = json.loads(report_file.read_text())["inference_gaps"]
    assert (gaps["n"], gaps["refine_steps"], gaps["k"]) == (30, 40, 50)
    assert gaps["amortization_gap"] > 0  # 2 epochs leave an encoder to improve on
    assert gaps["approximation_gap"] + gaps["amortization_gap"] == pytest.approx(
        gaps["log_likelihood"] - gaps["elbo"]
    )
    assert f"amortization gap     {gaps['amortization_gap']:12.3f} nats" in out
    work = tmp_path / "copy"
    shutil.copytree(run, work)
    shutil.copy(report_file, work / "eval.json")
    code, out, err = run_cli(capsys, "info", work)
    assert code == 0, err
    assert (
        f"gaps   approximation {gaps['approximation_gap']:.3f}, amortization "
        f"{gaps['amortization_gap']:.3f} nats (first 30 examples, 40 refinement steps)"
    ) in out
    code, out, err = run_cli(capsys, "encode", run, "--refine", "40", "-o", tmp_path / "r.npy")
    assert code == 0, err
    assert "means of q(z|x) refined by 40 steps, shape (270, 3)" in out
    code, _, err = run_cli(capsys, "encode", run, "-o", tmp_path / "z.npy")
    assert code == 0, err
    refined, plain = np.load(tmp_path / "r.npy"), np.load(tmp_path / "z.npy")
    assert refined.shape == plain.shape and not np.allclose(refined, plain, atol=1e-3)


@pytest.mark.parametrize(
    "args", [["evaluate", "--gaps", "5", "-k", "5"], ["encode", "--refine", "5"]]
)
def test_refining_a_categorical_run_is_one_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], categorical_run: Path, args: list[str]
) -> None:
    before = snapshot(categorical_run)
    code, _, err = run_cli(capsys, args[0], categorical_run, *args[1:])
    assert code == 2 and err.count("\n") == 1, err
    assert "one diagonal Gaussian latent" in err and "'categorical'" in err
    assert snapshot(categorical_run) == before


def test_refine_steps_without_gaps_is_one_line(
    capsys: pytest.CaptureFixture[str], run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "e.json"
    code, _, err = run_cli(capsys, "evaluate", run, "--refine-steps", "9", "-o", out)
    assert code == 2 and err.count("\n") == 1 and "--refine-steps goes with --gaps" in err, err
    assert not out.exists()

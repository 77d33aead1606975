"""Bad input to the ``vaekit`` command: a hand-edited config.json, seeds out of range, an empty
--data, a split smaller than a default count, an output that is the command's own input.

Each bad input must give exactly one line on stderr, exit status 2, no traceback, and leave every
file as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import png, run_cli, snapshot

from vaekit.cli import main

TINY = ["--epochs", "1", "--set", "hidden=[8]", "--set", "latent_dim=2", "-k", "2", "-q"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run on a .npy of 40 examples of 4x4 values in [0, 1]: its test split is small."""
    folder = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    np.save(folder / "tiles.npy", rng.random((40, 16), dtype=np.float32))
    out = folder / "run"
    main(["train", "--data", str(folder / "tiles.npy"), "--out", str(out), *TINY,
          "--set", "likelihood=gaussian"])  # fmt: skip
    return out


def _one_line(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaekit: error: ") and "Traceback" not in err
    return err


def _edited(run: Path, tmp_path: Path, edit: Any) -> Path:
    """A copy of ``run`` whose config.json ``edit`` (config dict -> None, or raw text) changed."""
    work = tmp_path / "edited"
    shutil.copytree(run, work)
    if isinstance(edit, str):
        (work / "config.json").write_text(edit)
    else:
        config = json.loads((work / "config.json").read_text())
        edit(config)
        (work / "config.json").write_text(json.dumps(config))
    return work


def _set(section: str, key: str | None, value: Any) -> Any:
    def edit(config: dict[str, Any]) -> None:
        if key is None:
            config[section] = value
        else:
            config[section][key] = value

    return edit


def _drop(key: str) -> Any:
    return lambda config: config["model"].pop(key)


# edit of config.json -> (commands that must refuse it, words the one line must hold)
EDITS: dict[str, tuple[Any, tuple[str, ...], str]] = {
    "model-list": (_set("model", None, [1, 2]), ("info", "sample", "evaluate"), "model"),
    "model-string": (_set("model", None, "vae"), ("info", "reconstruct"), "model"),
    "train-list": (_set("train", None, [1]), ("info", "evaluate"), "train"),
    "train-string": (_set("train", None, "x"), ("evaluate", "info"), "train"),
    "data-string": (_set("data", None, "tiles"), ("info", "evaluate"), "data"),
    "image-shape": (_set("data", "image_shape", "8x8"), ("sample", "reconstruct"), "image_shape"),
    "split-seed": (_set("data", "split_seed", "a"), ("evaluate", "reconstruct"), "split_seed"),
    "deep": ('{"a": ' * 100_000 + "1" + "}" * 100_000, ("info", "sample"), "nested"),
    "no-latent-dim": (_drop("latent_dim"), ("sample", "evaluate", "info"), "model.latent_dim"),
    "no-data-shape": (_drop("data_shape"), ("sample", "encode"), "model.data_shape"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_a_hand_edited_config_is_one_line_naming_the_file_and_key(
    case: str, capsys: pytest.CaptureFixture[str], small_run: Path, tmp_path: Path
) -> None:
    edit, commands, words = EDITS[case]
    work = _edited(small_run, tmp_path, edit)
    before = snapshot(work)
    for command in commands:
        err = _one_line(*run_cli(capsys, command, work))
        assert "config.json" in err and words in err, (command, err)
        assert "model.safetensors" not in err, err  # the weights are not to blame
        assert snapshot(work) == before
        assert not (work / "figures").exists() and not (work / "eval.json").exists()


def test_seeds_outside_torchs_range_are_one_line(
    capsys: pytest.CaptureFixture[str], small_run: Path, tmp_path: Path
) -> None:
    huge = str(2**64 + 7)
    out = tmp_path / "new"
    for value, args in (
        (huge, ["--seed", huge]),
        (huge, ["--set", f"seed={huge}"]),
        ("-1", ["--seed", "-1"]),
    ):
        err = _one_line(*run_cli(capsys, "train", *args, "--out", out, *TINY))
        assert "seed" in err and value in err, err
        assert not out.exists()
    before = snapshot(small_run)
    for command in ("sample", "evaluate"):
        err = _one_line(*run_cli(capsys, command, small_run, "--seed", huge))
        assert "--seed" in err and huge in err, err
    assert snapshot(small_run) == before
    # the largest seed torch takes is taken
    code, _, err = run_cli(capsys, "sample", small_run, "--seed", 2**63 - 1, "-o", out / "s.png")
    assert code == 0, err
    png(out / "s.png")


def test_an_empty_data_is_one_line_not_the_default_data_set(
    capsys: pytest.CaptureFixture[str], small_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "new"
    for data in ("", "  "):
        err = _one_line(*run_cli(capsys, "train", "--data", data, "--out", out, *TINY))
        assert "--data is empty" in err
        assert not out.exists()
    before = snapshot(small_run)
    for command in ("evaluate", "reconstruct", "latents"):
        err = _one_line(*run_cli(capsys, command, small_run, "--data", ""))
        assert "--data is empty" in err, (command, err)
    assert snapshot(small_run) == before
    assert not (small_run / "figures").exists()


def test_reconstruct_shows_a_small_split_whole_but_refuses_a_larger_n(
    capsys: pytest.CaptureFixture[str], small_run: Path, tmp_path: Path
) -> None:
    from vaekit.cli.run import Run

    x, _, _ = Run(small_run).split(None, "test")
    size = x.shape[0]
    assert 0 < size < 20  # fewer than reconstruct's default -n: the case under test
    code, out, err = run_cli(capsys, "reconstruct", small_run, "-o", tmp_path / "r.png")
    assert code == 0, err
    assert out.startswith(f"{size} test examples")
    png(tmp_path / "r.png")
    err = _one_line(*run_cli(capsys, "reconstruct", small_run, "-n", size + 1,
                             "-o", tmp_path / "r2.png"))  # fmt: skip
    assert f"-n {size + 1} is more than the {size} examples" in err
    assert not (tmp_path / "r2.png").exists()


def test_an_output_that_is_the_commands_input_is_refused(
    capsys: pytest.CaptureFixture[str], small_run: Path, tmp_path: Path
) -> None:
    z = tmp_path / "z.npy"
    assert run_cli(capsys, "encode", small_run, "-o", z)[0] == 0
    x = tmp_path / "x.csv"
    x.write_text("\n".join(",".join(["0.5"] * 16) for _ in range(3)) + "\n")
    (tmp_path / "link.npy").symlink_to(z)
    files = {p: p.read_bytes() for p in (z, x)}
    for args in (
        ["decode", small_run, z, "-o", z],
        ["decode", small_run, z, "-o", tmp_path / "link.npy"],
        ["decode", small_run, tmp_path / "." / "z.npy", "-o", z, "--png"],
        ["encode", small_run, "--input", x, "-o", x],
    ):
        err = _one_line(*run_cli(capsys, *args))
        assert "input file" in err and "choose another output" in err, err
        assert {p: p.read_bytes() for p in files} == files
    # another name is fine
    code, _, err = run_cli(capsys, "decode", small_run, z, "-o", tmp_path / "x.npy")
    assert code == 0, err
    assert np.load(tmp_path / "x.npy").shape == (np.load(z).shape[0], 16)


def test_messages_name_what_was_given_and_what_to_give(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file given for a run folder, a folder given for a file, a resume of a folder with no
    training state and a setting the model kind does not have: each line says what to give."""
    err = _one_line(*run_cli(capsys, "sample", small_run / "config.json"))
    assert "is a file, not a run folder; the run is its folder" in err
    (tmp_path / "z.npy").mkdir()
    err = _one_line(*run_cli(capsys, "decode", small_run, tmp_path / "z.npy"))
    assert "is a folder; give a .npy file" in err
    (tmp_path / "empty").mkdir()
    err = _one_line(*run_cli(capsys, "train", "--resume", tmp_path / "empty"))
    assert f"vaekit train --out {tmp_path / 'empty'} --overwrite" in err
    err = _one_line(*run_cli(capsys, "train", "--out", tmp_path / "cat", "--set",
                             "kind=categorical", "--set", "latent_dim=4"))  # fmt: skip
    assert "unknown setting 'latent_dim'" in err and "the categorical model has " in err
    assert "n_latents" in err and "training has " in err and "time_limit" in err
    err = _one_line(*run_cli(capsys, "train", "--out", tmp_path / "typo", "--set",
                             "latnet_dim=4"))  # fmt: skip
    assert (
        "unknown setting 'latnet_dim' in --set 'latnet_dim=4' (did you mean 'latent_dim'?)" in err
    )
    assert not (tmp_path / "typo").exists()


def test_a_damaged_model_file_says_how_to_mend_it_and_resume_writes_it_again(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "run"
    shutil.copytree(small_run, work)
    weights = (work / "model.safetensors").read_bytes()
    (work / "model.safetensors").write_bytes(weights[:100])
    err = _one_line(*run_cli(capsys, "sample", work, "-n", "4"))
    assert "truncated or corrupt" in err and f"vaekit train --resume {work} writes it again" in err
    code, out, err = run_cli(capsys, "train", "--resume", work, "-q", "-k", "2")
    assert code == 0, err
    assert "model.safetensors is missing or unreadable; writing it again" in out
    assert (work / "model.safetensors").read_bytes() == weights
    code, out, _ = run_cli(capsys, "train", "--resume", work, "-q")
    assert code == 0 and "has already finished its 1 epochs" in out


def test_interpolate_on_a_split_of_one_example_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "eight.npy"
    np.save(data, np.random.default_rng(0).random((8, 16), dtype=np.float32))
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", data, "--out", run, *TINY)[0] == 0
    err = _one_line(*run_cli(capsys, "interpolate", run, "-o", tmp_path / "i.png"))
    assert "the test split of eight has 1 example(s)" in err and "--split train" in err
    code, _, err = run_cli(capsys, "interpolate", run, "--split", "train", "-o", tmp_path / "i.png")
    assert code == 0 and (tmp_path / "i.png").is_file(), err


def test_a_run_that_ends_worse_than_its_random_start_warns(capsys, tmp_path):
    """A learning rate that makes the steps diverge still trains and saves (exit 0), but says
    so in one warning line naming the learning rate; a sound run gets no warning."""
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", tmp_path / "bad",
                           "--epochs", "3", "-k", "2", "-q", "--set", "lr=10")  # fmt: skip
    assert code == 0, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("vaekit: warning:")]
    assert "worse than its random start" in line and "lr=10 now, e.g. --set lr=1)" in line
    assert (tmp_path / "bad" / "model.safetensors").is_file()
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", tmp_path / "good",
                           "--epochs", "3", "-k", "2", "-q")  # fmt: skip
    assert code == 0 and "warning" not in err, err

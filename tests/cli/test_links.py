"""Links in and out of run folders: a new run never moves or deletes files through a link, and an
output that resolves to a run's own file is refused, however it is spelled."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import digest, run_cli

from vaekit.checkpoint import drop_previous
from vaekit.runs import PREVIOUS_FOLDER

SMALL = ["--epochs", "1", "-k", "2", "-q", "--set", "hidden=[8]", "--set", "latent_dim=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("links") / "run"
    from vaekit.cli import main

    main(["train", "--data", "digits", "--out", str(out), *SMALL])
    return out


@pytest.mark.parametrize("name", ["figures", PREVIOUS_FOLDER])
def test_a_new_run_refuses_a_folder_linked_outside(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside"
    shutil.copytree(trained, run)
    outside.mkdir()
    (outside / "samples.png").write_bytes(b"someone else's picture")
    (outside / "config.json").write_bytes(b"{}")
    shutil.rmtree(run / name, ignore_errors=True)
    (run / name).symlink_to(outside)
    before, kept = digest(run), digest(outside)
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", run, "--overwrite",
                           *SMALL)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{name}' is a symbolic link" in err
    assert digest(outside) == kept  # before: moved into .vaekit-previous and deleted with it
    assert digest(run) == before and (run / name).is_symlink()


def test_dropping_a_linked_previous_run_removes_the_link_only(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    (run / PREVIOUS_FOLDER).symlink_to(outside)
    drop_previous(run)
    assert not (run / PREVIOUS_FOLDER).exists() and (outside / "keep.txt").read_text() == "keep"


def test_an_output_linked_to_a_runs_own_file_is_refused(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    link = tmp_path / "report.json"
    link.symlink_to(other / "config.json")
    before = digest(other)
    code, _, err = run_cli(capsys, "evaluate", trained, "-k", "2", "-q", "--output", link)
    assert code == 2 and "would replace a run's own file" in err and "other/config.json" in err
    assert digest(other) == before and link.is_symlink()

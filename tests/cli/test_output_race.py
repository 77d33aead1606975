"""An --output that was free when a command checked it, and that another program wrote while the
command worked, is not replaced without --force: the command ends with one line, exit status 2,
and the other program's file is left as it was."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from vaekit.cli import cli, main
from vaekit.cli.output import check_output, output_option, write, wrote
from vaekit.errors import VaekitError
from vaekit.files import forget_new_only, new_only, write_file


def test_a_new_only_file_is_not_replaced_by_one_that_appeared(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    new_only(path)
    try:
        write_file(path, b"first")  # free: written
        assert path.read_bytes() == b"first"
        with pytest.raises(VaekitError, match="appeared there while vaekit worked; give --force"):
            write_file(path, b"second")
        assert path.read_bytes() == b"first"
        assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left
    finally:
        forget_new_only()
    write_file(path, b"third")  # an ordinary write replaces
    assert path.read_bytes() == b"third"


def test_a_command_does_not_replace_an_output_written_while_it_worked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command built as every writing command is (output_option, check_output, write, run by
    vaekit's main): between its check and its write another program writes the file."""
    out = tmp_path / "z.csv"

    @click.command()
    @output_option
    def command(output: Path | None) -> None:
        path = check_output(tmp_path, output, tmp_path / "default.csv", (".csv",))
        out.write_bytes(b"another program's file")  # while the command works
        wrote(write(path, b"the command's file"))

    cli.add_command(command, "race-probe")
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["race-probe", "-o", str(out)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "appeared there while vaekit worked; give --force" in err
        assert out.read_bytes() == b"another program's file"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["z.csv"]  # no temporary file
        out.unlink()
        main(["race-probe", "-o", str(out), "--force"])  # with --force it replaces it
        assert out.read_bytes() == b"the command's file"
    finally:
        cli.commands.pop("race-probe", None)

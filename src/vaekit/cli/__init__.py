"""The ``vaekit`` command. Thin: it parses arguments, calls the library and prints.

``vaekit train`` makes a run folder; every other command takes that folder as its first argument
and writes beside it (pictures in ``RUN/figures/``, data files in ``RUN/``) or where ``--output``
says. Outputs are checked before any work and written atomically, so a failed command leaves the
run's files as they were. Any :class:`~vaekit.errors.VaekitError` or usage mistake becomes one
line on stderr and exit status 2, with setting names spelled as flags and remedies as commands.

Commands by theme: train.py (train), evaluate.py (evaluate, info, curves), draw.py (sample,
reconstruct, interpolate, manifold, latents), codes.py (encode, decode).
"""

from __future__ import annotations

import re
import shlex
import sys

import click
import torch

from .. import __version__
from ..errors import VaekitError
from ..files import forget_new_only
from ..runs import RUN_NAMES, STATE_FILE
from ..settings import SECTIONS, resolve_config, retokenize
from .codes import decode, encode
from .draw import interpolate, latents, manifold, reconstruct, sample
from .evaluate import curves, evaluate, info
from .export import export
from .group import joined
from .score import score
from .serve import serve
from .train import train
from .traverse import traverse

__all__ = ["RUN_FILES", "SECTIONS", "cli", "main", "resolve_config", "retokenize"]

#: Files of a run folder that no command other than ``train`` may replace.
RUN_FILES = tuple(name for name in RUN_NAMES if name != STATE_FILE)
#: Setting names in library messages (patterns), as the command line spells them.
FLAGS = {
    r"(?<![\w-])image_size(?!\w)": "--image-size",
    r"(?<![\w-])label_column(?!\w)": "--label-column",
    r"(?<=use )audio (?=\w+=)": "--audio ",
}
#: Remedies (vaekit.errors.Remedy) worded as commands to type; {run}: the run folder.
REMEDIES = {
    "resume": "continue it with vaekit train --resume {run}",
    "rewrite": "vaekit train --resume {run} writes it again from the training state",
    "restart": "start the run again with vaekit train --out {run} --overwrite",
}


def error_line(err: VaekitError) -> str:
    """A vaekit error's one line as the command line says it: flags for setting names and
    commands for remedies."""
    text = err.message
    for pattern, flag in FLAGS.items():
        text = re.sub(pattern, flag, text)
    if err.remedy is not None:
        run = shlex.quote(err.remedy.run)
        text = f"{text}; {REMEDIES[err.remedy.action].format(run=run)}"
    return text


@click.group(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "terminal_width": 100,
    }
)
@click.version_option(__version__, prog_name="vaekit")
def cli() -> None:
    """vaekit: train, evaluate and draw variational autoencoders.

    \b
    Example:
      vaekit train --data digits --out runs/digits
      vaekit evaluate runs/digits
      vaekit sample runs/digits -n 64
    """


for command in (
    train, evaluate, sample, reconstruct, encode, decode, interpolate, manifold, latents, curves,
    info, export, serve, traverse, score,
):  # fmt: skip
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; vaekit errors and usage mistakes become one line, exit status 2."""
    try:
        with joined():  # under torchrun: the run's process group
            cli.main(args=argv, prog_name="vaekit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("vaekit: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as err:
        err.show()
        sys.exit(err.exit_code)
    except click.ClickException as err:
        hint = ""
        if isinstance(err, click.UsageError) and err.ctx is not None:
            hint = f" (see '{err.ctx.command_path} --help')"
        message = " ".join(err.format_message().split())
        click.echo(f"vaekit: error: {message}{hint}", err=True)
        sys.exit(err.exit_code if err.exit_code else 1)
    except VaekitError as err:
        click.echo(f"vaekit: error: {error_line(err)}", err=True)
        sys.exit(2)
    except (MemoryError, RuntimeError) as err:
        # torch reports a failed CPU allocation as a RuntimeError, a CUDA one as OutOfMemoryError.
        text = str(err)
        if not (
            isinstance(err, MemoryError | torch.OutOfMemoryError) or "can't allocate memory" in text
        ):
            raise
        click.echo(
            "vaekit: error: out of memory; lower batch_size or samples (--set batch_size=...), "
            "the model's size (hidden, latent_dim) or -k, or use fewer examples",
            err=True,
        )
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    finally:
        forget_new_only()  # what this command refused to replace

"""``vaekit export``: a run's networks as files for other runtimes (ONNX)."""

from __future__ import annotations

from pathlib import Path

import click

from ..export import check_export_folder, export_onnx, require_onnx, write_export
from ..runs import ONNX_FOLDER
from .output import (
    check_inside,
    check_not_own,
    check_replace,
    check_writable,
    force_option,
    wrote,
)
from .params import run_argument
from .run import Run

FORMATS = ("onnx",)


@click.command()
@run_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="onnx",
    show_default=True,
    help="File format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Folder to write (default: RUN/{ONNX_FOLDER}); new, empty or (with --force) an "
    "earlier export's.",
)
@force_option
def export(run: Run, fmt: str, output: Path | None) -> None:
    """Write the run's encoder and decoder as ONNX files, with a dynamic batch axis.

    encoder.onnx maps examples x (and, for a conditional run, one-hot conditions) to the mean
    and log-variance of q(z|x), or to the logits of a categorical q(z|x); decoder.onnx maps
    latents z to the parameters of p(x|z) (Bernoulli logits; Gaussian mean and log-variance;
    the discretized logistic mixture's logits, means and log-scales). A two-layer (hvae) run
    also gets prior.onnx, z2 -> p(z1|z2). export.json describes every input and output (name,
    dtype, shape with "batch" first), the likelihood, the latent size, the prior's parameters
    and the vaekit version. Each file is checked with onnx.checker and, with onnxruntime
    installed, against PyTorch at batch sizes 1, 3 and 17. A part that cannot be exported is
    named, with the reason, in one line. Needs the onnx extra: pip install 'vaekit[onnx]'.

    \b
    Example:
      vaekit export runs/digits --format onnx
      vaekit export runs/digits --output deploy/digits-onnx
    """
    folder = output if output is not None else run / ONNX_FOLDER
    if output is None:
        check_inside(run.path, folder)
    check_export_folder(folder)
    check_not_own(folder, folder=True)
    if output is not None and folder.is_dir() and any(folder.iterdir()):
        check_replace(folder, "output folder")
    check_writable(folder, "output folder")
    require_onnx()
    result = export_onnx(run.model, media=run.data.get("media"))
    for note in result.notes:
        click.echo(f"not exported: {note}")
    check = result.description.get("check")
    if check:
        worst = max(check["max_abs_diff"].values())
        click.echo(
            f"onnxruntime {check['onnxruntime']} agrees with PyTorch to {worst:.1e} (max abs) "
            f"at batch sizes {', '.join(map(str, check['batch_sizes']))}"
        )
    else:
        click.echo("onnxruntime is not installed: the files were checked with onnx.checker only")
    wrote(*write_export(result, folder))

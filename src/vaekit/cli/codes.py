"""``vaekit encode`` and ``vaekit decode``: examples to latents and back, as files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..media import numbered
from ..runs import LATENTS_FILE, figure
from ..tables import latent_names, read_latents, table_bytes
from ..viz import label_name
from .output import check_output, data_name, echo_lines, write, wrote
from .params import (
    count_option,
    data_option,
    image_option,
    label_option,
    output_option,
    quiet_option,
    run_argument,
    scale_option,
    seed_option,
    split_option,
)
from .run import Run
from .train import progress


def _read_latents(path: Path, latent_dim: int) -> Tensor:
    return torch.from_numpy(read_latents(path, latent_dim))


@click.command()
@run_argument
@data_option
@split_option
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Encode the rows of this .npy/.csv (.txt for text) instead of a data set (uint8 "
    ".npy values are divided by 255, as --data does).",
)
@click.option("--sample", "draw", is_flag=True, help="Draw z ~ q(z|x) instead of its mean.")
@click.option(
    "--refine",
    "refine_steps",
    type=click.IntRange(min=1),
    default=None,
    metavar="STEPS",
    help="Refine q(z|x) for each example by STEPS Adam steps on its ELBO, the model held fixed "
    "(e.g. 500; kinds vae and text).",
)
@count_option(None, "Encode only the first N examples [default: all].")
@label_option
@seed_option
@output_option
@quiet_option
def encode(
    run: Run,
    data: str | None,
    split: str,
    input_file: Path | None,
    draw: bool,
    refine_steps: int | None,
    n: int | None,
    label: int | None,
    seed: int,
    output: Path | None,
    quiet: bool,
) -> None:
    """Map examples to latents: E[z|x] by default, or one draw z ~ q(z|x) with --sample.

    Writes an (N, latent_dim) array to RUN/latents.npy, or to --output (.npy or .csv). For a
    categorical latent (kind "categorical") E[z|x] is the probabilities q(z_l = c | x), one
    block of n_categories columns per latent (argmax of a block: its most probable value), and
    --sample writes one-hot draws. A conditional run encodes a data set's examples with their
    labels, --input rows with --label. For a text run, --input is a .txt file with one string a
    line; for an audio run, a .wav file or a folder of them (every clip of each).

    --refine STEPS answers the inference question for each x on its own: starting at the
    encoder's q(z|x), the diagonal Gaussian of largest ELBO with the model held fixed (an example
    it cannot improve keeps the encoder's q). It costs STEPS passes of the decoder per example
    (about a minute per 1,000 MNIST examples at 500 steps on one CPU core): -n N refines the
    first N; a progress bar counts the steps.

    \b
    Example:
      vaekit encode runs/digits --output runs/digits/test-z.csv
      vaekit encode runs/digits --input my_images.npy --sample --output z.npy
      vaekit encode runs/digits --refine 500 -n 100 --output refined-z.npy
    """
    read = (input_file, data)
    stem = None if input_file is None else data_name(str(input_file))
    default = run / run.named(LATENTS_FILE, data, split=split, label=label, also=stem)
    out = check_output(run, output, default, (".npy", ".csv"), inputs=read)
    model = run.model
    if refine_steps is not None:
        from ..evaluation import check_refinable

        check_refinable(model)
    kw: dict[str, Any] = {}
    names: list[str] | None = None  # the CSV's label column: the split's labels, by name
    if input_file is not None:
        kw = run.label_condition(label, "encode --input rows")
        x, what = run.media.read(input_file), str(input_file)
    else:
        if label is not None:
            raise ConfigError("--label goes with --input; a data set's examples use their labels")
        x, labels, dataset = run.split(data, split)
        what = f"the {split} split of {dataset.name}"
        if labels is not None:
            names = [label_name(v, dataset.label_names) for v in labels.tolist()]
        condition = run.conditions(labels, what)
        kw = {} if condition is None else {"condition": condition}
    if n is not None:
        if n > x.shape[0]:
            raise ConfigError(f"-n {n} is more than the {x.shape[0]} examples of {what}")
        x = x[:n]
        kw = {key: value[:n] if isinstance(value, Tensor) else value for key, value in kw.items()}
        what = f"{what} (the first {n})"
    torch.manual_seed(seed)
    if refine_steps is not None:
        from ..evaluation import refine_posterior

        qz_x = refine_posterior(
            model, x, steps=refine_steps, seed=seed, progress=progress(quiet), **kw
        )
    else:
        with torch.no_grad():
            qz_x = model.encode(x, **kw)
    with torch.no_grad():
        z = qz_x.sample() if draw else qz_x.mean  # (N, latent_dim)
    z_np = z.detach().cpu().numpy().astype(np.float32)
    rows = range(len(z_np))  # each row's index in the split or file
    ids = {"ids": rows, "labels": None if names is None else names[: len(z_np)]}
    write(out, table_bytes(z_np, out.suffix.lower(), latent_names(z_np.shape[1]), **ids))
    q = "q(z|x)" if refine_steps is None else f"q(z|x) refined by {refine_steps} steps"
    kind = f"draws from {q}" if draw else f"means of {q}"
    click.echo(f"encoded {x.shape[0]} examples of {what}: {kind}, shape {z_np.shape}")
    wrote(out)


@click.command()
@run_argument
@click.argument("latents", type=click.Path(path_type=Path))
@click.option("--png", "png", is_flag=True, help="Also draw the decoded means as images.")
@click.option("--ncols", type=click.IntRange(min=1), default=None, help="Images per row.")
@label_option
@image_option
@scale_option
@output_option
def decode(
    run: Run,
    latents: Path,
    png: bool,
    ncols: int | None,
    label: int | None,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Map latents (N, latent_dim) from a .npy/.csv file to decoded means E[x|z].

    A text run prints the greedy strings and writes them to RUN/decoded.txt (or --output); an
    audio run writes WAV files into the folder RUN/decoded/ (or --output), with --png also
    their spectrograms as spectrograms.png there.

    Writes an (N, *data_shape) array to RUN/decoded.npy (decoded-STEM.npy for latents other
    than RUN/latents.npy; or --output, .npy or .csv); with --png also RUN/figures/decoded.png
    (decoded-STEM.png; beside --output when given). A conditional run decodes
    them all as class --label.

    \b
    Example:
      vaekit encode runs/digits && vaekit decode runs/digits runs/digits/latents.npy --png
    """
    from .. import viz

    media = run.media_type
    which = {"label": label, "also": data_name(str(latents), str(run / LATENTS_FILE))}
    default = run.named(media.written("decoded"), **which)
    out = run.destination(output, default, media.suffixes, inputs=(latents,))
    picture = media.picture_file(out, "decoded", beside=output is not None) if png else None
    if picture is not None and output is None and picture.name == "decoded.png":
        picture = run / run.named(figure("decoded"), **which)  # named as the examples are
    if picture is not None:
        beside = picture if output is not None else None  # an --output's: --force replaces it
        picture = check_output(run, beside, picture, (".png",))
    medium, model = run.media, run.model
    shape = medium.shape(image_shape) if picture is not None else None
    kw = run.label_condition(label, "decode")
    z = _read_latents(latents, model.config.latent_dim)
    with torch.no_grad():
        x = model.decode(z, **kw).mean  # (N, *data_shape)
    n = z.shape[0]
    echo_lines(medium.summary("decoded", n=n, latents=latents, shape=tuple(x.shape)))
    echo_lines(medium.lines(x))
    written = medium.write(x, out, numbered("decoded", n))
    if picture is not None:
        written.append(viz.save(medium.picture(x, shape, ncols, scale), picture))
    wrote(*written)

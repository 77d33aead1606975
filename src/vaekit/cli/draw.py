"""Commands that draw a run's model: ``sample``, ``reconstruct``, ``interpolate``, ``manifold``
and ``latents``. Pictures go to RUN/figures/NAME.png; a text run's strings to RUN/NAME.txt, an
audio run's sounds to the folder RUN/NAME/ (runs.py names them all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

from ..errors import ConfigError
from ..runs import figure
from .output import check_output, echo_lines, wrote
from .params import (
    count_option,
    data_option,
    image_option,
    label_option,
    output_option,
    run_argument,
    scale_option,
    seed_option,
    split_option,
)
from .run import Run

#: Examples reconstruct shows when -n is not given (fewer when the split has fewer).
RECONSTRUCT_COUNT = 20
#: Draws of a learned prior whose empirical quantiles place the manifold's grid.
MANIFOLD_PRIOR_DRAWS = 100_000


def _destination(
    run: Run,
    output: Path | None,
    name: str,
    inputs: tuple[Path | str | None, ...] = (),
    **which: Any,
) -> Path:
    """Where a drawing command writes, checked before any work: ``output``, else by the run's
    media: RUN/NAME/ (a folder of WAV files), RUN/NAME.txt (strings) or RUN/figures/NAME.png,
    named for what it shows (``which``: data, split, label; see cli/output.py)."""
    media = run.media_type
    default = run.named(media.output(name), **which)
    return run.destination(output, default, media.shown_as, inputs)


def _check_count(name: str, n: int, available: int, split: str) -> None:
    if n > available:
        raise ConfigError(f"{name} {n} is more than the {available} examples of the {split} split")


def _count(n: int | None, default: int, available: int, split: str) -> int:
    """The -n of a command that takes the first examples of a split: ``n`` when given (and no
    more than the split has), else ``default`` capped at the split's size."""
    if n is None:
        return min(default, available)
    _check_count("-n", n, available, split)
    return n


def _check_index(index: int, n: int, split: str, name: str) -> None:
    if index >= n:
        raise ConfigError(
            f"index {index} is out of range: the {split} split of {name} has {n} examples "
            f"(0..{n - 1})"
        )


def _split_ends(
    run: Run, data: str | None, split: str, indices: tuple[int, ...]
) -> tuple[Tensor, Tensor | None, str]:
    """The two examples an interpolation runs between: examples ``indices`` of ``split``, or
    by default the first two with different labels (0 and 1 without labels), as a (2, ...)
    tensor, their conditions (or None) and words naming them."""
    x, labels, dataset = run.split(data, split)
    if indices:
        i, j = indices
    else:
        instead = (  # strings and sounds can be given as the ends instead
            "--from and --to, or --split train"
            if run.media_type.takes_ends
            else "--split train, or --data with more"
        )
        _two_examples(x.shape[0], split, dataset.name, instead)
        i, j = 0, 1
        if labels is not None:
            j = next((t for t in range(1, len(labels)) if labels[t] != labels[0]), 1)
    for index in (i, j):
        _check_index(index, x.shape[0], split, dataset.name)
    condition = run.conditions(labels, f"the {split} split of {dataset.name}")
    ends = None if condition is None else condition[[i, j]]
    return x[[i, j]], ends, f"{split} examples {i} and {j} of {dataset.name}"


def _two_examples(n: int, split: str, name: str, instead: str) -> None:
    """Refuse a default interpolation on a split of fewer than two examples."""
    if n < 2:
        raise ConfigError(
            f"the {split} split of {name} has {n} example(s) and an interpolation needs two: "
            f"give {instead}"
        )


@click.command()
@run_argument
@count_option(64, "Number of samples.", 1, 4096)
@click.option("--ncols", type=click.IntRange(min=1), default=None, help="Images per row.")
@click.option("--draw", is_flag=True, help="Draw x ~ p(x|z) instead of showing E[x|z].")
@label_option
@seed_option
@image_option
@scale_option
@output_option
def sample(
    run: Run,
    n: int,
    ncols: int | None,
    draw: bool,
    label: int | None,
    seed: int,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Draw samples from the model as a grid of images (z ~ p(z), then E[x|z]).

    A conditional run draws from p(x|z, c): all of class --label, or, without it, one row per
    class (n // classes samples each, or --ncols). Writes RUN/figures/samples.png (with --label
    N, samples-labelN.png; or --output).
    A text run prints the strings (greedy at each step, or drawn with --draw) and writes
    RUN/samples.txt; an audio run writes WAV files and their spectrograms into the folder
    RUN/samples/ (or --output).

    \b
    Example:
      vaekit sample runs/digits -n 64 --seed 1
      vaekit sample runs/mnist-cvae -n 64 --label 3
    """
    out = _destination(run, output, "samples", label=label)
    medium, model = run.media, run.model
    shape = medium.shape(image_shape)
    what = "draws" if draw else "samples (means of p(x|z))"
    classes = run.classes
    torch.manual_seed(seed)
    if classes and label is None:
        ncols = ncols or max(1, n // classes)
        x = torch.cat(
            [model.sample(ncols, mean=not draw, condition=c) for c in range(classes)]
        )  # (classes * ncols, *data_shape)
        said = [f"{ncols} {what} of each of classes 0..{classes - 1} (one row each) from {run}"]
    else:
        kw = run.label_condition(label, "sample")
        x = model.sample(n, mean=not draw, **kw)  # (n, *data_shape)
        of = f" of class {label}" if kw else ""
        said = medium.summary("samples", n=n, what=what, of=of, run=run)
    picture = medium.picture(x, shape, ncols, scale)
    echo_lines(said + medium.lines(x))
    wrote(*medium.show(x, out, "sample", picture))


@click.command()
@run_argument
@count_option(None, "Number of examples  [default: 20, or all of a smaller split]")
@click.option(
    "--ncols", type=click.IntRange(min=1), default=10, show_default=True, help="Pairs per row."
)
@data_option
@split_option
@image_option
@scale_option
@output_option
def reconstruct(
    run: Run,
    n: int | None,
    ncols: int,
    data: str | None,
    split: str,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Show the first N examples of a split above their reconstructions E[x|z=E[z|x]].

    Writes RUN/figures/reconstructions.png (reconstructions-DATA-SPLIT.png for another data
    set or split; or --output). A text run prints each string and
    its greedy reconstruction and writes them, tab-separated, to RUN/reconstructions.txt; an
    audio run writes NNN-input.wav and NNN-reconstruction.wav into RUN/reconstructions/.

    \b
    Example:
      vaekit reconstruct runs/digits -n 20
    """
    out = _destination(run, output, "reconstructions", (data,), data=data, split=split)
    medium, model = run.media, run.model
    shape = medium.shape(image_shape)
    x, labels, dataset = run.split(data, split)
    n = _count(n, RECONSTRUCT_COUNT, x.shape[0], split)
    x = x[:n]
    condition = run.conditions(labels, f"the {split} split of {dataset.name}")
    kw = {} if condition is None else {"condition": condition[:n]}
    x_rec = model.reconstruct(x, **kw)
    picture = medium.pairs(x, x_rec, shape, ncols, scale)
    echo_lines(medium.summary("reconstructions", n=n, split=split, data=dataset.name))
    echo_lines(medium.pair_lines(x, x_rec))
    wrote(*medium.show_pairs(x, x_rec, out, picture))


@click.command()
@run_argument
@click.argument("indices", nargs=-1, type=click.IntRange(min=0))
@click.option(
    "--steps",
    type=click.IntRange(2, 100),
    default=10,
    show_default=True,
    help="Decoded images between the two ends.",
)
@click.option(
    "--from",
    "start",
    default=None,
    metavar="EXAMPLE",
    help="First end instead of an index: a string for a text run, a .wav file for an audio run.",
)
@click.option("--to", "end", default=None, metavar="EXAMPLE", help="Second end, as --from.")
@data_option
@split_option
@image_option
@scale_option
@output_option
def interpolate(
    run: Run,
    indices: tuple[int, ...],
    steps: int,
    start: str | None,
    end: str | None,
    data: str | None,
    split: str,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Walk the latent space in a straight line between two examples, as a row of images.

    INDICES are two example numbers of the split (default: the first two with different labels).
    The row shows the first example, the decoded points from E[z|x1] to E[z|x2], and the second.
    In a conditional run the condition moves from the first example's label to the second's.
    Writes RUN/figures/interpolation.png (or --output). A text run takes its ends as strings
    too (--from, --to), prints the greedy strings along the line and writes
    RUN/interpolation.txt; an audio run takes .wav files as --from/--to and writes the steps as
    WAV files into RUN/interpolation/.

    \b
    Example:
      vaekit interpolate runs/digits 3 17 --steps 12
      vaekit interpolate runs/words --from house --to garden
    """
    from .. import viz

    if len(indices) not in (0, 2):
        raise click.UsageError(f"give two indices or none, got {len(indices)}")
    if (start is None) != (end is None) or (start is not None and indices):
        raise click.UsageError("give both --from and --to, or indices, not a mix")
    out = _destination(run, output, "interpolation", (data,), data=data, split=split)
    if start is not None and not run.media_type.takes_ends:
        raise ConfigError("--from/--to take strings or .wav files; for images give two indices")
    medium, model = run.media, run.model
    run.need_continuous("interpolate")
    shape = medium.shape(image_shape)
    condition = None
    if start is not None and end is not None:
        x, what = medium.ends(start, end, "--from/--to")
    else:
        x, condition, what = _split_ends(run, data, split, indices)
    ends: dict[str, Tensor] = {}
    along: dict[str, Tensor] = {}
    if condition is not None:
        ends = {"condition": condition}
        along = {"condition": viz.interpolation_latents(condition[0], condition[1], steps)}
    with torch.no_grad():
        mu = model.encode(x, **ends).mean  # (2, latent_dim)
        z = viz.interpolation_latents(mu[0], mu[1], steps)
        path = model.decode(z, **along).mean  # (steps, *data_shape)
    row = torch.cat([x[:1], path, x[1:]])  # (steps + 2, ...)
    picture = medium.picture(row, shape, row.shape[0], scale)
    echo_lines(medium.summary("interpolation", steps=steps, ends=what))
    echo_lines(medium.lines(path))
    wrote(*medium.show(path, out, "step", picture))


@click.command()
@run_argument
@count_option(20, "Images per side of the grid.", 2, 100)
@click.option(
    "--dims",
    default=None,
    metavar="I,J",
    help="Latent dims to vary (default: the two with the largest KL).",
)
@label_option
@data_option
@image_option
@scale_option
@output_option
def manifold(
    run: Run,
    n: int,
    dims: str | None,
    label: int | None,
    data: str | None,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Decode an n x n grid of latents: the learned data manifold (AEVB paper, figure 4).

    Evenly spaced points on the unit square go through the inverse CDF of the prior's marginals
    (of N(0, 1) for the standard prior; estimated from 100,000 draws for a learned prior or the
    lower layer of a two-layer model). With more than two latent dims, the two with the largest
    KL on the test split vary and the rest stay at the prior's median (0 for N(0, I)).
    A conditional run draws the manifold of class --label.
    Writes RUN/figures/manifold.png (or --output).

    \b
    Example:
      vaekit manifold runs/digits -n 20
      vaekit manifold runs/digits --dims 0,3
    """
    from .. import viz
    from ..estimators import latent_stats

    default = run / run.named(figure("manifold"), data, label=label)
    out = check_output(run, output, default, (".png",), inputs=(data,))
    model = run.model
    run.need_continuous("manifold")
    shape = run.image_shape(image_shape)
    kw = run.label_condition(label, "draw its manifold")
    latent_dim = model.config.latent_dim
    if latent_dim < 2:
        raise ConfigError("a manifold needs at least 2 latent dims; this run has 1")
    how = ""
    if dims is not None:
        try:
            d0, d1 = (int(v) for v in dims.split(","))
        except ValueError:
            raise ConfigError(f"--dims {dims!r} is not two dims like 0,1") from None
    elif latent_dim == 2:
        d0, d1 = 0, 1
    else:
        x, labels, dataset = run.split(data, "test")
        condition = run.conditions(labels, f"the test split of {dataset.name}")
        stats_kw = {} if condition is None else {"condition": condition}
        kl = latent_stats(model, x, **stats_kw)["kl_per_dim"]
        d0, d1 = viz.top_dims(kl.tolist(), 2)
        how = f" (largest KL on {dataset.name}/test: {float(kl[d0]):.2f}, {float(kl[d1]):.2f} nats)"
    samples = None
    if not model.standard_normal_latents:
        # a learned prior (or z1 of two layers): its marginals' quantiles, from draws of it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            samples = model.sample_latents(MANIFOLD_PRIOR_DRAWS)
        how += "; grid at quantiles of the prior's marginals, other dims at their medians"
    z = viz.manifold_latents(n, latent_dim, (d0, d1), samples)
    with torch.no_grad():
        x_grid = model.decode(z, **kw).mean  # (n * n, *data_shape)
    viz.save(viz.example_grid(x_grid, shape, n, scale=scale), out)
    click.echo(f"{n}x{n} manifold over latent dims {d0} (down) and {d1} (across){how}")
    wrote(out)


@click.command()
@run_argument
@data_option
@split_option
@count_option(None, "Plot only the first N examples.")
@output_option
def latents(run: Run, data: str | None, split: str, n: int | None, output: Path | None) -> None:
    """Scatter the latent means E[z|x] of a split in 2-D, coloured by label (PCA if dims > 2).

    Writes RUN/figures/latents.png (or --output).

    \b
    Example:
      vaekit latents runs/digits --split test
    """
    from .. import viz

    default = run / run.named(figure("latents"), data, split=split)
    out = check_output(run, output, default, (".png",), inputs=(data,))
    model = run.model
    x, labels, dataset = run.split(data, split)
    x, labels = x[:n], (labels[:n] if labels is not None else None)
    condition = run.conditions(labels, f"the {split} split of {dataset.name}")
    kw = {} if condition is None else {"condition": condition}
    with torch.no_grad():
        z = model.encode(x, **kw).mean  # (N, latent_dim)
    title = f"{dataset.name} {split}: E[z|x]" + (", PCA" if z.shape[1] > 2 else "")
    names = getattr(dataset, "label_names", None)
    viz.save(viz.scatter(z, labels, names=names, title=title), out)
    click.echo(f"{x.shape[0]} latent means of the {split} split of {dataset.name}")
    wrote(out)

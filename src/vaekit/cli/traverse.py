"""``vaekit traverse``: the latent-traversal figure of an image run."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from ..errors import ConfigError
from ..runs import figure
from .output import check_output, wrote
from .params import (
    data_option,
    image_option,
    output_option,
    run_argument,
    scale_option,
    split_option,
)
from .run import Run

#: Draws of a learned prior whose marginal quantiles place the traversal's values.
PRIOR_DRAWS = 100_000
#: Examples of the split whose KL per latent dim orders the rows.
KL_EXAMPLES = 1000


@click.command()
@run_argument
@click.option(
    "--example",
    "example",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="I",
    help="Start from the posterior mean of example I of the split.",
)
@click.option(
    "--steps",
    type=click.IntRange(2, 50),
    default=10,
    show_default=True,
    help="Values per latent dim, across the prior's range (-3 to 3 standard deviations).",
)
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only the N latent dims of most KL  [default: all].",
)
@data_option
@split_option
@image_option
@scale_option
@output_option
def traverse(
    run: Run,
    example: int,
    steps: int,
    rows: int | None,
    data: str | None,
    split: str,
    image_shape: str | None,
    scale: int | None,
    output: Path | None,
) -> None:
    """Draw the latent traversal: one row per latent dim, sorted by KL (largest first), each
    decoding the posterior mean of one example with that dim swept across the prior's range.

    Values run over the prior's quantiles at -3 .. 3 standard deviations of a normal (exactly
    -3 .. 3 for N(0, I); from 100,000 draws for a learned prior). The rows' order is that of the
    KL per dim on the first 1000 examples of the split.
    Writes RUN/figures/traverse.png (or --output).

    \b
    Example:
      vaekit traverse runs/shapes
      vaekit traverse runs/shapes --example 7 --steps 8 --rows 6 -o traverse.png
    """
    from .. import viz
    from ..estimators import latent_stats

    default = run / run.named(figure("traverse"), data, split=split)
    out = check_output(run, output, default, (".png",), inputs=(data,))
    model = run.model
    run.need_continuous("traverse")
    shape = run.image_shape(image_shape)
    x, labels, dataset = run.split(data, split)
    if example >= len(x):
        raise ConfigError(
            f"--example {example} is past the {len(x)} examples of the {split} split of "
            f"{dataset.name}; give 0..{len(x) - 1}"
        )
    condition = run.conditions(labels, f"the {split} split of {dataset.name}")
    head = {} if condition is None else {"condition": condition[:KL_EXAMPLES]}
    kl = latent_stats(model, x[:KL_EXAMPLES], **head)["kl_per_dim"]
    dims = viz.top_dims(kl.tolist(), rows or len(kl))
    one = {} if condition is None else {"condition": condition[example : example + 1]}
    samples = None
    if not model.standard_normal_latents:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            samples = model.sample_latents(PRIOR_DRAWS)
    with torch.no_grad():
        mu = model.encode(x[example : example + 1], **one).mean[0]  # (latent_dim,)
        z = viz.traversal_latents(mu, dims, steps, samples)
        along = {} if condition is None else {"condition": one["condition"].expand(len(z), -1)}
        x_grid = model.decode(z.to(mu.device), **along).mean  # (rows * steps, *data_shape)
    viz.save(viz.example_grid(x_grid, shape, steps, scale=scale), out)
    kls = ", ".join(f"{d} ({float(kl[d]):.2f})" for d in dims)
    click.echo(
        f"traversal of example {example} of {dataset.name}/{split}: {steps} values a row; rows "
        f"are latent dims (KL in nats): {kls}"
    )
    wrote(out)

"""The report at the end of ``vaekit train``: the validation split's ELBO, log p(x) (cheap by
default: ``-k`` importance samples on ``--report-examples`` examples) and KL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import click

from .output import progress

if TYPE_CHECKING:
    from ..data import Dataset
    from ..models import VAE


class ReportSize(NamedTuple):
    """How much the end-of-training report's log p(x) costs: ``k`` importance samples on
    ``examples`` validation examples (0: all)."""

    k: int
    examples: int


def valid_split(dataset: Dataset, train_config: Any) -> Any:
    """The validation split as the report measures it (one fixed binarisation where training
    binarises anew each epoch)."""
    from ..train import binarize

    if train_config.binarize == "dynamic":
        return binarize(dataset.valid, seed=train_config.seed + 1)
    return dataset.valid


def valid_elbo(
    model: VAE, dataset: Dataset, train_config: Any, valid_conditions: Any
) -> float | None:
    """The mean ELBO (nats) of the validation split, as the report measures it; None without
    validation examples."""
    from ..estimators.sharded import elbo as elbo_per_example

    if len(dataset.valid) == 0:
        return None
    kw = {} if valid_conditions is None else {"condition": valid_conditions}
    return float(elbo_per_example(model, valid_split(dataset, train_config), **kw).mean())


def stopping_line(history: list[dict[str, Any]], train_config: Any) -> str | None:
    """What early stopping (``patience``) made of the run: where it stopped and its best epoch,
    whose weights the model holds; None with early stopping off."""
    if not getattr(train_config, "patience", 0) or not history:
        return None
    last = history[-1]
    if last.get("stopped") == "early":
        best, elbo = last.get("best_epoch"), last.get("best_valid_elbo")
        if best is None:
            return (
                f"stopped early at epoch {last['epoch']}: no epoch had a finite validation ELBO; "
                "the last weights are kept"
            )
        return (
            f"stopped early at epoch {last['epoch']}; best validation ELBO at epoch {best} "
            f"({elbo:.3f} nats), whose weights are saved"
        )
    if last.get("best_epoch") is None:
        return None
    return (
        f"no early stop (patience {train_config.patience}); best validation ELBO at epoch "
        f"{last['best_epoch']} ({last['best_valid_elbo']:.3f} nats), whose weights are saved"
    )


def report(
    model: VAE,
    dataset: Dataset,
    train_config: Any,
    history: list[dict[str, Any]],
    valid_conditions: Any,
    size: ReportSize,
    quiet: bool,
) -> float:
    """The end-of-training report: the validation split's ELBO, log p(x) and KL (nats); returns
    the ELBO. log p(x) is estimated with ``size.k`` importance samples on the first
    ``size.examples`` validation examples (0: all), so that the report costs little next to
    training; ``vaekit evaluate`` gives the full estimate."""
    from ..estimators import latent_stats
    from ..estimators.sharded import elbo as elbo_per_example
    from ..estimators.sharded import log_likelihood

    x_valid = valid_split(dataset, train_config)
    kw = {} if valid_conditions is None else {"condition": valid_conditions}
    valid_elbo = float(elbo_per_example(model, x_valid, **kw).mean())
    n = len(x_valid) if size.examples == 0 else min(size.examples, len(x_valid))
    kw_ll = {key: value[:n] for key, value in kw.items()}
    valid_ll = log_likelihood(model, x_valid[:n], k=size.k, progress=progress(quiet), **kw_ll)
    valid_ll = float(valid_ll.mean())
    last = history[-1]
    click.echo(
        f"trained {last['epoch']} epochs ({last['step']} steps, {last['seconds']:.1f} s, "
        f"{last['skipped_steps']} skipped) on {dataset.name} {tuple(dataset.data_shape)}"
    )
    if last.get("stopped") == "time_limit" and train_config.time_limit > 0:
        click.echo(
            f"stopped by the time limit ({train_config.time_limit:g} s) after {last['epoch']} "
            f"of {train_config.epochs} epochs"
        )
    line = stopping_line(history, train_config)
    if line is not None:
        click.echo(line)
    click.echo(f"valid ELBO            {valid_elbo:10.3f} nats")
    of = "" if n == len(x_valid) else f" ({n:,} of {len(x_valid):,} examples)"
    click.echo(f"valid log p(x), K={size.k:<4d} {valid_ll:10.3f} nats{of}")
    if model.capabilities.exact_likelihood:  # a small discrete latent: the exact value
        exact_ll = float(model.log_likelihood_exact(x_valid).mean())
        click.echo(f"valid log p(x), exact  {exact_ll:10.3f} nats")
    stats = latent_stats(model, x_valid, **kw)
    active = int((stats["activity"] > 0.01).sum())
    kl_valid = float(stats["kl"] if "kl" in stats else stats["kl_per_dim"].sum())
    click.echo(
        f"valid KL              {kl_valid:10.3f} nats, "
        f"{active} of {len(stats['kl_per_dim'])} latent dims active"
    )
    return valid_elbo

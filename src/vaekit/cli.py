"""The ``vaekit`` command. Thin: it parses arguments, calls the library and prints.

Any :class:`~vaekit.errors.VaekitError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import torch

from . import __version__
from .config import from_dict, parse_override, read_toml
from .errors import ConfigError, VaekitError

SECTIONS = ("model", "train")


def resolve_config(
    config_file: str | None, overrides: tuple[str, ...], dataset: Any, cli: dict[str, Any]
) -> tuple[Any, Any, str]:
    """Merge data-set defaults < config file < command-line flags < ``--set`` overrides.

    Returns (VAEConfig, TrainConfig, data name). ``--set`` keys are ``section.key`` or a bare key
    that belongs to exactly one section.
    """
    from .model import VAEConfig
    from .train import TrainConfig

    classes = {"model": VAEConfig, "train": TrainConfig}
    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for source in (dataset.defaults or {}, read_toml(config_file) if config_file else {}):
        for key, value in source.items():
            if key == "data":
                continue
            if key not in SECTIONS:
                raise ConfigError(f"unknown config section {key!r}; use [model] and [train]")
            if not isinstance(value, dict):
                raise ConfigError(f"config section {key!r} must be a table")
            merged[key].update(value)
    merged["train"].update({k: v for k, v in cli.items() if v is not None})
    for text in overrides:
        key, value = parse_override(text)
        section, _, name = key.rpartition(".")
        if not section:
            owners = [s for s in SECTIONS if name in {f for f in classes[s].__dataclass_fields__}]
            if len(owners) != 1:
                raise ConfigError(f"unknown setting {name!r} in --set {text!r}")
            section = owners[0]
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r} in --set {text!r}")
        merged[section][name] = value
    model_cfg = dict(merged["model"])
    model_cfg.setdefault("data_shape", list(dataset.data_shape))
    model_cfg.setdefault("likelihood", "bernoulli" if dataset.binary else "gaussian")
    train_cfg = dict(merged["train"])
    if dataset.binary and model_cfg["likelihood"] == "bernoulli":
        train_cfg.setdefault("binarize", "dynamic")
    return (
        from_dict(VAEConfig, model_cfg, section="model"),
        from_dict(TrainConfig, train_cfg, section="train"),
        dataset.name,
    )


def _progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vaekit")
def cli() -> None:
    """vaekit: train, evaluate and draw variational autoencoders."""


@cli.command()
@click.option("--data", "data", default="digits", show_default=True, help="Data set name or file.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--epochs", type=int, default=None, help="Passes over the training set.")
@click.option("--seed", type=int, default=None, help="Seed of initialisation, order and noise.")
@click.option("--config", "config_file", default=None, help="TOML file with [model] and [train].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option("-k", "k", type=int, default=1000, show_default=True, help="Samples for log p(x).")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train(
    data: str,
    out: Path,
    epochs: int | None,
    seed: int | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    k: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train a VAE and save it in a run folder.

    \b
    Example:
      vaekit train --data digits --out runs/digits --epochs 50 --set latent_dim=2
    """
    from . import data as datasets
    from .evaluate import elbo as elbo_per_example
    from .evaluate import log_likelihood
    from .model import VAE
    from .train import binarize, fit

    if (out / "config.json").exists() and not overwrite:
        raise ConfigError(f"{str(out)!r} already holds a run; choose another --out or --overwrite")
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    seed_given = seed
    dataset = datasets.load(data, seed=0)
    model_config, train_config, name = resolve_config(
        config_file, overrides, dataset, {"epochs": epochs, "seed": seed_given}
    )
    torch.manual_seed(train_config.seed)
    model = VAE(model_config)
    metadata = {"data": {"name": name, "source": data}}
    history = fit(
        model,
        dataset.train,
        valid=dataset.valid,
        config=train_config,
        out=out,
        metadata=metadata,
        progress=_progress(quiet),
    )
    x_valid = dataset.valid
    if train_config.binarize == "dynamic":
        x_valid = binarize(x_valid, seed=train_config.seed + 1)
    valid_elbo = float(elbo_per_example(model, x_valid).mean())
    valid_ll = float(log_likelihood(model, x_valid, k=k, progress=_progress(quiet)).mean())
    last = history[-1]
    click.echo(
        f"trained {last['epoch']} epochs ({last['step']} steps, {last['seconds']:.1f} s, "
        f"{last['skipped_steps']} skipped) on {name} {tuple(dataset.data_shape)}"
    )
    click.echo(f"valid ELBO            {valid_elbo:10.3f} nats")
    click.echo(f"valid log p(x), K={k:<4d} {valid_ll:10.3f} nats")
    click.echo(f"run saved to {out}/ (config.json, model.safetensors, metrics.jsonl)")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning vaekit errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="vaekit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("vaekit: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except VaekitError as err:
        click.echo(f"vaekit: error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)

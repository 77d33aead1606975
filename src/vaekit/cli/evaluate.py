"""``vaekit evaluate`` (with ``--gaps``), ``vaekit info`` and ``vaekit curves``: what a run has
learned and what its folder holds."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import click
import torch

from .. import lock
from ..dist import current
from ..errors import CheckpointError, ConfigError, DataError, VaekitError
from ..reading import read_json
from ..runs import EVAL_FILE, METRICS_FILE, WEIGHTS_FILE, figure
from .output import check_output, data_name, echo_lines, variant, write, wrote
from .params import (
    data_option,
    output_option,
    run_argument,
    seed_option,
    split_option,
)
from .run import Run
from .train import progress, settings_line, time_limit_reached, wrapped


@click.command()
@run_argument
@data_option
@split_option
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=None,
    help="Importance samples for log p(x)  [default: 5000; 100 for text]",
)
@click.option(
    "--gaps",
    "gaps_n",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Also split the ELBO's shortfall from log p(x) into approximation and amortization "
    "gaps on the first N examples (refines q(z|x) for each; kinds vae and text).",
)
@click.option(
    "--refine-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Adam steps of each example's refinement for --gaps  [default: 500].",
)
@click.option(
    "--disentanglement",
    is_flag=True,
    help="Instead: MIG, SAP, DCI, FactorVAE and beta-VAE scores of a run on data with factors "
    "(shapes, dsprites, --factors); writes RUN/disentanglement.json.",
)
@click.option(
    "--votes",
    type=click.IntRange(min=2),
    default=None,
    metavar="N",
    help="--disentanglement: votes (FactorVAE) and points (beta-VAE) to fit on, N/2 to score "
    "[default: 1000].",
)
@click.option(
    "--dci",
    "dci_importance",
    type=click.Choice(["boosting", "forest"]),
    default=None,
    help="--disentanglement: DCI's importances from gradient boosting (disentanglement_lib's; "
    "minutes on a CPU) or a random forest (seconds)  [default: boosting].",
)
@seed_option
@output_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def evaluate(
    run: Run,
    data: str | None,
    split: str,
    k: int | None,
    gaps_n: int | None,
    refine_steps: int | None,
    disentanglement: bool,
    votes: int | None,
    dci_importance: str | None,
    seed: int,
    output: Path | None,
    quiet: bool,
) -> None:
    """Report ELBO, log p(x), bits/dim, reconstruction error and latent usage of a run.

    Uses the test split of the run's data set unless --data/--split say otherwise. A run
    trained with dynamic binarisation is evaluated on one fixed binarisation (seed --seed).
    Writes RUN/eval.json (eval-DATA-SPLIT.json for another data set or split; or --output) and
    prints a table.

    --gaps N splits log p(x) - ELBO on the first N examples in two (Cremer et al. 2018): the
    approximation gap, log p(x) - ELBO(q*), where q* is the best diagonal Gaussian for each x
    (found by --refine-steps Adam steps from the encoder's q), and the amortization gap,
    ELBO(q*) - ELBO(q), what one encoder for all x costs.

    \b
    Example:
      vaekit evaluate runs/digits -k 5000
      vaekit evaluate runs/mnist --gaps 1000
    """
    if disentanglement:
        from .disentangle import disentanglement_command

        others = {"-k": k, "--gaps": gaps_n, "--refine-steps": refine_steps}
        return disentanglement_command(run, data, output, seed, votes, others, dci_importance)
    if votes is not None or dci_importance is not None:
        raise ConfigError("--votes and --dci go with --disentanglement")
    from ..evaluation import evaluate as evaluate_model
    from ..train import binarize

    config = run.config
    default = run / run.named(EVAL_FILE, data, split=split)
    out = check_output(run, output, default, (".json",), inputs=(data,))
    model = run.model
    if gaps_n is not None:
        from ..evaluation import check_refinable

        check_refinable(model)
    elif refine_steps is not None:
        raise ConfigError("--refine-steps goes with --gaps N (the examples to refine)")
    x, labels, dataset = run.split(data, split)
    condition = run.conditions(labels, f"the {split} split of {dataset.name}")
    binarized = (config.get("train") or {}).get("binarize") == "dynamic"
    if binarized:
        x = binarize(x, seed=seed)
    start = time.perf_counter()
    medium = run.media
    k = k or medium.importance_samples
    from ..estimators import check_passes, work_line

    check_passes(k, len(x))  # K x examples within the bound, before any work
    if not quiet and current().main:
        click.echo(work_line(k, len(x)), err=True)
    levels = medium.bin_levels(x)
    options = {} if levels is None else {"bin_levels": levels}
    report = evaluate_model(
        model, x, k=k, seed=seed, progress=progress(quiet), condition=condition, **options
    )
    if gaps_n is not None:
        report["inference_gaps"] = _inference_gaps(
            model, x, condition, k, gaps_n, refine_steps or REFINE_STEPS, seed, quiet
        )
    report = {
        "data": dataset.name,
        "split": split,
        "binarized": binarized,
        "seed": seed,
        **report,
        "seconds": round(time.perf_counter() - start, 3),
    }
    if current().main:  # under torchrun, rank 0 writes
        write(out, (json.dumps(report, indent=2) + "\n").encode())
    _print_report(report, medium.quality_lines(report), k)
    wrote(out)


def _print_report(report: dict[str, Any], quality: list[str], k: int) -> None:
    """``vaekit evaluate``'s table of ``report`` (nats, bits and their gaps), with the lines
    ``quality`` of the run's media (bits per dim or per token, reconstructions)."""
    note = f", binarised once (seed {report['seed']})" if report["binarized"] else ""
    kl = " ".join(f"{v:.2f}" for v in report["kl_per_dim"])
    click.echo(f"{report['split']} split of {report['data']}: {report['n']} examples{note}")
    click.echo(f"  ELBO                 {report['elbo']:12.3f} nats")
    click.echo(f"  log p(x), K={k:<8d} {report['log_likelihood']:12.3f} nats")
    if "exact_log_likelihood" in report:
        click.echo(f"  log p(x), exact       {report['exact_log_likelihood']:12.3f} nats")
    echo_lines(quality)
    click.echo(f"  KL(q(z|x) || p(z))   {report['kl']:12.3f} nats")
    units = len(report["kl_per_dim"])
    click.echo(f"  active units         {report['active_units']:>7d} of {units}")
    click.echo(
        textwrap.fill(kl, 100, initial_indent="  KL per latent dim   ", subsequent_indent=" " * 23)
    )
    if "inference_gaps" in report:
        gaps = report["inference_gaps"]
        click.echo(
            f"inference gaps on the first {gaps['n']} examples (q refined by "
            f"{gaps['refine_steps']} Adam steps each, ELBOs from {gaps['samples']} draws):"
        )
        click.echo(f"  log p(x), K={k:<8d} {gaps['log_likelihood']:12.3f} nats")
        click.echo(f"  ELBO, q(z|x)         {gaps['elbo']:12.3f} nats")
        click.echo(f"  ELBO, refined q*     {gaps['elbo_refined']:12.3f} nats")
        click.echo(f"  approximation gap    {gaps['approximation_gap']:12.3f} nats")
        click.echo(f"  amortization gap     {gaps['amortization_gap']:12.3f} nats")


#: Draws of each ELBO that ``vaekit evaluate --gaps`` compares, and its refinement's steps.
GAP_SAMPLES, REFINE_STEPS = 100, 500


def _inference_gaps(
    model: Any,
    x: torch.Tensor,
    condition: torch.Tensor | None,
    k: int,
    n: int,
    steps: int,
    seed: int,
    quiet: bool,
) -> dict[str, Any]:
    """``vaekit evaluate --gaps``: the gaps of the first ``n`` examples, averaged (nats)."""
    from ..evaluation import inference_gaps

    n = min(n, x.shape[0])
    kw = {} if condition is None else {"condition": condition[:n]}
    gaps = inference_gaps(
        model, x[:n], k=k, steps=steps, samples=GAP_SAMPLES, seed=seed,
        progress=progress(quiet), **kw,
    )  # fmt: skip
    means = {name: float(v.mean()) for name, v in gaps.items()}
    return {"n": n, "refine_steps": steps, "samples": GAP_SAMPLES, "k": k, **means}


@click.command()
@run_argument
@click.argument("more", nargs=-1, type=click.Path(path_type=Path))
@output_option
def curves(run: Run, more: tuple[Path, ...], output: Path | None) -> None:
    """Plot the training bound and validation ELBO against examples seen (log axis), from
    RUN/metrics.jsonl, as in the AEVB paper's figure 2. Writes RUN/figures/curves.png.

    With more run folders after RUN, overlays them (one colour per run, named by its folder;
    validation dashed), as the paper draws its latent sizes in one figure.

    \b
    Example:
      vaekit curves runs/digits
      vaekit curves runs/z3 runs/z5 runs/z10 -o fig2.png
    """
    from .. import viz

    runs = (run.path, *more)
    for folder in runs:
        Run(folder).config  # noqa: B018 (read: a folder that is no run is one line)
    others = "-".join(filter(None, (data_name(folder.name) for folder in more))) or None
    default = run / variant(figure("curves"), others and f"with-{others}")  # with the overlays
    out = check_output(run, output, default, (".png",))
    records = {folder.name: viz.read_metrics(folder / METRICS_FILE) for folder in runs}
    if len(records) < len(runs):
        raise ConfigError("runs to overlay need different folder names; they label the curves")
    if more:
        viz.save(viz.curves(records, title="bound per example"), out)
    else:
        viz.save(
            viz.curves(records[run.path.name], title=f"{run.path.name}: bound per example"), out
        )
    for name, rows in records.items():
        last = rows[-1]
        valid = f", validation ELBO {last['valid_elbo']:.3f}" if "valid_elbo" in last else ""
        prefix = f"{name}: " if more else ""
        click.echo(
            f"{prefix}{len(rows)} epochs, {last['examples_seen']} examples; last train bound "
            f"{last['train_bound']:.3f}{valid} nats"
        )
    wrote(out)


@click.command()
@run_argument
def info(run: Run) -> None:
    """Show what a run folder holds: data, model and training settings, progress, files.

    \b
    Example:
      vaekit info runs/digits
    """
    from ..viz import read_metrics

    config = run.config
    entry = config.get("data") if isinstance(config.get("data"), dict) else {}
    model_cfg = config.get("model") or {}
    click.echo(
        f"run    {run}  (vaekit {config.get('vaekit_version', '?')}, "
        f"format {config['format_version']})"
    )
    if entry:
        source = entry.get("source", entry.get("name"))
        click.echo(f"data   {entry.get('name', '?')} (from {source})")
    click.echo(wrapped("model", settings_line(model_cfg)))
    if config.get("train"):
        click.echo(wrapped("train", settings_line(config["train"])))
    try:
        records = read_metrics(run / METRICS_FILE)
    except DataError:
        records = []
    if records:
        last = records[-1]
        valid = f", valid ELBO {last['valid_elbo']:.3f}" if "valid_elbo" in last else ""
        click.echo(
            f"epochs {last.get('epoch', len(records))} ({last.get('step', '?')} steps, "
            f"{last['examples_seen']} examples, {last.get('seconds', 0):.1f} s); "
            f"last train bound {last['train_bound']:.3f}{valid} nats"
        )
        if last.get("stopped") == "time_limit" and time_limit_reached(run.path):
            limit = (config.get("train") or {}).get("time_limit", "?")
            click.echo(
                f"note   its time limit ({limit} s) ended the run; vaekit train --resume {run} "
                "--time-limit LONGER continues it"
            )
        if last.get("best_epoch") is not None:  # early stopping (patience): the best is kept
            ended = "early stopping ended the run; " if last.get("stopped") == "early" else ""
            click.echo(
                f"note   {ended}the model holds epoch {last['best_epoch']}'s weights, the best "
                f"validation ELBO ({last['best_valid_elbo']:.3f} nats)"
            )
    eval_file = run / EVAL_FILE
    if eval_file.is_file():
        try:
            ev = read_json(eval_file, DataError, "evaluation report")
            exact = ev.get("exact_log_likelihood")
            exact = f"; exact {exact:.3f}" if isinstance(exact, float) else ""
            # a text run's bits are per token, as vaekit evaluate prints them
            unit = next((u for u in ("char", "word") if f"bits_per_{u}" in ev), "dim")
            click.echo(
                f"eval   {ev['split']}: ELBO {ev['elbo']:.3f}, log p(x) {ev['log_likelihood']:.3f} "
                f"(K={ev['k']}{exact}), {ev['bits_per_dim']:.4f} bits/{unit}, "
                f"{ev['active_units']} active units"
            )
            gaps = ev.get("inference_gaps")
            if isinstance(gaps, dict):
                click.echo(
                    f"gaps   approximation {gaps['approximation_gap']:.3f}, amortization "
                    f"{gaps['amortization_gap']:.3f} nats (first {gaps['n']} examples, "
                    f"{gaps['refine_steps']} refinement steps)"
                )
        except (VaekitError, OSError, ValueError, KeyError, TypeError, AttributeError):
            click.echo("eval   eval.json is unreadable")
    live = lock.holder(run.path)  # a process trains the run now
    if live is not None:
        saved = live.get("saved_epoch") or "none yet"
        click.echo(f"note   training now: {lock.describe(live)}; last saved epoch: {saved}")
    elif not (run / WEIGHTS_FILE).is_file():
        from ..checkpoint import read_training_info

        try:
            state = read_training_info(run.path)
            click.echo(
                f"note   no model.safetensors yet: training stopped in epoch "
                f"{state.get('epochs_done', 0) + 1} at step {state.get('step', '?')}; continue "
                f"it with vaekit train --resume {run}"
            )
        except CheckpointError:
            click.echo("note   no model.safetensors: the run did not finish saving")
    click.echo("files")
    for path in sorted(
        p for p in run.path.rglob("*") if p.is_file() and not p.name.startswith(".")
    ):
        click.echo(f"  {path.relative_to(run.path)!s:<32} {_size(path.stat().st_size):>9}")


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    return f"{n / 1000:.1f} kB" if n < 1_000_000 else f"{n / 1_000_000:.1f} MB"

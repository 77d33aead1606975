"""``vaekit evaluate RUN --disentanglement``: MIG, SAP, DCI, the FactorVAE and beta-VAE scores of
a run trained on data with known factors (shapes, dsprites, or a factors file)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..errors import DataError
from .output import write, wrote
from .run import Run

#: Examples of the train split the predictors are fitted on, and of the test split they are
#: scored on (disentanglement_lib's 10,000 and 5,000).
FIT_EXAMPLES = 10_000
TEST_EXAMPLES = 5_000


def disentanglement_report(
    run: Run, data: str | None, votes: int, seed: int, out: Path, importance: str = "boosting"
) -> dict[str, Any]:
    """Score the run's encoder (posterior means) on its data's factors; write the report as
    JSON to ``out`` and print it. ``votes``: votes (FactorVAE) and points (beta-VAE) to fit the
    two scores' classifiers on, half as many to score them; ``importance``: DCI's predictor
    (:func:`vaekit.metrics.dci`)."""
    from .. import metrics

    run.need_continuous("--disentanglement")
    model = run.model
    x, _, dataset = run.split(data, "train")
    if dataset.train_factors is None or dataset.test_factors is None:
        raise DataError(
            f"the run's data ({dataset.name}) has no factors of variation; train on shapes or "
            "dsprites, or give a factors file with vaekit train --factors FILE"
        )
    x_fit, f_fit = x[:FIT_EXAMPLES], dataset.train_factors[:FIT_EXAMPLES]
    x_test, f_test = dataset.test[:TEST_EXAMPLES], dataset.test_factors[:TEST_EXAMPLES]
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        start = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - start, 3)
        return value

    z_fit = timed("encode", lambda: metrics.representation(model, x_fit))
    z_test = metrics.representation(model, x_test)
    held = {"z_test": z_test, "factors_test": f_test, "seed": seed}
    report: dict[str, Any] = {
        "data": dataset.name,
        "factors": dataset.factor_names,
        "fit_examples": len(x_fit),
        "test_examples": len(x_test),
        "seed": seed,
        "mig": timed("mig", lambda: metrics.mig(z_fit, f_fit)),
        "sap": timed("sap", lambda: metrics.sap(z_fit, f_fit, **held)),
        "dci": timed("dci", lambda: metrics.dci(z_fit, f_fit, importance=importance, **held)),
        "dci_importance": importance,
    }
    if np.asarray(f_fit).dtype.kind in "iu":
        half = max(1, votes // 2)
        report["factor_vae_score"] = timed(
            "factor_vae_score",
            lambda: metrics.factor_vae_score(
                model, dataset, train_votes=votes, eval_votes=half, seed=seed
            ),
        )
        report["beta_vae_score"] = timed(
            "beta_vae_score",
            lambda: metrics.beta_vae_score(
                model, dataset, train_points=votes, eval_points=half, seed=seed
            ),
        )
        report["votes"] = votes
    report["seconds"] = timings
    write(out, (json.dumps(report, indent=2) + "\n").encode())
    _print(report)
    wrote(out)
    return report


def _print(report: dict[str, Any]) -> None:
    dci = report["dci"]
    click.echo(
        f"disentanglement on {report['data']} ({', '.join(report['factors'] or [])}): fitted on "
        f"{report['fit_examples']} train examples, scored on {report['test_examples']} test"
    )
    click.echo(f"  MIG                      {report['mig']:.3f}")
    click.echo(f"  SAP                      {report['sap']:.3f}")
    click.echo(f"  DCI disentanglement      {dci['disentanglement']:.3f}")
    click.echo(f"  DCI completeness         {dci['completeness']:.3f}")
    click.echo(f"  DCI informativeness      {dci['informativeness']:.3f}")
    if "factor_vae_score" in report:
        click.echo(f"  FactorVAE score          {report['factor_vae_score']:.3f}")
        click.echo(f"  beta-VAE score           {report['beta_vae_score']:.3f}")
    else:
        click.echo("  FactorVAE, beta-VAE scores: need class factors (integers); these are real")


def disentanglement_command(
    run: Run,
    data: str | None,
    output: Path | None,
    seed: int,
    votes: int | None,
    others: dict[str, Any],
    importance: str | None = None,
) -> None:
    """``vaekit evaluate RUN --disentanglement``: checks its flags and output, then reports.
    ``others``: evaluate's flags that do not go with it (by flag, given or None)."""
    from ..errors import ConfigError
    from ..runs import DISENTANGLEMENT_FILE
    from .output import check_output

    for flag, value in others.items():
        if value is not None:
            raise ConfigError(f"--disentanglement reports the scores alone; leave out {flag}")
    default = run / run.named(DISENTANGLEMENT_FILE, data)
    out = check_output(run, output, default, (".json",), inputs=(data,))
    disentanglement_report(run, data, votes or 1000, seed, out, importance or "boosting")

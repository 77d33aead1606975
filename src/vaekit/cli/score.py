"""``vaekit score``: per-example log p(x), ELBO, reconstruction term and KL for every example of a
file, in the file's order, with percentiles against a reference and the AUROC where labels mark
outliers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..runs import SCORES_FILE
from .output import check_output, write, wrote
from .params import LabelColumn, data_option, output_option, run_argument, seed_option
from .run import Run, data_entry, data_source, load_data
from .train import progress

#: The file ``vaekit score`` writes by default, in the run folder.


def _ordered(run: Run, data: str | None, split: str | None, label_column: Any) -> dict[str, Any]:
    """The examples to score: every example of a file vaekit splits itself, in the file's order
    (``index``: the row), unless ``split`` names one split; a data set with splits of its own
    (a built-in name, an .npz of train/test): ``split`` (default test), in its order."""
    from .. import data as datasets
    from ..data.dataset import split as seeded_split
    from ..media import examples

    config = run.config
    if label_column is not None:
        config = {**config, "data": {**data_entry(config), "label_column": label_column}}
    source, seed = data_source(config, data)
    try:
        dataset = load_data(config, run.model, source, seed)
    except DataError as err:
        if data:
            raise
        raise DataError(f"{err} (the run's data set; give another with --data)") from None
    parts = [dataset.train, dataset.valid, dataset.test]
    labels = [dataset.train_labels, dataset.valid_labels, dataset.test_labels]
    n = sum(len(p) for p in parts)
    order, _ = seeded_split(torch.arange(n), None, (0.1, 0.1), seed)  # as the file was split
    own = datasets.builtin_name(source) is None and [len(p) for p in order] == [
        len(p) for p in parts
    ]
    if own and split is None:
        position = torch.cat(order)
        x = torch.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
        x[position] = torch.cat(parts)
        y = None
        if labels[0] is not None:
            y = torch.empty(n, dtype=labels[0].dtype)
            y[position] = torch.cat(labels)
        index, what = torch.arange(n), f"{dataset.name} (all {n} examples, in file order)"
    else:
        i = ("train", "valid", "test").index(split or "test")
        x, y = parts[i], labels[i]
        index = order[i] if own else torch.arange(len(x))
        what = f"the {split or 'test'} split of {dataset.name}"
    x = examples(run.model, x, what)
    return {"x": x, "labels": y, "index": index, "what": what, "names": dataset.label_names}


def _scores(run: Run, part: dict[str, Any], k: int, seed: int, quiet: bool) -> dict[str, Any]:
    """The per-example scores of ``part`` (binarised once under ``seed`` for a run trained with
    dynamic binarisation, as ``vaekit evaluate`` does)."""
    from ..evaluation.scores import example_scores
    from ..train import binarize

    x = part["x"]
    if (run.config.get("train") or {}).get("binarize") == "dynamic":
        x = binarize(x, seed=seed)
    condition = run.conditions(part["labels"], part["what"])
    kw = {} if condition is None else {"condition": condition}
    return example_scores(run.model, x, k=k, seed=seed, progress=progress(quiet), **kw)


def _outliers(part: dict[str, Any], outlier_label: str | None) -> np.ndarray | None:
    """Which examples the labels mark as outliers: those labelled ``outlier_label`` (a class
    number or a text label's name), else label 1 where the labels are all 0 or 1; None where
    there is nothing to mark them."""
    labels = part["labels"]
    if labels is None:
        if outlier_label is not None:
            raise ConfigError(
                f"--outlier-label {outlier_label} needs labelled data; {part['what']} has no "
                "labels (a CSV file's: give --label-column)"
            )
        return None
    y = labels.numpy()
    if outlier_label is None:
        return (y == 1) if np.isin(y, (0, 1)).all() else None
    names = part["names"] or []
    if outlier_label in names:
        value = names.index(outlier_label)
    else:
        try:
            value = int(outlier_label)
        except ValueError:
            known = f" (labels: {', '.join(names)})" if names else ""
            raise ConfigError(
                f"--outlier-label {outlier_label!r} is not a class number or label{known}"
            ) from None
    return y == value


def _table(part: dict[str, Any], scores: dict[str, Any], columns: list[str]) -> np.ndarray:
    """The structured array written: index (int64), label (int64, when labelled), the rest
    float64, in ``columns``' order."""
    fields = [("index", np.int64)]
    if part["labels"] is not None:
        fields.append(("label", np.int64))
    fields += [(c, np.float64) for c in columns]
    table = np.zeros(len(part["index"]), dtype=fields)
    table["index"] = part["index"].numpy()
    if part["labels"] is not None:
        table["label"] = part["labels"].numpy()
    for c in columns:
        table[c] = scores[c]
    return table


def _encoded(table: np.ndarray, suffix: str) -> bytes:
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, table, allow_pickle=False)
        return buffer.getvalue()
    names = table.dtype.names or ()
    text = io.StringIO()
    text.write(",".join(names) + "\n")
    for row in table:
        text.write(",".join(str(int(v)) if isinstance(v, np.integer) else f"{v:.9g}" for v in row))
        text.write("\n")
    return text.getvalue().encode()


@click.command()
@run_argument
@data_option
@click.option(
    "--split",
    type=click.Choice(("train", "valid", "test")),
    default=None,
    help="Score one split [default: every example of a file, in its order; a built-in data "
    "set's test split].",
)
@click.option(
    "-k", "k", type=click.IntRange(min=1), default=1000, show_default=True,
    help="Importance samples for each log p(x).",
)  # fmt: skip
@click.option(
    "--reference",
    default=None,
    metavar="NAME|PATH",
    help="Examples to rank against (every example of a file) [default: the run's test split].",
)
@click.option(
    "--outlier-label",
    default=None,
    metavar="LABEL",
    help="Examples with this label (class number or name) are the outliers of the AUROC "
    "[default: label 1 where the labels are 0 and 1].",
)
@click.option(
    "--label-column",
    type=LabelColumn(),
    default=None,
    metavar="COL",
    help="CSV/TSV data: the column of labels (index or header name) [default: the run's].",
)
@click.option(
    "--typicality",
    is_flag=True,
    help="Rank by the typicality test, |-log p(x) - H| (H: the reference's mean -log p(x)), "
    "instead of log p(x): inputs more likely than the reference are unusual too.",
)
@seed_option
@output_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def score(
    run: Run,
    data: str | None,
    split: str | None,
    k: int,
    reference: str | None,
    outlier_label: str | None,
    label_column: Any,
    typicality: bool,
    seed: int,
    output: Path | None,
    quiet: bool,
) -> None:
    """Score every example of a data file for anomaly detection.

    Writes one row per example, in the file's order, to RUN/scores.csv (or --output, .csv or
    .npy): index (the row in the file), label (when the data has labels), log_px (log p(x),
    importance-weighted over -k samples), elbo, recon (E_q[log p(x|z)]) and kl (KL(q(z|x) ||
    p(z))), all in nats, and percentile: the percentage of the reference whose log p(x) is below
    the example's (ties half), so a low percentile is unusual. With --typicality, also the
    column typicality, |-log p(x) - H|, and percentile ranks -typicality instead. A .npy file is
    a structured array with these fields (index and label int64, the rest float64; no pickle).

    Where labels mark outliers (--outlier-label, or label 1 of 0/1 labels), prints the AUROC of
    -log p(x) (or of typicality) for telling them from the rest.

    \b
    Example:
      vaekit score runs/mnist --data mixed.npy --output scores.csv
      vaekit score runs/table --data rows.csv --label-column is_fraud --outlier-label 1
    """
    from ..evaluation.scores import SCORE_COLUMNS, auroc, percentiles
    from ..evaluation.scores import typicality as typicality_of

    default = run / run.named(SCORES_FILE, data, split=split, default_split=None)
    out = check_output(run, output, default, (".csv", ".npy"), inputs=(data, reference))
    part = _ordered(run, data, split, label_column)
    outliers = _outliers(part, outlier_label)
    if outliers is not None and (outliers.all() or not outliers.any()):
        raise ConfigError(
            f"the labels mark {int(outliers.sum())} of {outliers.size} examples as outliers; "
            "the AUROC needs both outliers and the rest (see --outlier-label)"
        )
    ref = _ordered(run, reference, None, None) if reference else _run_test_split(run)
    scores = _scores(run, part, k, seed, quiet)
    ref_ll = _scores(run, ref, k, seed, quiet)["log_px"]
    columns = list(SCORE_COLUMNS)
    normal, ref_normal = scores["log_px"], ref_ll  # higher: more like the reference
    if typicality:
        scores["typicality"] = typicality_of(scores["log_px"], ref_ll)
        normal, ref_normal = -scores["typicality"], -typicality_of(ref_ll, ref_ll)
        columns.append("typicality")
    scores["percentile"] = percentiles(normal, ref_normal)
    columns.append("percentile")
    table = _table(part, scores, columns)
    write(out, _encoded(table, out.suffix.lower()))
    ll = scores["log_px"]
    click.echo(f"scored {len(ll)} examples of {part['what']}: mean log p(x) {ll.mean():.3f} nats "
               f"(K={k}, seed {seed})")  # fmt: skip
    click.echo(f"reference: {ref['what']}, mean log p(x) {ref_ll.mean():.3f} nats; "
               f"{(scores['percentile'] < 5).sum()} examples below its 5th percentile")  # fmt: skip
    if outliers is not None:
        name = "typicality" if typicality else "-log p(x)"
        value = auroc(outliers, -normal)
        click.echo(f"AUROC of {name} for the {int(outliers.sum())} outliers: {value:.4f}")
    wrote(out)


def _run_test_split(run: Run) -> dict[str, Any]:
    x, labels, dataset = run.split(None, "test")
    what = f"the test split of {dataset.name}"
    return {"x": x, "labels": labels, "index": torch.arange(len(x)), "what": what, "names": None}

"""``vaekit train``: a new run, ``--resume`` of one, Ctrl-C and SIGTERM, and the end-of-training
report."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import torch

from ..config import from_dict, parse_override
from ..errors import CheckpointError, ConfigError, DataError
from ..lock import refuse_if_busy
from ..logs import LOGGERS, TENSORBOARD_FOLDER, require_tensorboard, tensorboard_log
from ..runs import CONFIG_FILE, METRICS_FILE, STATE_FILE, WEIGHTS_FILE
from ..settings import resolve_config, retokenize
from .group import description, placed
from .newrun import (
    DATA_OPTIONS,
    check_out,
    check_read_options,
    data_name,
    given_settings,
    read_options,
    split_record,
    table_defaults,
)
from .output import progress, wrote
from .params import Duration, ImageSize, KeyValue, LabelColumn, seed_range
from .report import ReportSize, report, valid_elbo
from .run import check_data_option, condition_dim, data_source, load_data, split_conditions

if TYPE_CHECKING:
    from ..data import Dataset
    from ..models import VAE


def settings_line(config: dict[str, Any]) -> str:
    """Settings as ``key=value`` words (a long list, e.g. a vocabulary, as its length)."""

    def show(v: Any) -> str:
        if isinstance(v, list) and len(v) > 12:  # a text model's vocabulary
            return f"[{len(v)} items]"
        return json.dumps(v) if isinstance(v, str) else str(v)

    return " ".join(f"{k}={show(v)}" for k, v in config.items())


def wrapped(label: str, text: str) -> str:
    """``text`` after ``label``, wrapped at 100 columns."""
    return textwrap.fill(text, width=100, initial_indent=f"{label:<7}", subsequent_indent=" " * 7)


@click.command()
@click.option("--data", "data", default=None, help="Data set name or file [default: digits].")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Run folder.")
@click.option(
    "--resume",
    "resume",
    type=click.Path(path_type=Path),
    default=None,
    metavar="RUN",
    help="Continue the run in RUN from its last checkpoint, with its own settings.",
)
@click.option("--epochs", type=int, default=None, help="Passes over the training set.")
@click.option(
    "--time-limit",
    "time_limit",
    type=Duration(),
    default=None,
    metavar="DURATION",
    help="End the run before an epoch that would take training past DURATION (600, 90s, 10m, "
    "1.5h).",
)
@click.option(
    "--seed", type=seed_range, default=None, help="Seed of initialisation, order and noise."
)
@click.option("--config", "config_file", default=None, help="TOML file with [model] and [train].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option(
    "-k",
    "k",
    type=int,
    default=100,
    show_default=True,
    help="Importance samples for the report's log p(x) (vaekit evaluate -k for more).",
)
@click.option(
    "--report-examples",
    "report_examples",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    metavar="N",
    help="Validation examples the report's log p(x) is estimated on (0: all of them).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a run already in --out (put back if the new one fails or is stopped in its "
    "first epoch).",
)
@click.option(
    "--image-size",
    type=ImageSize(),
    default=None,
    metavar="SIZE",
    help="Image folders: resize every image to SIZE (e.g. 64, or 48x64 for height x width).",
)
@click.option(
    "--label-column",
    type=LabelColumn(),
    default=None,
    metavar="COL",
    help="CSV/TSV files: the column of labels (index, negative from the end, or header name).",
)
@click.option(
    "--audio",
    "audio",
    type=KeyValue(),
    multiple=True,
    metavar="KEY=VALUE",
    help="WAV data: spectrogram setting (sample_rate, n_fft, hop, n_mels, frames, trim_db, "
    "griffin_lim_iters).",
)
@click.option(
    "--examples",
    type=click.IntRange(min=3),
    default=None,
    metavar="N",
    help="shapes, dsprites: draw N examples under the split seed [default: 50000; 737280: all].",
)
@click.option(
    "--factors",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FILE",
    help="A .npy/.csv of known factors of variation, one row per example of the data file.",
)
@click.option(
    "--valid-fraction",
    "valid_fraction",
    type=float,
    default=None,
    metavar="F",
    help="Data vaekit splits itself (arrays, CSV/TSV, image folders): the fraction of examples "
    "held out for validation [default: 0.1].",
)
@click.option(
    "--test-fraction",
    "test_fraction",
    type=float,
    default=None,
    metavar="F",
    help="...and for the test split [default: 0.1]; the rest trains.",
)
@click.option(
    "--split-seed",
    "split_seed",
    type=seed_range,
    default=None,
    metavar="N",
    help="...and the seed that draws the split [default: 0]. All three are saved with the run, "
    "whose commands read the same split.",
)
@click.option(
    "--log",
    type=click.Choice(LOGGERS),
    default=None,
    help="Also write training logs: tensorboard writes RUN/tensorboard/ (needs the extra: pip "
    "install 'vaekit[tensorboard]').",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train(
    data: str | None,
    out: Path | None,
    resume: Path | None,
    epochs: int | None,
    time_limit: float | None,
    seed: int | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    k: int,
    report_examples: int,
    overwrite: bool,
    image_size: tuple[int, int] | None,
    label_column: int | str | None,
    audio: tuple[tuple[str, Any], ...],
    examples: int | None,
    factors: Path | None,
    valid_fraction: float | None,
    test_fraction: float | None,
    split_seed: int | None,
    log: str | None,
    quiet: bool,
) -> None:
    """Train a VAE and save it in a run folder.

    Settings come from the data set's defaults, then --config, then --epochs, --time-limit and
    --seed, then --set. The resolved config is printed and saved in RUN/config.json. The training
    state is saved in RUN/checkpoint.safetensors once a minute (or every N steps with --set
    checkpoint_every=N; on a GPU's fast path at the first epoch end due) and at the end; Ctrl-C
    saves it and stops. --resume RUN continues from it with the run's own settings (--epochs may
    extend a finished run, --time-limit one that its time limit ended); on CPU the result is bit for
    bit that of a run never stopped. --time-limit ends the run, as finished, before an epoch that
    would take its training past the limit; --set patience=N after N epochs without a better
    validation ELBO, keeping the best epoch's weights (a user's table gets latent_dim, epochs and
    patience from its size where none are given; each choice is a note).

    \b
    Example:
      vaekit train --data digits --out runs/digits --epochs 50 --set latent_dim=2
      vaekit train --config configs/aevb-mnist.toml --out runs/mnist --epochs 100
      vaekit train --data photos/ --image-size 64 --out runs/photos
      vaekit train --resume runs/mnist --epochs 200
      vaekit train --config configs/iwae-iwae2-k50.toml --out runs/best --time-limit 10m
    """
    from .. import data as datasets
    from ..models import build_model

    refuse_if_busy(resume if resume is not None else out)  # one process writes a run folder
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    size = ReportSize(k, report_examples)
    if log is not None:
        require_tensorboard()  # before anything trains: the extra is missing
    check_data_option(data)
    load_options = read_options(
        image_size=image_size,
        label_column=label_column,
        audio=audio,
        examples=examples,
        factors=factors,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
    )
    seconds = time_limit
    if resume is not None:
        if load_options or split_seed is not None:
            flag = DATA_OPTIONS[next(iter(load_options))][0] if load_options else "--split-seed"
            raise ConfigError(f"--resume reads the run's data as it was read; leave out {flag}")
        _train_resume(
            resume, out, data, epochs, seconds, seed, config_file, overrides, size, overwrite,
            quiet, log,
        )  # fmt: skip
        return
    if out is None:
        raise click.UsageError("give --out for a new run, or --resume RUN to continue one")
    check_out(out, overwrite)
    data = data_name(data, config_file)
    check_read_options(data, load_options, split_seed)
    dataset = datasets.load(data, seed=split_seed or 0, **load_options)
    flags = {"epochs": epochs, "time_limit": seconds, "seed": seed}
    model_config, train_config, name = resolve_config(config_file, overrides, dataset, flags)
    given = given_settings(config_file, overrides, flags)  # the rest may come from the data
    model_config, train_config = table_defaults(data, dataset, model_config, train_config, given)
    if dataset.media == {"kind": "text"}:
        dataset, model_config = retokenize(dataset, model_config)
    from .budget import check_new_run

    check_new_run(model_config, train_config, dataset, size)  # memory, -k: before allocating
    torch.manual_seed(train_config.seed)
    model = placed(build_model(model_config))
    metadata = _metadata(data, name, dataset, load_options)
    metadata["data"].update(split_record(data, load_options, split_seed))
    _train_and_report(model, dataset, train_config, out, metadata, size, quiet, False, log)


def _metadata(
    data: str, name: str, dataset: Dataset, load_options: dict[str, Any]
) -> dict[str, Any]:
    """The run record of a new run's data: its name, where it came from and how it was read."""
    from .. import data as datasets

    # A data set's name wins over a file or folder of that name, as in data.load.
    is_file = datasets.builtin_name(data) is None
    image_shape = dataset.image_shape
    return {
        "data": {
            "name": name,
            "source": str(Path(data).resolve()) if is_file else data,
            "split_seed": 0,
            **({"image_shape": list(image_shape)} if image_shape else {}),
            **(
                {"label_column": load_options["label_column"]}
                if "label_column" in load_options
                else {}
            ),
            **({"media": dataset.media} if dataset.media else {}),
            **{key: load_options[key] for key in ("examples", "factors") if key in load_options},
        }
    }


def _train_resume(
    run: Path,
    out: Path | None,
    data: str | None,
    epochs: int | None,
    time_limit: float | None,
    seed: int | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    size: ReportSize,
    overwrite: bool,
    quiet: bool,
    log: str | None = None,
) -> None:
    """``vaekit train --resume RUN``: the run's saved settings, with only RESUMABLE changes."""
    from ..checkpoint import read_training_info
    from ..models import build_model, model_config
    from ..train import RESUMABLE, TrainConfig, check_resumable

    if out is not None and out.resolve() != run.resolve():
        raise ConfigError(f"--resume continues {str(run)!r} in place; leave out --out")
    given_flags = {"--seed": seed is not None, "--config": config_file, "--overwrite": overwrite}
    for flag, given in given_flags.items():
        if given:
            raise ConfigError(
                f"--resume continues {str(run)!r} with its saved settings and {flag} would change "
                "them; start a new run with --out instead"
            )
    info = read_training_info(run)
    changes: dict[str, Any] = {} if epochs is None else {"epochs": epochs}
    if time_limit is not None:
        changes["time_limit"] = time_limit
    for text in overrides:
        key, value = parse_override(text)
        section, _, name = key.rpartition(".")
        if section not in ("", "train") or name not in RESUMABLE:
            raise ConfigError(
                f"--set {text!r}: a resumed run keeps its settings (only "
                f"{', '.join(RESUMABLE)} may change); start a new run with --out to change {name}"
            )
        changes[name] = value
    try:
        saved_train = dict(info["train"])
        saved_model = model_config(info["model"], section="model", saved=True)
        metadata = dict(info.get("metadata") or {})
        done = int(info.get("epochs_done", 0))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{str(run)!r}: its checkpoint's run record is damaged ({err})"
        ) from None
    train_config = from_dict(TrainConfig, {**saved_train, **changes}, section="train")
    rewrite = bool(info.get("finished")) and not _weights_readable(run)
    if info.get("finished") and not rewrite:
        limit = float(saved_train.get("time_limit") or 0)
        ended = info.get("time_limit_reached") and train_config.time_limit == limit
        waited = _stopped_early(info, train_config.patience, done)
        if data and (train_config.epochs == done or ended or waited):  # nothing to train:
            _check_same_data(run, info, saved_model, metadata, data)  # other data is refused
        if waited:
            click.echo(waited)
            return
        if train_config.epochs == done:
            click.echo(
                f"{run} has already finished its {done} epochs; to train further give --epochs N "
                f"with N more than {done}"
            )
            return
        if ended:
            click.echo(
                f"{run} reached its time limit of {limit:g} s after {done} epochs; to train "
                f"further give a longer --time-limit (or 0 for none)"
            )
            return
    # the saved model and data with RESUMABLE changes: check_resumable checks the epochs done
    check_resumable(info, {"model": info["model"], "train": {}, "data": {}}, train_config, run)
    _check_time_left(run, info, train_config.time_limit, saved_train.get("time_limit"))
    source, split_seed = data_source(metadata, data)
    torch.manual_seed(train_config.seed)
    model = placed(build_model(saved_model))
    try:
        dataset = load_data(metadata, model, source, split_seed)
    except DataError as err:
        if data:
            raise
        raise DataError(f"{err} (the run's data set; give it with --data)") from None
    from .budget import check_report

    check_report(size, dataset)  # -k x --report-examples within the bound, before training
    if rewrite and train_config.epochs == done:
        click.echo(
            f"{run}: model.safetensors is missing or unreadable; writing it again from the "
            f"training state ({done} epochs)"
        )
    else:
        click.echo(
            f"resume {run} at epoch {done + 1} of {train_config.epochs}, step {info.get('step')}"
        )
    _train_and_report(model, dataset, train_config, run, metadata, size, quiet, True, log)


def _stopped_early(info: dict[str, Any], patience: int, done: int) -> str | None:
    """The line saying a resumed run is finished because early stopping ended it and still
    does under ``patience`` (the resumed run's), whatever its epochs; else None."""
    if not info.get("stopped_early") or not patience:
        return None
    best = info.get("best_epoch")
    since = done - best if type(best) is int else done
    if since < patience:
        return None  # a larger patience: the run trains on
    return (
        f"stopped early at epoch {done}; best validation ELBO at epoch {best} "
        f"(patience {patience}): the run is finished; to train further resume with "
        f"--set patience=N for N more than {since}, or --set patience=0"
    )


def _check_same_data(
    run: Path, info: dict[str, Any], saved_model: Any, metadata: dict[str, Any], data: str
) -> None:
    """A :class:`ConfigError` unless ``--data`` is the training data the run's checkpoint
    records (its sha256 fingerprint), read as the run reads its data."""
    from ..models import build_model
    from ..train import as_tensor, fingerprint

    model = build_model(saved_model)
    dataset = load_data(metadata, model, *data_source(metadata, data))
    dtype = torch.float64 if model._dtype == torch.float64 else torch.float32
    now = fingerprint(as_tensor(dataset.train, "training data", dtype))
    saved = (info.get("data") or {}).get("train")
    if isinstance(saved, str) and now != saved:
        raise ConfigError(
            f"--data {data!r} is not the data the run in {str(run)!r} was trained on (sha256 "
            f"{now[:12]} vs {saved[:12]}); a resume continues the run on its own data: evaluate "
            f"other data with vaekit evaluate {run} --data {data}, or train a new run with --out"
        )


def _check_time_left(run: Path, info: dict[str, Any], limit: float, saved: Any) -> None:
    """Refuse a new time limit (seconds) that leaves a resumed run no epoch to train: the run's
    training seconds so far plus its last epoch's would pass it. A run stopped mid-epoch
    finishes that epoch whatever the limit, so it is not refused."""
    if not limit or limit == saved or info.get("mid_epoch") or "seconds" not in info:
        return
    from ..train import no_epoch_fits

    try:
        spent, last = float(info["seconds"]), float(info.get("last_epoch_seconds") or 0.0)
    except (TypeError, ValueError):
        return
    if no_epoch_fits(spent, last, limit):
        raise ConfigError(
            f"time limit {limit:g} s: the run in {str(run)!r} has trained for {spent:.1f} s and "
            f"its last epoch took {last:.1f} s, so no epoch fits; give more than "
            f"{math.ceil(spent + last)} s (or 0 for no limit)"
        )


def time_limit_reached(run: Path) -> bool:
    """Whether the run's training state says its time limit ended it (and nothing since)."""
    from ..checkpoint import read_training_info

    try:
        return bool(read_training_info(run).get("time_limit_reached"))
    except CheckpointError:
        return False


def _weights_readable(run: Path) -> bool:
    """Whether the run's model.safetensors loads (it may be missing, truncated or damaged)."""
    from ..models import load

    try:
        load(run)
    except CheckpointError:
        return False
    return True


def _train_and_report(
    model: VAE,
    dataset: Dataset,
    train_config: Any,
    out: Path,
    metadata: dict[str, Any],
    size: ReportSize,
    quiet: bool,
    resume: bool,
    log: str | None = None,
) -> None:
    """Run fit with Ctrl-C (and SIGTERM) saving the state and stopping; then print the report."""
    from ..config import to_dict
    from ..models import model_table
    from ..train import as_tensor, check_data

    name = dataset.name
    for split in ("train", "valid"):  # before the settings are printed: bad data is one line
        check_data(model, as_tensor(getattr(dataset, split)), f"{name}'s {split} split")
    conditions = {}
    if condition_dim(model):
        conditions = {
            "conditions": split_conditions(model, dataset.train_labels, f"{name}'s train split"),
            "valid_conditions": split_conditions(
                model, dataset.valid_labels, f"{name}'s valid split"
            ),
        }
    sizes = f"{len(dataset.train)} train / {len(dataset.valid)} valid / {len(dataset.test)} test"
    click.echo(wrapped("data", f"{name} {tuple(dataset.data_shape)}, {sizes}"))
    for note in dataset.notes:
        click.echo(wrapped("note", note.replace("image_size", "--image-size")))
    click.echo(wrapped("model", settings_line(model_table(model.config))))
    click.echo(wrapped("train", settings_line(to_dict(train_config))))
    if description() is not None:  # under torchrun: the processes that share the run
        click.echo(wrapped("dist", description()))
    if log is not None:
        warn = _warning  # one line on stderr; training goes on
        conditions["callbacks"] = [tensorboard_log(model, dataset, train_config, out, warn)]
    valid = conditions.get("valid_conditions")
    start = None if resume else valid_elbo(model, dataset, train_config, valid)
    history = _fit(model, dataset, train_config, out, metadata, conditions, quiet, resume)
    end = report(model, dataset, train_config, history, valid, size, quiet)
    if start is not None and not end >= start:  # NaN counts as worse
        lr = train_config.lr
        _warning(
            f"training made the model worse than its random start (valid ELBO {end:,.1f} nats "
            f"against {start:,.1f} before the first step): the steps diverged; try a smaller "
            f"learning rate (lr={lr:g} now, e.g. --set lr={lr / 10:g})"
        )
    wrote(*(out / f for f in (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, STATE_FILE)))
    if log is not None and not conditions["callbacks"][0].failed:
        wrote(out / TENSORBOARD_FOLDER)


def _warning(message: str) -> None:
    click.echo(f"vaekit: warning: {message}", err=True)


def _fit(
    model: VAE,
    dataset: Dataset,
    train_config: Any,
    out: Path,
    metadata: dict[str, Any],
    conditions: dict[str, Any],
    quiet: bool,
    resume: bool,
) -> list[dict[str, Any]]:
    """``fit``, with the first Ctrl-C (or SIGTERM) saving the state and stopping, a second
    stopping at once; an interrupted run is a line on stderr and exit status 128 + signal."""
    import shlex
    import signal
    import threading

    from ..train import TrainingInterrupted, fit

    stop = threading.Event()
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop at once (files are written atomically)
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, handler) for sig in handled}
    try:
        return fit(
            model,
            dataset.train,
            valid=dataset.valid,
            **conditions,
            config=train_config,
            out=out,
            metadata=metadata,
            progress=progress(quiet),
            resume=resume,
            stop=stop.is_set,
        )
    except TrainingInterrupted as err:
        if err.restored:
            click.echo(
                f"vaekit: interrupted before the new run's first epoch ended; the run that was "
                f"in {out} is back",
                err=True,
            )
            sys.exit(128 + (received[0] if received else signal.SIGINT))
        click.echo(
            f"vaekit: interrupted at step {err.step}; continue with: vaekit train --resume "
            f"{shlex.quote(str(out))}",
            err=True,
        )
        sys.exit(128 + (received[0] if received else signal.SIGINT))
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

"""A new run of ``vaekit train``: where it goes (``--out`` checked), how its data is read (the
read options and the split settings, recorded in config.json so that every later command reads
the same split), and the settings chosen from the data where the user gave none (tables).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..runs import CONFIG_FILE, STATE_FILE, WEIGHTS_FILE
from .output import check_writable

if TYPE_CHECKING:
    from ..data import Dataset

#: train's options of how data is read: data.load's keyword -> (flag, the data it is for).
DATA_OPTIONS = {
    "image_size": ("--image-size", "folders of images"),
    "label_column": ("--label-column", "CSV and TSV files"),
    "audio": ("--audio", "WAV files and folders of them"),
    "examples": ("--examples", "shapes and dsprites"),
    "factors": ("--factors", "arrays, CSV files and folders of images"),
    "valid_fraction": ("--valid-fraction", "data vaekit splits itself: arrays, CSV files, folders "
                       "of images"),
    "test_fraction": ("--test-fraction", "data vaekit splits itself: arrays, CSV files, folders "
                      "of images"),
}  # fmt: skip
#: The flag of each split setting.
SPLIT_FLAGS = {
    "valid_fraction": "--valid-fraction",
    "test_fraction": "--test-fraction",
    "split_seed": "--split-seed",
}


def data_name(data: str | None, config_file: str | None) -> str:
    """The data of a new run: ``--data``, else the config file's ``data``, else digits."""
    from ..config import read_toml

    if data is None and config_file:
        data = read_toml(config_file).get("data")
        if data is not None and not isinstance(data, str):
            raise ConfigError(f"'data' in {config_file!r} must be a data set name or a path")
    return data or "digits"


def read_options(**given: Any) -> dict[str, Any]:
    """data.load's keyword options from train's flags (those given, as data.load takes them)."""
    options = {key: value for key, value in given.items() if value is not None}
    if "audio" in options:
        options["audio"] = dict(options["audio"]) if options["audio"] else None
        if options["audio"] is None:
            del options["audio"]
    if "factors" in options:
        options["factors"] = str(Path(options["factors"]).resolve())
    return options


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file or holds a run (unless ``overwrite``), before any
    data is read."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; give a folder for the run")
    if not overwrite and (out / STATE_FILE).exists() and not (out / WEIGHTS_FILE).exists():
        raise ConfigError(
            f"{str(out)!r} holds an unfinished run; continue it with vaekit train --resume "
            f"{out}, or replace it with --overwrite"
        )
    if (out / CONFIG_FILE).exists() and not overwrite:
        raise ConfigError(f"{str(out)!r} already holds a run; choose another --out or --overwrite")
    check_writable(out, "--out")


def check_read_options(data: str, options: dict[str, Any], split_seed: int | None) -> None:
    """Refuse a read option or split setting that does not apply to ``data`` (one line naming
    the flag), and split fractions out of range."""
    from .. import data as datasets

    for option in datasets.misplaced_options(data, list(options)):
        flag, fits = DATA_OPTIONS[option]
        raise ConfigError(f"{flag} does not apply to {data!r}: it is for {fits}")
    if split_seed is not None and datasets.misplaced_options(data, ["valid_fraction"]):
        fits = DATA_OPTIONS["valid_fraction"][1]
        raise ConfigError(f"--split-seed does not apply to {data!r}: it is for {fits}")
    try:
        datasets.check_fractions(options.get("valid_fraction"), options.get("test_fraction"))
    except ConfigError as err:
        message = err.message
        for key, flag in SPLIT_FLAGS.items():
            message = message.replace(key, flag)
        raise ConfigError(message) from None
    if options.get("valid_fraction") == 0:
        raise ConfigError(
            "--valid-fraction 0 leaves no validation split, on which train measures every epoch "
            "and its report: give a fraction above 0"
        )


def split_record(data: str, options: dict[str, Any], split_seed: int | None) -> dict[str, Any]:
    """The split settings a new run records in its config.json's ``data`` table: the seed, and
    the fractions where vaekit splits the data itself (a run without them is read at 0.1 and
    0.1, as every run before them was)."""
    from .. import data as datasets

    record: dict[str, Any] = {"split_seed": split_seed or 0}
    if not datasets.misplaced_options(data, ["valid_fraction"]) and (
        datasets.builtin_name(data) is None and Path(data).exists()
    ):
        valid, test = datasets.check_fractions(
            options.get("valid_fraction"), options.get("test_fraction")
        )
        record.update(valid_fraction=valid, test_fraction=test)
    return record


def given_settings(
    config_file: str | None, overrides: tuple[str, ...], flags: dict[str, Any]
) -> set[str]:
    """The names of the settings the user gave: in the config file's [model] and [train]
    tables, in ``--set`` (bare or ``section.key``), or as a flag (``flags`` not None)."""
    from ..config import parse_override, read_toml

    names = {key for key, value in flags.items() if value is not None}
    if config_file:
        for section in ("model", "train"):
            table = read_toml(config_file).get(section)
            names.update(table if isinstance(table, dict) else ())
    names.update(parse_override(text)[0].rpartition(".")[2] for text in overrides)
    return names


def is_table(data: str, dataset: Dataset) -> bool:
    """Whether ``data`` is a user's table: a file whose examples are rows of numbers (CSV/TSV,
    or a 2-D array), not images, text or sound, and not a built-in data set."""
    from .. import data as datasets

    kind = (dataset.media or {}).get("kind")
    return (
        datasets.builtin_name(data) is None
        and len(dataset.data_shape) == 1
        and not dataset.image_shape
        and kind in (None, "table")
    )


def table_defaults(
    data: str, dataset: Dataset, model_config: Any, train_config: Any, given: set[str]
) -> tuple[Any, Any]:
    """The configs of a new run on a user's table with ``latent_dim`` and ``epochs`` chosen
    from the data where the user gave neither (``given``: the settings the user gave), and
    early stopping (``patience``) with the epochs chosen, each choice a note on ``dataset``; any
    other data, or a model kind other than vae, as it is."""
    from dataclasses import replace

    from ..models import model_table
    from ..train.sizing import (
        TABLE_MAX_EPOCHS,
        TABLE_STEPS,
        table_epochs,
        table_latent_dim,
        table_patience,
    )

    if not is_table(data, dataset) or model_table(model_config)["kind"] != "vae":
        return model_config, train_config
    columns, rows = dataset.data_shape[0], len(dataset.train)
    if "latent_dim" not in given:
        latent = table_latent_dim(columns)
        if latent != model_config.latent_dim:
            model_config = replace(model_config, latent_dim=latent)
            dataset.notes.append(
                f"latent_dim={latent} for a table of {columns} columns (half of them, 2 to 20); "
                "--set latent_dim=N chooses another"
            )
    if "epochs" not in given:
        epochs = table_epochs(rows, train_config.batch_size)
        if epochs != train_config.epochs:
            steps = epochs * -(-rows // train_config.batch_size)
            train_config = replace(train_config, epochs=epochs)
            dataset.notes.append(
                f"epochs={epochs} for {rows} training rows in batches of "
                f"{train_config.batch_size}: {steps} steps (about {TABLE_STEPS}, at most "
                f"{TABLE_MAX_EPOCHS} epochs); --epochs N chooses another"
            )
            if "patience" not in given and len(dataset.valid) and not train_config.patience:
                patience = table_patience(epochs)
                train_config = replace(train_config, patience=patience)
                dataset.notes.append(
                    f"patience={patience}: training stops after {patience} epochs without a "
                    "better validation ELBO and keeps the best epoch; --set patience=0 turns "
                    "this off"
                )
    return model_config, train_config

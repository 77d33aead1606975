"""A run folder as one command sees it: its config, model, media and data, each read once.

In the manner of Flask's ScriptInfo: a command takes a :class:`Run` (the RUN argument) and asks
it for what it needs; nothing is read before it is asked for, so a command checks its outputs
before loading a model.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..errors import ConfigError, DataError
from .output import check_folder, check_output, default_name

if TYPE_CHECKING:
    from ..data import Dataset
    from ..media import Medium
    from ..models import VAE


def check_data_option(data: str | None) -> None:
    """Refuse an empty --data (it would otherwise mean the default data set)."""
    if data is not None and not data.strip():
        raise ConfigError(f"--data is empty ({data!r}); give a data set name or a path")


def data_entry(config: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` table of a run's config (empty when it has none)."""
    entry = config.get("data")
    return entry if isinstance(entry, dict) else {}


def data_source(config: dict[str, Any], data: str | None) -> tuple[str, int]:
    """The data set to read (``data``, else the run's own) and the run's split seed (the
    run's split settings apply to any data its commands split; older runs: 0)."""
    check_data_option(data)
    entry = data_entry(config)
    source = data or entry.get("source") or entry.get("name")
    if not source:
        raise DataError("the run does not record its data set; give one with --data NAME|PATH")
    return str(source), int(entry.get("split_seed", 0))


def load_data(config: dict[str, Any], model: VAE, source: str, seed: int) -> Dataset:
    """The data set at ``source``, read as the run's model was trained (by the run's media:
    text in its vocabulary, audio with its spectrogram settings, images at its size and in its
    colours, CSV labels from its label column)."""
    from ..media import media_of

    return media_of(config, model).load(source, seed)


class Run:
    """The run folder ``path``: its config.json, model and media, read when first asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @cached_property
    def config(self) -> dict[str, Any]:
        """The run's config.json as a dict (between the commits of a run that trains)."""
        from ..lock import consistent
        from ..models import read_config

        return consistent(self.path, lambda: read_config(self.path))

    @cached_property
    def model(self) -> VAE:
        """The run's model, loaded from its weights."""
        from ..models import load

        return load(self.path)

    @cached_property
    def media(self) -> Medium:
        """What the run's examples stand for (reads the model: text needs its vocabulary)."""
        from ..media import media_of

        return media_of(self.config, self.model)

    @property
    def media_type(self) -> type[Medium]:
        """The class of the run's media, without loading its model."""
        from ..media import media_type

        return media_type(self.config)

    @property
    def data(self) -> dict[str, Any]:
        """The ``data`` table of the run's config."""
        return data_entry(self.config)

    def split(self, data: str | None, split: str) -> tuple[Tensor, Tensor | None, Dataset]:
        """The ``split`` of the run's data set (or of ``data``): examples, labels (or None) and
        the data set."""
        from ..media import examples

        source, seed = data_source(self.config, data)
        try:
            dataset = self.media.load(source, seed)
        except DataError as err:
            if data:
                raise
            raise DataError(f"{err} (the run's data set; give another with --data)") from None
        x = getattr(dataset, split)
        labels = getattr(dataset, f"{split}_labels", None)
        x = examples(self.model, x, f"the {split} split of {dataset.name}")
        return x, labels, dataset

    def image_shape(self, given: str | None) -> tuple[int, ...]:
        """How to draw one example: ``given`` (HxW or CxHxW), else the run's recorded shape."""
        shape = self.media.shape(given)
        if shape is None and self.media_type.kind == "table":
            raise ConfigError(
                "the run's data is a table: its rows are drawn as images only with their image "
                "shape, --image-shape HxW"
            )
        if shape is None:
            raise ConfigError(
                f"the run's data is {self.media_type.kind}: it has no pictures; try sample or "
                "interpolate"
            )
        return shape

    def named(self, name: str, data: str | None = None, **which: Any) -> str:
        """The default output ``name`` (a path inside the run folder, as runs.py names it) for
        what a command shows: ``data`` (when not the run's own), and the ``split``, ``label``
        or input file of :func:`vaekit.cli.output.default_name`."""
        entry = self.data
        own = entry.get("source") or entry.get("name")
        return default_name(name, data=data, own=str(own) if own else None, **which)

    def destination(
        self,
        output: Path | None,
        name: str,
        suffixes: tuple[str, ...],
        inputs: tuple[Path | str | None, ...] = (),
    ) -> Path:
        """Where a command writes the run's examples, checked before any work: ``output``, else
        RUN/``name``; a folder of files (sounds) or a file ending in one of ``suffixes`` (never
        one of the files ``inputs`` it reads)."""
        if self.media_type.folder:
            return check_folder(output, self.path / name, self.path)
        return check_output(self.path, output, self.path / name, suffixes, inputs)

    def need_continuous(self, command: str) -> None:
        """Refuse ``command`` for a model whose latent is discrete (it walks a continuous z)."""
        model = self.model
        if model.capabilities.discrete_latent:
            raise ConfigError(
                f"{command} walks a continuous latent space, but this run's model "
                f"({model.kind}) has categorical latents; use sample, reconstruct or encode"
            )

    @property
    def classes(self) -> int:
        """Width of the run's condition (0 for an unconditional model)."""
        return condition_dim(self.model)

    def conditions(self, labels: Tensor | None, where: str) -> Tensor | None:
        """One-hot conditions from the labels of ``where`` for a conditional run, else None."""
        return split_conditions(self.model, labels, where)

    def label_condition(self, label: int | None, what: str) -> dict[str, int]:
        """``{"condition": label}`` for a conditional run (which needs --label), else {}."""
        dim = self.classes
        if not dim:
            if label is not None:
                raise ConfigError(
                    "--label needs a conditional run (condition_dim > 0); this run has none"
                )
            return {}
        if label is None:
            raise ConfigError(
                f"the run is conditional (condition_dim = {dim}): give --label 0..{dim - 1} to "
                f"{what}"
            )
        if label >= dim:
            raise ConfigError(f"--label {label} is outside 0..{dim - 1} (condition_dim = {dim})")
        return {"condition": label}


def condition_dim(model: VAE) -> int:
    """Width of a model's condition (0 for an unconditional model)."""
    return int(model.config.condition_dim) if model.capabilities.conditional else 0


def split_conditions(model: VAE, labels: Tensor | None, where: str) -> Tensor | None:
    """One-hot conditions from the labels of ``where`` for a conditional model, else None.

    The label range is checked by :func:`vaekit.models.as_condition`; the CLI words its
    messages for data sets (how to renumber classes)."""
    from ..models import as_condition

    dim = condition_dim(model)
    if not dim:
        return None
    if labels is None:
        raise DataError(
            f"{where} has no labels, but the run is conditional (condition_dim = {dim}); give a "
            "labelled data set"
        )
    if labels.numel() and int(labels.min()) < 0:
        raise DataError(
            f"{where} has label {int(labels.min())}; a conditional run needs classes numbered "
            f"0..{dim - 1}: renumber them (text labels in a CSV file are numbered for you)"
        )
    if labels.numel() and int(labels.max()) >= dim:
        raise DataError(
            f"{where} has label {int(labels.max())} but condition_dim = {dim} takes labels "
            f"0..{dim - 1}: number the classes from 0 and set condition_dim to their number"
        )
    return as_condition(labels, dim)

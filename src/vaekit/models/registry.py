"""Model kinds by name: config.json's ``model`` table names its kind ("vae" when absent), and
each kind is a class with a ``kind`` name and a frozen ``config_class`` whose fields are its
constructor's arguments. Kinds register themselves with :func:`register_model` when their module
is imported; importing :mod:`vaekit.models` imports vaekit's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as from_safetensors_bytes
from torch import nn

from .. import checkpoint, memory
from ..checkpoint import usable_device
from ..config import from_dict, to_dict
from ..errors import CheckpointError, ConfigError, Remedy
from ..lock import consistent
from ..reading import conform_tensors, read_regular
from ..runs import CONFIG_FILE, STATE_FILE, WEIGHTS_FILE

M = TypeVar("M")

#: Kind name -> model class.
MODELS: dict[str, type[nn.Module]] = {}
#: Model settings that fix the shapes of the weights: a model table of a kind with such a field
#: must give it (a default would build a model that does not match the saved weights).
SHAPE_FIELDS = ("data_shape", "latent_dim", "n_latents", "n_categories", "vocab")


def model_kinds() -> dict[str, type[nn.Module]]:
    """:data:`MODELS`: every registered kind."""
    return MODELS


def register_model(cls: type[M]) -> type[M]:
    """Class decorator: make ``cls`` (with ``kind`` and ``config_class``) buildable by name."""
    MODELS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def model_config(data: Any, *, section: str = "model", saved: bool = False) -> Any:
    """The config dataclass described by a model table such as config.json's ``model``.

    The table's ``kind`` (default ``"vae"``) picks the model class; the other keys are the
    fields of that class's config, checked by name and type. ``saved``: the table was read from
    a run or a model file, so a setting it lacks that the config class lists in ``predated``
    takes the value it had before the setting existed (e.g. ``conv_upsample = "transpose"``),
    not a new model's default: an old run rebuilds the networks it was trained with.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a table of settings, got {data!r}")
    fields = dict(data)
    kind = fields.pop("kind", "vae")
    if kind not in MODELS:
        raise ConfigError(f"unknown {section}.kind {kind!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[kind].config_class  # type: ignore[attr-defined]
    if saved:
        fields = {**getattr(cls, "predated", {}), **fields}
    return from_dict(cls, fields, section=section)


def model_table(config: Any) -> dict[str, Any]:
    """The JSON-ready model table of ``config``: its ``kind`` and then its fields."""
    return {"kind": model_class(config).kind, **to_dict(config)}  # type: ignore[attr-defined]


def model_class(config: Any) -> type[nn.Module]:
    """The registered model class whose config class is ``type(config)``."""
    for cls in MODELS.values():
        if type(config) is cls.config_class:  # type: ignore[attr-defined]
            return cls
    raise ConfigError(f"no model kind is configured by {type(config).__name__}")


def build_model(config: Any) -> nn.Module:
    """A freshly initialised model of the kind ``config`` configures. A model whose weights
    would not fit in the memory this machine has free is a :class:`ConfigError` with the
    estimate, before anything is allocated."""
    cls = model_class(config)
    need, have = weight_bytes(config), available_memory()
    if need is not None and have is not None and need > have:
        raise ConfigError(
            f"a {cls.kind} model with these settings needs {_size(need)} for its weights "  # type: ignore[attr-defined]
            f"alone, more than the {_size(have)} of memory free on this machine; lower hidden, "
            "latent_dim, channels or the size of the examples"
        )
    return cls(config)


def weight_bytes(config: Any) -> int | None:
    """Bytes of the weights and buffers of a model of ``config``, counted by building it on
    PyTorch's meta device (shapes only, nothing allocated); None for a kind that cannot be
    built there."""
    model = _on_meta(config)
    if model is None or isinstance(model, int):
        return model
    tensors = (*model.parameters(), *model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _on_meta(config: Any) -> nn.Module | int | None:
    """A model of ``config`` built on the meta device; 2**64 for one whose tensors would
    overflow (more than 2**63 bytes); None for a kind that cannot be built there."""
    try:
        with torch.device("meta"):
            return model_class(config)(config)
    except RuntimeError as err:
        if "overflow" in str(err):  # a tensor of more than 2^63 bytes
            return 2**64
        return None  # a kind that reads values while it initialises
    except (NotImplementedError, ValueError, TypeError):
        return None


#: Copies of one batch's activations a training step holds at its peak: the forward pass's
#: outputs, what autograd keeps for the backward pass and the gradients flowing back. Measured
#: peaks of a CPU step (784-500-20 Bernoulli MLP; 784-500-500-50 Gaussian MLP; conv on 3x64x64)
#: were 1.7 to 6.1 times the floats of ``floats_per_row`` and the likelihood's parameters.
ACTIVATION_COPIES = 3
#: Optimizer state in copies of the weights (Adam: two moments; Adagrad: one sum).
OPTIMIZER_COPIES = {"adam": 2, "adagrad": 1}


class TrainingMemory(NamedTuple):
    """Bytes a training run takes, estimated before anything is allocated."""

    weights: int  # the weights and buffers
    state: int  # the gradients and the optimizer's state
    activations: int  # one batch's activations at the step's peak
    per_example: int  # the activations of one example of the batch
    snapshot: int  # the copy of the weights and optimizer state a checkpoint writes

    @property
    def total(self) -> int:
        """The peak: weights and state, and then a batch's activations or, between steps, a
        checkpoint's snapshot, whichever is larger."""
        return self.weights + self.state + max(self.activations, self.snapshot)


def training_memory(
    config: Any,
    batch_size: int,
    samples: int = 1,
    optimizer: str = "adam",
    checkpoints: bool = True,
) -> TrainingMemory | None:
    """Bytes that training a model of ``config`` takes: weights, gradients and optimizer state
    (Adam: 4 x the weights in all), then one batch's activations, ``batch_size`` examples x
    ``samples`` samples x (the networks' ``floats_per_row`` + the likelihood's parameters per
    example + 4 x latent_dim) float32s x :data:`ACTIVATION_COPIES`, or (``checkpoints``) the
    snapshot of weights and optimizer state that writing a checkpoint copies, whichever is
    larger. Counted on the meta device (nothing allocated); None for a kind that cannot be
    built there."""
    model = _on_meta(config)
    if model is None:
        return None
    if isinstance(model, int):
        return TrainingMemory(model, model, 0, 0, 0)
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    moments = params * OPTIMIZER_COPIES.get(optimizer, 2)
    try:
        likelihood = model.likelihood.n_params * config.data_dim  # type: ignore[union-attr]
        floats = int(model.floats_per_row) + likelihood + 4 * config.latent_dim
    except (AttributeError, TypeError, ValueError, RuntimeError):
        floats = 0  # a kind that does not say: its weights and state only
    per_example = 4 * ACTIVATION_COPIES * samples * floats
    snapshot = weights + moments if checkpoints else 0
    return TrainingMemory(
        weights, params + moments, per_example * batch_size, per_example, snapshot
    )


def check_training_fits(
    config: Any,
    train: Any,
    examples: int | None = None,
    device: str | torch.device | None = None,
    *,
    built: bool = False,
    checkpoints: bool = True,
) -> None:
    """A :class:`ConfigError` for a model of ``config`` whose training under the TrainConfig
    ``train`` (its ``batch_size``, ``samples`` and ``optimizer``) on ``device`` (None: the CPU)
    would not fit in the memory free there (:func:`vaekit.memory.available_memory`), raised
    before anything is allocated, with the estimate (:func:`training_memory`) and what to
    lower. ``examples``: the training set's size, which caps the batch. ``built``: the model's
    weights are allocated already (they are not counted again). ``checkpoints``: the run writes
    checkpoints (their snapshot counts, on the CPU: on another device it is taken in the host's
    memory)."""
    batch = min(train.batch_size, examples) if examples else train.batch_size
    if device is not None and torch.device(device).type != "cpu":
        checkpoints = False  # a checkpoint's snapshot is taken in the host's memory, not here
    need = training_memory(config, batch, train.samples, train.optimizer, checkpoints)
    have = available_memory(device)
    if need is None or have is None:
        return
    weights = 0 if built else need.weights
    if weights + need.state + max(need.activations, need.snapshot) <= have or weights > have:
        return  # (weights that do not fit alone: build_model says so)
    kind = model_class(config).kind  # type: ignore[attr-defined]
    shown = f"{batch} examples" + (f" x {train.samples} samples" if train.samples > 1 else "")
    fixed = weights + need.state
    lower = []
    if need.activations > need.snapshot:
        fits = (have - fixed) // need.per_example if fixed + need.snapshot <= have else 0
        lower.append(f"batch_size to {fits} or less" if fits else "batch_size")
        if train.samples > 1:
            lower.append(f"samples (now {train.samples})")
    images = getattr(config, "image_shape", ()) or len(getattr(config, "data_shape", ())) > 1
    model = ("image_size, " if images else "") + "hidden, channels or latent_dim"
    lower.append(f"else {model}" if lower else model)
    parts = [f"{_size(need.weights)} of weights"] if not built else []
    parts.append(f"{_size(need.state)} of gradients and optimizer state")
    then = f"then {_size(need.activations)} of activations for a batch of {shown}"
    if checkpoints:
        then += f" or {_size(need.snapshot)} to write a checkpoint"
    total = fixed + max(need.activations, need.snapshot)
    raise ConfigError(
        f"training {'this' if built else 'a'} {kind} model with these settings would run out of "
        f"memory: it needs about {_size(total)}{' more' if built else ''} "
        f"({', '.join([*parts, then])}), more than the {_size(have)} of memory free; lower "
        f"{', '.join(lower)}"
    )


def check_model_fits(model: Any, train: Any, examples: int, checkpoints: bool) -> None:
    """:func:`check_training_fits` for the built ``model`` (its weights, there already, not
    counted again) on its own device; ``checkpoints``: the run writes them."""
    config, device = model.config, model.device
    check_training_fits(config, train, examples, device, built=True, checkpoints=checkpoints)


def available_memory(device: str | torch.device | None = None) -> int | None:
    """Bytes free for a new model on ``device`` (None: this machine's memory; a CUDA device:
    its own), as :func:`vaekit.memory.available_memory` says; None where it is not known."""
    return memory.available_memory(device)


def _size(n: int) -> str:
    """Bytes for a person: 3.2 GiB, 1.0e+27 bytes past a pebibyte."""
    return memory.size_text(n)


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of a run folder (:func:`vaekit.checkpoint.read_config`), whose
    model table also gives every setting that fixes the shape of the weights."""
    config = checkpoint.read_config(path)
    _check_shape_settings(config, _config_file(Path(path)))
    return config


def _config_file(path: Path) -> Path:
    """Where the config of the run folder or one-file model ``path`` is read from."""
    return path if checkpoint.is_single_file(path) and not path.is_dir() else path / CONFIG_FILE


def _check_shape_settings(config: dict[str, Any], file: Path) -> None:
    """A :class:`CheckpointError` naming a setting of the model's kind that fixes the shape of
    its weights and that ``config``'s model table (read from ``file``) lacks."""
    model = config["model"]
    kind = model.get("kind", "vae")
    cls = MODELS.get(kind) if isinstance(kind, str) else None  # else load names the kind
    if cls is not None:
        fields = cls.config_class.__dataclass_fields__  # type: ignore[attr-defined]
        for name in SHAPE_FIELDS:
            if name in fields and name not in model:
                raise CheckpointError(
                    f"{str(file)!r} has no model.{name}; restore the file (vaekit writes it)"
                )


def load(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Rebuild the model saved in the folder ``path`` (or the one file ``path.safetensors``) and
    load its weights onto ``device``: float64 when every floating weight is float64 (a model
    saved after ``.double()``), else float32, weights saved narrower (bfloat16, float16, float8)
    widened without loss; weights whose names, shapes or dtypes do not fit the config are a
    :class:`CheckpointError` naming the first. A run that is training meanwhile is read between its
    writer's commits (:func:`vaekit.lock.consistent`): config and weights of one state."""
    return consistent(path, lambda: _load(Path(path), device))


def _load(path: Path, device: str | torch.device) -> Any:
    path = Path(path)
    device = usable_device(device)
    if checkpoint.is_single_file(path) and not path.is_dir():
        (config, blob), file = checkpoint.read_single_file(path), path
        _check_shape_settings(config, path)
    else:
        config, blob, file = read_config(path), None, path / WEIGHTS_FILE
    try:
        settings = model_config(config.get("model"), section="model", saved=True)
    except ConfigError as err:
        raise CheckpointError(f"{str(_config_file(path))!r}: {err}") from None
    if blob is None and not file.exists():
        if (path / STATE_FILE).is_file():
            raise CheckpointError(
                f"{str(path)!r} has no {WEIGHTS_FILE} yet: its training has not finished",
                remedy=Remedy("resume", str(path)),
            )
        raise CheckpointError(f"{str(path)!r} has no {WEIGHTS_FILE}; the run did not finish saving")
    remedy = Remedy("rewrite", str(path)) if (path / STATE_FILE).is_file() else None
    try:
        # One read of the whole file: a run that replaces it meanwhile is seen old or new, whole.
        if blob is None:
            blob = read_regular(file, None, CheckpointError, WEIGHTS_FILE)
        state = from_safetensors_bytes(blob)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        message = f"{str(file)!r} is truncated or corrupt: {err}"
        raise CheckpointError(message, remedy=remedy) from None
    model = build_model(settings)
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    if dtypes == {torch.float64}:
        model.double()  # weights saved after .double() come back float64
    try:  # names, shapes and dtypes checked; bfloat16/float16/float8 widened losslessly
        where = f"{str(file)!r} does not match its config.json"
        state = conform_tensors(state, model.state_dict(), where, CheckpointError)
    except CheckpointError as err:
        raise CheckpointError(err.message, remedy=remedy) from None
    model.to(device)
    state = {k: v.to(device) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{str(file)!r} does not match its config.json: {detail}") from None
    model.eval()
    return model

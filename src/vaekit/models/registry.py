"""Model kinds by name: config.json's ``model`` table names its kind ("vae" when absent), and
each kind is a class with a ``kind`` name and a frozen ``config_class`` whose fields are its
constructor's arguments. Kinds register themselves with :func:`register_model` when their module
is imported; importing :mod:`vaekit.models` imports vaekit's own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as from_safetensors_bytes
from torch import nn

from .. import checkpoint
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
    try:
        with torch.device("meta"):
            model = model_class(config)(config)
    except RuntimeError as err:
        if "overflow" in str(err):  # a tensor of more than 2^63 bytes
            return 2**64
        return None  # a kind that reads values while it initialises
    except (NotImplementedError, ValueError, TypeError):
        return None
    tensors = (*model.parameters(), *model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def available_memory() -> int | None:
    """Bytes of memory free for a new model on this machine (Linux's MemAvailable); None where
    the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _size(n: int) -> str:
    """Bytes for a person: 3.2 GiB, 1.0e+27 bytes past a pebibyte."""
    for unit, scale in (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40)):
        if n < 1024 * scale:
            return f"{n / scale:.1f} {unit}"
    return f"{float(n):.1e} bytes"


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

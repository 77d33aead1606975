"""Checkpoints without pickle: ``model.safetensors`` (weights) beside ``config.json``.

config.json holds ``format_version``, ``vaekit_version``, the full ``model`` config and any
metadata (the training config, the data set). Loading rebuilds the model from that file alone and
never executes code from disk. Files are written atomically (temporary file, fsync, rename), so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as to_safetensors_bytes

from . import __version__
from .config import from_dict, to_dict
from .errors import CheckpointError, ConfigError
from .model import VAE, VAEConfig

#: Version of the on-disk layout. Bump when a reader of the old layout would misread the new one.
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(model: VAE, path: str | Path, **metadata: Any) -> Path:
    """Save ``model`` into the folder ``path`` (created if needed); returns the folder.

    ``metadata`` entries (JSON-ready values) are stored at the top level of config.json.
    """
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = {
        "format_version": FORMAT_VERSION,
        "vaekit_version": __version__,
        "model": to_dict(model.config),
        **metadata,
    }
    try:
        atomic_write(
            path / WEIGHTS_FILE,
            to_safetensors_bytes(state, metadata={"format_version": str(FORMAT_VERSION)}),
        )
        atomic_write(path / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint to {str(path)!r}: {err.strerror}") from None
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of a run folder, after checking its format version."""
    path = Path(path)
    file = path / CONFIG_FILE
    if not path.is_dir():
        raise CheckpointError(f"run folder {str(path)!r} does not exist")
    try:
        config = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{str(path)!r} is not a vaekit run folder: no {CONFIG_FILE}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{str(file)!r} is unreadable or corrupt: {err}") from None
    if not isinstance(config, dict) or not isinstance(config.get("format_version"), int):
        raise CheckpointError(f"{str(file)!r} has no format_version; it was not written by vaekit")
    if config["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format {config['format_version']} (vaekit "
            f"{config.get('vaekit_version', '?')}); this vaekit {__version__} reads format "
            f"{FORMAT_VERSION} or older: upgrade vaekit"
        )
    return config


def load(path: str | Path, device: str | torch.device = "cpu") -> VAE:
    """Rebuild the model saved in the folder ``path`` and load its weights onto ``device``."""
    path = Path(path)
    config = read_config(path)
    try:
        model_config = from_dict(VAEConfig, config.get("model"), section="model")
    except ConfigError as err:
        raise CheckpointError(f"{str(path / CONFIG_FILE)!r}: {err}") from None
    file = path / WEIGHTS_FILE
    if not file.exists():
        raise CheckpointError(f"{str(path)!r} has no {WEIGHTS_FILE}; the run did not finish saving")
    try:
        state = load_file(file, device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{str(file)!r} is truncated or corrupt: {err}") from None
    model = VAE(model_config).to(device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{str(file)!r} does not match its config.json: {detail}") from None
    model.eval()
    return model

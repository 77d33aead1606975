"""Checkpoints without pickle: ``model.safetensors`` (weights) beside ``config.json``.

config.json holds ``format_version``, ``vaekit_version``, the full ``model`` config and any
metadata (the training config, the data set). Loading rebuilds the model from that file alone and
never executes code from disk. Files are written atomically (temporary file, fsync, rename), so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as from_safetensors_bytes

from . import __version__
from .config import to_dict
from .errors import CheckpointError, ConfigError, Remedy
from .files import atomic_write, write_file
from .reading import MAX_CONFIG_BYTES, is_number, loads, read_regular
from .runs import (
    CONFIG_FILE,
    DERIVED_FILES,
    DERIVED_SOUND_FOLDERS,
    METRICS_FILE,
    ONNX_FOLDER,
    PREVIOUS_FOLDER,
    RUN_NAMES,
    STATE_FILE,
    TENSORBOARD_FOLDER,
    WEIGHTS_FILE,
)
from .tensorfile import on_cpu, tensor_bytes, write_safetensors

#: Largest safetensors header read (the tensor table and the metadata JSON).
MAX_HEADER_BYTES = 100_000_000

#: Version of the on-disk layout. Bump when a reader of the old layout would misread the new one.
FORMAT_VERSION = 1


def save(model: Any, path: str | Path, **metadata: Any) -> Path:
    """Save ``model`` into the folder ``path`` (created if needed); returns the folder.

    A ``path`` ending in ``.safetensors`` is one file instead: the weights, with config.json's
    text in the file's metadata (key ``vaekit_config``); :func:`vaekit.load` reads either.
    ``metadata`` entries (JSON-ready values) are stored at the top level of config.json; a
    reserved key or a value JSON cannot hold is a :class:`ConfigError`, raised before anything
    is written.
    """
    path = Path(path)
    check_metadata(metadata)
    check = getattr(model, "check_saveable", None)
    if callable(check):  # a model load could not rebuild (a network changed in place)
        check()
    config = _config_bytes(model, metadata)
    weights = model.state_dict()
    need = tensor_bytes(weights, elsewhere=True)  # moved to the CPU to be written
    if is_single_file(path):
        if path.is_dir():
            raise CheckpointError(f"{str(path)!r} is a folder; give a new file name to save to")
        header = {"format_version": str(FORMAT_VERSION), SINGLE_FILE_KEY: config.decode()}
        write_safetensors(
            path, lambda: (on_cpu(weights), header), f"cannot write {str(path)!r}", need
        )
        return path
    header = {"format_version": str(FORMAT_VERSION)}
    where = f"cannot write checkpoint to {str(path)!r}"
    write_safetensors(path / WEIGHTS_FILE, lambda: (on_cpu(weights), header), where, need)
    try:
        atomic_write(path / CONFIG_FILE, config)
    except OSError as err:
        raise CheckpointError(f"{where}: {err.strerror}") from None
    return path


def check_metadata(metadata: dict[str, Any]) -> None:
    """A :class:`ConfigError` for a metadata key config.json reserves, or a value JSON cannot
    hold (a numpy number, a tensor), naming it."""
    reserved = sorted({"format_version", "vaekit_version", "model"} & metadata.keys())
    if reserved:
        raise ConfigError(f"metadata key {reserved[0]!r} is reserved for the checkpoint itself")
    for key in ("train", "data"):  # tables vaekit reads back from config.json
        if key in metadata and not isinstance(metadata[key], dict):
            raise ConfigError(
                f"metadata {key!r} must be a dict (vaekit reads config.json's {key} table back), "
                f"got {type(metadata[key]).__name__}; e.g. {key}={{'name': ...}}"
            )
    for key, value in metadata.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"metadata {key!r} is not JSON-ready ({err}); give strings, numbers, lists and "
                "dicts (e.g. float(x) for a numpy number)"
            ) from None


def model_table(model: Any) -> dict[str, Any]:
    """The JSON-ready ``model`` table of config.json: the model's ``kind``, then its config's
    fields."""
    return {"kind": model.kind, **to_dict(model.config)}


def _config_bytes(model: Any, metadata: dict[str, Any]) -> bytes:
    config = {
        "format_version": FORMAT_VERSION,
        "vaekit_version": __version__,
        "model": model_table(model),
        **metadata,
    }
    return (json.dumps(config, indent=2) + "\n").encode()


def _check_run_folder(path: Path) -> None:
    """Raise unless ``path`` is a folder (a run's files are inside one)."""
    if path.is_file():
        where = f"; the run is its folder {str(path.parent)!r}" if path.name in RUN_NAMES else ""
        raise CheckpointError(f"{str(path)!r} is a file, not a run folder{where}")
    if not path.is_dir():
        raise CheckpointError(f"run folder {str(path)!r} does not exist")


#: The metadata key of a one-file model (``model.save("x.safetensors")``) holding config.json.
SINGLE_FILE_KEY = "vaekit_config"


def is_single_file(path: Path) -> bool:
    """Whether ``path`` names a one-file model rather than a run folder."""
    return path.suffix.lower() == ".safetensors"


def read_single_file(path: Path) -> tuple[dict[str, Any], bytes]:
    """(the checked config, the file's bytes) of a one-file model written by :func:`save`."""
    try:
        blob = read_regular(path, None, CheckpointError, "model file")
    except FileNotFoundError:
        raise CheckpointError(f"model file {str(path)!r} does not exist") from None
    size = int.from_bytes(blob[:8], "little") if len(blob) >= 8 else -1
    try:
        if not 0 < size <= min(len(blob) - 8, MAX_HEADER_BYTES):
            raise ValueError("its header is cut off")
        header = loads(blob[8 : 8 + size], repr(str(path)), CheckpointError)
        text = header["__metadata__"][SINGLE_FILE_KEY]
        if not isinstance(text, str):
            raise TypeError(text)
    except (ValueError, KeyError, TypeError) as err:
        reason = "it holds no vaekit config" if isinstance(err, KeyError | TypeError) else err
        raise CheckpointError(
            f"{str(path)!r} is not a model file written by vaekit's save: {reason}"
        ) from None
    return _parse_config(text, path, path), blob


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of a run folder (or the config of a one-file model), after
    checking its format version."""
    path = Path(path)
    if is_single_file(path) and not path.is_dir():
        return read_single_file(path)[0]
    file = path / CONFIG_FILE
    _check_run_folder(path)
    try:
        data = read_regular(file, MAX_CONFIG_BYTES, CheckpointError, CONFIG_FILE)
    except FileNotFoundError:
        raise CheckpointError(
            f"{str(path)!r} is not a vaekit run folder: no {CONFIG_FILE}"
        ) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{str(file)!r} is unreadable or corrupt: {err}") from None
    return _parse_config(text, file, path)


def _parse_config(text: str, file: Path, path: Path) -> dict[str, Any]:
    """config.json's ``text`` (read from ``file`` of the run or model ``path``), checked."""
    config = loads(text, repr(str(file)), CheckpointError)
    if not isinstance(config, dict) or type(config.get("format_version")) is not int:
        raise CheckpointError(f"{str(file)!r} has no format_version; it was not written by vaekit")
    if config["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format {config['format_version']} (vaekit "
            f"{config.get('vaekit_version', '?')}); this vaekit {__version__} reads format "
            f"{FORMAT_VERSION} or older: upgrade vaekit"
        )
    _check_config(config, file)
    return config


def _check_config(config: dict[str, Any], file: Path) -> None:
    """Raise :class:`CheckpointError` naming the key of a parsed config.json whose value has
    the wrong type (a hand-edited file), or a model table that lacks a shape setting."""

    def bad(key: str, what: str) -> CheckpointError:
        return CheckpointError(f"{str(file)!r}: {key} must be {what}; restore the file")

    def positive_ints(v: Any) -> bool:
        return isinstance(v, list) and all(type(d) is int and d > 0 for d in v)

    if not isinstance(config.get("model"), dict):  # every run has one
        raise bad("model", "a table")
    for section in ("train", "data"):
        if not isinstance(config.get(section, {}), dict):
            raise bad(section, "a table")
    data = config.get("data", {})
    for key in ("name", "source"):
        if key in data and not isinstance(data[key], str):
            raise bad(f"data.{key}", "a string")
    seed = data.get("split_seed", 0)
    if type(seed) is not int or not 0 <= seed < 2**63:
        raise bad("data.split_seed", "an integer from 0 to 2**63 - 1")
    for key in ("valid_fraction", "test_fraction"):  # absent in older runs: 0.1
        f = data.get(key, 0.1)
        if not is_number(f) or not 0 <= f < 1:
            raise bad(f"data.{key}", "a fraction from 0 to below 1")
    shape = data.get("image_shape", [1])
    if not positive_ints(shape) or not 1 <= len(shape) <= 3:
        raise bad("data.image_shape", "a list of 1 to 3 positive integers")
    if "label_column" in data and type(data["label_column"]) not in (int, str):
        raise bad("data.label_column", "a column index or name")
    media = data.get("media", {})
    if not isinstance(media, dict) or not isinstance(media.get("kind", ""), str):
        raise bad("data.media", "a table with a kind")


def usable_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, after one allocation on it; a name torch does not know, or
    a device this machine lacks ("cuda" without a GPU, "cuda:3" on one), is a
    :class:`ConfigError` saying so (not a file to blame)."""
    try:
        device = torch.device(device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError, TypeError) as err:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ConfigError(
            f"device {str(device)!r} cannot be used here ({why}); give 'cpu' or a device this "
            "machine has"
        ) from None
    return device


# -- training state ------------------------------------------------------------------------------
#
# A resumable training checkpoint is ONE safetensors file (so one atomic rename makes it
# consistent): every tensor of the model, optimiser and random generators under a prefixed key,
# and everything else (step, epoch, history, the non-tensor parts of the optimiser state) as JSON
# in the file's metadata. Nested structures are flattened with tensors replaced by references.


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready skeleton of ``obj`` with every tensor moved into ``tensors`` under a key that
    starts with ``prefix``. Dicts with non-string keys and tuples are encoded so that
    :func:`unflatten_state` restores them exactly."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}#{len(tensors)}"
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()  # owns its storage
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: flatten_state(v, prefix, tensors) for k, v in obj.items()}}
        return {"__items__": [[k, flatten_state(v, prefix, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, prefix, tensors) for v in obj]}
    if isinstance(obj, list):
        return [flatten_state(v, prefix, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a training checkpoint")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {k: unflatten_state(v, tensors) for k, v in _table(skeleton["__dict__"]).items()}
        if "__items__" in skeleton:
            return {k: unflatten_state(v, tensors) for k, v in _list(skeleton["__items__"])}
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in _list(skeleton["__tuple__"]))
    return skeleton


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"a table of the state is a {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"a list of the state is a {type(value).__name__}")
    return value


def save_training_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (nested dicts/lists of tensors and JSON values) into the folder ``path``
    as checkpoint.safetensors, atomically: the previous file survives a crash at any moment.
    ``state["run"]`` (JSON only: settings and progress) is also stored on its own, so that
    :func:`read_training_info` can read it without the tensors. Returns the file.

    The file is written tensor by tensor from a snapshot of the state's tensors (as much memory
    again as they take): a write that does not fit in the memory free is refused before the
    snapshot, one whose allocation fails is the same :class:`CheckpointError` ("out of memory
    while writing ..."), and the previous file stays as it was."""
    file = Path(path) / STATE_FILE

    def snapshot() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors: dict[str, torch.Tensor] = {}
        skeleton = flatten_state(state, "s", tensors)
        meta = {
            "format_version": str(FORMAT_VERSION),
            "vaekit_version": __version__,
            "state": json.dumps(skeleton),
            "run": json.dumps(state.get("run", {})),
        }
        return tensors, meta

    # flatten_state copies every tensor: the memory the write needs
    write_safetensors(file, snapshot, f"cannot write {str(file)!r}", tensor_bytes(state))
    return file


def _read_state(path: str | Path, header_only: bool) -> tuple[dict[str, str], bytes]:
    """The metadata of checkpoint.safetensors in the folder ``path`` (format checked) and, unless
    ``header_only``, the file's bytes. The file is read through one descriptor, so a checkpoint
    that training replaces meanwhile is seen whole, old or new."""
    file = Path(path) / STATE_FILE
    _check_run_folder(Path(path))
    if not file.exists() and not file.is_symlink():
        raise CheckpointError(
            f"{str(path)!r} has no {STATE_FILE} to resume from", remedy=Remedy("restart", str(path))
        )
    try:
        raw = read_regular(file, None, CheckpointError, STATE_FILE)
    except FileNotFoundError:
        raise CheckpointError(
            f"{str(path)!r} has no {STATE_FILE} to resume from", remedy=Remedy("restart", str(path))
        ) from None
    try:
        if len(raw) < 8:
            raise ValueError("shorter than a safetensors header")
        size = int.from_bytes(raw[:8], "little")
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"header length {size} is not plausible")
        head = raw[8 : 8 + size]
        if len(head) < size:
            raise ValueError("the header is cut short")
        header = loads(head, repr(str(file)), CheckpointError)
        meta = header.get("__metadata__") or {} if isinstance(header, dict) else None
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError("its metadata is not a table of strings")
        version = int(meta.get("format_version", "0"))
    except (ValueError, AttributeError) as err:
        raise CheckpointError(f"{str(file)!r} is truncated or corrupt: {err}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(file)!r} has checkpoint format {version} (vaekit "
            f"{meta.get('vaekit_version', '?')}); this vaekit {__version__} reads format "
            f"{FORMAT_VERSION} or older: upgrade vaekit"
        )
    if version < 1 or "state" not in meta:
        raise CheckpointError(f"{str(file)!r} is not a vaekit training checkpoint")
    return meta, raw


def read_training_info(path: str | Path) -> dict[str, Any]:
    """The JSON ``run`` part of the training state in the folder ``path`` (its settings and
    progress), read without loading any tensor."""
    meta, _ = _read_state(path, header_only=True)
    file = repr(str(Path(path) / STATE_FILE))
    return check_run_record(loads(meta.get("run", "{}"), f"{file} (run)", CheckpointError), file)


def check_run_record(info: Any, where: str) -> dict[str, Any]:
    """A checkpoint's ``run`` record (read from ``where``), checked to have the types vaekit
    writes: tables for model, train, data and metadata; whole numbers for the progress."""

    def bad(key: str, what: str) -> CheckpointError:
        return CheckpointError(f"{where}: run.{key} must be {what}; the checkpoint is damaged")

    if not isinstance(info, dict):
        raise CheckpointError(f"{where} is corrupt: no run record")
    for key in ("model", "train", "data", "metadata"):
        if info.get(key) is not None and not isinstance(info[key], dict):
            raise bad(key, "a table")
    for key in ("epochs_done", "step"):
        if key in info and (type(info[key]) is not int or not 0 <= info[key] < 2**62):
            raise bad(key, "a whole number >= 0")
    for key in ("finished", "time_limit_reached", "mid_epoch"):
        if key in info and not isinstance(info[key], bool):
            raise bad(key, "true or false")
    for key in ("seconds", "last_epoch_seconds"):
        if key in info and not is_number(info[key]):
            raise bad(key, "a number")
    return info


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read what :func:`save_training_state` wrote into the folder ``path``. Never unpickles."""
    meta, raw = _read_state(path, header_only=False)
    file = Path(path) / STATE_FILE
    skeleton = loads(meta["state"], f"{str(file)!r} (state)", CheckpointError)
    try:
        tensors = from_safetensors_bytes(raw)
        state = unflatten_state(skeleton, tensors)
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{str(file)!r} is truncated or corrupt: {err}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(file)!r} is corrupt: its state is not a table")
    if "run" in state:  # a resume needs it (and says so); a loop's state alone may lack it
        check_run_record(state["run"], repr(str(file)))
    return state


# -- the other files of a run in progress --------------------------------------------------------


def _write(file: Path, data: bytes) -> None:
    write_file(file, data, CheckpointError)


def start_run(path: str | Path, model: Any, **metadata: Any) -> None:
    """Lay out a new run in the folder ``path``: config.json and an empty metrics.jsonl. A run
    already there was moved out of the way first (:func:`set_aside_run`), with its weights and
    what was derived from them."""
    path = Path(path)
    _write(path / CONFIG_FILE, _config_bytes(model, metadata))
    _write(path / METRICS_FILE, b"")


def _run_files(path: Path) -> list[Path]:
    """The files of the run in ``path`` that a new run replaces or makes stale: config, weights,
    training state, metrics and what the commands derived from them."""
    files = [path / name for name in (*RUN_NAMES, *DERIVED_FILES)] + _variants(path, False)
    for folder in [path / name for name in DERIVED_SOUND_FOLDERS] + _variants(path, True):
        if folder.is_dir() and not folder.is_symlink():
            files += [*folder.glob("*.wav"), folder / "spectrograms.png"]
    logs = path / TENSORBOARD_FOLDER
    if logs.is_dir() and not logs.is_symlink():  # the event files of the run's training log
        files += [f for f in logs.rglob("*") if not f.is_symlink()]
    return [f for f in files if f.is_file()]


def _variants(path: Path, folders: bool) -> list[Path]:
    """The derived files (or sound ``folders``) of ``path`` a command names for what it shows,
    NAME-PARTS beside NAME (figures/samples-label3.png, eval-other.json; cli/output.py)."""
    if folders:
        return [p for n in DERIVED_SOUND_FOLDERS for p in path.glob(f"{n}-*") if not p.suffix]
    named = [Path(n) for n in DERIVED_FILES if not n.startswith(ONNX_FOLDER)]
    return [p for n in named for p in (path / n.parent).glob(f"{n.stem}-*{n.suffix}")]


def check_no_links(path: Path) -> None:
    """A :class:`CheckpointError` naming the first of a run folder's own files or folders
    (config.json, the weights, the training state, metrics.jsonl, figures/, the derived files
    and folders, .vaekit-previous) that is a symbolic link: setting a run aside, putting it back
    or dropping it would move or delete files through the link, outside the folder."""
    names = {PREVIOUS_FOLDER, TENSORBOARD_FOLDER, *RUN_NAMES, *DERIVED_SOUND_FOLDERS}
    for name in DERIVED_FILES:
        parts = Path(name).parts
        names.update(str(Path(*parts[: i + 1])) for i in range(len(parts)))
    names.update(str(p.relative_to(path)) for p in _variants(path, True))
    for name in sorted(names):
        if (path / name).is_symlink():
            target = os.readlink(path / name)
            raise CheckpointError(
                f"{str(path / name)!r} is a symbolic link (to {target!r}); vaekit does not move or "
                "delete a run's files through links: put the file or folder itself there, or "
                "train into another folder"
            )


def set_aside_run(path: str | Path) -> bool:
    """Move the run in the folder ``path``, if one is there, into ``path/.vaekit-previous`` (same
    relative paths), so that a new run can start there and :func:`restore_run` can put the old
    one back if the new one fails. Other files stay where they are. Returns whether a run was
    there."""
    path = Path(path)
    check_no_links(path)
    if not any((path / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE, STATE_FILE)):
        return False
    keep = path / PREVIOUS_FOLDER
    shutil.rmtree(keep, ignore_errors=True)  # left by a process that was killed
    moved: list[tuple[Path, Path]] = []
    try:
        for file in _run_files(path):
            dest = keep / file.relative_to(path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, dest)
            moved.append((file, dest))
    except OSError as err:
        try:  # put back what was moved; nothing is deleted
            for file, dest in reversed(moved):
                os.replace(dest, file)
        except OSError:
            raise CheckpointError(
                f"cannot set the run in {str(path)!r} aside ({err}), nor put it back: its "
                f"files are in {str(keep)!r}"
            ) from None
        shutil.rmtree(keep, ignore_errors=True)
        raise CheckpointError(f"cannot set the run in {str(path)!r} aside: {err}") from None
    return True


def restore_run(path: str | Path) -> None:
    """Undo :func:`set_aside_run`: remove the new run's files and move the old run back."""
    path = Path(path)
    keep = path / PREVIOUS_FOLDER
    if not keep.is_dir() or keep.is_symlink():
        return
    for file in _run_files(path):
        file.unlink(missing_ok=True)
    for file in sorted(f for f in keep.rglob("*") if f.is_file()):
        dest = path / file.relative_to(keep)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, dest)
    shutil.rmtree(keep, ignore_errors=True)


def drop_previous(path: str | Path) -> None:
    """Remove the run :func:`set_aside_run` kept, once the new one stands in its place (a link
    there is removed, never what it points to)."""
    keep = Path(path) / PREVIOUS_FOLDER
    if keep.is_symlink():
        keep.unlink()
        return
    shutil.rmtree(keep, ignore_errors=True)


def write_config(path: str | Path, model: Any, **metadata: Any) -> None:
    """Write config.json alone (for a run whose weights are not written yet)."""
    _write(Path(path) / CONFIG_FILE, _config_bytes(model, metadata))


def write_metrics(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Make metrics.jsonl hold ``records``, one JSON object a line (atomically, and only if it
    holds anything else)."""
    file = Path(path) / METRICS_FILE
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    try:
        if file.read_bytes() == data:
            return
    except OSError:
        pass
    _write(file, data)


def trim_metrics(path: str | Path, records: int) -> None:
    """Cut metrics.jsonl back to its first ``records`` lines, in place (which works on a full
    disk too). Used when training fails after its last checkpoint; a failure here is left to
    the next resume, which rewrites the file from the checkpoint."""
    file = Path(path) / METRICS_FILE
    try:
        with file.open("r+b") as f:
            data, offset = f.read(), 0
            for _ in range(records):
                newline = data.find(b"\n", offset)
                if newline < 0:
                    return
                offset = newline + 1
            if offset < len(data):
                f.truncate(offset)
    except OSError:
        pass


def append_metrics(path: str | Path, record: dict[str, Any]) -> None:
    """Add one line to metrics.jsonl; on a failed write the file is cut back to what it was."""
    file = Path(path) / METRICS_FILE
    line = (json.dumps(record) + "\n").encode()
    try:
        with file.open("ab") as f:
            size = f.tell()
            try:
                f.write(line)
                f.flush()
            except OSError:
                f.truncate(size)
                raise
    except OSError as err:
        raise CheckpointError(f"cannot write {str(file)!r}: {err.strerror or err}") from None


def remove_temporaries(path: str | Path) -> None:
    """Remove temporary files that an interrupted :func:`atomic_write` left in the folder."""
    for name in (STATE_FILE, WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE):
        for tmp in Path(path).glob(f".{name}.*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)

"""The run folder over a run's life, on :mod:`vaekit.checkpoint`'s functions: a new run sets aside
the one it replaces and puts it back if it fails; a resumed one is checked against its checkpoint
(model, data, settings); the training state is saved as ``checkpoint_every`` says; metrics.jsonl
follows the history."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import (
    append_metrics,
    check_metadata,
    drop_previous,
    load_training_state,
    model_table,
    remove_temporaries,
    restore_run,
    save_training_state,
    set_aside_run,
    start_run,
    trim_metrics,
    write_config,
    write_metrics,
)
from ..config import to_dict
from ..errors import CheckpointError, ConfigError, DataError, RunBusy, VaekitError
from ..lock import RunLock, acquire, refuse_if_busy
from ..models.registry import MODELS
from ..runs import CONFIG_FILE, STATE_FILE
from .config import (
    CHECKPOINT_SECONDS,
    RESUMABLE,
    History,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
)
from .optim import FlatOptimizer
from .statecheck import check_history, check_loop_state
from .stopping import EarlyStopping


class TrainingLoop(Protocol):
    """What the run folder reads of a training loop (see :class:`vaekit.train.step.Loop`)."""

    model: nn.Module
    epoch: int  # the epoch in progress, or the next to start (1-based)
    step: int  # good steps so far
    skipped: int  # skipped (non-finite) steps so far
    elapsed: float  # seconds trained, earlier parts of the run included

    @property
    def mid_epoch(self) -> bool: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any], out: Path | None = None) -> None: ...


class RunFolder:
    """The folder ``path`` of one run, or no folder at all (``path`` None: nothing is written).

    Its life: :meth:`prepare` (read and check the checkpoint of a resumed run), :meth:`open` (lay
    out a new run, setting aside one already there, or continue the checkpoint), :meth:`add` for
    each epoch's record, :meth:`training` around the epochs (what happens to the folder when
    training fails or is stopped), :meth:`finish` (the weights, and the old run dropped).
    """

    def __init__(
        self,
        path: str | Path | None,
        config: TrainConfig,
        record: dict[str, Any],
        writer: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else None
        #: Whether this process writes the folder (rank 0 of a run over several processes;
        #: the others read a resumed run's checkpoint and write nothing).
        self.writer = writer
        self.config = config
        #: The run record of config.json's checkpoint: train, model, data, metadata.
        self.record = record
        self.metadata: dict[str, Any] = {}
        self.history: History = []
        self.loop: TrainingLoop | None = None
        #: A run was in the folder and is kept aside until this one has trained.
        self.set_aside = False
        #: The time limit has ended the run (it is finished).
        self.time_limit_reached = False
        #: Early stopping (``config.patience``): the best epoch, its weights, whether it ended
        #: the run (then it is finished).
        self.stopping = EarlyStopping(config)
        self.saved_step = 0  # the good steps of the last checkpoint written (0: none)
        self.saved_records = 0  # the epochs it holds
        self.last_save = (0.0, 0)  # when it was written: perf_counter, steps (skipped included)
        #: The writer's lock on the folder, from :meth:`open` to :meth:`finish` or a failure.
        self.lock: RunLock | None = None
        self._state_seen: tuple[int, ...] | None = None  # the checkpoint a resume read

    def prepare(self, metadata: dict[str, Any] | None, resume: bool) -> dict[str, Any] | None:
        """The training state to continue (``resume``) or None, after checking that this run may
        continue it; ``metadata`` (None: the resumed run's own) is checked and kept."""
        refuse_if_busy(self.path)  # every process, before reading what another one writes
        state = self._resumable_state() if resume else None
        if metadata is None and state is not None:
            metadata = state["run"].get("metadata") or {}
        self.metadata = self.record["metadata"] = metadata or {}
        check_metadata(self.metadata)
        return state

    def _resumable_state(self) -> dict[str, Any]:
        if self.path is None:
            raise ConfigError("resume needs out, the folder of the run to continue")
        self._state_seen = _identity(self.path / STATE_FILE)
        state = load_training_state(self.path)
        saved = state.get("run")
        if not isinstance(saved, dict) or not isinstance(state.get("loop"), dict):
            raise CheckpointError(f"{str(self.path / STATE_FILE)!r} is corrupt: no run record")
        state["history"] = check_history(state.get("history"), repr(str(self.path / STATE_FILE)))
        check_resumable(saved, self.record, self.config, self.path)
        return state

    def open(self, model: nn.Module, loop: TrainingLoop, state: dict[str, Any] | None) -> None:
        """Start training ``loop`` here: from ``state`` (from :meth:`prepare`) or afresh. The
        writer takes the folder's lock first (:class:`RunBusy` if another process holds it). A
        ``state`` that does not fit ``model`` and ``loop`` is refused before anything is written."""
        if state is not None:
            state = {**state, "loop": self._checked(state.get("loop"), loop)}
        self._lock(resumed=state is not None)
        try:
            self._open(model, loop, state)
        except BaseException:
            self._release()
            raise

    def _checked(self, loop_state: Any, loop: TrainingLoop) -> dict[str, Any]:
        """The checkpoint's ``loop`` table checked against ``loop`` (:func:`check_loop_state`)."""
        where = repr(str(self.path / STATE_FILE)) if self.path is not None else "the checkpoint"
        return check_loop_state(loop_state, loop, where)

    def _lock(self, resumed: bool) -> None:
        """Take the folder's lock (creating the folder); a resumed checkpoint must be the one
        :meth:`prepare` read."""
        if self.path is None or not self.writer or self.lock is not None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CheckpointError(
                f"cannot create the run folder {str(self.path)!r}: {err.strerror or err}"
            ) from None
        self.lock = acquire(self.path)
        if resumed and _identity(self.path / STATE_FILE) != self._state_seen:
            self._release()
            raise RunBusy(
                f"{str(self.path / STATE_FILE)!r} was replaced by another process while this "
                "run started; start it again"
            )

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @contextmanager
    def _commit(self) -> Iterator[None]:
        """Around a change to several of the run's files (readers wait for its end)."""
        if self.lock is None:
            yield
            return
        with self.lock.commit():
            yield

    def _open(self, model: nn.Module, loop: TrainingLoop, state: dict[str, Any] | None) -> None:
        self.loop, config = loop, self.config
        if state is not None:
            self.history = list(state.get("history") or [])
            loop.load_state(state["loop"], self.path)
            where = repr(str(self.path / STATE_FILE)) if self.path is not None else "checkpoint"
            self.stopping.restore(self.history, state.get("best"), model, where)
            # A resumed run whose next epoch no longer fits is finished; one stopped mid-epoch
            # finishes that epoch first (the limit ends runs between epochs).
            if (
                self.history
                and not self.stopped_early
                and loop.epoch <= config.epochs
                and not loop.mid_epoch
                and no_epoch_fits(loop.elapsed, last_epoch_seconds(self.history), config.time_limit)
            ):
                self.time_limit_reached = True
                self.history[-1]["stopped"] = "time_limit"
        self.saved_records = len(self.history)
        self.last_save = (time.perf_counter(), loop.step + loop.skipped)
        if not self.writer:
            return
        if self.path is not None and state is None:
            self._lay_out(model)
        elif self.path is not None:
            remove_temporaries(self.path)
            write_metrics(self.path, self.history)  # the epochs the checkpoint holds, no more
            if not (self.path / CONFIG_FILE).is_file():
                write_config(self.path, model, train=to_dict(config), **self.metadata)
        if self.time_limit_reached or self.stopped_early:
            self.save()  # the run is finished: the checkpoint says so

    def _lay_out(self, model: nn.Module) -> None:
        """A new run's files; a run already in the folder is set aside until this one trains."""
        assert self.path is not None
        with self._commit():
            self.set_aside = set_aside_run(self.path)
            try:
                self.save()  # step 0: a run killed before its first checkpoint resumes from 0
                start_run(self.path, model, train=to_dict(self.config), **self.metadata)
            except BaseException:
                if self.set_aside:
                    restore_run(self.path)
                raise

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping has ended the run (it is finished)."""
        return self.stopping.stopped_at is not None

    @property
    def finished(self) -> bool:
        """Whether the run has nothing left to train: all its epochs, or ended by its time
        limit or by early stopping."""
        assert self.loop is not None
        return self.loop.epoch > self.config.epochs or self.time_limit_reached or self.stopped_early

    def save(self, force: bool = True) -> None:
        """Write the training state; unless ``force``, only when a save is due (``config.
        checkpoint_every`` steps, or ``CHECKPOINT_SECONDS``, since the last). Weights that are
        not finite are never saved: the last good checkpoint stays."""
        if self.path is None or self.loop is None or not self.writer:
            return
        loop, config = self.loop, self.config
        steps = loop.step + loop.skipped
        if not force:
            every, (saved_at, saved_steps) = config.checkpoint_every, self.last_save
            if every and steps - saved_steps < every:
                return
            if not every and time.perf_counter() - saved_at < CHECKPOINT_SECONDS:
                return
        params = [p.detach() for p in loop.model.parameters()]
        if params and not bool(torch.stack([p.isfinite().all() for p in params]).all()):
            return
        progress = {
            "epochs_done": loop.epoch - 1,
            "step": loop.step,
            "finished": self.finished,
            "time_limit_reached": self.time_limit_reached,
            **self.stopping.progress(),
            "mid_epoch": loop.mid_epoch,
            "seconds": loop.elapsed,
            "last_epoch_seconds": last_epoch_seconds(self.history),
        }
        best = self.stopping.state()
        save_training_state(
            self.path,
            {
                "run": {**self.record, **progress},
                "loop": loop.state(),
                "history": self.history,
                **({"best": best} if best is not None else {}),
            },
        )
        self.saved_step, self.saved_records = loop.step, len(self.history)
        self.last_save = (time.perf_counter(), steps)
        if self.lock is not None:  # for readers: "its last saved epoch is N"
            self.lock.update(saved_epoch=progress["epochs_done"])

    def add(self, record: dict[str, Any]) -> None:
        """An epoch's record, after early stopping has read it (and said in it whether the run
        ends here, which wins over the time limit): into the history, the checkpoint (when due;
        always at the run's end) and metrics.jsonl."""
        assert self.loop is not None
        if self.stopping.update(record, self.loop.model):
            self.time_limit_reached = False
        self.history.append(record)
        self.save(force=self.finished)
        if self.path is not None and self.writer:
            append_metrics(self.path, record)

    @contextmanager
    def training(self) -> Iterator[None]:
        """Around the epochs. When training fails, or is stopped before its first epoch ends,
        the run that was set aside is put back as it was; when it is stopped later, that run is
        dropped (the new one is to resume). metrics.jsonl goes back to the epochs of the last
        checkpoint, and a :class:`TrainingError` names the checkpoint that keeps the last good
        state."""
        try:
            yield
        except BaseException as err:
            try:
                with self._commit():
                    self._failed(err)
            finally:
                self._release()

    def _failed(self, err: BaseException) -> None:
        """What :meth:`training` does with the folder when training failed with ``err`` (and
        raises it, or the error that replaces it)."""
        if not self.writer:  # another process keeps the folder
            raise err
        path = self.path
        stopped = isinstance(err, TrainingInterrupted | KeyboardInterrupt)
        if self.set_aside and (not stopped or not self.history):
            restore_run(path)  # type: ignore[arg-type]
            if isinstance(err, TrainingInterrupted):
                raise TrainingInterrupted(err.step, err.epoch, restored=True) from None
            if isinstance(err, VaekitError):  # the message grows, the remedy stays
                back = f"{err.message}; the run that was in {str(path)!r} is back"
                raise type(err)(back, remedy=err.remedy) from None
            raise err
        if self.set_aside:
            drop_previous(path)  # type: ignore[arg-type]
        if path is not None:
            trim_metrics(path, self.saved_records)
        if isinstance(err, TrainingError) and path is not None and self.saved_step > 0:
            raise TrainingError(
                f"{err.message}; {str(path / STATE_FILE)!r} keeps the last good state (step "
                f"{self.saved_step})",
                remedy=err.remedy,
            ) from None
        raise err

    def finish(self, model: nn.Module) -> None:
        """Write the trained model (config.json, model.safetensors) and drop the run set aside
        (also one a killed process left before this run resumed). With early stopping on, the
        model takes the best epoch's weights first."""
        self.stopping.keep_best(model)
        try:
            if self.path is not None and self.writer:
                with self._commit():
                    model.save(self.path, train=to_dict(self.config), **self.metadata)  # type: ignore[operator]
                    drop_previous(self.path)
        finally:
            self._release()


def _identity(file: Path) -> tuple[int, ...] | None:
    """Which file ``file`` is and which version of it (None: there is none)."""
    try:
        st = file.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def run_record(
    model: nn.Module,
    config: TrainConfig,
    x: Tensor,
    x_valid: Tensor | None,
    c_train: Tensor | None = None,
    c_valid: Tensor | None = None,
) -> dict[str, Any]:
    """What a resumed run must match: the settings, the model's table and the fingerprints of
    the data (training, validation, and the conditions of a conditional model)."""
    data: dict[str, Any] = {
        "train": fingerprint(x),
        "valid": fingerprint(x_valid) if x_valid is not None else None,
    }
    if c_train is not None:
        data["train conditions"] = fingerprint(c_train)
    if c_valid is not None:
        data["valid conditions"] = fingerprint(c_valid)
    return {"train": to_dict(config), "model": model_table(model), "data": data}


def fingerprint(x: Tensor) -> str:
    """sha256 of a data tensor's shape and float32 values: tells whether a resumed run sees the
    data it started with."""
    a = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
    h = hashlib.sha256(repr(a.shape).encode())
    h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def check_resumable(
    saved: dict[str, Any], now: dict[str, Any], config: TrainConfig, out: Path
) -> None:
    """Raise unless a run with settings ``now`` may continue the checkpoint whose run record is
    ``saved``: same model, same data, settings equal but for :data:`RESUMABLE`."""
    old, new = _with_defaults(saved.get("model") or {}, now["model"]), now["model"]
    if old != new:
        key = next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), "model")
        raise ConfigError(
            f"the model's {key} is {new.get(key)!r} but the run in {str(out)!r} has "
            f"{old.get(key)!r}; resume with the run's own model"
        )
    old_train = saved.get("train") or {}
    for key, value in now["train"].items():
        if key not in RESUMABLE and key in old_train and old_train[key] != value:
            raise ConfigError(
                f"{key} is {value!r} but the run in {str(out)!r} was trained with "
                f"{old_train[key]!r}; a resumed run keeps its settings (only "
                f"{', '.join(RESUMABLE)} may change): start a new run to change {key}"
            )
    done = int(saved.get("epochs_done", 0))
    if config.epochs < done:
        raise ConfigError(
            f"epochs {config.epochs} is fewer than the {done} epochs the run in {str(out)!r} "
            "has done; give more epochs"
        )
    for split in now["data"]:  # train, valid, and the conditions of a conditional model
        old_fp = (saved.get("data") or {}).get(split)
        if old_fp is not None and old_fp != now["data"][split]:
            raise DataError(
                f"the {split} data is not the data the run in {str(out)!r} was trained on "
                f"(sha256 {now['data'][split] and now['data'][split][:12]} vs {old_fp[:12]}); "
                "resume with the same data or start a new run"
            )


def _with_defaults(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A saved model table with the settings it predates (in ``new``, not in ``old``) at their
    defaults: a run saved before a setting existed was trained with its default, or with the
    value its config class lists in ``predated`` where the default has changed since."""
    cls = MODELS.get(new.get("kind", "vae"))
    if cls is None or not isinstance(old, dict):
        return old
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}  # type: ignore[attr-defined]
    before = getattr(cls.config_class, "predated", {})  # type: ignore[attr-defined]
    added = {
        k: json.loads(json.dumps(before[k] if k in before else fields[k].default))
        for k in new
        if k not in old and k in fields and fields[k].default is not dataclasses.MISSING
    }
    return {**old, **added}


def no_epoch_fits(spent: float, epoch_seconds: float, time_limit: float) -> bool:
    """The rule of ``TrainConfig.time_limit``: another epoch, taking ``epoch_seconds`` as the
    last one did, would take training past ``time_limit`` after ``spent`` seconds (all in
    seconds; a limit of 0 is none)."""
    return bool(time_limit) and spent + epoch_seconds > time_limit


def last_epoch_seconds(history: History) -> float:
    """Seconds the last finished epoch of ``history`` took, validation included (0 if none)."""
    if not history:
        return 0.0
    return history[-1]["seconds"] - (history[-2]["seconds"] if len(history) > 1 else 0.0)


def load_optimizer_state(
    optimizer: torch.optim.Optimizer | FlatOptimizer, saved: dict[str, Any], in_place: bool
) -> None:
    """Put the per-parameter state of ``saved`` (an optimizer ``state_dict``) into ``optimizer``,
    keeping its own settings. ``in_place`` copies into the existing state tensors (captured CUDA
    graphs hold their addresses)."""
    if isinstance(optimizer, FlatOptimizer):
        params = optimizer.params
    else:
        params = [p for group in optimizer.param_groups for p in group["params"]]
    entries = saved.get("state") or {}
    if sorted(entries) != list(range(len(params))) and entries:
        raise CheckpointError(
            f"the checkpoint's optimizer state covers {len(entries)} parameters, the model has "
            f"{len(params)}"
        )
    if isinstance(optimizer, FlatOptimizer):
        optimizer.load_state_dict({"state": entries})  # copies into its buffers
        return
    if not in_place:
        own = optimizer.state_dict()
        optimizer.load_state_dict({"state": entries, "param_groups": own["param_groups"]})
        return
    with torch.no_grad():
        for i, p in enumerate(params):
            for key, value in optimizer.state[p].items():
                if isinstance(value, Tensor) and key in entries.get(i, {}):
                    value.copy_(entries[i][key].reshape(value.shape))


def load_weights(model: nn.Module, weights: dict[str, Tensor], out: Path | None) -> None:
    """Copy a checkpoint's ``weights`` into ``model``; a :class:`CheckpointError` names the first
    mismatch."""
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        where = str(out / STATE_FILE) if out is not None else "the checkpoint"
        raise CheckpointError(f"{where!r} does not match the model: {detail}") from None

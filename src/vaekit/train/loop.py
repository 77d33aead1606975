"""``fit``: the training loop as one plain function -- check the data and settings, open the run
folder, choose the loop, then one pass per epoch: validate, apply the time limit, record."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import configure
from ..data.checks import as_tensor
from ..dist import Group, PeerLost, any_of, broadcast, check_same, current
from ..errors import ConfigError, DataError, Remedy
from ..estimators import check_data
from ..estimators.sharded import elbo as evaluate_elbo
from ..models import registry
from ..models.base import Model
from ..models.vae import refuse_modules
from .callbacks import Callbacks
from .config import History, TrainConfig, TrainingError
from .fast import choose_loop
from .objective import check_objective
from .run import RunFolder, no_epoch_fits, run_record
from .step import autocast_dtype, binarize


def fit(
    model: Model,
    data: Any,
    *,
    valid: Any = None,
    config: TrainConfig | dict[str, Any] | None = None,
    out: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    progress: bool = False,
    resume: bool = False,
    stop: Callable[[], bool] | None = None,
    conditions: Any = None,
    valid_conditions: Any = None,
    callbacks: Sequence[Any] = (),
    **overrides: Any,
) -> History:
    """Train ``model`` in place on ``data`` (N, *data_shape) and return the per-epoch history.

    ``data`` and ``valid``: tensors, numpy arrays, nested lists or map-style data sets (see
    :func:`as_tensor`), read as float32, or float64 for a model in float64. ``config`` (a
    :class:`TrainConfig` or a dict of its fields), or keyword overrides of its fields (e.g.
    ``epochs=5``), sets the run. With ``valid``, the validation ELBO (nats, one sample, fixed
    seed) is computed after each epoch. Steps whose loss or gradient is not finite are skipped
    and counted; a run that ends with no good step at all raises :class:`TrainingError` and
    saves no model.

    With ``out``, the run lives in that folder: ``checkpoint.safetensors`` holds the whole
    training state, written at the start, as ``config.checkpoint_every`` says, at the end and
    when stopped, atomically and never with non-finite weights; each epoch's record is appended
    to ``metrics.jsonl``; ``config.json`` (with ``metadata``) and ``model.safetensors`` are
    written at the end. A run already in ``out`` is set aside (in ``out/.vaekit-previous``)
    while the new one trains and put back if it fails or is stopped in its first epoch. With
    ``resume``, training continues from ``out``'s checkpoint, on CPU bit for bit as a run never
    stopped; only ``RESUMABLE`` settings may change. ``patience``: early stopping on the
    validation ELBO, keeping the best epoch's weights (:mod:`.stopping`).

    ``stop`` is polled before every step; when it returns True the state is saved (on the fast
    path, the last epoch's end is kept) and :class:`TrainingInterrupted` is raised. fit installs
    no signal handler: a caller that wants Ctrl-C to stop cleanly sets a flag from its handler.
    Each record names the loop that ran (``path``: "eager", "graph" or "compile") and, where the
    fast path did not apply, why (``notice``). A conditional model needs ``conditions`` for
    ``data`` (and ``valid_conditions`` for ``valid``): integer labels (N,) or vectors (N,
    condition_dim). ``callbacks``: loggers, told of each step and epoch (:mod:`.callbacks`).

    Inside a process group (``torchrun``, or ``torch.distributed.init_process_group`` called
    before fit), the processes train one model: ``batch_size`` stays the global batch, each
    process takes its share of every batch and of the validation set, draws each step's random
    numbers for the whole batch and keeps its rows, and the gradients are summed over the
    processes in one all-reduce; the run is the one-process run up to the order of floating-point
    sums, whatever the number of processes. Every process gives the same arguments (checked);
    the model's weights at the start are rank 0's (sent to the others); rank 0 alone writes
    ``out`` and shows progress.
    """
    refuse_modules(overrides)  # networks come from the model's config, not from fit
    config = configure(TrainConfig, config, overrides)
    group = current()
    dtype = torch.float64 if model._dtype == torch.float64 else torch.float32
    x = as_tensor(data, "training data", dtype)
    check_data(model, x, "training data")
    c_train = _conditions(model, conditions, x.shape[0], "training data")
    _check_settings(model, config)
    _check_group(model, config, x.shape[0], group)
    config = check_objective(model, config, x.shape[0], group.world_size)
    registry.check_model_fits(model, config, x.shape[0], out is not None)  # before Adam's state
    x_valid, c_valid = _validation_data(model, valid, valid_conditions, config, dtype)
    record = run_record(model, config, x, x_valid, c_train, c_valid)
    run = RunFolder(out, config, record, writer=group.main)
    state = run.prepare(metadata, resume)
    _same_run(group, record, resume, state)  # before any process writes
    _start_new(model, x, state)
    loop, path, notice = choose_loop(model, x, config, c_train, state, group)
    run.open(model, loop, state)
    hooks = Callbacks(callbacks if group.main else (), model, config, loop, x.shape[0])
    broadcast(group, list(model.state_dict().values()), "the model's weights")  # rank 0's
    epochs = loop.epochs(progress and group.main, run.save, stop)
    with run.training():  # what becomes of the run folder if training fails or is stopped
        try:
            cycle_start = time.perf_counter()
            for record in [] if run.time_limit_reached or run.stopped_early else epochs:
                arrived = time.perf_counter()
                _describe(record, path, notice, model, x_valid, c_valid, config, group)
                if config.time_limit and loop.epoch <= config.epochs:
                    cycle_start = _time_limit(record, run, loop, group, arrived, cycle_start)
                run.add(record)  # and early stopping's verdict on it
                hooks.epoch(record)
                if run.time_limit_reached or run.stopped_early:
                    break
            _check_some_good_step(loop.step, loop.skipped, config)
        except PeerLost as err:  # the checkpoint (rank 0's) continues the run
            remedy = Remedy("resume", str(out)) if out is not None else None
            raise PeerLost(err.message, remedy=remedy) from None
        finally:
            epochs.close()
            loop.close()  # also when the time limit left no epoch to run
    model.eval()
    run.finish(model)
    hooks.end()
    return run.history


def _time_limit(
    record: dict[str, Any], run: Any, loop: Any, group: Any, arrived: float, cycle_start: float
) -> float:
    """Mark ``record`` (and ``run``) stopped by the time limit when, from the time spent so far
    and what one more epoch would add, no further epoch fits; returns the next cycle's start."""
    now = time.perf_counter()
    spent = loop.elapsed + (now - arrived)
    if any_of(group, no_epoch_fits(spent, now - cycle_start, run.config.time_limit)):
        record["stopped"] = "time_limit"
        run.time_limit_reached = True
    return now


def _describe(
    record: dict[str, Any],
    path: str,
    notice: str | None,
    model: Model,
    x_valid: Tensor | None,
    c_valid: Tensor | None,
    config: TrainConfig,
    group: Group,
) -> None:
    """Add to an epoch's ``record`` the loop that ran it (and why the fast path did not), and
    the validation ELBO when there is validation data."""
    record["path"] = "eager" if path == "off" else path
    record.update({} if notice is None else {"notice": notice})
    if x_valid is not None:
        record["valid_elbo"] = _valid_elbo(model, x_valid, c_valid, config, group)


def _same_run(
    group: Group, record: dict[str, Any], resume: bool, state: dict[str, Any] | None
) -> None:
    """A :class:`ConfigError` on every process of ``group`` unless all of them start the same
    run: settings, model, data fingerprints and, resuming, the checkpoint's position."""
    if group.active:
        saved = (state or {}).get("run") or {}
        at = {key: saved.get(key) for key in ("epochs_done", "step", "mid_epoch")}
        same = {key: record[key] for key in ("train", "model", "data")}
        check_same(group, {**same, "resume": resume, "checkpoint": at}, "settings")


def _start_new(model: Model, x: Tensor, state: dict[str, Any] | None) -> None:
    """A new run (no checkpoint ``state``): a model with ``start_from_data`` sets what it starts
    from the training data ``x`` (a VAE: its likelihood's untrained variance)."""
    if state is None and hasattr(model, "start_from_data"):
        model.start_from_data(x)


def _valid_elbo(
    model: Model, x: Tensor, c: Tensor | None, config: TrainConfig, group: Group
) -> float:
    """The mean validation ELBO (nats; one sample, seed ``config.seed``), shared by ``group``."""
    kw = {} if c is None else {"condition": c}
    return float(evaluate_elbo(model, x, seed=config.seed, group=group, **kw).mean())


def _check_some_good_step(step: int, skipped: int, config: TrainConfig) -> None:
    """A :class:`TrainingError` for a run whose every step (``skipped`` of them) was skipped."""
    if step == 0 and skipped > 0:
        raise TrainingError(
            f"no step of the run had a finite loss and gradient ({skipped} skipped), so there "
            f"is no model to save; check the data's scale, lower lr (now {config.lr:g}), set "
            "grad_clip, or bound the decoder variance (decoder_min_logvar)"
        )


def _check_settings(model: Model, config: TrainConfig) -> None:
    """A :class:`ConfigError` for settings the model cannot train with."""
    if config.binarize == "dynamic" and model.likelihood.support != "unit":
        raise ConfigError("binarize='dynamic' needs the bernoulli likelihood")
    free_bits = model.free_bits
    if free_bits and config.objective != "elbo":
        raise ConfigError(
            f"free_bits ({free_bits} nats) hold up the ELBO's KL term, which objective "
            f"{config.objective!r} does not have: set free_bits=0, or objective=elbo"
        )
    if autocast_dtype(config) is not None and not model.capabilities.noise_terms:
        raise ConfigError(
            f"precision={config.precision!r} needs a model with terms(x, eps); "
            f"{type(model).__name__} does not have them: set precision=fp32"
        )


def _check_group(model: Model, config: TrainConfig, n: int, group: Group) -> None:
    """A :class:`ConfigError` where the processes of ``group`` cannot share the run."""
    if not group.active:
        return
    caps = model.capabilities
    if not (caps.noise_terms and caps.forward_is_terms):
        raise ConfigError(
            f"{type(model).__name__} draws its own noise inside forward, so {group.world_size} "
            "processes would not train the one-process run; train it in one process (kinds vae "
            "and hvae train in several)"
        )
    if group.world_size > n:
        raise ConfigError(
            f"{group.world_size} processes for {n} training examples: each needs at least one; "
            "use fewer processes"
        )
    if group.world_size > config.batch_size:
        raise ConfigError(
            f"batch_size {config.batch_size} is the global batch, which {group.world_size} "
            "processes share: give a batch_size of at least the number of processes"
        )


def _validation_data(
    model: Model, valid: Any, conditions: Any, config: TrainConfig, dtype: torch.dtype
) -> tuple[Tensor | None, Tensor | None]:
    """The validation data (N, *data_shape) on the model's device, binarised once (seed + 1)
    under dynamic binarisation, and its conditions; (None, None) without ``valid``."""
    if valid is None:
        if conditions is not None:
            raise DataError("valid_conditions were given without valid, the data they belong to")
        if config.patience:
            raise ConfigError(
                f"patience={config.patience} stops on the validation ELBO: give valid (validation "
                "data), or set patience=0"
            )
        return None, None
    x_valid = as_tensor(valid, "validation data", dtype).to(model.device)
    check_data(model, x_valid, "validation data")
    c_valid = _conditions(model, conditions, x_valid.shape[0], "validation data")
    if config.binarize == "dynamic":
        x_valid = binarize(x_valid, seed=config.seed + 1)
    return x_valid, c_valid


def _conditions(model: Model, values: Any, n: int, name: str) -> Tensor | None:
    """The conditions of ``n`` examples of ``name`` for a conditional model, else None."""
    if not model.capabilities.conditional:
        if values is not None:
            raise DataError(f"conditions were given for {name} but the model is not conditional")
        return None
    if values is None:
        raise DataError(
            f"the model is conditional (condition_dim = {model.config.condition_dim}): give "
            f"conditions (labels or vectors) for the {name}"
        )
    return model.condition(values if isinstance(values, Tensor) else np.asarray(values), n)

"""The training loop: one plain function, ``fit``, with no framework between reader and math.

Minibatch stochastic gradient ascent on a bound (ELBO or IWAE) with reparameterised samples, as in
Kingma & Welling's AEVB algorithm. The data set lives on the model's device; shuffling and dynamic
binarisation happen there with a seeded generator, so a run repeats exactly on CPU.

Two loops share that contract. The eager loop is the plain one below (``fast="off"``, and what runs
on CPU). On a CUDA device ``fit`` takes the fast path when it applies (``fast="auto"``): the whole
step (forward, backward, clipping, Adam) is captured in a CUDA graph, several steps per launch, with
static shapes (the ragged last batch of each epoch is dropped), the noise drawn in bulk between
launches, a non-finite step undone on the device instead of branched on the host, and the
epoch's metrics read once per epoch. Data that does not fit on the device is streamed from pinned
CPU memory. Where the fast path cannot apply, the eager loop runs and every history record says why
(key ``notice``); a fast path that was asked for by name and could not run also warns.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checkpoint import (
    CONFIG_FILE,
    STATE_FILE,
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
from ..config import check_fields, configure, to_dict
from ..data.checks import as_tensor
from ..errors import CheckpointError, ConfigError, DataError, VaekitError
from ..estimators import check_data
from ..estimators import elbo as evaluate_elbo
from ..models.base import Model, model_terms
from ..objectives import OBJECTIVES
from .optim import (
    ADAGRAD_EPS,
    COMPILE_OPTIONS,
    FlatAdagrad,
    FlatAdam,
    FlatOptimizer,
    adagrad_update,  # noqa: F401
    adam_update,  # noqa: F401
)

#: One record per epoch: epoch, step, examples_seen, train_bound, valid_elbo, skipped_steps, ...
History = list[dict[str, Any]]

OPTIMIZERS = ("adam", "adagrad")
LR_SCHEDULES = ("constant", "iwae", "iwae_scaled")
#: Stages of the IWAE paper's schedule: stage i lasts 3^i passes at lr * 10^(-i/7), i = 0..7.
IWAE_STAGES = 8
IWAE_PASSES = (3**IWAE_STAGES - 1) // 2  # 3280
BINARIZE = ("none", "dynamic")
FAST = ("auto", "off", "graph", "compile")
PRECISIONS = ("fp32", "tf32", "bf16")
RESIDENT = ("auto", "yes", "no")
#: Training steps from which ``fast="auto"`` compiles the step (torch.compile, a few seconds once
#: per process) on top of the CUDA graph: the per-step saving measured on an H100 repays the
#: compile time after about this many steps.
AUTO_COMPILE_STEPS = 20_000
#: Fraction of the device's free memory the training set may take and still be made resident.
RESIDENT_FRACTION = 0.5
#: Seconds of training between two saves of the training state when ``checkpoint_every`` is 0.
CHECKPOINT_SECONDS = 60.0
#: Settings a resumed run may change; any other must match the checkpoint's. The last three
#: choose how steps run, not what they compute (a resume that changes the loop or the device
#: continues with fresh random streams: statistically the same run, not bit for bit).
RESUMABLE = (
    "epochs",
    "time_limit",
    "checkpoint_every",
    "max_bad_steps",
    "fast",
    "steps_per_launch",
    "resident",
)


class TrainingError(VaekitError):
    """Training cannot go on (for example, too many non-finite steps in a row)."""


class TrainingInterrupted(Exception):
    """:func:`fit` stopped because its ``stop`` callback said so. ``step`` and ``epoch`` say
    where the saved training state stands (saved when fit was given ``out``). ``restored``: the
    run was started in the folder of another run and stopped before its first epoch ended, so
    the other run was put back and nothing of this one was kept."""

    def __init__(self, step: int, epoch: int, restored: bool = False) -> None:
        super().__init__(f"interrupted at step {step} (epoch {epoch})")
        self.step, self.epoch, self.restored = step, epoch, restored


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`fit`; saved as the ``train`` table of config.json.

    epochs: passes over the training set. batch_size: examples per step.
    time_limit: seconds of training (0 = no limit): the run ends, as finished, before an epoch
    that would take it past the limit, judged by the last epoch's duration (validation
    included). At least one epoch runs; a resumed run counts the time of its earlier parts.
    The learning-rate schedule is the one of ``epochs``, cut off where the run ends.
    optimizer: "adam" or "adagrad" (the AEVB paper's). lr: learning rate (the first one, with
    a schedule). adam_eps: Adam's epsilon (the IWAE paper's is 1e-4).
    lr_schedule: "constant"; "iwae", Burda et al.'s staircase: 3^i passes at lr * 10^(-i/7)
    for i = 0..7 (3280 passes; a shorter run stops part way down, a longer one stays at the
    last rate); "iwae_scaled", the same eight stages stretched or squeezed to ``epochs``.
    objective: "elbo" or "iwae". samples: L for the ELBO, K for IWAE (per example).
    beta: weight of the KL term (1 is the ELBO). warmup_steps: beta rises linearly from 0 over
    this many steps (0 = no warm-up). grad_clip: max global gradient norm (0 = no clipping).
    binarize: "dynamic" resamples x ~ Bernoulli(x) every time a batch is drawn; validation data is
    binarised once with a fixed seed. seed: seeds data order and noise.
    max_bad_steps: stop after this many non-finite steps in a row (on the fast path the count is
    kept on the device and checked at the end of each epoch).
    fast: "auto" (the CUDA-graph fast path where it applies, compiled as with "compile" when the
    run has at least ``AUTO_COMPILE_STEPS`` steps and triton is installed, else the eager
    loop), "off" (always the eager loop), "graph" or "compile" (the fast path, with the loss and
    the metric updates also compiled by torch.compile; both fall back to the eager loop with a
    warning where they cannot run).
    The fast path drops the ragged last batch of each epoch (static shapes).
    steps_per_launch: training steps captured in one CUDA graph on the fast path.
    precision: "fp32"; "tf32" to let CUDA matrix products of float32 use TensorFloat-32 (10-bit
    mantissa inputs, float32 accumulation; no effect on CPU); or "bf16" to run the networks under
    bfloat16 autocast (the bound and the loss stay in float32).
    resident: "auto" keeps the training set on the device when it takes under half the free
    device memory and streams batches from pinned CPU memory otherwise; "yes" / "no" force it.
    checkpoint_every: with ``fit(out=...)``, save the training state once this many steps
    (skipped ones count) have passed since the last save; 0 (the default) = once
    ``CHECKPOINT_SECONDS`` of training have passed. It is also saved at the start, at the end
    and when stopped. The fast path saves only at epoch ends (the first one due).
    """

    epochs: int = 10
    time_limit: float = 0.0
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_schedule: str = "constant"
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    objective: str = "elbo"
    samples: int = 1
    beta: float = 1.0
    warmup_steps: int = 0
    grad_clip: float = 0.0
    binarize: str = "none"
    seed: int = 0
    max_bad_steps: int = 50
    fast: str = "auto"
    steps_per_launch: int = 8
    precision: str = "fp32"
    resident: str = "auto"
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("epochs", "batch_size", "samples", "max_bad_steps", "steps_per_launch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("warmup_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be zero or more, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1, got {self.seed}")
        if not (math.isfinite(self.time_limit) and self.time_limit >= 0):
            raise ConfigError(
                f"time_limit must be 0 (no limit) or a number of seconds, got {self.time_limit}"
            )
        for name in ("lr", "adam_eps", "beta", "grad_clip", "weight_decay"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0 or (name in ("lr", "adam_eps") and v == 0):
                raise ConfigError(f"{name} must be a positive number, got {v}")
        for name, options in (
            ("optimizer", OPTIMIZERS),
            ("lr_schedule", LR_SCHEDULES),
            ("objective", tuple(OBJECTIVES)),
            ("binarize", BINARIZE),
            ("fast", FAST),
            ("precision", PRECISIONS),
            ("resident", RESIDENT),
        ):
            if getattr(self, name) not in options:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(options)}"
                )


def bernoulli_16bit(p: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw of x ~ Bernoulli(p) for every element of ``p`` (values in [0, 1]); same shape
    and dtype as ``p``, values 0 and 1.

    x = 1 where a uniform 16-bit integer u (0..65535) falls below 65536 p, so
    P(x = 1) = ceil(65536 p) / 65536: exactly p when 65536 p is a whole number, as for the k/256
    pixels of mnist.pkl.gz, and within 2^-16 of p otherwise (k/255 pixels of image files, say;
    ``torch.rand`` gives 24 bits). Each 64 random bits of ``generator`` give four draws: on CPU
    this takes about half the time of comparing with ``torch.rand`` (one 32-bit Mersenne Twister
    output per element), the largest cost of a training step after the matrix products and Adam.
    """
    n = p.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=p.device)
    words.random_(-(2**63), None, generator=generator)  # all 64 bits uniform
    u = words.view(torch.int16)[:n].view(p.shape)  # uniform on -32768..32767
    return (u < p * 65536.0 - 32768.0).to(p.dtype)


def _grad_sum(params: list[Tensor]) -> Tensor:
    """The sum of every gradient element of ``params`` (0-dim): finite exactly when each gradient
    is finite (barring an overflow of the sum, a step to reject anyway)."""
    sums = [p.grad.sum() for p in params if p.grad is not None]
    return torch.stack(sums).sum() if sums else torch.zeros(())


def binarize(x: Tensor, seed: int) -> Tensor:
    """One fixed Bernoulli draw of ``x`` (values in [0, 1]) under ``seed``; same shape."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=g)


def make_optimizer(model: Model, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or Adagrad over all of the model's parameters.

    Adam uses torch's fused implementation (one pass over each parameter) where the parameters
    allow it: on a 2-core CPU its step takes 0.6 ms against 3.1 ms for the default multi-tensor
    one, for the 650k parameters of a 784-400-20 MLP VAE (whose whole step takes about 5 ms).
    """
    params = list(model.parameters())
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(
            params, lr=config.lr, eps=ADAGRAD_EPS, weight_decay=config.weight_decay
        )
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(
        params,
        lr=config.lr,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        fused=fused or None,
    )


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (1-based) under ``config.lr_schedule``."""
    if config.lr_schedule == "constant":
        return config.lr
    passes = epoch - 1  # passes already made
    if config.lr_schedule == "iwae_scaled":
        passes = passes * IWAE_PASSES / config.epochs
    # stage i covers passes [(3^i - 1) / 2, (3^(i+1) - 1) / 2)
    stage = min(IWAE_STAGES - 1, int(math.log(2 * passes + 1, 3) + 1e-9))
    return config.lr * 10 ** (-stage / 7)


def set_learning_rate(optimizer: torch.optim.Optimizer | FlatOptimizer, lr: float) -> None:
    """Set every parameter group's lr, in place where it is a tensor (captured graphs)."""
    if isinstance(optimizer, FlatOptimizer):
        optimizer.lr.fill_(lr)
        return
    for group in optimizer.param_groups:
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def select_path(model: Model, config: TrainConfig, n: int) -> tuple[str, str | None]:
    """Which loop :func:`fit` runs: ``("graph" | "compile" | "off", notice)``.

    ``notice`` is one line saying why the fast path does not apply (None when it does, or when it
    was turned off on purpose).
    """
    if config.fast == "off":
        return "off", None
    device = model.device
    why = None
    caps = model.capabilities
    if caps.conditional and not caps.closed_form:
        why = (
            f"{type(model).__name__} is conditional and overrides encode, decode or terms, "
            "which check their conditions at every step"
        )
    elif device.type != "cuda":
        why = f"CUDA graphs need a CUDA device, the model is on {device.type}"
    elif not caps.noise_terms:
        why = f"{type(model).__name__} has no terms(x, eps) for the fast path"
    elif not caps.forward_is_terms:
        why = f"{type(model).__name__} overrides forward or encode, which the fast path bypasses"
    elif n < config.batch_size:
        why = f"{n} training examples is fewer than batch_size {config.batch_size}"
    if why is not None:
        return "off", f"fast path off: {why}; ran the eager loop"
    if config.fast == "auto":
        steps = config.epochs * (n // config.batch_size)
        return ("compile" if steps >= AUTO_COMPILE_STEPS and _has_triton() else "graph"), None
    return config.fast, None


def _roomy_recompile_limit() -> AbstractContextManager[None]:
    """torch.compile's per-function recompile limit raised while a run warms up and captures.

    Each fit compiles the step anew for its own shapes; past the default limit (8) torch would
    quietly run the step uncompiled, so the ninth run in a process (a sweep) would be slow.
    The compiled functions are called only while capturing, never between graph replays.
    """
    cfg = torch._dynamo.config
    names = ("recompile_limit", "accumulated_recompile_limit")
    if not all(hasattr(cfg, n) for n in names):  # pragma: no cover - older torch
        names = ("cache_size_limit", "accumulated_cache_size_limit")
    return cfg.patch({n: max(getattr(cfg, n), 4096) for n in names if hasattr(cfg, n)})


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # pragma: no cover - older torch
        return False
    return bool(has_triton())


def flat_optimizer(params: list[Tensor], config: TrainConfig, compile: bool) -> FlatOptimizer:
    """The :class:`FlatOptimizer` of ``config.optimizer``."""
    common = {"weight_decay": config.weight_decay, "grad_clip": config.grad_clip}
    if config.optimizer == "adagrad":
        return FlatAdagrad(params, config.lr, compile=compile, **common)
    return FlatAdam(params, config.lr, eps=config.adam_eps, compile=compile, **common)


class DeviceMetrics:
    """Per-epoch sums kept on the device and read with one sync: the bound over good steps, the
    examples they saw, good and skipped steps, and the longest run of skipped steps."""

    def __init__(self, device: torch.device, batch: int = 0) -> None:
        z = {"device": device}
        self.bound_sum = torch.zeros((), dtype=torch.float64, **z)
        self.counts = torch.zeros(3, dtype=torch.int64, **z)  # seen (epoch), good, skipped (all)
        self.bad_run = torch.zeros((), dtype=torch.int64, **z)
        self.worst_run = torch.zeros((), dtype=torch.int64, **z)
        self._inc = {}  # batch -> (increment of a good step, of a skipped one)
        if batch:
            self._increments(batch, device)

    def _increments(self, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if batch not in self._inc:
            ok = torch.tensor([batch, 1, 0], dtype=torch.int64, device=device)
            bad = torch.tensor([0, 0, 1], dtype=torch.int64, device=device)
            self._inc[batch] = (ok, bad)
        return self._inc[batch]

    @property
    def good(self) -> Tensor:
        return self.counts[1]

    @torch.no_grad()
    def update(self, finite: Tensor, bound_sum: Tensor, batch: int) -> None:
        ok, bad = self._increments(batch, self.counts.device)
        self.counts += torch.where(finite, ok, bad)
        self.bound_sum += torch.where(finite, bound_sum, 0.0).double()
        self.bad_run.copy_(torch.where(finite, 0, self.bad_run + 1))
        torch.maximum(self.worst_run, self.bad_run, out=self.worst_run)

    def reset(self) -> None:
        """Back to the state of a new object (in place: captured graphs keep their pointers)."""
        for t in (self.bound_sum, self.counts, self.bad_run, self.worst_run):
            t.zero_()

    def new_epoch(self) -> None:
        self.bound_sum.zero_()
        self.counts[0].zero_()
        self.worst_run.copy_(self.bad_run)

    def read(self) -> dict[str, float]:
        """One host sync: the numbers as Python values."""
        counts = (self.counts, self.worst_run[None])
        vals = torch.cat([self.bound_sum[None], *(t.double() for t in counts)]).tolist()
        return dict(zip(("bound_sum", "seen", "good", "skipped", "worst_run"), vals, strict=True))


def _autocast_dtype(config: TrainConfig) -> torch.dtype | None:
    return torch.bfloat16 if config.precision == "bf16" else None


def fit(
    model: Model,
    data: Any,
    *,
    valid: Any = None,
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    progress: bool = False,
    resume: bool = False,
    stop: Callable[[], bool] | None = None,
    conditions: Any = None,
    valid_conditions: Any = None,
    **overrides: Any,
) -> History:
    """Train ``model`` in place on ``data`` (N, *data_shape) and return the per-epoch history.

    ``data`` and ``valid``: tensors, numpy arrays, nested lists or map-style data sets (see
    :func:`as_tensor`), read as float32, or float64 for a model in float64.

    ``config`` (a :class:`TrainConfig` or a dict of its fields), or keyword overrides of its
    fields (e.g. ``epochs=5``), sets the run; an unknown name is a :class:`ConfigError`. With
    ``valid``, the validation ELBO (nats, one sample, fixed seed) is computed after each epoch.
    Steps whose loss or gradient is not finite are skipped and counted; a run that ends with
    no good step at all raises :class:`TrainingError` and saves no model.

    With ``out``, the run lives in that folder: ``checkpoint.safetensors`` holds the whole
    training state (weights, optimizer, step, data order, generator states, history), written
    atomically at the start, as ``config.checkpoint_every`` says (by default once a minute),
    at the end and when stopped, never with non-finite weights; each epoch's record is appended to
    ``metrics.jsonl``; and ``config.json`` (with ``metadata``, JSON-ready) and
    ``model.safetensors`` are written at the end. With ``resume``, training continues from
    ``out``'s checkpoint instead of starting afresh; on CPU the result is bit for bit that of a
    run never stopped. Only ``RESUMABLE`` settings may differ from the checkpoint's
    (``epochs`` may extend a finished run). A run already in ``out`` (without ``resume``) is
    moved to ``out/.vaekit-previous`` while the new one trains: removed when the new run
    finishes or is stopped after an epoch, put back as it was if the new run fails or is stopped
    sooner.

    ``stop`` is polled before every step; when it returns True the state is saved (on the fast
    path, the last epoch's end is kept) and :class:`TrainingInterrupted` is raised. fit installs
    no signal handler: a caller that wants Ctrl-C to stop cleanly sets a flag from its handler.

    Each record names the loop that ran (``path``: "eager", "graph" or "compile") and, where the
    fast path did not apply, why (``notice``). See :class:`TrainConfig` ``fast``.

    A conditional model (``condition_dim`` > 0) needs ``conditions`` for ``data`` (and
    ``valid_conditions`` for ``valid``): integer labels (N,), made one-hot, or vectors
    (N, condition_dim). On the fast path the conditions stay on the device beside the data.
    """
    config = configure(TrainConfig, config, overrides)
    device = model.device
    dtype = torch.float64 if model._dtype == torch.float64 else torch.float32
    x = as_tensor(data, "training data", dtype)
    check_data(model, x, "training data")
    c_train = _fit_conditions(model, conditions, x.shape[0], "training data")
    if config.binarize == "dynamic" and model.likelihood.support != "unit":
        raise ConfigError("binarize='dynamic' needs the bernoulli likelihood")
    free_bits = getattr(model.config, "free_bits", 0)
    if free_bits and config.objective != "elbo":
        raise ConfigError(
            f"free_bits ({free_bits} nats) hold up the ELBO's KL term, which objective "
            f"{config.objective!r} does not have: set free_bits=0, or objective=elbo"
        )
    x_valid = c_valid = None
    if valid is None and valid_conditions is not None:
        raise DataError("valid_conditions were given without valid, the data they belong to")
    if valid is not None:
        x_valid = as_tensor(valid, "validation data", dtype).to(device)
        check_data(model, x_valid, "validation data")
        c_valid = _fit_conditions(model, valid_conditions, x_valid.shape[0], "validation data")
        if config.binarize == "dynamic":
            x_valid = binarize(x_valid, seed=config.seed + 1)
    if _autocast_dtype(config) is not None and not model.capabilities.noise_terms:
        raise ConfigError(
            f"precision={config.precision!r} needs a model with terms(x, eps); "
            f"{type(model).__name__} does not have them: set precision=fp32"
        )

    out_dir = Path(out) if out is not None else None
    run_info: dict[str, Any] = {
        "train": to_dict(config),
        "model": model_table(model),
        "data": {
            "train": fingerprint(x),
            "valid": fingerprint(x_valid) if x_valid is not None else None,
            **({"train conditions": fingerprint(c_train)} if c_train is not None else {}),
            **({"valid conditions": fingerprint(c_valid)} if c_valid is not None else {}),
        },
    }
    state: dict[str, Any] | None = None
    if resume:
        if out_dir is None:
            raise ConfigError("resume needs out, the folder of the run to continue")
        state = load_training_state(out_dir)
        saved = state.get("run")
        if not isinstance(saved, dict) or not isinstance(state.get("loop"), dict):
            raise CheckpointError(f"{str(out_dir / STATE_FILE)!r} is corrupt: no run record")
        check_resumable(saved, run_info, config, out_dir)
        if metadata is None:
            metadata = saved.get("metadata") or {}
    run_info["metadata"] = metadata = metadata or {}
    check_metadata(metadata)

    path, notice = select_path(model, config, x.shape[0])
    loop_state = state.get("loop") if state is not None else None
    if (
        path != "off"
        and config.fast == "auto"
        and isinstance(loop_state, dict)
        and loop_state.get("kind") == _EagerLoop.kind
        and int(loop_state.get("pos") or 0)
    ):  # the fast path starts only at an epoch's start: finish this run where it was
        path = "off"
        notice = "fast path off: the run stopped mid-epoch on the eager loop; it continues there"
    while path != "off":
        try:
            with _matmul_precision(config.precision == "tf32"):  # graphs capture their kernels
                run = _FastRun(model, x, config, path, c_train)
            break
        except Exception as err:  # capture or compile failed: graph or eager still can run
            model.zero_grad(set_to_none=True)
            if path == "compile" and config.fast == "auto":
                path = "graph"  # compile chosen automatically: retry without it, silently
                continue
            notice = f"fast path off: {path} setup failed ({type(err).__name__}: {err})"
            notice = notice.splitlines()[0][:300] + "; ran the eager loop"
            path = "off"
    if notice is not None and config.fast in ("graph", "compile"):
        warnings.warn(notice, RuntimeWarning, stacklevel=2)
    loop: _EagerLoop | _FastRun = (
        _EagerLoop(model, x.to(device), config, c_train) if path == "off" else run
    )
    history: History = []
    if state is not None:
        history = list(state.get("history") or [])
        loop.load_state(state["loop"], out_dir)

    # Set when the time limit ends the run: before the first epoch of a resumed run whose last
    # epoch would no longer fit, or after the epoch past which the next one would not. A run
    # stopped mid-epoch finishes that epoch first: the limit ends runs between epochs.
    out_of_time: list[bool] = []
    if (
        history
        and loop.epoch <= config.epochs
        and not loop.mid_epoch
        and no_epoch_fits(loop.elapsed, _last_epoch_seconds(history), config.time_limit)
    ):
        out_of_time.append(True)
        history[-1]["stopped"] = "time_limit"
    saved_step: list[int] = []  # the step of the last checkpoint written
    saved_records = [len(history)]  # the epochs it holds
    last_save = {"time": time.perf_counter(), "steps": loop.step + loop.skipped}

    def save(force: bool = True) -> None:
        """Write the training state; unless ``force``, only when a save is due."""
        if out_dir is None:
            return
        steps = loop.step + loop.skipped
        if not force:
            every = config.checkpoint_every
            if every and steps - last_save["steps"] < every:
                return
            if not every and time.perf_counter() - last_save["time"] < CHECKPOINT_SECONDS:
                return
        params = [p.detach() for p in model.parameters()]
        if params and not bool(torch.stack([p.isfinite().all() for p in params]).all()):
            return  # keep the last good checkpoint
        progress_info = {
            "epochs_done": loop.epoch - 1,
            "step": loop.step,
            "finished": loop.epoch > config.epochs or bool(out_of_time),
            "time_limit_reached": bool(out_of_time),
            "mid_epoch": loop.mid_epoch,
            "seconds": loop.elapsed,
            "last_epoch_seconds": _last_epoch_seconds(history),
        }
        save_training_state(
            out_dir,
            {
                "run": {**run_info, "train": to_dict(config), **progress_info},
                "loop": loop.state(),
                "history": history,
            },
        )
        saved_step[:] = [loop.step]
        saved_records[:] = [len(history)]
        last_save.update(time=time.perf_counter(), steps=steps)

    # A run already in out_dir is set aside until this one has trained, and put back if it fails.
    replaced = False
    if out_dir is not None:
        if state is None:
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise CheckpointError(
                    f"cannot create the run folder {str(out_dir)!r}: {err.strerror or err}"
                ) from None
            replaced = set_aside_run(out_dir)
            try:
                save()  # step 0: a run killed before its first checkpoint resumes from the start
                start_run(out_dir, model, train=to_dict(config), **metadata)
            except BaseException:
                if replaced:
                    restore_run(out_dir)
                raise
        else:
            remove_temporaries(out_dir)
            write_metrics(out_dir, history)  # the epochs the checkpoint holds, no more, no less
            if not (out_dir / CONFIG_FILE).is_file():
                write_config(out_dir, model, train=to_dict(config), **metadata)

    if out_of_time:
        save()  # the run is finished: the checkpoint says so
    epochs = loop.epochs(progress, save, stop)
    records = _with_matmul_precision(epochs, config.precision == "tf32")
    try:
        cycle_start = time.perf_counter()
        for record in [] if out_of_time else records:
            arrived = time.perf_counter()
            record["path"] = "eager" if path == "off" else path
            if notice is not None:
                record["notice"] = notice
            if x_valid is not None:
                kw = {} if c_valid is None else {"condition": c_valid}
                record["valid_elbo"] = float(
                    evaluate_elbo(model, x_valid, seed=config.seed, **kw).mean()
                )
            if config.time_limit and loop.epoch <= config.epochs:
                now = time.perf_counter()  # spent so far, and what one more epoch would add
                spent = loop.elapsed + (now - arrived)
                if no_epoch_fits(spent, now - cycle_start, config.time_limit):
                    record["stopped"] = "time_limit"
                    out_of_time.append(True)
                cycle_start = now
            history.append(record)
            save(force=loop.epoch > config.epochs or bool(out_of_time))
            if out_dir is not None:
                append_metrics(out_dir, record)
            if out_of_time:
                break
        if loop.step == 0 and loop.skipped > 0:
            raise TrainingError(
                f"no step of the run had a finite loss and gradient ({loop.skipped} skipped), "
                f"so there is no model to save; check the data's scale, lower lr (now "
                f"{config.lr:g}), set grad_clip, or bound the decoder variance "
                "(decoder_min_logvar)"
            )
    except BaseException as err:
        stopped = isinstance(err, TrainingInterrupted | KeyboardInterrupt)
        if replaced and (not stopped or not history):
            # the new run failed, or was stopped before it finished an epoch: the run it was to
            # replace is back, as it was
            restore_run(out_dir)
            if isinstance(err, TrainingInterrupted):
                raise TrainingInterrupted(err.step, err.epoch, restored=True) from None
            if isinstance(err, VaekitError):
                raise type(err)(f"{err}; the run that was in {str(out_dir)!r} is back") from None
            raise
        if replaced:
            drop_previous(out_dir)  # stopped after an epoch: the new run is the one to resume
        if out_dir is not None:  # metrics.jsonl goes back to what the checkpoint holds
            trim_metrics(out_dir, saved_records[0])
        if isinstance(err, TrainingError) and out_dir is not None and saved_step[:1] > [0]:
            raise TrainingError(
                f"{err}; {str(out_dir / STATE_FILE)!r} keeps the last good state (step "
                f"{saved_step[0]})"
            ) from None
        raise
    finally:
        records.close()
        epochs.close()
        if isinstance(loop, _FastRun):
            loop.close()  # also when the time limit left no epoch to run
    model.eval()
    if out_dir is not None:
        model.save(out_dir, train=to_dict(config), **metadata)
        drop_previous(out_dir)  # also one a killed process left before this run resumed
    return history


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
    if saved.get("model") != now["model"]:
        old, new = saved.get("model") or {}, now["model"]
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


@contextmanager
def _matmul_precision(tf32: bool) -> Iterator[None]:
    """Allow TensorFloat-32 CUDA matmuls inside the block when ``tf32``; restore afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = before or tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _with_matmul_precision(epochs: Iterator[dict[str, Any]], tf32: bool):
    """The generator ``epochs`` run under :func:`_matmul_precision`, which holds only while it
    runs (not while it is suspended between epochs)."""
    while True:
        with _matmul_precision(tf32):
            try:
                record = next(epochs)
            except StopIteration:
                return
        yield record


def _beta(config: TrainConfig, step: int) -> float:
    return (
        config.beta * min(1.0, step / config.warmup_steps) if config.warmup_steps else config.beta
    )


def _load_optimizer_state(
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


def _load_weights(model: Model, weights: dict[str, Tensor], out: Path | None) -> None:
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        where = str(out / STATE_FILE) if out is not None else "the checkpoint"
        raise CheckpointError(f"{where!r} does not match the model: {detail}") from None


def _fit_conditions(model: Model, values: Any, n: int, name: str) -> Tensor | None:
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


class _EagerLoop:
    """The plain loop: one step per minibatch, the last one ragged. One seeded generator ``g``
    draws each epoch's order, the dynamic binarisation and the noise, in that order, so the
    state after any step (weights, optimizer, ``g``, the epoch's order and position) continues
    the run exactly."""

    kind = "eager"

    def __init__(
        self, model: Model, x: Tensor, config: TrainConfig, c: Tensor | None = None
    ) -> None:
        self.model, self.x, self.config = model, x, config
        self.c = c  # one condition per example for a conditional model, else None
        self.device = model.device
        self.g = torch.Generator(device=self.device).manual_seed(config.seed)
        self.optimizer = make_optimizer(model, config)
        self.n = x.shape[0]
        self.steps_per_epoch = math.ceil(self.n / config.batch_size)
        self.epoch = 1  # the epoch in progress, or the next to start
        self.pos = 0  # minibatches of it done
        self.order: Tensor | None = None  # its order (N,), drawn when it starts
        self.step = self.skipped = self.bad_in_row = 0
        self.bound_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self.seen = 0
        self.elapsed = 0.0  # seconds of training before this process

    @property
    def mid_epoch(self) -> bool:
        """Whether the run stands inside an epoch (it stopped there)."""
        return self.pos > 0

    def state(self) -> dict[str, Any]:
        """Everything needed to continue after the last finished step."""
        return {
            "kind": self.kind,
            "device": self.device.type,
            "epoch": self.epoch,
            "pos": self.pos,
            "order": self.order,
            "step": self.step,
            "skipped": self.skipped,
            "bad_in_row": self.bad_in_row,
            "bound_sum": self.bound_sum,
            "seen": self.seen,
            "elapsed": self.elapsed,
            "generator": self.g.get_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state(self, state: dict[str, Any], out: Path | None = None) -> None:
        same = state.get("kind") == self.kind and state.get("device") == self.device.type
        if not same and int(state.get("pos", 0)):
            raise ConfigError(
                f"the run stopped mid-epoch in the {state.get('kind')} loop on "
                f"{state.get('device')}; resume it there (fast={self.config.fast!r} runs the "
                f"eager loop on {self.device.type})"
            )
        try:
            _load_weights(self.model, state["model"], out)
            _load_optimizer_state(self.optimizer, state["optimizer"], in_place=False)
            self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
            self.step, self.skipped = int(state["step"]), int(state["skipped"])
            self.bad_in_row, self.elapsed = int(state["bad_in_row"]), float(state["elapsed"])
            if same:
                self.g.set_state(state["generator"])
                order = state.get("order")
                self.order = order.to(self.device) if order is not None else None
                self.bound_sum = state["bound_sum"].to(self.device, torch.float64)
                self.seen = int(state["seen"])
            else:  # another loop's random streams: a fresh one per epoch, statistically alike
                self.g.manual_seed(_epoch_seed(self.config.seed, self.epoch))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"the checkpoint's training state is incomplete: {err}") from None
        if self.order is not None and self.order.shape != (self.n,):
            raise CheckpointError(
                f"the checkpoint's data order has {self.order.shape[0]} examples, the data {self.n}"
            )

    def epochs(
        self,
        progress: bool,
        save: Callable[..., None] = lambda force=True: None,
        stop: Callable[[], bool] | None = None,
    ):
        """Train until ``config.epochs``; yields one record per epoch. ``save`` writes the
        training state: after each step when due (``save(force=False)``), and before stopping."""
        model, x, config, g, device = self.model, self.x, self.config, self.g, self.device
        optimizer = self.optimizer
        # a plain conditional VAE takes its (checked) conditions straight to the closed forms;
        # a subclass's own forward gets them as any caller would give them
        checked_conditions = model.capabilities.forward_is_terms
        objective = OBJECTIVES[config.objective]
        autocast = _autocast_dtype(config)
        params = [p for p in model.parameters() if p.requires_grad]
        clip = config.grad_clip > 0
        B, n, per_epoch = config.batch_size, self.n, self.steps_per_epoch
        start = time.perf_counter() - self.elapsed
        done = (self.epoch - 1) * per_epoch + self.pos
        bar = tqdm(total=config.epochs * per_epoch, initial=done, disable=not progress, unit="step")
        try:
            while self.epoch <= config.epochs:
                model.train()
                set_learning_rate(optimizer, learning_rate(config, self.epoch))
                if self.order is None:
                    self.order = torch.randperm(n, generator=g, device=device)
                    self.bound_sum = torch.zeros((), device=device, dtype=torch.float64)
                    self.seen = 0
                while self.pos < per_epoch:
                    if stop is not None and stop():
                        self.elapsed = time.perf_counter() - start
                        save()
                        raise TrainingInterrupted(self.step, self.epoch)
                    rows = self.order[self.pos * B : (self.pos + 1) * B]
                    xb = torch.index_select(x, 0, rows)  # half the time of x[rows] on CPU
                    kw = {} if self.c is None else {"condition": self.c[rows]}
                    if config.binarize == "dynamic":
                        xb = bernoulli_16bit(xb, g)
                    beta = _beta(config, self.step + 1)
                    if autocast is None and (self.c is None or not checked_conditions):
                        terms = model(xb, k=config.samples, generator=g, **kw)
                    else:
                        eps = torch.randn(
                            (config.samples, xb.shape[0], model.noise_dim),
                            generator=g,
                            device=device,
                            dtype=model._dtype,
                        )
                        terms = model_terms(model, xb, eps, autocast, **kw)
                    bound = objective(terms, beta)  # (B,)
                    loss = -bound.mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if clip:
                        grad_check = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                    else:  # finite iff every gradient is: a sum, cheaper than a norm
                        grad_check = _grad_sum(params)
                    self.pos += 1
                    bar.update()
                    if math.isfinite(loss.item()) and math.isfinite(grad_check.item()):
                        optimizer.step()
                        self.step += 1
                        self.bad_in_row = 0
                        self.bound_sum += bound.detach().sum()
                        self.seen += xb.shape[0]
                    else:
                        self.skipped += 1
                        self.bad_in_row += 1
                        if self.bad_in_row >= config.max_bad_steps:
                            raise _too_many_bad(self.bad_in_row, self.step, config)
                    if self.pos < per_epoch:  # an epoch's end is saved with its record
                        self.elapsed = time.perf_counter() - start
                        save(force=False)
                record: dict[str, Any] = {
                    "epoch": self.epoch,
                    "step": self.step,
                    "examples_seen": self.epoch * n,
                    "train_bound": float(self.bound_sum) / max(self.seen, 1),
                    "skipped_steps": self.skipped,
                    "beta": _beta(config, self.step),
                    "lr": learning_rate(config, self.epoch),
                    "seconds": round(time.perf_counter() - start, 4),
                }
                self.epoch, self.pos, self.order = self.epoch + 1, 0, None
                self.elapsed = time.perf_counter() - start
                bar.set_postfix({"train_bound": round(record["train_bound"], 3)})
                yield record
        finally:
            bar.close()


def no_epoch_fits(spent: float, epoch_seconds: float, time_limit: float) -> bool:
    """The rule of ``TrainConfig.time_limit``: another epoch, taking ``epoch_seconds`` as the
    last one did, would take training past ``time_limit`` after ``spent`` seconds (all in
    seconds; a limit of 0 is none)."""
    return bool(time_limit) and spent + epoch_seconds > time_limit


def _last_epoch_seconds(history: History) -> float:
    """Seconds the last finished epoch of ``history`` took, validation included (0 if none)."""
    if not history:
        return 0.0
    return history[-1]["seconds"] - (history[-2]["seconds"] if len(history) > 1 else 0.0)


def _epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the random streams of ``epoch`` when a run moves to another loop or device."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{epoch}".encode()).digest()[:8], "little") >> 1


def _too_many_bad(bad_in_row: int, step: int, config: TrainConfig) -> TrainingError:
    return TrainingError(
        f"{bad_in_row} steps in a row had a non-finite loss or gradient (at step "
        f"{step}); lower lr (now {config.lr:g}), set grad_clip, check the data's "
        "scale, or bound the decoder variance (decoder_min_logvar)"
    )


class _FastRun:
    """The CUDA-graph loop: G = steps_per_launch steps per graph replay, static shapes.

    Between replays the host only fills the static buffers: the batch indices (or, when
    streaming, the batch itself from pinned memory), the binarisation uniforms and the
    reparameterisation noise, each drawn in one call from the run's seeded generator.
    ``conditions`` (N, condition_dim), for a conditional model, stay on the device beside the
    examples and are gathered with them (a conditional model whose data must stream runs the
    eager loop).
    """

    #: Its state is saved at epoch ends only.
    mid_epoch = False

    def __init__(
        self,
        model: Model,
        x: Tensor,
        config: TrainConfig,
        path: str,
        conditions: Tensor | None = None,
    ) -> None:
        self.model, self.config, self.path = model, config, path
        device = self.device = model.device
        B, k, L = config.batch_size, config.samples, model.noise_dim
        self.n = x.shape[0]
        self.steps = self.n // B  # the ragged last batch is dropped
        self.G = min(config.steps_per_launch, self.steps)
        # Off CUDA (tests) the same loop runs step by step, without graphs.
        self.capture = device.type == "cuda"
        self.resident = (
            not self.capture
            or config.resident == "yes"
            or (
                config.resident == "auto"
                and x.numel() * x.element_size()
                < RESIDENT_FRACTION * torch.cuda.mem_get_info(device)[0]
            )
        )
        if conditions is not None and not self.resident:
            raise ValueError(
                "a conditional model trains with its data on the device, and this run would "
                "stream it (resident='no', or the data is too large for the device)"
            )
        self.c = conditions.to(device, model._dtype) if conditions is not None else None
        if self.resident:
            self.x = x.to(device)
            self.idx = torch.zeros((self.G, B), dtype=torch.int64, device=device)
        else:  # streaming: batches gathered into pinned buffers (x's dtype: float64 for a
            # float64 model), copied without blocking
            self.x = x.contiguous().pin_memory()
            shape = (self.G, B, *x.shape[1:])
            self.pinned = [torch.empty(shape, dtype=x.dtype).pin_memory() for _ in range(2)]
            self.copied = [torch.cuda.Event(), torch.cuda.Event()]
            self.batch = torch.zeros(shape, device=device, dtype=x.dtype)
        self.g = torch.Generator(device=device).manual_seed(config.seed)
        self.g_order = self.g if self.resident else torch.Generator().manual_seed(config.seed)
        self.u = (
            torch.zeros((self.G, B, *x.shape[1:]), device=device)
            if config.binarize == "dynamic"
            else None
        )
        self.eps = torch.zeros((self.G, k, B, L), device=device)

        params = [p for p in model.parameters() if p.requires_grad]
        self.params = params
        # Adam or Adagrad over one flat buffer, the skip of a non-finite step and clipping in one
        # pass; its lr is a device tensor, so captured graphs read the value a schedule sets.
        self.closed = False
        self.optimizer = flat_optimizer(params, config, compile=path == "compile")
        self.metrics = DeviceMetrics(device, config.batch_size)
        self.epoch = 1  # the next epoch to run
        self.step = self.skipped = 0  # good and skipped steps at the end of the last epoch
        self.elapsed = 0.0
        self.loss_fn: Callable[..., tuple[Tensor, Tensor]] = self._loss
        self.account: Callable[[Tensor, Tensor], None] = self._account
        if path == "compile":
            self.loss_fn = torch.compile(self._loss, dynamic=False, **COMPILE_OPTIONS)
            self.account = torch.compile(self._account, dynamic=False, **COMPILE_OPTIONS)

        # Warm up on a side stream (creates the optimizer state, compiles kernels), then put the
        # parameters and optimizer state back as they were and capture.
        saved = [p.detach().clone() for p in params]
        try:
            with _roomy_recompile_limit():
                self._warm_up_and_capture()
        except Exception:
            with torch.no_grad():
                for p, s in zip(params, saved, strict=True):
                    p.copy_(s)
            raise

    def _warm_up_and_capture(self) -> None:
        model, params, device = self.model, self.params, self.device
        saved = [p.detach().clone() for p in params]
        model.train()
        side = torch.cuda.Stream(device) if self.capture else None
        if side is not None:
            side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side) if side is not None else nullcontext():
            for _ in range(3):
                self._step(0)
        if side is not None:
            torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
        self.optimizer.reset()
        self.metrics.reset()
        self.optimizer.zero_grad()
        self.graphs: dict[int, Callable[[], None]] = {}
        self._capture(self.G)
        if self.steps % self.G:
            self._capture(self.steps % self.G)

    def _capture(self, steps: int) -> None:
        if not self.capture:

            def run() -> None:
                for j in range(steps):
                    self._step(j)

            self.graphs[steps] = run
            return
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad()
        with torch.cuda.graph(graph):
            for j in range(steps):
                self._step(j)
        self.graphs[steps] = graph.replay

    def _inputs(self, j: int) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """Step ``j``'s data: (resident set, batch indices, conditions or None) or (streamed
        batch, None, None), and the binarisation uniforms (or None). The gathers and the
        binarisation happen in :meth:`_loss`, where torch.compile fuses them into the first
        layer's input."""
        u = self.u[j] if self.u is not None else None
        if self.resident:
            return self.x, self.idx[j], self.c, u
        return self.batch[j], None, None, u

    def _loss(
        self,
        x: Tensor,
        idx: Tensor | None,
        conditions: Tensor | None,
        u: Tensor | None,
        eps: Tensor,
        good: Tensor,
    ) -> tuple[Tensor, Tensor]:
        c = self.config
        xb = x[idx] if idx is not None else x  # (B, *data_shape)
        cb = conditions[idx] if conditions is not None and idx is not None else None
        if u is not None:
            xb = (u < xb).to(xb.dtype)
        beta: float | Tensor = c.beta
        if c.warmup_steps:
            beta = c.beta * torch.clamp((good + 1).float() / c.warmup_steps, max=1.0)
        kw = {} if cb is None else {"condition": cb}
        terms = model_terms(self.model, xb, eps, _autocast_dtype(c), **kw)
        bound = OBJECTIVES[c.objective](terms, beta)  # (B,)
        return -bound.mean(), bound.detach().sum()

    def _step(self, j: int) -> None:
        loss, bound_sum = self.loss_fn(*self._inputs(j), self.eps[j], self.metrics.good)
        self.optimizer.zero_grad()
        loss.backward()
        finite = self.optimizer(bound_sum)
        self.account(finite, bound_sum)

    def _account(self, finite: Tensor, bound_sum: Tensor) -> None:
        self.metrics.update(finite, bound_sum, self.config.batch_size)

    def _fill(self, order: Tensor, first: int, steps: int, buf: int) -> None:
        """Put steps [first, first + steps) of the epoch into the static buffers."""
        B = self.config.batch_size
        idx = order[first * B : (first + steps) * B].view(steps, B)
        if self.resident:
            self.idx[:steps].copy_(idx)
        else:
            pinned = self.pinned[buf][:steps]
            self.copied[buf].synchronize()  # the copy that last read this buffer is done
            torch.index_select(self.x, 0, idx.reshape(-1), out=pinned.view(-1, *self.x.shape[1:]))
            self.batch[:steps].copy_(pinned, non_blocking=True)
            self.copied[buf].record()
        if self.u is not None:
            torch.rand(
                self.u[:steps].shape, generator=self.g, device=self.device, out=self.u[:steps]
            )
        eps = self.eps[:steps]
        torch.randn(eps.shape, generator=self.g, device=self.device, out=eps)

    kind = "fast"

    def state(self) -> dict[str, Any]:
        """The training state at the end of the last epoch (the fast path saves only there)."""
        return {
            "kind": self.kind,
            "device": self.device.type,
            "epoch": self.epoch,
            "pos": 0,
            "order": None,
            "step": self.step,
            "skipped": self.skipped,
            "bad_in_row": int(self.metrics.bad_run),
            "elapsed": self.elapsed,
            "generator": self.g.get_state(),
            "generator_order": self.g_order.get_state() if self.g_order is not self.g else None,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state(self, state: dict[str, Any], out: Path | None = None) -> None:
        """Continue from ``state``, copying into the tensors the captured graphs use."""
        same = state.get("kind") == self.kind and state.get("device") == self.device.type
        if int(state.get("pos", 0)):
            raise ConfigError(
                f"the run stopped mid-epoch in the {state.get('kind')} loop on "
                f"{state.get('device')}, which the fast path cannot continue; resume it with "
                "--set fast=off"
            )
        try:
            _load_weights(self.model, state["model"], out)  # copies in place
            _load_optimizer_state(self.optimizer, state["optimizer"], in_place=True)
            self.epoch, self.elapsed = int(state["epoch"]), float(state["elapsed"])
            self.step, self.skipped = int(state["step"]), int(state["skipped"])
            with torch.no_grad():
                self.metrics.counts[1].fill_(self.step)
                self.metrics.counts[2].fill_(self.skipped)
                self.metrics.bad_run.fill_(int(state["bad_in_row"]))
            if same:
                self.g.set_state(state["generator"])
                if self.g_order is not self.g:
                    self.g_order.set_state(state["generator_order"])
            else:  # another loop's random streams: a fresh one per epoch, statistically alike
                self.g.manual_seed(_epoch_seed(self.config.seed, self.epoch))
                self.g_order.manual_seed(_epoch_seed(self.config.seed, self.epoch))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"the checkpoint's training state is incomplete: {err}") from None

    def epochs(
        self,
        progress: bool,
        save: Callable[..., None] = lambda force=True: None,
        stop: Callable[[], bool] | None = None,
    ):
        """Train until ``config.epochs``; yields one record per epoch. On ``stop`` the steps
        since the last epoch's end are dropped: the saved state stays at that end."""
        try:
            yield from self._epochs(progress, stop)
        finally:
            self.close()

    def close(self) -> None:
        """Give the parameters their own storage back (after training, or instead of it)."""
        if not self.closed:
            self.optimizer.zero_grad()
            self.optimizer.release()
            self.closed = True

    def _epochs(self, progress: bool, stop: Callable[[], bool] | None):
        c, model = self.config, self.model
        bar = tqdm(
            total=c.epochs * self.steps,
            initial=(self.epoch - 1) * self.steps,
            disable=not progress,
            unit="step",
        )
        start = time.perf_counter() - self.elapsed
        buf = 0
        try:
            while self.epoch <= c.epochs:
                epoch = self.epoch
                model.train()
                set_learning_rate(self.optimizer, learning_rate(c, epoch))
                self.metrics.new_epoch()
                order = torch.randperm(self.n, generator=self.g_order, device=self.g_order.device)
                for first in range(0, self.steps, self.G):
                    if stop is not None and stop():
                        raise TrainingInterrupted(self.step, self.epoch)
                    steps = min(self.G, self.steps - first)
                    self._fill(order, first, steps, buf)
                    self.graphs[steps]()
                    buf ^= 1
                    bar.update(steps)
                m = self.metrics.read()  # the one host sync of the epoch
                if m["worst_run"] >= c.max_bad_steps:
                    raise _too_many_bad(int(m["worst_run"]), int(m["good"]), c)
                record: dict[str, Any] = {
                    "epoch": epoch,
                    "step": int(m["good"]),
                    "examples_seen": epoch * self.steps * c.batch_size,
                    "train_bound": m["bound_sum"] / max(m["seen"], 1),
                    "skipped_steps": int(m["skipped"]),
                    "beta": _beta(c, int(m["good"])),
                    "lr": learning_rate(c, epoch),
                    "seconds": round(time.perf_counter() - start, 4),
                    "dropped_per_epoch": self.n - self.steps * c.batch_size,
                }
                if not self.resident:
                    record["streamed"] = True
                self.epoch, self.step, self.skipped = epoch + 1, int(m["good"]), int(m["skipped"])
                self.elapsed = time.perf_counter() - start
                bar.set_postfix({"train_bound": round(record["train_bound"], 3)})
                yield record
        finally:
            bar.close()

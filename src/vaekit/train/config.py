"""The settings of :func:`vaekit.fit` (:class:`TrainConfig`), their options and constants, and the
errors training raises."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import check_fields
from ..errors import ConfigError, VaekitError
from ..objectives import OBJECTIVES, TC_ESTIMATORS

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
    "patience",
    "min_delta",
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
    objective: "elbo" or "iwae"; or "btcvae" (beta-TCVAE, Chen et al. 2018) or "factorvae"
    (Kim & Mnih 2018), which penalise the total correlation of q(z) (see
    :mod:`vaekit.train.objective`). samples: L for the ELBO, K for IWAE (per example).
    beta: weight of the KL term (1 is the ELBO); of the total correlation under "btcvae".
    warmup_steps: beta rises linearly from 0 over this many steps (0 = no warm-up), and with it
    alpha and gamma. alpha: "btcvae"'s weight of the index-code mutual information (1).
    gamma: "btcvae"'s weight of the dimension-wise KL, "factorvae"'s of the total correlation;
    None: 1 and 10. tc_estimator: how "btcvae" estimates q(z) from a minibatch, "mws"
    (minibatch-weighted) or "mss" (minibatch-stratified sampling). dataset_size: the N of that
    estimate; 0: the number of training examples, filled in by fit.
    grad_clip: max global gradient norm (0 = no clipping).
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
    patience: early stopping on the validation bound (needs validation data): the run ends, as
    finished, once this many epochs in a row have not raised the validation ELBO above its best
    by more than ``min_delta`` (nats); 0 = off. With patience on, the saved model (and the model
    fit leaves) holds the weights of the best epoch (the last one that improved on the best by
    more than ``min_delta``), however the run ended; the checkpoint keeps the last epoch's too,
    so a resume with a larger patience (or 0) trains on from where the run stopped.
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
    alpha: float = 1.0
    gamma: float | None = None
    tc_estimator: str = "mws"
    dataset_size: int = 0
    grad_clip: float = 0.0
    binarize: str = "none"
    seed: int = 0
    max_bad_steps: int = 50
    fast: str = "auto"
    steps_per_launch: int = 8
    precision: str = "fp32"
    resident: str = "auto"
    checkpoint_every: int = 0
    patience: int = 0
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("epochs", "batch_size", "samples", "max_bad_steps", "steps_per_launch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("warmup_steps", "checkpoint_every", "dataset_size", "patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be zero or more, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1, got {self.seed}")
        if not (math.isfinite(self.time_limit) and self.time_limit >= 0):
            raise ConfigError(
                f"time_limit must be 0 (no limit) or a number of seconds, got {self.time_limit}"
            )
        for name in (
            "lr",
            "adam_eps",
            "beta",
            "grad_clip",
            "weight_decay",
            "alpha",
            "gamma",
            "min_delta",
        ):
            v = getattr(self, name)
            if v is None:  # gamma: the objective's default
                continue
            if not math.isfinite(v) or v < 0 or (name in ("lr", "adam_eps") and v == 0):
                raise ConfigError(f"{name} must be a positive number, got {v}")
        for name, options in (
            ("optimizer", OPTIMIZERS),
            ("lr_schedule", LR_SCHEDULES),
            ("objective", tuple(OBJECTIVES)),
            ("tc_estimator", TC_ESTIMATORS),
            ("binarize", BINARIZE),
            ("fast", FAST),
            ("precision", PRECISIONS),
            ("resident", RESIDENT),
        ):
            if getattr(self, name) not in options:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(options)}"
                )

"""The training loop: one plain function, ``fit``, with no framework between reader and math.

Minibatch stochastic gradient ascent on a bound (ELBO or IWAE) with reparameterised samples, as in
Kingma & Welling's AEVB algorithm. The data set lives on the model's device; shuffling and dynamic
binarisation happen there with a seeded generator, so a run repeats exactly on CPU.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .config import to_dict
from .errors import ConfigError, DataError, VaekitError
from .evaluate import elbo as evaluate_elbo
from .model import VAE
from .objectives import OBJECTIVES

#: One record per epoch: epoch, step, examples_seen, train_bound, valid_elbo, skipped_steps, ...
History = list[dict[str, Any]]

OPTIMIZERS = ("adam", "adagrad")
BINARIZE = ("none", "dynamic")


class TrainingError(VaekitError):
    """Training cannot go on (for example, too many non-finite steps in a row)."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`fit`; saved as the ``train`` table of config.json.

    epochs: passes over the training set. batch_size: examples per step.
    optimizer: "adam" or "adagrad" (the AEVB paper's). lr: learning rate.
    objective: "elbo" or "iwae". samples: L for the ELBO, K for IWAE (per example).
    beta: weight of the KL term (1 is the ELBO). warmup_steps: beta rises linearly from 0 over
    this many steps (0 = no warm-up). grad_clip: max global gradient norm (0 = no clipping).
    binarize: "dynamic" resamples x ~ Bernoulli(x) every time a batch is drawn; validation data is
    binarised once with a fixed seed. seed: seeds data order and noise.
    max_bad_steps: stop after this many non-finite steps in a row.
    """

    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    objective: str = "elbo"
    samples: int = 1
    beta: float = 1.0
    warmup_steps: int = 0
    grad_clip: float = 0.0
    binarize: str = "none"
    seed: int = 0
    max_bad_steps: int = 50

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "samples", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("warmup_steps",):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be zero or more, got {getattr(self, name)}")
        for name in ("lr", "beta", "grad_clip", "weight_decay"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0 or (name == "lr" and v == 0):
                raise ConfigError(f"{name} must be a positive number, got {v}")
        for name, options in (
            ("optimizer", OPTIMIZERS),
            ("objective", tuple(OBJECTIVES)),
            ("binarize", BINARIZE),
        ):
            if getattr(self, name) not in options:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(options)}"
                )


def as_tensor(data: Any, name: str = "data") -> Tensor:
    """A float32 tensor from a tensor, a numpy array, or a map-style dataset of examples.

    A dataset item may be an example or a tuple whose first element is the example (labels are
    dropped).
    """
    if isinstance(data, Tensor):
        return data.float()
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data)).float()
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        items = [data[i] for i in range(len(data))]
        items = [it[0] if isinstance(it, tuple | list) else it for it in items]
        if not items:
            raise DataError(f"{name} is empty")
        return torch.stack([torch.as_tensor(it) for it in items]).float()
    raise DataError(
        f"{name} must be a tensor, a numpy array or a dataset, got {type(data).__name__}"
    )


def check_data(model: VAE, x: Tensor, name: str = "data") -> None:
    """Raise :class:`DataError` unless ``x`` is non-empty, finite, of the model's example shape and
    inside the support of its likelihood."""
    c = model.config
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty")
    if tuple(x.shape[1:]) != c.data_shape:
        raise DataError(
            f"{name} has example shape {tuple(x.shape[1:])} but the model expects {c.data_shape}"
        )
    bad = ~torch.isfinite(x)
    if bad.any():
        i = int(bad.reshape(x.shape[0], -1).any(1).nonzero()[0])
        raise DataError(f"{name} holds NaN or infinite values (first in example {i}); clean it")
    if model.likelihood.support == "unit":
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(
                f"{name} has values in [{lo:g}, {hi:g}] but the {c.likelihood} likelihood needs "
                "[0, 1]; scale the data or choose a Gaussian likelihood"
            )


def binarize(x: Tensor, seed: int) -> Tensor:
    """One fixed Bernoulli draw of ``x`` (values in [0, 1]) under ``seed``; same shape."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=g)


def make_optimizer(model: VAE, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or Adagrad over all of the model's parameters."""
    params = list(model.parameters())
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def fit(
    model: VAE,
    data: Any,
    *,
    valid: Any = None,
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    progress: bool = False,
    **overrides: Any,
) -> History:
    """Train ``model`` in place on ``data`` (N, *data_shape) and return the per-epoch history.

    ``config`` (or keyword overrides of its fields, e.g. ``epochs=5``) sets the run. With
    ``valid``, the validation ELBO (nats, one sample, fixed seed) is computed after each epoch.
    With ``out``, each epoch's record is appended to ``out/metrics.jsonl`` and the model is saved
    there at the end, with ``metadata`` (JSON-ready) added to its config.json. Steps whose loss
    or gradient is not finite are skipped and counted.
    """
    config = config or TrainConfig()
    if overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
    device = model.device
    x = as_tensor(data, "training data").to(device)
    check_data(model, x, "training data")
    x_valid = None
    if valid is not None:
        x_valid = as_tensor(valid, "validation data").to(device)
        check_data(model, x_valid, "validation data")
        if config.binarize == "dynamic":
            x_valid = binarize(x_valid, seed=config.seed + 1)
    if config.binarize == "dynamic" and model.likelihood.support != "unit":
        raise ConfigError("binarize='dynamic' needs the bernoulli likelihood")

    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.jsonl").write_text("")

    g = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    objective = OBJECTIVES[config.objective]
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    history: History = []
    step = skipped = bad_in_row = 0
    start = time.perf_counter()
    bar = tqdm(total=config.epochs * steps_per_epoch, disable=not progress, unit="step")
    for epoch in range(1, config.epochs + 1):
        model.train()
        bound_sum = torch.zeros((), device=device, dtype=torch.float64)
        seen = 0
        order = torch.randperm(n, generator=g, device=device)
        for i in range(0, n, config.batch_size):
            xb = x[order[i : i + config.batch_size]]
            if config.binarize == "dynamic":
                xb = torch.bernoulli(xb, generator=g)
            beta = (
                config.beta * min(1.0, (step + 1) / config.warmup_steps)
                if config.warmup_steps
                else config.beta
            )
            bound = objective(model(xb, k=config.samples, generator=g), beta)  # (B,)
            loss = -bound.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            bar.update()
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                skipped += 1
                bad_in_row += 1
                if bad_in_row >= config.max_bad_steps:
                    raise TrainingError(
                        f"{bad_in_row} steps in a row had a non-finite loss or gradient (at step "
                        f"{step}); lower lr (now {config.lr:g}), set grad_clip, check the data's "
                        "scale, or bound the decoder variance (decoder_min_logvar)"
                    )
                continue
            optimizer.step()
            step += 1
            bad_in_row = 0
            bound_sum += bound.detach().sum()
            seen += xb.shape[0]
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "examples_seen": epoch * n,
            "train_bound": float(bound_sum) / max(seen, 1),
            "skipped_steps": skipped,
            "beta": config.beta * min(1.0, step / config.warmup_steps)
            if config.warmup_steps
            else config.beta,
            "seconds": round(time.perf_counter() - start, 4),
        }
        if x_valid is not None:
            record["valid_elbo"] = float(evaluate_elbo(model, x_valid, seed=config.seed).mean())
        history.append(record)
        bar.set_postfix(
            {k: round(v, 3) for k, v in record.items() if k.endswith(("bound", "elbo"))}
        )
        if out_dir is not None:
            with (out_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
    bar.close()
    model.eval()
    if out_dir is not None:
        model.save(out_dir, train=to_dict(config), **(metadata or {}))
    return history

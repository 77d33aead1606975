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

import json
import math
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal, kl_divergence
from tqdm.auto import tqdm

from .config import to_dict
from .errors import ConfigError, DataError, VaekitError
from .evaluate import elbo as evaluate_elbo
from .model import VAE
from .objectives import OBJECTIVES, Terms

#: One record per epoch: epoch, step, examples_seen, train_bound, valid_elbo, skipped_steps, ...
History = list[dict[str, Any]]

OPTIMIZERS = ("adam", "adagrad")
BINARIZE = ("none", "dynamic")
FAST = ("auto", "off", "graph", "compile")
PRECISIONS = ("fp32", "bf16")
RESIDENT = ("auto", "yes", "no")
#: Training steps from which ``fast="auto"`` compiles the step (torch.compile, a few seconds once
#: per process) on top of the CUDA graph: the per-step saving measured on an H100 repays the
#: compile time after about this many steps.
AUTO_COMPILE_STEPS = 20_000
#: Keyword arguments of torch.compile on the "compile" path, e.g. {"mode": "max-autotune"}.
COMPILE_OPTIONS: dict[str, Any] = {}
#: Fraction of the device's free memory the training set may take and still be made resident.
RESIDENT_FRACTION = 0.5


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
    max_bad_steps: stop after this many non-finite steps in a row (on the fast path the count is
    kept on the device and checked at the end of each epoch).
    fast: "auto" (the CUDA-graph fast path where it applies, compiled as with "compile" when the
    run has at least ``AUTO_COMPILE_STEPS`` steps and triton is installed, else the eager
    loop), "off" (always the eager loop), "graph" or "compile" (the fast path, with the loss and
    the metric updates also compiled by torch.compile; both fall back to the eager loop with a
    warning where they cannot run).
    The fast path drops the ragged last batch of each epoch (static shapes).
    steps_per_launch: training steps captured in one CUDA graph on the fast path.
    precision: "fp32", or "bf16" to run the networks under bfloat16 autocast (the bound and the
    loss stay in float32).
    resident: "auto" keeps the training set on the device when it takes under half the free
    device memory and streams batches from pinned CPU memory otherwise; "yes" / "no" force it.
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
    fast: str = "auto"
    steps_per_launch: int = 8
    precision: str = "fp32"
    resident: str = "auto"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "samples", "max_bad_steps", "steps_per_launch"):
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
            ("fast", FAST),
            ("precision", PRECISIONS),
            ("resident", RESIDENT),
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
    levels = model.likelihood.levels
    if levels is not None:
        steps = x * (levels - 1)
        off = (steps - steps.round()).abs() > 1e-3
        if off.any():
            v = float(x[off][0])
            raise DataError(
                f"{name} has values off the grid k/{levels - 1} (e.g. {v:g}) that the "
                f"{c.likelihood} likelihood needs; give 8-bit data scaled by 1/{levels - 1} or "
                "choose another likelihood"
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


def select_path(model: VAE, config: TrainConfig, n: int) -> tuple[str, str | None]:
    """Which loop :func:`fit` runs: ``("graph" | "compile" | "off", notice)``.

    ``notice`` is one line saying why the fast path does not apply (None when it does, or when it
    was turned off on purpose).
    """
    if config.fast == "off":
        return "off", None
    device = model.device
    why = None
    if device.type != "cuda":
        why = f"CUDA graphs need a CUDA device, the model is on {device.type}"
    elif not isinstance(model, VAE) and not callable(getattr(model, "terms", None)):
        why = f"{type(model).__name__} has no terms(x, eps) for the fast path"
    elif isinstance(model, VAE) and (
        type(model).forward is not VAE.forward or type(model).encode is not VAE.encode
    ):
        why = f"{type(model).__name__} overrides forward or encode, which the fast path bypasses"
    elif config.optimizer != "adam":
        why = f"optimizer {config.optimizer!r} has no capturable (CUDA-graph) implementation"
    elif n < config.batch_size:
        why = f"{n} training examples is fewer than batch_size {config.batch_size}"
    if why is not None:
        return "off", f"fast path off: {why}; ran the eager loop"
    if config.fast == "auto":
        steps = config.epochs * (n // config.batch_size)
        return ("compile" if steps >= AUTO_COMPILE_STEPS and _has_triton() else "graph"), None
    return config.fast, None


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # pragma: no cover - older torch
        return False
    return bool(has_triton())


class GuardedStep:
    """``optimizer.step()`` that is undone on the device where ``finite`` is False.

    The parameters and optimizer state are copied to a buffer before the step and put back with
    ``torch.where(finite, new, old)`` after it, so a non-finite step leaves them exactly as they
    were, with no host sync (the condition is a device tensor). Build it once the optimizer's state
    exists (after one step); the state tensors must be updated in place, as torch's optimizers do.

    With ``flatten`` (and one device and dtype throughout) the parameters and state are moved
    into one flat buffer that they then view, so the guard is two kernels rather than two per
    tensor; :meth:`release` gives the parameters storage of their own again.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, flatten: bool = True) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        slots = [
            (st, key)
            for st in optimizer.state.values()
            for key, v in st.items()
            if isinstance(v, Tensor)
        ]
        tensors = [p.data for p in self.params] + [st[key] for st, key in slots]
        self.flat = None
        if flatten and len({(t.device, t.dtype) for t in tensors}) == 1:
            self.flat = torch.cat([t.detach().reshape(-1) for t in tensors])
            views, at = [], 0
            for t in tensors:
                views.append(self.flat[at : at + t.numel()].view_as(t))
                at += t.numel()
            for p, v in zip(self.params, views, strict=False):
                p.data = v
            for (st, key), v in zip(slots, views[len(self.params) :], strict=True):
                st[key] = v
            self.tensors = [self.flat]
        else:
            self.tensors = [p.data for p in self.params] + [st[key] for st, key in slots]
        self.backup = [t.detach().clone() for t in self.tensors]

    @torch.no_grad()
    def __call__(self, finite: Tensor) -> None:
        torch._foreach_copy_(self.backup, self.tensors)
        self.optimizer.step()
        for t, old in zip(self.tensors, self.backup, strict=True):
            torch.where(finite.to(t.device), t, old, out=t)

    def release(self) -> None:
        """Give each parameter its own storage again (checkpoints refuse shared storage)."""
        if self.flat is not None:
            for p in self.params:
                p.data = p.data.clone()
            self.flat = None


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


def _fp32(dist: Distribution) -> Distribution:
    """The same distribution with float32 parameters (vaekit's Normal and Bernoulli families)."""
    if isinstance(dist, Independent):
        return Independent(_fp32(dist.base_dist), dist.reinterpreted_batch_ndims)
    if isinstance(dist, Normal):
        return Normal(dist.loc.float(), dist.scale.float(), validate_args=False)
    if isinstance(dist, Bernoulli):
        return Bernoulli(logits=dist.logits.float(), validate_args=False)
    return dist


def model_terms(model: VAE, x: Tensor, eps: Tensor, autocast: torch.dtype | None = None) -> Terms:
    """``model(x, k)`` with the noise given: ``eps`` (k, B, noise_dim) standard normal, where
    ``noise_dim`` is :func:`noise_dim` (the latent size for a one-layer VAE).

    For a plain VAE this is :meth:`VAE.terms` (closed forms); a subclass that overrides encode or
    decode gets its own distributions' log-densities; another model kind gives its own ``terms``.

    With ``autocast`` (e.g. torch.bfloat16) the networks run under autocast and the
    distributions, log-densities and KL are computed in float32.
    """
    if not isinstance(model, VAE) or model._closed_form():
        return model.terms(x, eps, autocast)
    ac = torch.autocast(
        x.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None
    )
    with ac:
        qz_x = model.encode(x)
    qz_x = _fp32(qz_x) if autocast is not None else qz_x
    base = qz_x.base_dist
    z = base.loc + base.scale * eps  # (k, B, latent_dim)
    with ac:
        px_z = model.decode(z)
    px_z = _fp32(px_z) if autocast is not None else px_z
    pz = model.pz()
    return Terms(
        log_px_z=px_z.log_prob(x.to(z.dtype)),
        log_pz=pz.log_prob(z),
        log_qz_x=qz_x.log_prob(z),
        kl=kl_divergence(qz_x, pz) if model.prior.analytic_kl else None,
    )


def noise_dim(model: Any) -> int:
    """Standard-normal numbers per sample that ``model.terms`` takes: the model's ``noise_dim``
    where it has one (several stochastic layers), else its latent size."""
    return int(getattr(model, "noise_dim", model.config.latent_dim))


def _autocast_dtype(config: TrainConfig) -> torch.dtype | None:
    return torch.bfloat16 if config.precision == "bf16" else None


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

    Each record names the loop that ran (``path``: "eager", "graph" or "compile") and, where the
    fast path did not apply, why (``notice``). See :class:`TrainConfig` ``fast``.
    """
    config = config or TrainConfig()
    if overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
    device = model.device
    x = as_tensor(data, "training data")
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

    path, notice = select_path(model, config, x.shape[0])
    history: History = []
    while path != "off":
        try:
            run = _FastRun(model, x, config, path)
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
    if path == "off":
        epochs = _eager_epochs(model, x.to(device), config, progress)
    else:
        epochs = run.epochs(progress)

    for record in epochs:
        record["path"] = "eager" if path == "off" else path
        if notice is not None:
            record["notice"] = notice
        if x_valid is not None:
            record["valid_elbo"] = float(evaluate_elbo(model, x_valid, seed=config.seed).mean())
        history.append(record)
        if out_dir is not None:
            with (out_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
    model.eval()
    if out_dir is not None:
        model.save(out_dir, train=to_dict(config), **(metadata or {}))
    return history


def _beta(config: TrainConfig, step: int) -> float:
    return (
        config.beta * min(1.0, step / config.warmup_steps) if config.warmup_steps else config.beta
    )


def _eager_epochs(model: VAE, x: Tensor, config: TrainConfig, progress: bool):
    """The plain loop: one step per minibatch, the last one ragged; yields one record per epoch."""
    device = model.device
    g = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    objective = OBJECTIVES[config.objective]
    autocast = _autocast_dtype(config)
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
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
            beta = _beta(config, step + 1)
            if autocast is None:
                terms = model(xb, k=config.samples, generator=g)
            else:
                eps = torch.randn(
                    (config.samples, xb.shape[0], noise_dim(model)),
                    generator=g,
                    device=device,
                )
                terms = model_terms(model, xb, eps, autocast)
            bound = objective(terms, beta)  # (B,)
            loss = -bound.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            bar.update()
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                skipped += 1
                bad_in_row += 1
                if bad_in_row >= config.max_bad_steps:
                    raise _too_many_bad(bad_in_row, step, config)
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
            "beta": _beta(config, step),
            "seconds": round(time.perf_counter() - start, 4),
        }
        bar.set_postfix({"train_bound": round(record["train_bound"], 3)})
        yield record
    bar.close()


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
    """

    def __init__(self, model: VAE, x: Tensor, config: TrainConfig, path: str) -> None:
        self.model, self.config, self.path = model, config, path
        device = self.device = model.device
        B, k, L = config.batch_size, config.samples, noise_dim(model)
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
                and x.numel() * 4 < RESIDENT_FRACTION * torch.cuda.mem_get_info(device)[0]
            )
        )
        if self.resident:
            self.x = x.to(device)
            self.idx = torch.zeros((self.G, B), dtype=torch.int64, device=device)
        else:  # streaming: batches gathered into pinned buffers, copied without blocking
            self.x = x.contiguous().pin_memory()
            self.pinned = [torch.empty((self.G, B, *x.shape[1:])).pin_memory() for _ in range(2)]
            self.copied = [torch.cuda.Event(), torch.cuda.Event()]
            self.batch = torch.zeros((self.G, B, *x.shape[1:]), device=device)
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
        # Fused Adam: one kernel for all parameters, and it skips the whole update on the device
        # when ``found_inf`` is non-zero (the mechanism of torch's GradScaler), so a non-finite
        # step needs no copy of the parameters to undo it.
        self.optimizer = torch.optim.Adam(
            params,
            lr=config.lr,
            weight_decay=config.weight_decay,
            capturable=self.capture,
            fused=True,
        )
        self.found_inf = torch.zeros((), device=device)
        self.one = torch.ones((), device=device)
        self.optimizer.found_inf = self.found_inf
        self.metrics = DeviceMetrics(device, config.batch_size)
        self.loss_fn: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]] = self._loss
        self.account: Callable[[Tensor, Tensor], None] = self._account
        if path == "compile":
            self.loss_fn = torch.compile(self._loss, dynamic=False, **COMPILE_OPTIONS)
            self.account = torch.compile(self._account, dynamic=False, **COMPILE_OPTIONS)

        # Warm up on a side stream (creates the optimizer state, compiles kernels), then put the
        # parameters and optimizer state back as they were and capture.
        saved = [p.detach().clone() for p in params]
        try:
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
                self.optimizer.zero_grad(set_to_none=True)
                loss, _ = self.loss_fn(self._batch(0), self.eps[0], self.metrics.good)
                loss.backward()
                self.optimizer.step()
            for _ in range(2):
                self._step(0)
        if side is not None:
            torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
            for st in self.optimizer.state.values():
                for v in st.values():
                    if isinstance(v, Tensor):
                        v.zero_()
        self.metrics.reset()
        self.optimizer.zero_grad(set_to_none=True)
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
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            for j in range(steps):
                self._step(j)
        self.graphs[steps] = graph.replay

    def _batch(self, j: int) -> Tensor:
        xb = self.x[self.idx[j]] if self.resident else self.batch[j]
        if self.u is not None:
            xb = (self.u[j] < xb).to(xb.dtype)
        return xb

    def _loss(self, xb: Tensor, eps: Tensor, good: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        beta: float | Tensor = c.beta
        if c.warmup_steps:
            beta = c.beta * torch.clamp((good + 1).float() / c.warmup_steps, max=1.0)
        terms = model_terms(self.model, xb, eps, _autocast_dtype(c))
        bound = OBJECTIVES[c.objective](terms, beta)  # (B,)
        return -bound.mean(), bound.detach().sum()

    def _step(self, j: int) -> None:
        loss, bound_sum = self.loss_fn(self._batch(j), self.eps[j], self.metrics.good)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(grads, self.config.grad_clip, foreach=True)
        # found_inf = 1 where any gradient or the bound is not finite, in one multi-tensor kernel
        # (it also multiplies them by ``one``, which leaves them as they are); Adam then skips.
        self.found_inf.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_(
            [*grads, bound_sum], self.found_inf, self.one
        )
        self.optimizer.step()
        self.account(self.found_inf, bound_sum)

    def _account(self, found_inf: Tensor, bound_sum: Tensor) -> None:
        self.metrics.update(found_inf == 0, bound_sum, self.config.batch_size)

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

    def epochs(self, progress: bool):
        try:
            yield from self._epochs(progress)
        finally:
            self.model.zero_grad(set_to_none=True)

    def _epochs(self, progress: bool):
        c, model = self.config, self.model
        bar = tqdm(total=c.epochs * self.steps, disable=not progress, unit="step")
        start = time.perf_counter()
        buf = 0
        for epoch in range(1, c.epochs + 1):
            model.train()
            self.metrics.new_epoch()
            order = torch.randperm(self.n, generator=self.g_order, device=self.g_order.device)
            for first in range(0, self.steps, self.G):
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
                "seconds": round(time.perf_counter() - start, 4),
                "dropped_per_epoch": self.n - self.steps * c.batch_size,
            }
            if not self.resident:
                record["streamed"] = True
            bar.set_postfix({"train_bound": round(record["train_bound"], 3)})
            yield record
        bar.close()

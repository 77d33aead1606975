"""One training step and the epoch around it: what the eager loop (here) and the fast loop
(:mod:`vaekit.train.fast`) share -- the loss, the KL weight, the epoch's record, the saved state
-- and the eager loop itself.

A step is minibatch stochastic gradient ascent on a bound (ELBO or IWAE) with reparameterised
samples, as in Kingma & Welling's AEVB algorithm: ``loss = -bound.mean()``. A step whose loss or
gradient is not finite is skipped and counted.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..dist import Group, all_reduce_sum
from ..errors import CheckpointError, ConfigError
from ..models.base import Model, model_terms
from ..objectives import OBJECTIVES
from .config import TrainConfig, TrainingError, TrainingInterrupted
from .objective import objective_options
from .optim import FlatOptimizer, learning_rate, make_optimizer, set_learning_rate
from .run import load_optimizer_state, load_weights

#: ``save(force=True)``: writes the training state (unless ``force`` is False and none is due).
Save = Callable[..., None]


def _no_save(force: bool = True) -> None:
    pass


def bernoulli_16bit(p: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw of x ~ Bernoulli(p) for every element of ``p`` (values in [0, 1]); same shape
    and dtype as ``p``, values 0 and 1.

    x = 1 where a uniform 16-bit integer u (0..65535) falls below 65536 p, so
    P(x = 1) = ceil(65536 p) / 65536: exactly p when 65536 p is a whole number, as for the k/256
    pixels of mnist.pkl.gz, and within 2^-16 of p otherwise (k/255 pixels of image files, say;
    ``torch.rand`` gives 24 bits). Each 64 random bits of ``generator`` give four draws, where
    ``torch.rand`` spends 32 bits on one: the cheaper draw matters on CPU, where it is the largest
    cost of a step after the matrix products and the optimizer.
    """
    n = p.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=p.device)
    words.random_(-(2**63), None, generator=generator)  # all 64 bits uniform
    u = words.view(torch.int16)[:n].view(p.shape)  # uniform on -32768..32767
    return (u < p * 65536.0 - 32768.0).to(p.dtype)


def bernoulli_16bit_rows(
    p: Tensor, rows: int, first: int, generator: torch.Generator | None = None
) -> Tensor:
    """Rows ``first`` .. ``first + len(p)`` of :func:`bernoulli_16bit` of a batch of ``rows``
    examples whose rows those are: ``p`` (r, *shape) holds just them. The bits are drawn for the
    whole batch (the generator moves on as for it) and the other rows' are dropped, so a process
    that holds a share of a batch binarises its rows exactly as one process holding all of it."""
    n = rows * math.prod(p.shape[1:])
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=p.device)
    words.random_(-(2**63), None, generator=generator)
    u = words.view(torch.int16)[:n].view(rows, *p.shape[1:])[first : first + p.shape[0]]
    return (u < p * 65536.0 - 32768.0).to(p.dtype)


def binarize(x: Tensor, seed: int) -> Tensor:
    """One fixed Bernoulli draw of ``x`` (values in [0, 1]) under ``seed``; same shape."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=g)


def _grad_sum(params: list[Tensor]) -> Tensor:
    """The sum of every gradient element of ``params`` (0-dim): finite exactly when each gradient
    is finite (barring an overflow of the sum, a step to reject anyway)."""
    sums = [p.grad.sum() for p in params if p.grad is not None]
    return torch.stack(sums).sum() if sums else torch.zeros(())


def kl_weight(config: TrainConfig, step: int | Tensor) -> float | Tensor:
    """beta at good step ``step`` (1-based for a step's loss, the count of good steps for a
    record): ``config.beta``, risen linearly from 0 over ``warmup_steps``. A 0-dim tensor for a
    tensor ``step`` (the fast loop counts steps on the device)."""
    if not config.warmup_steps:
        return config.beta
    if isinstance(step, Tensor):
        return config.beta * torch.clamp(step.float() / config.warmup_steps, max=1.0)
    return config.beta * min(1.0, step / config.warmup_steps)


def autocast_dtype(config: TrainConfig) -> torch.dtype | None:
    """The dtype the networks run in under ``config.precision`` (None: no autocast)."""
    return torch.bfloat16 if config.precision == "bf16" else None


def batch_loss(
    model: Model,
    config: TrainConfig,
    x: Tensor,
    beta: float | Tensor,
    *,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
    condition: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The loss of the batch ``x`` (B, *data_shape), ``-bound.mean()`` (0-dim), and the bound
    ``config.objective`` with KL weight ``beta`` of each example (B,), in nats.

    With ``eps`` (samples, B, noise_dim) the terms are :func:`model_terms` for that noise (under
    the autocast of ``config.precision``); without, ``model(x, k=samples)`` draws it from
    ``generator``. ``condition``: the batch's conditions for a conditional model.
    """
    kw = {} if condition is None else {"condition": condition}
    if eps is None:
        terms = model(x, k=config.samples, generator=generator, **kw)
    else:
        terms = model_terms(model, x, eps, autocast_dtype(config), **kw)
    options = objective_options(model, config, beta)  # btcvae's and factorvae's settings
    bound = OBJECTIVES[config.objective](terms, beta, **options)  # (B,)
    return -bound.mean(), bound


def epoch_record(
    config: TrainConfig,
    epoch: int,
    step: int,
    examples_seen: int,
    bound_sum: float,
    seen: float,
    skipped: int,
    start: float,
) -> dict[str, Any]:
    """An epoch's record in the history: the mean bound (nats) over the examples of its good
    steps, ``seen`` of them with ``bound_sum``, the run's good and skipped steps, the KL weight
    and learning rate, and the seconds since the run started (``start``, a perf_counter)."""
    return {
        "epoch": epoch,
        "step": step,
        "examples_seen": examples_seen,
        "train_bound": bound_sum / max(seen, 1),
        "skipped_steps": skipped,
        "beta": kl_weight(config, step),
        "lr": learning_rate(config, epoch),
        "seconds": round(time.perf_counter() - start, 4),
    }


def too_many_bad(bad_in_row: int, step: int, config: TrainConfig) -> TrainingError:
    """The error of a run that had ``bad_in_row`` non-finite steps in a row."""
    return TrainingError(
        f"{bad_in_row} steps in a row had a non-finite loss or gradient (at step "
        f"{step}); lower lr (now {config.lr:g}), set grad_clip, check the data's "
        "scale, or bound the decoder variance (decoder_min_logvar)"
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the random streams of ``epoch`` when a run moves to another loop or device."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{epoch}".encode()).digest()[:8], "little") >> 1


@contextmanager
def matmul_precision(tf32: bool) -> Iterator[None]:
    """Allow TensorFloat-32 CUDA matmuls inside the block when ``tf32``; restore afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = before or tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


class Loop:
    """What the eager and the fast loop share: where the run stands, its state for a checkpoint
    and the loop over epochs. A loop runs :meth:`run_epoch` and keeps ``epoch`` (in progress or
    next), ``pos`` (minibatches of it done), ``step`` and ``skipped`` (good and skipped steps of
    the run), ``bad_in_row`` and ``elapsed`` (seconds trained, earlier parts included)."""

    kind: ClassVar[str]
    model: Model
    config: TrainConfig
    device: torch.device
    g: torch.Generator
    optimizer: torch.optim.Optimizer | FlatOptimizer
    steps_per_epoch: int
    bad_in_row: int
    epoch = 1
    pos = 0
    order: Tensor | None = None
    step = skipped = 0
    elapsed = 0.0
    #: Whether the optimizer's state is copied into its tensors (captured graphs hold them).
    in_place = False
    #: Called with the loop after each eager step (``fit``'s ``callbacks``); the fast loop,
    #: which reads its numbers once an epoch, never calls it. ``last_loss``: the last step's
    #: loss, the value the step already read to decide whether to skip it.
    on_step: Callable[[Loop], None] | None = None
    last_loss = math.nan

    @property
    def mid_epoch(self) -> bool:
        """Whether the run stands inside an epoch (it stopped there)."""
        return self.pos > 0

    def state(self) -> dict[str, Any]:
        """Everything needed to continue after the last step this loop saves at."""
        return {
            "kind": self.kind,
            "device": self.device.type,
            "epoch": self.epoch,
            "pos": self.pos,
            "order": self.order,
            "step": self.step,
            "skipped": self.skipped,
            "bad_in_row": self.bad_in_row,
            "elapsed": self.elapsed,
            "generator": self.g.get_state(),
            **self._own_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def _own_state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any], out: Path | None = None) -> None:
        """Continue from ``state`` (see :meth:`state`), of this loop or another one. Another
        loop's random streams are not this one's: each epoch then draws from a fresh stream,
        statistically the same run but not bit for bit."""
        same = state.get("kind") == self.kind and state.get("device") == self.device.type
        self._check_position(state, same)
        try:
            load_weights(self.model, state["model"], out)
            load_optimizer_state(self.optimizer, state["optimizer"], in_place=self.in_place)
            self.epoch, self.elapsed = int(state["epoch"]), float(state["elapsed"])
            self.step, self.skipped = int(state["step"]), int(state["skipped"])
            self._load_position(state, same)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"the checkpoint's training state is incomplete: {err}") from None

    def _check_position(self, state: dict[str, Any], same: bool) -> None:
        """Raise where this loop cannot continue from where ``state`` stopped."""

    def _load_position(self, state: dict[str, Any], same: bool) -> None:
        """Take the position inside the run and the random streams from ``state``."""
        raise NotImplementedError

    def run_epoch(
        self, bar: Any, start: float, save: Save, stop: Callable[[], bool] | None
    ) -> dict[str, Any]:
        """Train the rest of epoch ``epoch``; returns its record (see :func:`epoch_record`)."""
        raise NotImplementedError

    def epochs(
        self,
        progress: bool,
        save: Save = _no_save,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Train until ``config.epochs``; yields one record per epoch. ``stop`` is polled before
        each step (the fast loop: each launch); when it says so the state is saved (the fast loop
        keeps the last epoch's end) and :class:`TrainingInterrupted` is raised."""
        c, per_epoch = self.config, self.steps_per_epoch
        done = (self.epoch - 1) * per_epoch + self.pos
        bar = tqdm(total=c.epochs * per_epoch, initial=done, disable=not progress, unit="step")
        start = time.perf_counter() - self.elapsed
        try:
            while self.epoch <= c.epochs:
                # TF32 holds while the loop trains, not while the caller holds a record
                with matmul_precision(c.precision == "tf32"):
                    self.model.train()
                    set_learning_rate(self.optimizer, learning_rate(c, self.epoch))
                    record = self.run_epoch(bar, start, save, stop)
                bar.set_postfix({"train_bound": round(record["train_bound"], 3)})
                yield record
        finally:
            bar.close()
            self.close()

    def close(self) -> None:
        """Release what the loop holds beyond the model (after training, or instead of it)."""


class EagerLoop(Loop):
    """The plain loop: one step per minibatch, the last one ragged. One seeded generator ``g``
    draws each epoch's order, the dynamic binarisation and the noise, in that order, so the
    state after any step (weights, optimizer, ``g``, the epoch's order and position) continues
    the run exactly."""

    kind = "eager"

    def __init__(
        self,
        model: Model,
        x: Tensor,
        config: TrainConfig,
        c: Tensor | None = None,
        group: Group | None = None,
    ) -> None:
        self.model, self.x, self.config = model, x, config
        self.c = c  # one condition per example for a conditional model, else None
        #: The processes that share each step (one: this one alone).
        self.group = group if group is not None else Group()
        self.device = model.device
        self.g = torch.Generator(device=self.device).manual_seed(config.seed)
        self.optimizer = make_optimizer(model, config)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.autocast = autocast_dtype(config)
        # a plain conditional VAE takes its (checked) conditions straight to the closed forms;
        # a subclass's own forward gets them as any caller would give them
        self.checked_conditions = model.capabilities.forward_is_terms
        self.n = x.shape[0]
        self.steps_per_epoch = math.ceil(self.n / config.batch_size)
        self.bad_in_row = 0
        self.bound_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self.seen = 0  # examples of the epoch's good steps

    def _own_state(self) -> dict[str, Any]:
        return {"bound_sum": self.bound_sum, "seen": self.seen}

    def _check_position(self, state: dict[str, Any], same: bool) -> None:
        if not same and int(state.get("pos", 0)):
            raise ConfigError(
                f"the run stopped mid-epoch in the {state.get('kind')} loop on "
                f"{state.get('device')}; resume it there (fast={self.config.fast!r} runs the "
                f"eager loop on {self.device.type})"
            )

    def _load_position(self, state: dict[str, Any], same: bool) -> None:
        self.pos, self.bad_in_row = int(state["pos"]), int(state["bad_in_row"])
        if same:
            self.g.set_state(state["generator"])
            order = state.get("order")
            self.order = order.to(self.device) if order is not None else None
            self.bound_sum = state["bound_sum"].to(self.device, torch.float64)
            self.seen = int(state["seen"])
        else:
            self.g.manual_seed(epoch_seed(self.config.seed, self.epoch))
        if self.order is not None and self.order.shape != (self.n,):
            raise CheckpointError(
                f"the checkpoint's data order has {self.order.shape[0]} examples, the data {self.n}"
            )

    def run_epoch(
        self, bar: Any, start: float, save: Save, stop: Callable[[], bool] | None
    ) -> dict[str, Any]:
        """The rest of the epoch, step by step; ``save(force=False)`` after each step (an
        epoch's end is saved with its record), ``save()`` before stopping."""
        if self.order is None:
            self.order = torch.randperm(self.n, generator=self.g, device=self.device)
            self.bound_sum = torch.zeros((), device=self.device, dtype=torch.float64)
            self.seen = 0
        B, per_epoch = self.config.batch_size, self.steps_per_epoch
        shared = self.group.active
        while self.pos < per_epoch:
            if not shared and stop is not None and stop():
                self.elapsed = time.perf_counter() - start
                save()
                raise TrainingInterrupted(self.step, self.epoch)
            rows = self.order[self.pos * B : (self.pos + 1) * B]
            if shared:  # the processes agree to stop after the step one of them was asked to
                if self.shared_step(rows, stop is not None and stop()):
                    self.elapsed = time.perf_counter() - start
                    save()
                    raise TrainingInterrupted(self.step, self.epoch)
            else:
                self.train_step(rows)
            bar.update()
            if self.on_step is not None:
                self.on_step(self)
            if self.pos < per_epoch:
                self.elapsed = time.perf_counter() - start
                save(force=False)
        record = epoch_record(
            self.config,
            self.epoch,
            self.step,
            self.epoch * self.n,
            float(self.bound_sum),
            self.seen,
            self.skipped,
            start,
        )
        self.epoch, self.pos, self.order = self.epoch + 1, 0, None
        self.elapsed = time.perf_counter() - start
        return record

    def train_step(self, rows: Tensor) -> None:
        """One step on the examples ``rows`` (B,): forward, backward, and the update unless the
        loss or the gradient is not finite (then the step is counted as skipped)."""
        model, config, g = self.model, self.config, self.g
        xb = torch.index_select(self.x, 0, rows)  # half the time of x[rows] on CPU
        condition = None if self.c is None else self.c[rows]
        if config.binarize == "dynamic":
            xb = bernoulli_16bit(xb, g)
        eps = None  # model(xb) draws it, unless the terms are asked for directly
        if self.autocast is not None or (condition is not None and self.checked_conditions):
            shape = (config.samples, xb.shape[0], model.noise_dim)
            eps = torch.randn(shape, generator=g, device=self.device, dtype=model._dtype)
        beta = kl_weight(config, self.step + 1)
        loss, bound = batch_loss(model, config, xb, beta, eps=eps, generator=g, condition=condition)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            grad_check = torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        else:  # finite iff every gradient is: a sum, cheaper than a norm
            grad_check = _grad_sum(self.params)
        self.pos += 1
        self.last_loss = loss.item()
        if math.isfinite(self.last_loss) and math.isfinite(grad_check.item()):
            self.optimizer.step()
            self.step += 1
            self.bad_in_row = 0
            self.bound_sum += bound.detach().sum()
            self.seen += xb.shape[0]
        else:
            self.skipped += 1
            self.bad_in_row += 1
            if self.bad_in_row >= config.max_bad_steps:
                raise too_many_bad(self.bad_in_row, self.step, config)

    def shared_step(self, rows: Tensor, stop: bool = False) -> bool:
        """:meth:`train_step` shared by the processes of ``group``: each draws the step's random
        numbers (binarisation, noise) for all of ``rows`` (B,) from the run's generator, computes
        its share's bound, and one all-reduce of a flat buffer sums the gradients of the shares'
        ``-bound.sum() / B``, those sums, which parameters have a gradient, and the requests to
        ``stop``. Every process then takes the same update (or skips it). Returns whether some
        process was asked to stop."""
        model, config, g = self.model, self.config, self.g
        B = rows.shape[0]
        lo, hi = self.group.shard(B)
        xb = torch.index_select(self.x, 0, rows[lo:hi])
        condition = None if self.c is None else self.c[rows[lo:hi]]
        if config.binarize == "dynamic":
            xb = bernoulli_16bit_rows(xb, B, lo, g)
        shape = (config.samples, B, model.noise_dim)
        eps = torch.randn(shape, generator=g, device=self.device, dtype=model._dtype)[:, lo:hi]
        beta = kl_weight(config, self.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        bound_sum = torch.zeros((), device=self.device)
        if hi > lo:
            _, bound = batch_loss(model, config, xb, beta, eps=eps, condition=condition)
            (-bound.sum() / B).backward()
            bound_sum = bound.detach().sum()
        total = self.reduce(bound_sum, stop)
        if config.grad_clip > 0:
            grad_check = torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        else:
            grad_check = _grad_sum(self.params)
        self.pos += 1
        if math.isfinite(float(total[0])) and math.isfinite(grad_check.item()):
            self.optimizer.step()
            self.step += 1
            self.bad_in_row = 0
            self.bound_sum += total[0].double()
            self.seen += B
        else:
            self.skipped += 1
            self.bad_in_row += 1
            if self.bad_in_row >= config.max_bad_steps:
                raise too_many_bad(self.bad_in_row, self.step, config)
        return bool(total[1] > 0)

    def reduce(self, bound_sum: Tensor, stop: bool) -> Tensor:
        """One all-reduce (sum) of every gradient, a flag per parameter for whether it has one,
        ``bound_sum`` and ``stop``, in one flat buffer of the parameters' dtype (the bytes on the
        wire are the parameters' bytes); the gradients come back summed (a parameter no process
        has a gradient for keeps none). Returns (bound sum, stops)."""
        params = self.params
        sizes = [p.numel() for p in params]
        dtype = params[0].dtype if params else torch.float32
        flat = torch.zeros(sum(sizes) + len(params) + 2, device=self.device, dtype=dtype)
        grads, flags = flat[: sum(sizes)].split(sizes), flat[sum(sizes) : -2]
        for p, part, i in zip(params, grads, range(len(params)), strict=True):
            if p.grad is not None:
                part.copy_(p.grad.reshape(-1))
                flags[i] = 1.0
        flat[-2], flat[-1] = bound_sum, float(stop)
        all_reduce_sum(self.group, flat)
        for p, part, flag in zip(params, grads, flags.tolist(), strict=True):
            p.grad = part.view_as(p) if flag > 0 else None
        return flat[-2:]

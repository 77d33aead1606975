"""The fast path: the whole step (forward, backward, clipping, the update) captured in a CUDA graph,
several steps per launch, with static shapes (the ragged last batch of each epoch is dropped), the
noise drawn in bulk between launches, a non-finite step undone on the device instead of branched
on the host, and the epoch's metrics read once per epoch. Data that does not fit on the device is
streamed from pinned CPU memory. Off CUDA (tests) the same loop runs step by step, without graphs.

:func:`select_path` says whether it applies; :func:`choose_loop` builds the loop ``fit`` runs,
falling back to the eager loop where the fast path cannot start.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor

from ..dist import Group, all_reduce_sum, any_of
from ..errors import ConfigError
from ..models.base import Model
from .config import AUTO_COMPILE_STEPS, RESIDENT_FRACTION, TrainConfig, TrainingInterrupted
from .optim import COMPILE_OPTIONS, flat_optimizer
from .step import (
    EagerLoop,
    Loop,
    Save,
    batch_loss,
    epoch_record,
    epoch_seed,
    kl_weight,
    matmul_precision,
    too_many_bad,
)


def select_path(model: Model, config: TrainConfig, n: int) -> tuple[str, str | None]:
    """Which loop :func:`vaekit.fit` runs for ``n`` training examples: ``("graph" | "compile" |
    "off", notice)``.

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


def choose_loop(
    model: Model,
    x: Tensor,
    config: TrainConfig,
    conditions: Tensor | None,
    state: dict[str, Any] | None,
    group: Group | None = None,
) -> tuple[Loop, str, str | None]:
    """The loop that trains ``model`` on ``x`` (N, *data_shape), the name of its path ("off" for
    the eager loop) and a notice saying why the fast path does not run (or None). ``group``:
    the processes that share each step (None: this one alone).

    A run that stopped mid-epoch on the eager loop (``state``) finishes that epoch there under
    ``fast="auto"``. Where the fast path fails to start, ``compile`` chosen automatically is
    retried as ``graph``, and otherwise the eager loop runs; a fast path asked for by name that
    does not run also warns.
    """
    path, notice = select_path(model, config, x.shape[0])
    saved = state.get("loop") if state is not None else None
    if (
        path != "off"
        and config.fast == "auto"
        and isinstance(saved, dict)
        and saved.get("kind") == EagerLoop.kind
        and int(saved.get("pos") or 0)
    ):  # the fast path starts only at an epoch's start
        path = "off"
        notice = "fast path off: the run stopped mid-epoch on the eager loop; it continues there"
    while path != "off":
        try:
            with matmul_precision(config.precision == "tf32"):  # graphs capture their kernels
                return FastRun(model, x, config, path, conditions, group), path, notice
        except Exception as err:  # capture or compile failed: graph or eager still can run
            model.zero_grad(set_to_none=True)
            if group is not None and group.active:  # the others may be capturing: no fallback
                raise ConfigError(
                    f"the fast path ({path}) failed to start on rank {group.rank} "
                    f"({type(err).__name__}: {str(err).strip()[:160]}); set fast='off'"
                ) from None
            if path == "compile" and config.fast == "auto":
                path = "graph"  # compile chosen automatically: retry without it, silently
                continue
            notice = f"fast path off: {path} setup failed ({type(err).__name__}: {err})"
            notice = notice.splitlines()[0][:300] + "; ran the eager loop"
            path = "off"
    if notice is not None and config.fast in ("graph", "compile"):
        warnings.warn(notice, RuntimeWarning, stacklevel=3)
    return EagerLoop(model, x.to(model.device), config, conditions, group), path, notice


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


class FastRun(Loop):
    """The CUDA-graph loop: G = steps_per_launch steps per graph replay, static shapes.

    Between replays the host only fills the static buffers: the batch indices (or, when
    streaming, the batch itself from pinned memory), the binarisation uniforms and the
    reparameterisation noise, each drawn in one call from the run's seeded generator.
    ``conditions`` (N, condition_dim), for a conditional model, stay on the device beside the
    examples and are gathered with them (a conditional model whose data must stream runs the
    eager loop). Its state is saved at epoch ends only.

    With a ``group`` of several processes, each draws the numbers of the whole global batch
    (order, uniforms, noise) and keeps its share's rows in the static buffers; each step's
    gradients and bound sum are copied into one flat buffer, summed by one all-reduce (inside
    the captured graph on CUDA: NCCL collectives are captured), and every process takes the same
    update from the summed buffer, which the parameters' ``.grad`` view.
    """

    kind = "fast"
    in_place = True

    def __init__(
        self,
        model: Model,
        x: Tensor,
        config: TrainConfig,
        path: str,
        conditions: Tensor | None = None,
        group: Group | None = None,
    ) -> None:
        self.model, self.config, self.path = model, config, path
        self.group = group if group is not None else Group()
        device = self.device = model.device
        k, L = config.samples, model.noise_dim
        self.rows = self.group.shard(config.batch_size)  # this process's rows of each batch
        B = self.rows[1] - self.rows[0]
        self.n = x.shape[0]
        self.steps = self.n // config.batch_size  # the ragged last batch is dropped
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
        self.buf = 0  # the pinned buffer the next launch fills
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
        if self.group.active:  # the summed gradients (P,) and bound sum, which .grad views
            dtype = params[0].dtype if params else torch.float32
            sizes = [p.numel() for p in params]
            self.reduced = torch.zeros(sum(sizes) + 1, device=device, dtype=dtype)
            self.reduced_grads = [
                part.view_as(p)
                for p, part in zip(params, self.reduced[:-1].split(sizes), strict=True)
            ]
        # Adam or Adagrad over one flat buffer, the skip of a non-finite step and clipping in one
        # pass; its lr is a device tensor, so captured graphs read the value a schedule sets.
        self.closed = False
        self.optimizer = flat_optimizer(params, config, compile=path == "compile")
        self.metrics = DeviceMetrics(device, config.batch_size)
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

    @property
    def steps_per_epoch(self) -> int:  # type: ignore[override]
        return self.steps

    @property
    def bad_in_row(self) -> int:  # type: ignore[override]
        """Skipped steps in a row at the end of the last epoch (kept on the device)."""
        return int(self.metrics.bad_run)

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
        """The step's loss (0-dim) and the sum of its per-example bounds (0-dim, detached)."""
        xb = x[idx] if idx is not None else x  # (B, *data_shape)
        cb = conditions[idx] if conditions is not None and idx is not None else None
        if u is not None:
            xb = (u < xb).to(xb.dtype)
        beta = kl_weight(self.config, good + 1)
        loss, bound = batch_loss(self.model, self.config, xb, beta, eps=eps, condition=cb)
        if self.group.active:  # this share's part of the global batch's mean
            loss = -bound.sum() / self.config.batch_size
        return loss, bound.detach().sum()

    def _step(self, j: int) -> None:
        loss, bound_sum = self.loss_fn(*self._inputs(j), self.eps[j], self.metrics.good)
        self.optimizer.zero_grad()
        loss.backward()
        if self.group.active:
            bound_sum = self._all_reduce(bound_sum)
        finite = self.optimizer(bound_sum)
        self.account(finite, bound_sum)

    def _all_reduce(self, bound_sum: Tensor) -> Tensor:
        """The gradients and ``bound_sum`` summed over the processes in one all-reduce of the
        flat buffer ``reduced``; the parameters' ``.grad`` then view it. Returns the summed
        bound sum (0-dim)."""
        flat = self.reduced
        with torch.no_grad():
            for p, part in zip(self.params, self.reduced_grads, strict=True):
                if p.grad is None:
                    part.zero_()
                else:
                    part.copy_(p.grad)
            flat[-1].copy_(bound_sum)
        all_reduce_sum(self.group, flat)
        for p, part in zip(self.params, self.reduced_grads, strict=True):
            p.grad = part
        return flat[-1]

    def _account(self, finite: Tensor, bound_sum: Tensor) -> None:
        self.metrics.update(finite, bound_sum, self.config.batch_size)

    def _fill(self, order: Tensor, first: int, steps: int, buf: int) -> None:
        """Put steps [first, first + steps) of the epoch into the static buffers."""
        B, (lo, hi) = self.config.batch_size, self.rows
        idx = order[first * B : (first + steps) * B].view(steps, B)[:, lo:hi]
        if self.resident:
            self.idx[:steps].copy_(idx)
        else:
            pinned = self.pinned[buf][:steps]
            self.copied[buf].synchronize()  # the copy that last read this buffer is done
            torch.index_select(self.x, 0, idx.reshape(-1), out=pinned.view(-1, *self.x.shape[1:]))
            self.batch[:steps].copy_(pinned, non_blocking=True)
            self.copied[buf].record()
        if not self.group.active:
            if self.u is not None:
                u = self.u[:steps]
                torch.rand(u.shape, generator=self.g, device=self.device, out=u)
            eps = self.eps[:steps]
            torch.randn(eps.shape, generator=self.g, device=self.device, out=eps)
            return
        # several processes: the whole batch's numbers drawn, this share's rows kept
        if self.u is not None:
            shape = (steps, B, *self.u.shape[2:])
            u = torch.rand(shape, generator=self.g, device=self.device, dtype=self.u.dtype)
            self.u[:steps].copy_(u[:, lo:hi])
        shape = (steps, self.eps.shape[1], B, self.eps.shape[3])
        eps = torch.randn(shape, generator=self.g, device=self.device, dtype=self.eps.dtype)
        self.eps[:steps].copy_(eps[:, :, lo:hi])

    def _own_state(self) -> dict[str, Any]:
        return {"generator_order": self.g_order.get_state() if self.g_order is not self.g else None}

    def _check_position(self, state: dict[str, Any], same: bool) -> None:
        if int(state.get("pos", 0)):
            raise ConfigError(
                f"the run stopped mid-epoch in the {state.get('kind')} loop on "
                f"{state.get('device')}, which the fast path cannot continue; resume it with "
                "fast='off'"
            )

    def _load_position(self, state: dict[str, Any], same: bool) -> None:
        """Copies into the tensors the captured graphs use."""
        with torch.no_grad():
            self.metrics.counts[1].fill_(self.step)
            self.metrics.counts[2].fill_(self.skipped)
            self.metrics.bad_run.fill_(int(state["bad_in_row"]))
        if same:
            self.g.set_state(state["generator"])
            if self.g_order is not self.g:
                self.g_order.set_state(state["generator_order"])
        else:
            self.g.manual_seed(epoch_seed(self.config.seed, self.epoch))
            self.g_order.manual_seed(epoch_seed(self.config.seed, self.epoch))

    def close(self) -> None:
        """Give the parameters their own storage back (after training, or instead of it)."""
        if not self.closed:
            self.optimizer.zero_grad()
            self.optimizer.release()
            self.closed = True

    def run_epoch(
        self, bar: Any, start: float, save: Save, stop: Callable[[], bool] | None
    ) -> dict[str, Any]:
        """One epoch, G steps a launch, its metrics read once at the end. On ``stop`` the steps
        since the last epoch's end are dropped: the saved state stays at that end."""
        c, epoch = self.config, self.epoch
        self.metrics.new_epoch()
        order = torch.randperm(self.n, generator=self.g_order, device=self.g_order.device)
        for first in range(0, self.steps, self.G):
            if any_of(self.group, stop is not None and stop()):  # all processes stop together
                raise TrainingInterrupted(self.step, self.epoch)
            steps = min(self.G, self.steps - first)
            self._fill(order, first, steps, self.buf)
            self.graphs[steps]()
            self.buf ^= 1
            bar.update(steps)
        m = self.metrics.read()  # the one host sync of the epoch
        if m["worst_run"] >= c.max_bad_steps:
            raise too_many_bad(int(m["worst_run"]), int(m["good"]), c)
        good, skipped = int(m["good"]), int(m["skipped"])
        examples = epoch * self.steps * c.batch_size
        record = epoch_record(c, epoch, good, examples, m["bound_sum"], m["seen"], skipped, start)
        record["dropped_per_epoch"] = self.n - self.steps * c.batch_size
        if not self.resident:
            record["streamed"] = True
        self.epoch, self.step, self.skipped = epoch + 1, good, skipped
        self.elapsed = time.perf_counter() - start
        return record

"""What ``fit`` tells the callbacks it is given: plain-number events after each step and each
epoch, and the end of the run, for loggers (:class:`vaekit.logs.TensorBoardLog`) that the loop
knows nothing of.

A callback is any object with some of these methods (each optional)::

    on_step(event: dict, model)   # after each step of the eager loop
    on_epoch(event: dict, model)  # after each epoch, with the epoch's record
    on_end(model)                 # after the run's files are written

A step event holds ``step`` (good steps so far), ``epoch``, ``bound`` (the batch's mean training
bound, nats: minus the loss the step already read back to decide whether to skip it, so the
events cost no extra device sync), ``skipped_steps``, ``lr``, ``beta``, ``examples_seen`` and
``examples_per_s`` (since the previous event). The fast loop (CUDA graphs) reads its numbers
once an epoch, so there a step event comes once an epoch, made from the epoch's record (its
``bound`` is the epoch's mean). An epoch event is the epoch's record as ``metrics.jsonl`` has it
(``train_bound``, ``valid_elbo``, ...).

A callback that raises is dropped with one warning (:class:`RuntimeWarning`), and training goes
on: logging never breaks a run.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

from ..models.base import Model
from .config import TrainConfig
from .optim import learning_rate
from .step import Loop, kl_weight


class Callbacks:
    """The callbacks of one ``fit``; false when there are none. Installs itself as ``loop``'s
    step hook where there are some."""

    def __init__(
        self, callbacks: Sequence[Any], model: Model, config: TrainConfig, loop: Loop, n: int
    ) -> None:
        self.items = list(callbacks or ())
        self.model, self.config, self.n = model, config, n
        self.stepped = False  # whether a step event came in this epoch
        start = (loop.epoch - 1) * n + min(loop.pos * config.batch_size, n)
        self.last = (time.perf_counter(), start)  # (time, examples seen) of the last event
        if self.items:
            loop.on_step = self.step

    def __bool__(self) -> bool:
        return bool(self.items)

    def _call(self, method: str, *args: Any) -> None:
        for cb in list(self.items):
            f = getattr(cb, method, None)
            if f is None:
                continue
            try:
                f(*args)
            except Exception as err:  # a logger never stops training
                self.items.remove(cb)
                detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
                warnings.warn(
                    f"training callback {type(cb).__name__}.{method} failed "
                    f"({type(err).__name__}{': ' + detail if detail else ''}); training goes on "
                    "without it",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def _rate(self, seen: int) -> float:
        """Examples per second since the previous event (or the start)."""
        now = time.perf_counter()
        before, before_seen = self.last
        self.last = (now, seen)
        if now <= before:
            return math.nan
        return (seen - before_seen) / (now - before)

    def step(self, loop: Loop) -> None:
        """The step event of ``loop``'s last step (the eager loop's hook)."""
        self.stepped = True
        c = self.config
        seen = (loop.epoch - 1) * self.n + min(loop.pos * c.batch_size, self.n)
        event = {
            "step": loop.step,
            "epoch": loop.epoch,
            "bound": -loop.last_loss,
            "skipped_steps": loop.skipped,
            "lr": learning_rate(c, loop.epoch),
            "beta": float(kl_weight(c, loop.step)),
            "examples_seen": seen,
            "examples_per_s": self._rate(seen),
        }
        self._call("on_step", event, self.model)

    def epoch(self, record: dict[str, Any]) -> None:
        """The epoch event (``record``), after a step event made from it where the loop gave
        none (the fast loop)."""
        if not self.items:
            return
        if not self.stepped:
            seen = int(record["examples_seen"])
            event = {
                "step": record["step"],
                "epoch": record["epoch"],
                "bound": record["train_bound"],
                "skipped_steps": record["skipped_steps"],
                "lr": record["lr"],
                "beta": float(record["beta"]),
                "examples_seen": seen,
                "examples_per_s": self._rate(seen),
            }
            self._call("on_step", event, self.model)
        self.stepped = False
        self._call("on_epoch", dict(record), self.model)

    def end(self) -> None:
        """The end of the run (its files are written)."""
        self._call("on_end", self.model)

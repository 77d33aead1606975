"""Early stopping on the validation bound (``TrainConfig.patience`` and ``min_delta``): which
epoch is the best so far, when the run has waited long enough for a better one, and the best
epoch's weights, which the run keeps (in memory and in its checkpoint) and saves as its model.

The rule: an epoch improves on the best when its validation ELBO (nats) is above the best by
more than ``min_delta``; the run stops after the epoch that makes ``patience`` epochs in a row
without an improvement. A validation ELBO that is not finite never improves on the best.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from ..errors import CheckpointError
from ..reading import conform_tensors, is_number
from .config import History, TrainConfig


class EarlyStopping:
    """The early-stopping state of one run under ``config`` (inactive when ``patience`` is 0).

    ``best_epoch`` (None before any epoch improved), ``best_elbo`` (nats) and ``best_weights``
    (a copy of the model's ``state_dict`` at that epoch, on the model's device) follow the
    epochs; ``stopped_at`` is the epoch after which the rule ended the run (None: it has not)."""

    def __init__(self, config: TrainConfig) -> None:
        self.patience, self.min_delta = config.patience, config.min_delta
        self.best_epoch: int | None = None
        self.best_elbo = -math.inf
        self.best_weights: dict[str, Tensor] | None = None
        self.stopped_at: int | None = None

    @property
    def active(self) -> bool:
        return self.patience > 0

    def improves(self, elbo: float) -> bool:
        """Whether a validation ELBO of ``elbo`` nats is an improvement on the best."""
        return math.isfinite(elbo) and elbo > self.best_elbo + self.min_delta

    def update(self, record: dict[str, Any], model: nn.Module) -> bool:
        """Take an epoch's ``record`` (with its ``valid_elbo``) of ``model`` as it is now; True
        when the run is to stop after this epoch. The record gets ``best_epoch`` and
        ``best_valid_elbo`` (the best so far; None before any), and ``stopped = "early"`` when
        the run stops there."""
        if not self.active:
            return False
        epoch = int(record["epoch"])
        if self.improves(float(record.get("valid_elbo", math.nan))):
            self.best_epoch, self.best_elbo = epoch, float(record["valid_elbo"])
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best = self.best_elbo if self.best_epoch is not None else None
        record.update(best_epoch=self.best_epoch, best_valid_elbo=best)
        if epoch - (self.best_epoch or 0) < self.patience:
            return False
        self.stopped_at = epoch
        record["stopped"] = "early"
        return True

    def restore(self, history: History, best: Any, model: nn.Module, where: str) -> None:
        """The state of a resumed run of ``model``: the checkpoint's ``best`` table (``{"epoch",
        "valid_elbo", "model"}``, read from ``where``) where it has one, else the best epoch
        found again from the run's ``history`` (its weights are then unknown: the run keeps
        the last epoch's unless a later epoch improves). ``stopped_at`` is set when the rule
        already ends the run, under the resumed run's ``patience``."""
        if not self.active:
            return
        if (
            isinstance(best, dict)
            and type(best.get("epoch")) is int
            and is_number(best.get("valid_elbo"))
        ):
            self.best_epoch, self.best_elbo = best["epoch"], float(best["valid_elbo"])
            expected = model.state_dict()
            self.best_weights = conform_tensors(
                best.get("model"), expected, f"{where}: the best epoch's weights", CheckpointError
            )
        else:
            for record in history:
                if self.improves(float(record.get("valid_elbo", math.nan))):
                    self.best_epoch = int(record["epoch"])
                    self.best_elbo = float(record["valid_elbo"])
        last = int(history[-1]["epoch"]) if history else 0
        if history and last - (self.best_epoch or 0) >= self.patience:
            self.stopped_at = last

    def state(self) -> dict[str, Any] | None:
        """The checkpoint's ``best`` table: the best epoch, its validation ELBO and weights."""
        if not self.active or self.best_weights is None:
            return None
        return {"epoch": self.best_epoch, "valid_elbo": self.best_elbo, "model": self.best_weights}

    def progress(self) -> dict[str, Any]:
        """What the checkpoint's run record says of early stopping (nothing when it is off)."""
        if not self.active:
            return {}
        return {
            "stopped_early": self.stopped_at is not None,
            "best_epoch": self.best_epoch,
            "best_valid_elbo": self.best_elbo if math.isfinite(self.best_elbo) else None,
        }

    def keep_best(self, model: nn.Module) -> None:
        """Put the best epoch's weights into ``model`` (nothing when there are none)."""
        if self.active and self.best_weights is not None:
            model.load_state_dict(self.best_weights)

    def line(self) -> str | None:
        """How early stopping ended the run, in words (None: it did not)."""
        if self.stopped_at is None:
            return None
        if self.best_epoch is None:
            return (
                f"stopped early at epoch {self.stopped_at}: no epoch had a finite validation "
                f"ELBO in {self.patience} epochs; the last epoch's weights are kept"
            )
        kept = "whose weights are saved" if self.best_weights is not None else "last weights kept"
        return (
            f"stopped early at epoch {self.stopped_at}; best validation ELBO at epoch "
            f"{self.best_epoch} ({self.best_elbo:.3f} nats), {kept}"
        )

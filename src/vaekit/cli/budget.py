"""What a run will cost, checked before ``vaekit train`` allocates anything: the memory its
training takes (:func:`vaekit.models.registry.check_training_fits`) and the decoder passes of
its end-of-run report's log p(x) (:func:`vaekit.estimators.check_passes`)."""

from __future__ import annotations

from typing import Any

from ..dist import local_device
from ..estimators import check_passes
from ..models.registry import check_training_fits


def check_new_run(model_config: Any, train_config: Any, dataset: Any, size: Any) -> None:
    """Before a new run builds its model: its training (``train_config`` on ``dataset``'s
    training split, on this process's device) fits in the memory free, and its report
    (:func:`check_report`) within the bound on decoder passes. A ConfigError otherwise."""
    check_training_fits(model_config, train_config, len(dataset.train), local_device())
    check_report(size, dataset)


def check_report(size: Any, dataset: Any) -> None:
    """The report's log p(x), ``size.k`` samples on ``size.examples`` validation examples (0:
    all of ``dataset.valid``), within :data:`vaekit.estimators.MAX_DECODER_PASSES`."""
    valid = len(dataset.valid)
    check_passes(size.k, min(size.examples, valid) if size.examples else valid)

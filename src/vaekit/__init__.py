"""vaekit: variational autoencoders (Kingma & Welling's Auto-Encoding Variational Bayes) as a
library and a command-line tool.

Models: :class:`VAE` (built from :class:`VAEConfig`'s fields), :class:`HVAE` (two stochastic
layers), :class:`CategoricalVAE` (discrete latents), :class:`TextVAE` (strings). Each has
``encode(x)`` -> q(z|x), ``decode(z)`` -> p(x|z), ``sample``, ``reconstruct``, ``elbo`` and
``log_likelihood`` (nats per example), ``fit`` and ``save``. :func:`fit` trains a model
(:class:`TrainConfig`), :func:`load` reads a saved one back, :func:`evaluate` reports on a
data set, and :func:`elbo` and :func:`iwae` are the bounds as functions of :class:`Terms`.
Data sets are in :mod:`vaekit.data`; likelihoods, priors and networks in
:mod:`vaekit.likelihoods`, :mod:`vaekit.priors` and :mod:`vaekit.nets`. Errors on bad input
are subclasses of :class:`VaekitError`.

The names below load on first use (``from vaekit import VAE`` imports torch then), so that the
``vaekit`` command can answer Ctrl-C in one line even while torch is still being imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "load": "models",
    "save": "checkpoint",
    "CategoricalConfig": "models",
    "CategoricalVAE": "models",
    "CheckpointError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "RunBusy": "errors",
    "VaekitError": "errors",
    "evaluate": "evaluation",
    "log_likelihood": "estimators",
    "HVAE": "models",
    "HVAEConfig": "models",
    "Model": "models",
    "VAE": "models",
    "VAEConfig": "models",
    "Terms": "objectives",
    "elbo": "objectives",
    "iwae": "objectives",
    "TextVAE": "models",
    "TextVAEConfig": "models",
    "TrainConfig": "train",
    "TrainingError": "train",
    "TrainingInterrupted": "train",
    "fit": "train",
    "VAETransformer": "sklearn",
}

__all__ = [
    "HVAE",
    "VAE",
    "CategoricalConfig",
    "CategoricalVAE",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "HVAEConfig",
    "Model",
    "RunBusy",
    "Terms",
    "TextVAE",
    "TextVAEConfig",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "VAEConfig",
    "VAETransformer",
    "VaekitError",
    "__version__",
    "data",
    "elbo",
    "evaluate",
    "fit",
    "iwae",
    "load",
    "log_likelihood",
    "save",
]


#: Modules of the flat layout that moved into packages: ``vaekit.audio`` is ``vaekit.data.audio``
#: and ``vaekit.text`` the text model's module (its tokenizer is :mod:`vaekit.tokenizer`, its data
#: :mod:`vaekit.data.text`).
_MOVED = {"audio": "data.audio", "text": "models.text"}


def _submodules() -> set[str]:
    """The public submodules (``__main__`` and ``_entry`` are the command's, not the library's)."""
    import pkgutil

    return {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return importlib.import_module(f".{_MOVED[name]}", __name__)
    if name not in _EXPORTS and name in _submodules():
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_submodules()})


if TYPE_CHECKING:
    from . import data
    from .checkpoint import save
    from .errors import CheckpointError, ConfigError, DataError, VaekitError
    from .estimators import log_likelihood
    from .evaluation import evaluate
    from .models import (
        HVAE,
        VAE,
        CategoricalConfig,
        CategoricalVAE,
        HVAEConfig,
        Model,
        TextVAE,
        TextVAEConfig,
        VAEConfig,
        load,
    )
    from .objectives import Terms, elbo, iwae
    from .sklearn import VAETransformer
    from .train import TrainConfig, TrainingError, TrainingInterrupted, fit

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
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "load": "checkpoint",
    "save": "checkpoint",
    "CategoricalConfig": "discrete",
    "CategoricalVAE": "discrete",
    "CheckpointError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "VaekitError": "errors",
    "evaluate": "evaluate",
    "log_likelihood": "evaluate",
    "HVAE": "hierarchical",
    "HVAEConfig": "hierarchical",
    "VAE": "model",
    "VAEConfig": "model",
    "Terms": "objectives",
    "elbo": "objectives",
    "iwae": "objectives",
    "TextVAE": "text",
    "TextVAEConfig": "text",
    "TrainConfig": "train",
    "TrainingError": "train",
    "TrainingInterrupted": "train",
    "fit": "train",
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
    "Terms",
    "TextVAE",
    "TextVAEConfig",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "VAEConfig",
    "VaekitError",
    "__version__",
    "audio",
    "data",
    "elbo",
    "evaluate",
    "fit",
    "iwae",
    "load",
    "log_likelihood",
    "save",
    "text",
]


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``vaekit.evaluate`` binds it on the
    package, which would hide the function ``vaekit.evaluate``; the function keeps the name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if _EXPORTS.get(name) == name and isinstance(value, types.ModuleType):
            return  # __getattr__ gives the function of that name
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _submodules() -> set[str]:
    """The public submodules (``__main__`` and ``_entry`` are the command's, not the library's)."""
    import pkgutil

    return {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


def __getattr__(name: str) -> Any:
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
    from . import audio, data, text
    from .checkpoint import load, save
    from .discrete import CategoricalConfig, CategoricalVAE
    from .errors import CheckpointError, ConfigError, DataError, VaekitError
    from .evaluate import evaluate, log_likelihood
    from .hierarchical import HVAE, HVAEConfig
    from .model import VAE, VAEConfig
    from .objectives import Terms, elbo, iwae
    from .text import TextVAE, TextVAEConfig
    from .train import TrainConfig, TrainingError, TrainingInterrupted, fit

"""Model kinds, one module each, on one declared protocol (:mod:`vaekit.models.base`).

- :class:`VAE` (:mod:`.vae`): one diagonal Gaussian latent, MLP/conv/resnet networks, any
  likelihood and prior, optionally conditional.
- :class:`HVAE` (:mod:`.hvae`): two stochastic layers (Burda et al. 2016).
- :class:`CategoricalVAE` (:mod:`.categorical`): discrete latents, exact log p(x) when small.
- :class:`TextVAE` (:mod:`.text`): strings, a GRU encoder and decoder (Bowman et al. 2016).

:func:`load` rebuilds any of them from a run folder; :func:`build_model` from a config.
"""

from .base import Capabilities, Model, as_condition, distribution_terms, model_terms
from .categorical import CategoricalConfig, CategoricalVAE, log_likelihood_exact
from .hvae import HVAE, HVAEConfig
from .registry import (
    MODELS,
    build_model,
    load,
    model_class,
    model_config,
    model_kinds,
    model_table,
    read_config,
    register_model,
)
from .text import TextVAE, TextVAEConfig
from .vae import VAE, VAEConfig

__all__ = [
    "HVAE",
    "MODELS",
    "VAE",
    "Capabilities",
    "CategoricalConfig",
    "CategoricalVAE",
    "HVAEConfig",
    "Model",
    "TextVAE",
    "TextVAEConfig",
    "VAEConfig",
    "as_condition",
    "build_model",
    "distribution_terms",
    "load",
    "log_likelihood_exact",
    "model_class",
    "model_config",
    "model_kinds",
    "model_table",
    "model_terms",
    "read_config",
    "register_model",
]

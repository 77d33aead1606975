"""vaekit: variational autoencoders (Kingma & Welling's Auto-Encoding Variational Bayes) as a
library and a command-line tool."""

__version__ = "0.1.0"

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

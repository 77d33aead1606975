"""The objective a training step maximises, from :class:`TrainConfig`: which model each objective
needs, the settings it takes besides the KL weight, and the ones ``fit`` fills in.

- "elbo", "iwae": the bounds of :mod:`vaekit.objectives`, with KL weight ``beta``.
- "btcvae" (Chen et al. 2018): the ELBO with the KL split into index-code MI, total correlation
  and dimension-wise KL, weighted ``alpha``, ``beta`` and ``gamma`` (default 1: the paper keeps
  alpha = gamma = 1 and sets beta), q(z) estimated from the minibatch by ``tc_estimator``
  ("mws" or "mss") for a data set of ``dataset_size`` examples (fit fills in the number of
  training examples). It needs a diagonal Gaussian q(z|x) and a p(z) that factorises.
- "factorvae" (Kim & Mnih 2018): the ELBO (KL weight ``beta``) less ``gamma`` times the total
  correlation its discriminator estimates (default 10, the low end of the values Kim & Mnih
  and Locatello et al. 2019 tried on dSprites: 10 to 100); the discriminator is part of the
  model (``VAEConfig.discriminator``), trained by the same optimizer.

Warm-up (``warmup_steps``) scales every weight of the latent terms by the same ramp from 0 to 1:
the KL weight, and alpha, beta and gamma. Both new objectives estimate q(z) from the whole batch,
so they run in one process; both run on the fast path (their estimators read nothing back to the
host).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor

from ..errors import ConfigError
from ..models.base import Model
from .config import TrainConfig

#: gamma when the config leaves it unset (None), per objective.
DEFAULT_GAMMA = {"btcvae": 1.0, "factorvae": 10.0}
#: Objectives whose terms come from the aggregate posterior q(z) of the batch.
AGGREGATE = ("btcvae", "factorvae")


def gamma(config: TrainConfig) -> float:
    """``config.gamma``, or the objective's default where it is None."""
    if config.gamma is not None:
        return config.gamma
    return DEFAULT_GAMMA.get(config.objective, 1.0)


def objective_options(model: Model, config: TrainConfig, beta: float | Tensor) -> dict[str, Any]:
    """The keyword settings of ``OBJECTIVES[config.objective]`` besides (terms, beta), for KL
    weight ``beta`` (``config.beta`` ramped by the warm-up): none for "elbo" and "iwae"."""
    objective = config.objective
    if objective not in AGGREGATE:
        return {}
    ramp = beta / config.beta if config.beta > 0 else 1.0
    if objective == "btcvae":
        if config.dataset_size < 1:
            raise ConfigError(
                "objective 'btcvae' needs dataset_size, the number of training examples (fit "
                "fills it in from the data)"
            )
        return {
            "alpha": config.alpha * ramp,
            "gamma": gamma(config) * ramp,
            "dataset_size": config.dataset_size,
            "estimator": config.tc_estimator,
        }
    return {"gamma": gamma(config) * ramp, "discriminator": _discriminator(model)}


def _discriminator(model: Model) -> Any:
    discriminator = getattr(model, "discriminator", None)
    if discriminator is None:
        raise ConfigError(
            f"objective 'factorvae' trains a discriminator that is part of the model, and this "
            f"{model.kind} model has none: build it with discriminator=[1000, 1000, 1000, 1000, "
            "1000, 1000] (the paper's) or other widths"
        )
    return discriminator


def check_objective(model: Model, config: TrainConfig, n: int, processes: int = 1) -> TrainConfig:
    """``config`` with the settings its objective takes from the data filled in (btcvae's
    ``dataset_size``: ``n``; an unset ``gamma``: the objective's default), or a
    :class:`ConfigError` where ``model`` cannot train with that objective."""
    objective = config.objective
    if objective not in AGGREGATE:
        return config
    caps = model.capabilities
    if not (caps.noise_terms and caps.refinable):
        raise ConfigError(
            f"objective {objective!r} needs q(z|x) as one diagonal Gaussian over the decoder's z "
            f"(kind vae); the {model.kind} model has none: use objective elbo"
        )
    if objective == "btcvae" and not getattr(getattr(model, "prior", None), "factorised", False):
        raise ConfigError(
            f"objective 'btcvae' splits off a dimension-wise KL, which needs a prior that "
            f"factorises over the dimensions; prior {model.config.prior!r} does not: set "
            "prior=standard_normal (or learned_gaussian)"
        )
    if objective == "factorvae":
        _discriminator(model)
    if config.batch_size < 2:
        raise ConfigError(
            f"objective {objective!r} estimates q(z) from the batch: batch_size must be at "
            f"least 2, got {config.batch_size}"
        )
    if processes > 1:
        raise ConfigError(
            f"objective {objective!r} estimates q(z) from the whole batch, which {processes} "
            "processes would split: train it in one process"
        )
    if objective == "btcvae" and config.dataset_size == 0:
        config = replace(config, dataset_size=n)
    if objective == "btcvae" and config.dataset_size < min(n, config.batch_size):
        raise ConfigError(
            f"dataset_size {config.dataset_size} is smaller than a batch "
            f"({min(n, config.batch_size)} examples); give the number of training examples, or "
            "0 to let fit count them"
        )
    if config.gamma is None:
        config = replace(config, gamma=gamma(config))
    return config

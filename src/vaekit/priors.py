"""Priors p(z). Each is a module whose ``forward()`` returns a distribution with event shape
``(latent_dim,)``; parameters (if any) are learned jointly with the rest of the model."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal


class Prior(nn.Module):
    """Base class of priors over a ``latent_dim``-vector."""

    #: True when ``kl_divergence(q(z|x), p(z))`` has a closed form for a diagonal Gaussian q.
    analytic_kl: bool = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)

    def forward(self) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError


class StandardNormalPrior(Prior):
    """p(z) = N(0, I)."""

    analytic_kl = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(self.latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(self.latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)


class LearnedGaussianPrior(Prior):
    """p(z) = N(mu, diag(exp(log_var))) with mu and log_var learned (initialised to N(0, I))."""

    analytic_kl = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(self.latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(self.latent_dim))

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.log_scale.exp(), validate_args=False), 1)


#: Name in a config -> prior class.
PRIORS: dict[str, type[Prior]] = {
    "standard_normal": StandardNormalPrior,
    "learned_gaussian": LearnedGaussianPrior,
}

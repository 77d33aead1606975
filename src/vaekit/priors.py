"""Priors p(z). Each is a module whose ``forward()`` returns a distribution with event shape
``(latent_dim,)``; parameters (if any) are learned jointly with the rest of the model."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Prior(nn.Module):
    """Base class of priors over a ``latent_dim``-vector."""

    #: True when ``kl_divergence(q(z|x), p(z))`` has a closed form for a diagonal Gaussian q.
    analytic_kl: bool = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)

    def forward(self) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) summed over the latent dim, (...,): ``self().log_prob(z)``, in closed form
        where a subclass gives one (no distribution object built)."""
        return self().log_prob(z)

    def kl(self, loc: Tensor, logvar: Tensor) -> Tensor:
        """KL(N(loc, diag(exp(logvar))) || p(z)) per example, (B,); needs ``analytic_kl``."""
        qz_x = Independent(Normal(loc, torch.exp(0.5 * logvar), validate_args=False), 1)
        return kl_divergence(qz_x, self())


class StandardNormalPrior(Prior):
    """p(z) = N(0, I)."""

    analytic_kl = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(self.latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(self.latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)

    def log_prob(self, z: Tensor) -> Tensor:
        return -(0.5 * z**2 + HALF_LOG_2PI).sum(-1)

    def kl(self, loc: Tensor, logvar: Tensor) -> Tensor:
        return 0.5 * (torch.exp(logvar) + loc**2 - 1 - logvar).sum(-1)


class LearnedGaussianPrior(Prior):
    """p(z) = N(mu, diag(exp(log_var))) with mu and log_var learned (initialised to N(0, I))."""

    analytic_kl = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(self.latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(self.latent_dim))

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.log_scale.exp(), validate_args=False), 1)

    def log_prob(self, z: Tensor) -> Tensor:
        u = (z - self.loc) * torch.exp(-self.log_scale)
        return -(0.5 * u**2 + self.log_scale + HALF_LOG_2PI).sum(-1)

    def kl(self, loc: Tensor, logvar: Tensor) -> Tensor:
        log_ratio = logvar - 2 * self.log_scale  # log var_q - log var_p
        t = (loc - self.loc) ** 2 * torch.exp(-2 * self.log_scale)
        return 0.5 * (torch.exp(log_ratio) + t - 1 - log_ratio).sum(-1)


#: Name in a config -> prior class.
PRIORS: dict[str, type[Prior]] = {
    "standard_normal": StandardNormalPrior,
    "learned_gaussian": LearnedGaussianPrior,
}

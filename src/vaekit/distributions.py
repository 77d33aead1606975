"""Small pieces of probability shared by the likelihoods, the priors, the models and the
estimators: diagonal Gaussians, their closed-form log-densities, and the soft clamp that bounds
a log-variance."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import (
    AffineTransform,
    Distribution,
    Independent,
    Normal,
    TransformedDistribution,
)

#: log sqrt(2 pi), the constant of every Gaussian log-density (nats).
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def diag_normal(
    loc: Tensor, logvar: Tensor | None = None, *, scale: Tensor | None = None
) -> Independent:
    """N(loc, diag(exp(logvar))) (or with standard deviations ``scale``) over the last dim:
    batch shape loc.shape[:-1], event shape (D,). Its parameters are not validated."""
    if scale is None:
        if logvar is None:
            raise TypeError("diag_normal needs logvar or scale")
        scale = torch.exp(0.5 * logvar)
    return Independent(Normal(loc, scale, validate_args=False), 1)


def gaussian_log_prob(
    x: Tensor, mean: Tensor, logvar: Tensor, reduce: Callable[[Tensor], Tensor]
) -> Tensor:
    """``reduce`` of log N(x; mean, exp(logvar)) elementwise, in closed form (nats)."""
    return -reduce(0.5 * ((x - mean) ** 2 * torch.exp(-logvar) + logvar) + HALF_LOG_2PI)


def gaussian_log_prob_eps(eps: Tensor, logvar: Tensor) -> Tensor:
    """log N(loc + exp(logvar / 2) * eps; loc, exp(logvar)) summed over the last dim, (...):
    the log-density of a reparameterised draw from its own noise ``eps``."""
    return -(0.5 * (eps * eps + logvar) + HALF_LOG_2PI).sum(-1)


def soft_clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """Smoothly squash ``x`` into ``(lo, hi)``; approximately the identity away from the ends.

    ``lo + softplus(x - lo) - softplus(x - hi)``, which is increasing and bounded by ``lo`` and
    ``hi``; below the midpoint it is evaluated in that form, above it in the equal form
    ``hi - softplus(hi - x) + softplus(lo - x)``, so no large terms cancel.
    """
    below = lo + (F.softplus(x - lo) - F.softplus(x - hi))
    above = hi - (F.softplus(hi - x) - F.softplus(lo - x))
    return torch.where(x < 0.5 * (lo + hi), below, above)


def rsample(qz_x: Distribution, k: int, generator: torch.Generator | None = None) -> Tensor:
    """``k`` reparameterised draws z = mu + sigma * eps from a diagonal Gaussian, (k, B, D).

    With a ``generator`` the noise eps is drawn from it, so results repeat exactly under a seed.
    """
    base = qz_x.base_dist if isinstance(qz_x, Independent) else qz_x
    loc, scale = base.loc, base.scale
    eps = torch.randn((k, *loc.shape), generator=generator, device=loc.device, dtype=loc.dtype)
    return loc + scale * eps


class Rescaled(TransformedDistribution):
    """A distribution over standardised data seen in the data's own units: x = shift + scale * y
    for y ~ ``base``, elementwise over ``base``'s event (``shift`` and ``scale`` broadcast to its
    event shape, scale > 0).

    ``log_prob(x)`` is base.log_prob((x - shift) / scale) - sum(log scale) over the event, the
    change of variables' Jacobian included; ``mean``, ``variance``, ``stddev`` and ``mode`` are
    the base's moved and stretched the same way; ``sample`` and ``rsample`` draw from the base and
    map the draws.
    """

    def __init__(self, base: Distribution, shift: Tensor, scale: Tensor) -> None:
        affine = AffineTransform(shift, scale, event_dim=len(base.event_shape))
        super().__init__(base, [affine], validate_args=False)
        self.shift, self.scale = shift, scale

    @property
    def mean(self) -> Tensor:
        return self.shift + self.scale * self.base_dist.mean

    @property
    def mode(self) -> Tensor:
        return self.shift + self.scale * self.base_dist.mode

    @property
    def variance(self) -> Tensor:
        return self.scale**2 * self.base_dist.variance

    @property
    def stddev(self) -> Tensor:
        return self.scale * self.base_dist.stddev

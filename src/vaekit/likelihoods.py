"""Observation models p(x|z).

A likelihood turns the decoder's raw output into a ``torch.distributions`` object whose batch shape
is the leading (sample, batch) shape and whose event shape is the data shape, so ``log_prob(x)``
sums over all data dimensions and returns nats per example.

The decoder emits ``n_params`` values per data dimension; they arrive here as a tensor of shape
``(..., n_params, *data_shape)``.

Variances are bounded softly: a raw log-variance ``r`` becomes ``soft_clamp(r, lo, hi)``, which
equals ``r`` well inside ``[lo, hi]``, never leaves it, and keeps a non-zero gradient everywhere.
This stops a Gaussian decoder from shrinking its variance towards zero on near-constant pixels,
the usual way a Gaussian VAE's training blows up.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(
    x: Tensor, mean: Tensor, logvar: Tensor, reduce: Callable[[Tensor], Tensor]
) -> Tensor:
    """``reduce`` of log N(x; mean, exp(logvar)) elementwise, in closed form."""
    return -reduce(0.5 * ((x - mean) ** 2 * torch.exp(-logvar) + logvar) + HALF_LOG_2PI)


def soft_clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """Smoothly squash ``x`` into ``(lo, hi)``; approximately the identity away from the ends.

    ``lo + softplus(x - lo) - softplus(x - hi)``, which is increasing and bounded by ``lo`` and
    ``hi``; below the midpoint it is evaluated in that form, above it in the equal form
    ``hi - softplus(hi - x) + softplus(lo - x)``, so no large terms cancel.
    """
    below = lo + (F.softplus(x - lo) - F.softplus(x - hi))
    above = hi - (F.softplus(hi - x) - F.softplus(lo - x))
    return torch.where(x < 0.5 * (lo + hi), below, above)


class Likelihood(nn.Module):
    """Base class: maps decoder output of shape ``(..., n_params, *data_shape)`` to p(x|z)."""

    n_params: int = 1
    #: Support of the data: "unit" (values in [0, 1]) or "real".
    support: str = "real"

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)

    def forward(self, params: Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) in nats, summed over the data dims: ``self(params).log_prob(x)``.

        Subclasses give it in closed form, with no distribution object built (fewer kernels in a
        training step); the value agrees with the distribution's to float rounding.
        """
        return self(params).log_prob(x)

    def _sum_data(self, t: Tensor) -> Tensor:
        return t.sum(dim=tuple(range(-len(self.data_shape), 0)))

    def _split(self, params: Tensor) -> tuple[Tensor, ...]:
        return params.unbind(dim=-(len(self.data_shape) + 1))

    def _event(self, base: Distribution) -> Distribution:
        return Independent(base, len(self.data_shape), validate_args=False)


class BernoulliLikelihood(Likelihood):
    """Bernoulli with logits from the decoder. Accepts x in [0, 1] (the cross-entropy form)."""

    n_params = 1
    support = "unit"

    def forward(self, params: Tensor) -> Distribution:
        (logits,) = self._split(params)
        return self._event(Bernoulli(logits=logits, validate_args=False))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        (logits,) = self._split(params)
        bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return -self._sum_data(bce)


class GaussianLikelihood(Likelihood):
    """Gaussian with mean f(z) and log-variance g(z), both from the decoder (the AEVB paper's form).

    The log-variance is soft-clamped to ``[min_logvar, max_logvar]``.
    """

    n_params = 2

    def __init__(
        self, data_shape: tuple[int, ...], min_logvar: float = -8.0, max_logvar: float = 4.0
    ) -> None:
        super().__init__(data_shape)
        self.min_logvar, self.max_logvar = float(min_logvar), float(max_logvar)

    def forward(self, params: Tensor) -> Distribution:
        mean, raw_logvar = self._split(params)
        logvar = soft_clamp(raw_logvar, self.min_logvar, self.max_logvar)
        return self._event(Normal(mean, torch.exp(0.5 * logvar), validate_args=False))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        mean, raw_logvar = self._split(params)
        logvar = soft_clamp(raw_logvar, self.min_logvar, self.max_logvar)
        return gaussian_log_prob(x, mean, logvar, self._sum_data)


class GaussianPerDimLikelihood(GaussianLikelihood):
    """Gaussian with mean f(z) and one learned log-variance per data dimension (not per z)."""

    n_params = 1

    def __init__(
        self, data_shape: tuple[int, ...], min_logvar: float = -8.0, max_logvar: float = 4.0
    ) -> None:
        super().__init__(data_shape, min_logvar, max_logvar)
        self.raw_logvar = nn.Parameter(torch.zeros(self.data_shape))

    def forward(self, params: Tensor) -> Distribution:
        (mean,) = self._split(params)
        logvar = soft_clamp(self.raw_logvar, self.min_logvar, self.max_logvar)
        return self._event(
            Normal(mean, torch.exp(0.5 * logvar).expand_as(mean), validate_args=False)
        )

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        (mean,) = self._split(params)
        logvar = soft_clamp(self.raw_logvar, self.min_logvar, self.max_logvar)
        return gaussian_log_prob(x, mean, logvar, self._sum_data)


class GaussianSharedLikelihood(GaussianLikelihood):
    """Gaussian with mean f(z) and a single learned log-variance shared by every dimension."""

    n_params = 1

    def __init__(
        self, data_shape: tuple[int, ...], min_logvar: float = -8.0, max_logvar: float = 4.0
    ) -> None:
        super().__init__(data_shape, min_logvar, max_logvar)
        self.raw_logvar = nn.Parameter(torch.zeros(()))

    def forward(self, params: Tensor) -> Distribution:
        (mean,) = self._split(params)
        logvar = soft_clamp(self.raw_logvar, self.min_logvar, self.max_logvar)
        return self._event(
            Normal(mean, torch.exp(0.5 * logvar).expand_as(mean), validate_args=False)
        )

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        (mean,) = self._split(params)
        logvar = soft_clamp(self.raw_logvar, self.min_logvar, self.max_logvar)
        return gaussian_log_prob(x, mean, logvar, self._sum_data)


class GaussianFixedLikelihood(Likelihood):
    """Gaussian with mean f(z) and a fixed standard deviation ``std`` (in data units)."""

    n_params = 1

    def __init__(self, data_shape: tuple[int, ...], std: float = 0.1) -> None:
        super().__init__(data_shape)
        if not std > 0 or not math.isfinite(std):
            raise ValueError(f"decoder_std must be a positive number, got {std!r}")
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)

    def forward(self, params: Tensor) -> Distribution:
        (mean,) = self._split(params)
        return self._event(Normal(mean, self.std.expand_as(mean), validate_args=False))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        (mean,) = self._split(params)
        nll = 0.5 * ((x - mean) / self.std) ** 2 + self.std.log() + HALF_LOG_2PI
        return -self._sum_data(nll)


#: Name in a config -> likelihood class.
LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "gaussian_per_dim": GaussianPerDimLikelihood,
    "gaussian_shared": GaussianSharedLikelihood,
    "gaussian_fixed": GaussianFixedLikelihood,
}

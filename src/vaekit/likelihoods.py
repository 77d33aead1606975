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
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from .distributions import HALF_LOG_2PI, gaussian_log_prob, soft_clamp
from .errors import ConfigError, DataError


class Likelihood(nn.Module):
    """Base class: maps decoder output of shape ``(..., n_params, *data_shape)`` to p(x|z)."""

    n_params: int = 1
    #: Support of the data: "unit" (values in [0, 1]) or "real".
    support: str = "real"

    #: Number of values the data takes per dimension when it is discrete (256 for 8-bit data
    #: scaled to k/255); None for continuous data or data that need not lie on a grid.
    levels: int | None = None

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)

    @classmethod
    def from_config(cls, config: Any) -> Likelihood:
        """Build from a model config (a ``VAEConfig``): the fields this likelihood reads."""
        return cls(config.data_shape)

    def forward(self, params: Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) in nats, summed over the data dims: ``self(params).log_prob(x)``.

        Subclasses give it in closed form, with no distribution object built (fewer kernels in a
        training step); the value agrees with the distribution's to float rounding.
        """
        return self(params).log_prob(x)

    def start_from_data(self, x: Tensor) -> None:
        """Before a new run's first step, set parameters of the likelihood's own (not the
        decoder's) that have never been trained from the training data ``x`` (N, *data_shape),
        as the likelihood sees it. Here: none."""

    def _sum_data(self, t: Tensor) -> Tensor:
        return t.sum(dim=tuple(range(-len(self.data_shape), 0)))

    def _split(self, params: Tensor, x: Tensor | None = None) -> tuple[Tensor, ...]:
        """The ``n_params`` tensors (..., *data_shape) in ``params``, after :meth:`_check`."""
        self._check(params, x)
        return params.unbind(dim=-(len(self.data_shape) + 1))

    def _check(self, params: Tensor, x: Tensor | None = None) -> None:
        """A :class:`DataError` unless ``params`` ends in (n_params, *data_shape) and ``x`` (if
        given) in data_shape; shapes only, so nothing is read back from a device."""
        want = (self.n_params, *self.data_shape)
        name = type(self).__name__
        if tuple(params.shape[-len(want) :]) != want or params.dim() < len(want):
            raise DataError(
                f"{name} takes decoder output of shape (..., {', '.join(map(str, want))}): "
                f"{self.n_params} values per data dim of {self.data_shape}; got "
                f"{tuple(params.shape)}"
            )
        nd = len(self.data_shape)
        if x is not None and (x.dim() < nd or tuple(x.shape[x.dim() - nd :]) != self.data_shape):
            raise DataError(
                f"{name} takes x of shape (..., {', '.join(map(str, self.data_shape))}), "
                f"got {tuple(x.shape)}"
            )

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
        (logits,) = self._split(params, x)
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

    @classmethod
    def from_config(cls, config: Any) -> Likelihood:
        return cls(config.data_shape, config.decoder_min_logvar, config.decoder_max_logvar)

    def forward(self, params: Tensor) -> Distribution:
        mean, raw_logvar = self._split(params)
        logvar = soft_clamp(raw_logvar, self.min_logvar, self.max_logvar)
        return self._event(Normal(mean, torch.exp(0.5 * logvar), validate_args=False))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        mean, raw_logvar = self._split(params, x)
        logvar = soft_clamp(raw_logvar, self.min_logvar, self.max_logvar)
        return gaussian_log_prob(x, mean, logvar, self._sum_data)


def unclamp(y: Tensor, lo: float, hi: float) -> Tensor:
    """The raw value r with ``soft_clamp(r, lo, hi) == y`` for y strictly inside (lo, hi):
    r = lo + log(expm1(y - lo)) - log(-expm1(y - hi)) (soft_clamp solved for r)."""
    return lo + torch.log(torch.expm1(y - lo)) - torch.log(-torch.expm1(y - hi))


class GaussianPerDimLikelihood(GaussianLikelihood):
    """Gaussian with mean f(z) and one learned log-variance per data dimension (not per z)."""

    n_params = 1

    def __init__(
        self, data_shape: tuple[int, ...], min_logvar: float = -8.0, max_logvar: float = 4.0
    ) -> None:
        super().__init__(data_shape, min_logvar, max_logvar)
        self.raw_logvar = nn.Parameter(torch.zeros(self._logvar_shape()))

    def _logvar_shape(self) -> tuple[int, ...]:
        """Shape of the learned log-variance: ``data_shape`` here, ``()`` when shared."""
        return self.data_shape

    @torch.no_grad()
    def start_from_data(self, x: Tensor) -> None:
        """A log-variance never trained (all zero: variance 1, the whole range of data in
        [0, 1]) starts at the data's own: per dimension, the variance of ``x`` (N, *data_shape)
        over the examples (shared: their mean), kept 0.1 inside the bounds. That is the fit of a
        decoder whose mean is the data's mean, where training starts. Adam moves a log-variance
        by about the learning rate a step, so from 0 it needs thousands of steps to get there
        (after 40 steps on 64x64 photo patches it was -0.06: 9.3 bits/dim, worse than uniform)."""
        if x.shape[0] < 2 or bool(self.raw_logvar.ne(0).any()):
            return
        var = x.var(dim=0).double()
        if not self._logvar_shape():
            var = var.mean()
        lo, hi = self.min_logvar + 0.1, self.max_logvar - 0.1
        logvar = var.clamp_min(math.exp(lo)).log().clamp(lo, hi)
        self.raw_logvar.copy_(unclamp(logvar, self.min_logvar, self.max_logvar))

    def forward(self, params: Tensor) -> Distribution:
        (mean,) = self._split(params)
        logvar = soft_clamp(self.raw_logvar, self.min_logvar, self.max_logvar)
        return self._event(
            Normal(mean, torch.exp(0.5 * logvar).expand_as(mean), validate_args=False)
        )

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        (mean,) = self._split(params, x)
        logvar = soft_clamp(self.raw_logvar, self.min_logvar, self.max_logvar)
        return gaussian_log_prob(x, mean, logvar, self._sum_data)


class GaussianSharedLikelihood(GaussianPerDimLikelihood):
    """Gaussian with mean f(z) and a single learned log-variance shared by every dimension."""

    def _logvar_shape(self) -> tuple[int, ...]:
        return ()


class GaussianFixedLikelihood(Likelihood):
    """Gaussian with mean f(z) and a fixed standard deviation ``std`` (in data units)."""

    n_params = 1

    def __init__(self, data_shape: tuple[int, ...], std: float = 0.1) -> None:
        super().__init__(data_shape)
        if not std > 0 or not math.isfinite(std):
            raise ConfigError(f"decoder_std must be a positive number, got {std!r}")
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)

    @classmethod
    def from_config(cls, config: Any) -> Likelihood:
        return cls(config.data_shape, config.decoder_std)

    def forward(self, params: Tensor) -> Distribution:
        (mean,) = self._split(params)
        return self._event(Normal(mean, self.std.expand_as(mean), validate_args=False))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        (mean,) = self._split(params, x)
        nll = 0.5 * ((x - mean) / self.std) ** 2 + self.std.log() + HALF_LOG_2PI
        return -self._sum_data(nll)


#: Soft bounds on a logistic component's log-scale, in data units ([0, 1] spans 255 bins).
LOGISTIC_MIN_LOG_SCALE, LOGISTIC_MAX_LOG_SCALE = -9.0, 2.0


def discretized_logistic_log_prob(
    x: Tensor, mean: Tensor, log_scale: Tensor, levels: int = 256
) -> Tensor:
    """log P(x) elementwise for a logistic(mean, exp(log_scale)) rounded to the grid k/(levels-1).

    ``x`` holds values k/(levels-1) in [0, 1]; bin k is [x - h, x + h] with h = 1/(2 (levels-1)),
    except that bin 0 reaches down to -inf and the top bin up to +inf (PixelCNN++), so the
    ``levels`` probabilities sum to 1. Interior bins use the identity
    sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a)), which keeps full precision
    in the tails and for narrow components. Shapes broadcast; result in nats.
    """
    half = 0.5 / (levels - 1)
    inv_scale = torch.exp(-log_scale)
    plus = inv_scale * (x - mean + half)  # standardised upper edge of x's bin
    minus = inv_scale * (x - mean - half)  # standardised lower edge
    log_cdf_plus = -F.softplus(-plus)  # log sigmoid(plus): the whole of bin 0
    log_sf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): the whole of the top bin
    # log(sigmoid(plus) - sigmoid(minus)); plus - minus = inv_scale / (levels - 1) > 0.
    log_delta = log_cdf_plus + log_sf_minus + torch.log(-torch.expm1(-2 * half * inv_scale))
    return torch.where(x < half, log_cdf_plus, torch.where(x > 1 - half, log_sf_minus, log_delta))


class DiscretizedLogisticMixture(Distribution):
    """A mixture of M logistics, each rounded to the grid {0, 1/(L-1), ..., 1} (L = ``levels``).

    Parameters have shape (..., M): ``logits`` of the mixture weights, component ``means`` and
    ``log_scales`` in data units. Batch shape (...); each element is one data dimension. Sampling
    returns values on the grid; ``mean`` is the exact mean of the discrete distribution.
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = False

    def __init__(
        self, logits: Tensor, means: Tensor, log_scales: Tensor, levels: int = 256
    ) -> None:
        self.logits, self.means, self.log_scales = logits, means, log_scales
        self.levels = int(levels)
        super().__init__(batch_shape=logits.shape[:-1], validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        """log P(x) in nats, elementwise, for ``value`` on the grid; shape broadcast with batch."""
        lp = discretized_logistic_log_prob(
            value.unsqueeze(-1), self.means, self.log_scales, self.levels
        )  # (..., M)
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + lp, dim=-1)

    @property
    def mean(self) -> Tensor:
        """E[x] = (1/(L-1)) sum_{j=1}^{L-1} P(x >= j/(L-1)), summed over components."""
        step = 1.0 / (self.levels - 1)
        inv_scale = torch.exp(-self.log_scales)
        survival = torch.zeros_like(self.means)
        for j in range(1, self.levels):
            survival += torch.sigmoid(-(j * step - 0.5 * step - self.means) * inv_scale)
        weights = torch.softmax(self.logits, -1)
        return (weights * survival).sum(-1) * step

    @property
    def variance(self) -> Tensor:  # pragma: no cover - not used by vaekit
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Draws on the grid: a component, then a logistic draw rounded to the nearest level."""
        shape = torch.Size(sample_shape) + self.logits.shape
        gumbel = -torch.log(-torch.log(torch.rand(shape, device=self.logits.device).clamp(1e-20)))
        m = (self.logits + gumbel).argmax(-1, keepdim=True)  # (..., 1) chosen component
        mean = self.means.expand(shape).gather(-1, m).squeeze(-1)
        log_scale = self.log_scales.expand(shape).gather(-1, m).squeeze(-1)
        u = torch.rand(mean.shape, device=mean.device).clamp(1e-6, 1 - 1e-6)
        x = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
        top = self.levels - 1
        return torch.clamp(torch.round(x * top), 0, top) / top


class DiscretizedLogisticLikelihood(Likelihood):
    """Discretized logistic mixture for 8-bit data scaled to k/255 (Salimans et al. 2017).

    Each data dimension gets its own mixture of ``components`` logistics, each rounded to the 256
    levels, with bin 0 and bin 255 taking the tails; log p(x|z) is a log-probability (not a
    density), so bits/dim follow directly. The decoder emits 3 values per component and
    dimension: mixture logits, means and raw log-scales (soft-clamped to
    [LOGISTIC_MIN_LOG_SCALE, LOGISTIC_MAX_LOG_SCALE]).
    """

    n_params = 3
    support = "unit"
    levels = 256

    def __init__(self, data_shape: tuple[int, ...], components: int = 1) -> None:
        super().__init__(data_shape)
        if components < 1:
            raise ConfigError(f"components must be a positive integer, got {components}")
        self.components = int(components)
        self.n_params = 3 * self.components

    @classmethod
    def from_config(cls, config: Any) -> Likelihood:
        return cls(config.data_shape, config.likelihood_components)

    def _unpack(self, params: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, means, log_scales), each (..., *data_shape, M)."""
        self._check(params, x)
        M, nd = self.components, len(self.data_shape)
        lead = params.shape[: params.dim() - nd - 1]
        p = params.reshape(*lead, 3, M, *self.data_shape).movedim(len(lead) + 1, -1)
        logits, means, raw = p.unbind(len(lead))  # each (..., *data_shape, M)
        log_scales = soft_clamp(raw, LOGISTIC_MIN_LOG_SCALE, LOGISTIC_MAX_LOG_SCALE)
        return logits, means, log_scales

    def forward(self, params: Tensor) -> Distribution:
        logits, means, log_scales = self._unpack(params)
        return self._event(DiscretizedLogisticMixture(logits, means, log_scales, self.levels))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        logits, means, log_scales = self._unpack(params, x)
        lp = discretized_logistic_log_prob(x.unsqueeze(-1), means, log_scales, self.levels)
        if self.components == 1:
            return self._sum_data(lp.squeeze(-1))
        return self._sum_data(torch.logsumexp(torch.log_softmax(logits, -1) + lp, dim=-1))


#: Name in a config -> likelihood class.
LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "gaussian_per_dim": GaussianPerDimLikelihood,
    "gaussian_shared": GaussianSharedLikelihood,
    "gaussian_fixed": GaussianFixedLikelihood,
    "discretized_logistic": DiscretizedLogisticLikelihood,
}

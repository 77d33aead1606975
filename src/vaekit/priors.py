"""Priors p(z). Each is a module whose ``forward()`` returns a distribution with event shape
``(latent_dim,)``; parameters (if any) are learned jointly with the rest of the model."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    MixtureSameFamily,
    kl_divergence,
)

from .distributions import HALF_LOG_2PI, diag_normal
from .errors import ConfigError, DataError

#: Floats of the (rows, K, D) per-coordinate array that a mixture prior's log-density holds at
#: once when no gradient is recorded (evaluation): larger inputs go through in chunks of rows.
MIXTURE_CHUNK_FLOATS = 2**21


class Prior(nn.Module):
    """Base class of priors over a ``latent_dim``-vector."""

    #: True when ``kl_divergence(q(z|x), p(z))`` has a closed form for a diagonal Gaussian q.
    analytic_kl: bool = False
    #: True when p(z) = prod_d p(z_d) (the dimension-wise KL of beta-TCVAE needs it).
    factorised: bool = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)

    @classmethod
    def from_config(cls, config: Any) -> Prior:
        """Build from a model config (a ``VAEConfig``): the fields this prior reads."""
        return cls(config.latent_dim)

    def forward(self) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) summed over the latent dim, (...,): ``self().log_prob(z)``, in closed form
        where a subclass gives one (no distribution object built)."""
        return self().log_prob(z)

    def sample(self, n: int) -> Tensor:
        """``n`` draws z ~ p(z), (n, latent_dim), without gradients; torch's global RNG."""
        with torch.no_grad():
            return self().sample((n,))

    def kl(self, loc: Tensor, logvar: Tensor) -> Tensor:
        """KL(N(loc, diag(exp(logvar))) || p(z)) per example, (B,); needs ``analytic_kl``."""
        if not self.analytic_kl:
            raise ConfigError(
                f"{type(self).__name__} has no closed-form KL (analytic_kl is False); estimate "
                "it from samples z ~ q(z|x): log q(z|x) - prior.log_prob(z)"
            )
        qz_x = diag_normal(loc, logvar)
        return kl_divergence(qz_x, self())

    def marginal_log_prob(self, z: Tensor) -> Tensor:
        """log p(z_d) of each coordinate under the prior's one-dimensional marginals, (..., D).

        For a factorised prior these sum to ``log_prob(z)``; for a mixture they do not.
        """
        return self().base_dist.log_prob(z)

    def bind(self, encode: Callable[[Tensor], tuple[Tensor, Tensor]]) -> None:
        """Give the prior the model's encoder, x -> (loc, logvar) of q(z|x); used by VampPrior."""

    def _check(self, z: Tensor) -> None:
        """A :class:`DataError` unless ``z`` is (..., latent_dim); its shape only (no sync)."""
        if z.dim() == 0 or z.shape[-1] != self.latent_dim:
            raise DataError(
                f"{type(self).__name__} is over {self.latent_dim} latent dims; got z of shape "
                f"{tuple(z.shape)}: give (..., {self.latent_dim})"
            )


class StandardNormalPrior(Prior):
    """p(z) = N(0, I)."""

    analytic_kl = True
    factorised = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("loc", torch.zeros(self.latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(self.latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return diag_normal(self.loc, scale=self.scale)

    def log_prob(self, z: Tensor) -> Tensor:
        self._check(z)
        return -(0.5 * z**2 + HALF_LOG_2PI).sum(-1)

    def kl(self, loc: Tensor, logvar: Tensor) -> Tensor:
        self._check(loc)
        return 0.5 * (torch.exp(logvar) + loc**2 - 1 - logvar).sum(-1)


class LearnedGaussianPrior(Prior):
    """p(z) = N(loc, diag(exp(2 log_scale))) with loc and log_scale learned (initialised to
    N(0, I))."""

    analytic_kl = True
    factorised = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(self.latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(self.latent_dim))

    def forward(self) -> Distribution:
        return diag_normal(self.loc, scale=self.log_scale.exp())

    def log_prob(self, z: Tensor) -> Tensor:
        self._check(z)
        u = (z - self.loc) * torch.exp(-self.log_scale)
        return -(0.5 * u**2 + self.log_scale + HALF_LOG_2PI).sum(-1)

    def kl(self, loc: Tensor, logvar: Tensor) -> Tensor:
        self._check(loc)
        log_ratio = logvar - 2 * self.log_scale  # log var_q - log var_p
        t = (loc - self.loc) ** 2 * torch.exp(-2 * self.log_scale)
        return 0.5 * (torch.exp(log_ratio) + t - 1 - log_ratio).sum(-1)


def _diag_gaussian_log_prob(z: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    """log N(z; loc_k, diag(exp(2 log_scale_k))) per coordinate, (..., K, D), for z (..., D)
    against K components given as (K, D) tensors."""
    u = (z.unsqueeze(-2) - loc) * torch.exp(-log_scale)  # (..., K, D)
    return -(0.5 * u**2 + log_scale + HALF_LOG_2PI)


def _by_rows(f: Callable[[Tensor], Tensor], z: Tensor, floats_per_row: int) -> Tensor:
    """``f(z)`` for z (..., D) and an ``f`` that treats each row z[i] on its own; when no
    gradient is recorded, computed over chunks of rows that each hold at most
    ``MIXTURE_CHUNK_FLOATS`` of f's (rows, K, D) intermediates (the same values, row by row)."""
    rows = max(1, MIXTURE_CHUNK_FLOATS // max(1, floats_per_row))
    flat = z.reshape(-1, z.shape[-1])
    if torch.is_grad_enabled() or flat.shape[0] <= rows:
        return f(z)
    out = torch.cat([f(chunk) for chunk in flat.split(rows)])
    return out.reshape(*z.shape[:-1], *out.shape[1:])


class _GaussianMixturePrior(Prior):
    """A mixture of K diagonal Gaussians; subclasses say where the components come from."""

    analytic_kl = False

    def components(self) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover - abstract
        """(log_weights (K,), loc (K, D), log_scale (K, D)); log_weights are normalised."""
        raise NotImplementedError

    def forward(self) -> Distribution:
        log_weights, loc, log_scale = self.components()
        return MixtureSameFamily(
            Categorical(logits=log_weights, validate_args=False),
            diag_normal(loc, scale=log_scale.exp()),
            validate_args=False,
        )

    def log_prob(self, z: Tensor) -> Tensor:
        self._check(z)
        log_weights, loc, log_scale = self.components()

        def log_prob(z: Tensor) -> Tensor:
            per_component = _diag_gaussian_log_prob(z, loc, log_scale).sum(-1)  # (..., K)
            return torch.logsumexp(log_weights + per_component, dim=-1)

        return _by_rows(log_prob, z, loc.numel())

    def sample(self, n: int) -> Tensor:
        """``n`` draws: a component k ~ Categorical(weights) each, then z ~ N(loc_k, scale_k^2);
        memory O(n D) (torch's MixtureSameFamily.sample draws from all K components first)."""
        with torch.no_grad():
            log_weights, loc, log_scale = self.components()
            k = torch.multinomial(log_weights.exp(), n, replacement=True)  # (n,)
            return loc[k] + log_scale[k].exp() * torch.randn_like(loc[k])

    def marginal_log_prob(self, z: Tensor) -> Tensor:
        log_weights, loc, log_scale = self.components()

        def marginal_log_prob(z: Tensor) -> Tensor:
            per_coordinate = _diag_gaussian_log_prob(z, loc, log_scale)  # (..., K, D)
            return torch.logsumexp(log_weights[:, None] + per_coordinate, dim=-2)

        return _by_rows(marginal_log_prob, z, loc.numel())


class MixturePrior(_GaussianMixturePrior):
    """p(z) = sum_k pi_k N(mu_k, diag(exp(2 log_scale_k))) with weights, means and scales learned.

    The means start as draws from N(0, I) (torch's global RNG), so the components can separate;
    the scales start at 1 and the weights equal. With one component it is the learned Gaussian.
    """

    def __init__(self, latent_dim: int, components: int = 10) -> None:
        super().__init__(latent_dim)
        if components < 1:
            raise ConfigError(f"components must be a positive integer, got {components}")
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, self.latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(components, self.latent_dim))

    @classmethod
    def from_config(cls, config: Any) -> Prior:
        return cls(config.latent_dim, config.prior_components)

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        return torch.log_softmax(self.logits, -1), self.loc, self.log_scale


class VampPrior(_GaussianMixturePrior):
    """p(z) = (1/K) sum_k q(z | u_k): the encoder's posteriors at K learned pseudo-inputs u_k
    (Tomczak & Welling 2018). The pseudo-inputs, of the data's shape, start uniform on [0, 1).

    The prior uses the model's encoder, given by :meth:`bind`; it has no parameters of its own
    apart from the pseudo-inputs, so it changes as the encoder learns.
    """

    def __init__(self, latent_dim: int, components: int, data_shape: tuple[int, ...]) -> None:
        super().__init__(latent_dim)
        if components < 1:
            raise ConfigError(f"components must be a positive integer, got {components}")
        self.pseudo_inputs = nn.Parameter(torch.rand(components, *data_shape))
        self._encode: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None

    @classmethod
    def from_config(cls, config: Any) -> Prior:
        return cls(config.latent_dim, config.prior_components, config.data_shape)

    def bind(self, encode: Callable[[Tensor], tuple[Tensor, Tensor]]) -> None:
        self._encode = encode

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._encode is None:
            raise ConfigError(
                "VampPrior needs the model's encoder: call bind(encode) first, with encode "
                "x -> (loc, logvar) of q(z|x)"
            )
        loc, logvar = self._encode(self.pseudo_inputs)  # (K, D) each
        k = self.pseudo_inputs.shape[0]
        log_weights = torch.full((k,), -math.log(k), device=loc.device, dtype=loc.dtype)
        return log_weights, loc, 0.5 * logvar


#: Name in a config -> prior class.
PRIORS: dict[str, type[Prior]] = {
    "standard_normal": StandardNormalPrior,
    "learned_gaussian": LearnedGaussianPrior,
    "mog": MixturePrior,
    "vamp": VampPrior,
}

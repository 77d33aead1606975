"""A VAE with two stochastic layers (Burda, Grosse & Salakhutdinov 2016, section 5).

Generative model: p(z2) = N(0, I), p(z1|z2) a diagonal Gaussian from an MLP, p(x|z1) one of
vaekit's likelihoods. Inference model: q(z1|x) and q(z2|z1), diagonal Gaussians from MLPs. The
IWAE paper's MNIST architecture 784-(200-200)-100-(100-100)-50 is the default: two deterministic
tanh layers of 200 units between x and z1 (100 dims), two of 100 between z1 and z2 (50 dims);
the generative networks mirror the inference ones.

``forward(x, k)`` returns the same :class:`vaekit.objectives.Terms` as the one-layer VAE, with
log p(z) = log p(z1|z2) + log p(z2) and log q(z|x) = log q(z1|x) + log q(z2|z1), so the ELBO,
the IWAE bound and the importance-weighted log p(x) apply unchanged. There is no closed-form KL.

The bottom layer is the one the rest of vaekit sees as "the latent": ``latent_dim`` is z1's size,
``encode(x)`` is q(z1|x) (its mean is the embedding), ``decode(z1)`` is p(x|z1). z1 carries
everything x depends on (x is independent of z2 given z1), so encode followed by decode is the
model's reconstruction, and latents written by ``vaekit encode`` decode back with ``vaekit decode``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..config import Constraints, check_count, check_settings, configure, positive_int, sizes
from ..distributions import diag_normal, gaussian_log_prob, gaussian_log_prob_eps, soft_clamp
from ..errors import DataError
from ..estimators import as_input
from ..likelihoods import LIKELIHOODS
from ..nets import MLP
from ..objectives import Terms
from ..priors import StandardNormalPrior
from .base import Capabilities, Model, graph_in_training
from .registry import register_model
from .vae import ENCODER_CONSTRAINTS, LIKELIHOOD_CONSTRAINTS, MLP_CONSTRAINTS

#: The settings an :class:`HVAEConfig` shares with a :class:`VAEConfig`, checked alike.
HVAE_CONSTRAINTS: Constraints = {
    **MLP_CONSTRAINTS,
    **LIKELIHOOD_CONSTRAINTS,
    **ENCODER_CONSTRAINTS,
    "latent_dim2": positive_int,
    "hidden2": sizes,
}


@dataclass(frozen=True)
class HVAEConfig:
    """Everything needed to rebuild a two-layer model; saved as config.json's ``model`` table
    (with ``kind = "hvae"``).

    data_shape: shape of one example, e.g. (784,).
    hidden: deterministic layers between x and z1 (q(z1|x); p(x|z1) mirrors them).
    latent_dim: size of z1, the bottom stochastic layer.
    hidden2: deterministic layers between z1 and z2 (q(z2|z1); p(z1|z2) mirrors them).
    latent_dim2: size of z2, the top stochastic layer, whose prior is N(0, I).
    activation, likelihood, likelihood_components, decoder_*: as in :class:`vaekit.VAEConfig`.
    encoder_min_logvar, encoder_max_logvar: soft bounds on the log-variance of every Gaussian
    layer of latents: q(z1|x), q(z2|z1) and p(z1|z2).
    """

    data_shape: tuple[int, ...] = (784,)
    hidden: tuple[int, ...] = (200, 200)
    latent_dim: int = 100
    hidden2: tuple[int, ...] = (100, 100)
    latent_dim2: int = 50
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    likelihood_components: int = 1
    decoder_min_logvar: float = -8.0
    decoder_max_logvar: float = 4.0
    decoder_std: float = 0.1
    encoder_min_logvar: float = -12.0
    encoder_max_logvar: float = 6.0

    def __post_init__(self) -> None:
        check_settings(self, HVAE_CONSTRAINTS)

    @property
    def data_dim(self) -> int:
        """Number of scalars in one example."""
        return math.prod(self.data_shape)


@register_model
class HVAE(Model):
    """Two stochastic layers: x -> z1 -> z2 for inference, z2 -> z1 -> x for generation.

    Build it from an :class:`HVAEConfig` or from its fields as keyword arguments::

        model = HVAE(data_shape=(784,))  # the IWAE paper's 784-(200-200)-100-(100-100)-50

    Inputs ``x`` have shape ``(B, *data_shape)``; z1 has shape ``(..., latent_dim)`` and z2
    ``(..., latent_dim2)``. Training noise ``eps`` is ``(k, B, noise_dim)`` with
    ``noise_dim = latent_dim + latent_dim2`` (z1's noise first).
    """

    kind = "hvae"
    config_class: type = HVAEConfig

    def __init__(self, config: HVAEConfig | dict[str, Any] | None = None, /, **fields: Any) -> None:
        super().__init__()
        self.config: HVAEConfig = configure(HVAEConfig, config, fields)
        c = self.config
        self.likelihood = LIKELIHOODS[c.likelihood].from_config(c)
        self.prior = StandardNormalPrior(c.latent_dim2)  # p(z2)
        self.encoder = MLP(c.data_dim, c.hidden, 2 * c.latent_dim, c.activation)  # q(z1|x)
        self.encoder2 = MLP(c.latent_dim, c.hidden2, 2 * c.latent_dim2, c.activation)  # q(z2|z1)
        self.decoder2 = MLP(  # p(z1|z2)
            c.latent_dim2, tuple(reversed(c.hidden2)), 2 * c.latent_dim, c.activation
        )
        self.decoder = MLP(  # p(x|z1)
            c.latent_dim,
            tuple(reversed(c.hidden)),
            self.likelihood.n_params * c.data_dim,
            c.activation,
        )

    @property
    def noise_dim(self) -> int:
        """Standard-normal numbers one sample of (z1, z2) takes: latent_dim + latent_dim2."""
        return self.config.latent_dim + self.config.latent_dim2

    # -- the model ---------------------------------------------------------------------------

    def _gaussian(self, net: nn.Module, h: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and soft-clamped log-variance from ``net(h)``, each (..., out / 2)."""
        loc, raw_logvar = net(h).chunk(2, dim=-1)
        c = self.config
        return loc, soft_clamp(raw_logvar, c.encoder_min_logvar, c.encoder_max_logvar)

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.config.data_shape:
            raise DataError(
                f"input has example shape {tuple(x.shape[1:])} but the model expects "
                f"{self.config.data_shape}"
            )

    def pz(self) -> Distribution:
        """The top prior p(z2) = N(0, I), event shape ``(latent_dim2,)``."""
        return self.prior()

    @graph_in_training
    def encode(self, x: Tensor, condition: Any = None) -> Distribution:
        """q(z1|x): a diagonal Gaussian with batch shape (B,) and event shape (latent_dim,).

        Its ``.mean`` is the embedding of ``x``. The model is not conditional: ``condition``
        must be None.
        """
        x = as_input(x)
        self._check(x)
        self.condition(condition, x.shape[0])
        x = x.reshape(x.shape[0], -1).to(self.device, self._dtype)
        loc, logvar = self._gaussian(self.encoder, x)
        return diag_normal(loc, logvar)

    def encode2(self, z1: Tensor) -> Distribution:
        """q(z2|z1) for z1 (..., latent_dim): batch shape (...), event shape (latent_dim2,)."""
        loc, logvar = self._gaussian(self.encoder2, self._latents(z1))
        return diag_normal(loc, logvar)

    def pz1_z2(self, z2: Tensor) -> Distribution:
        """p(z1|z2) for z2 (..., latent_dim2): batch shape (...), event shape (latent_dim,)."""
        loc, logvar = self._gaussian(
            self.decoder2, self._latents(z2, self.config.latent_dim2, "latent_dim2")
        )
        return diag_normal(loc, logvar)

    @graph_in_training
    def decode(self, z: Tensor, condition: Any = None) -> Distribution:
        """p(x|z1) for z1 of shape (..., latent_dim): batch shape (...), event shape data_shape.
        z1 is read in the model's dtype, on its device. ``condition`` must be None."""
        self.condition(condition, 1)
        return self.likelihood(self._decode_params(self._latents(z)))

    def _decode_params(self, z1: Tensor) -> Tensor:
        params = self.decoder(z1)  # (..., n_params * D)
        return params.reshape(*z1.shape[:-1], self.likelihood.n_params, *self.config.data_shape)

    def forward(
        self,
        x: Tensor,
        k: int = 1,
        generator: torch.Generator | None = None,
        condition: Any = None,
    ) -> Terms:
        """Terms of the bounds for ``x`` (B, *data_shape) with ``k`` samples of (z1, z2) each.

        log p(x|z1), log p(z1|z2) + log p(z2) and log q(z1|x) + log q(z2|z1), each (k, B);
        ``kl`` is None. ``generator`` makes the noise reproducible.
        """
        x = as_input(x)
        self._check(x)
        self.condition(condition, x.shape[0])
        x, k = x.to(self.device), check_count("k", k)
        eps = torch.randn(
            (k, x.shape[0], self.noise_dim), generator=generator, device=x.device, dtype=self._dtype
        )
        return self.terms(x, eps)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(noise_terms=True, closed_form=True, forward_is_terms=True)

    def terms(
        self,
        x: Tensor,
        eps: Tensor,
        autocast: torch.dtype | None = None,
        condition: Any = None,
    ) -> Terms:
        """The terms of :meth:`forward` for given noise ``eps`` (k, B, noise_dim), N(0, I).

        z1 = mu1(x) + sigma1(x) * eps[..., :latent_dim], z2 = mu2(z1) + sigma2(z1) * eps[...,
        latent_dim:]. With ``autocast`` (e.g. torch.bfloat16) the networks run under autocast
        and the log-densities are computed in float32. ``condition`` must be None.
        """
        self.condition(condition, x.shape[0])
        c = self.config
        ac = torch.autocast(
            x.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None
        )
        f32 = (lambda t: t.float()) if autocast is not None else (lambda t: t)
        eps1, eps2 = eps[..., : c.latent_dim], eps[..., c.latent_dim :]
        with ac:
            loc1, logvar1 = self._gaussian(self.encoder, x.reshape(x.shape[0], -1).to(self._dtype))
        loc1, logvar1 = f32(loc1), f32(logvar1)
        z1 = loc1 + torch.exp(0.5 * logvar1) * eps1  # (k, B, latent_dim)
        with ac:
            loc2, logvar2 = self._gaussian(self.encoder2, z1)
        loc2, logvar2 = f32(loc2), f32(logvar2)
        z2 = loc2 + torch.exp(0.5 * logvar2) * eps2  # (k, B, latent_dim2)
        with ac:
            ploc1, plogvar1 = self._gaussian(self.decoder2, z2)
            params = self._decode_params(z1)
        ploc1, plogvar1, params = f32(ploc1), f32(plogvar1), f32(params)
        log_pz1_z2 = gaussian_log_prob(z1, ploc1, plogvar1, lambda t: t.sum(-1))
        return Terms(
            log_px_z=self.likelihood.log_prob(params, x.to(z1.dtype)),
            log_pz=log_pz1_z2 + self.prior.log_prob(z2),
            log_qz_x=gaussian_log_prob_eps(eps1, logvar1) + gaussian_log_prob_eps(eps2, logvar2),
            kl=None,
        )

    # -- conveniences ------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True, condition: Any = None) -> Tensor:
        """``n`` draws from the model, shape (n, *data_shape): z2 ~ p(z2), z1 ~ p(z1|z2), then
        E[x|z1] (``mean=True``, the default) or x ~ p(x|z1). Uses torch's global RNG."""
        self.condition(condition, n)
        px_z = self.decode(self.sample_latents(check_count("n", n)))
        return px_z.mean if mean else px_z.sample()

    @torch.no_grad()
    def sample_latents(self, n: int) -> Tensor:
        """``n`` draws of z1 from its prior, z2 ~ p(z2) then z1 ~ p(z1|z2): (n, latent_dim)."""
        return self.pz1_z2(self.pz().sample((n,))).sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor, condition: Any = None) -> Tensor:
        """E[x|z1] at z1 = the posterior mean of q(z1|x); shape of ``x``."""
        return self.decode(self.encode(x, condition).mean).mean

    @torch.no_grad()
    def latent_stats(
        self, x: Tensor, *, batch_size: int = 1000, seed: int = 0, **_: Any
    ) -> dict[str, Tensor]:
        """Statistics of the bottom layer z1 over a data set ``x`` (N, *data_shape).

        ``kl_per_dim`` (latent_dim,): E[log q(z1_d|x) - log p(z1_d|z2)] in nats, z1 ~ q(z1|x),
        z2 ~ q(z2|z1), one seeded sample per example; z1's own share of the bound's KL term
        (p(z1) has no closed form, so the KL is against p(z1|z2)). ``kl`` (): the whole
        KL(q(z1, z2|x) || p(z1, z2)) estimated from the same samples. ``activity`` (latent_dim,):
        Var_x(E_q[z1_d|x]), active above 0.01 (Burda et al. 2016).
        """
        g = torch.Generator(device=self.device).manual_seed(seed)
        means, kls, totals = [], [], []
        for i in range(0, x.shape[0], batch_size):
            qz1 = self.encode(x[i : i + batch_size].to(self.device))
            base = qz1.base_dist
            eps = torch.randn(base.loc.shape, generator=g, device=self.device, dtype=self._dtype)
            z1 = base.loc + base.scale * eps
            qz2 = self.encode2(z1)
            eps2 = torch.randn(qz2.mean.shape, generator=g, device=self.device, dtype=self._dtype)
            z2 = qz2.base_dist.loc + qz2.base_dist.scale * eps2
            kl = base.log_prob(z1) - self.pz1_z2(z2).base_dist.log_prob(z1)  # (B, latent_dim)
            kls.append(kl.sum(0).cpu())
            totals.append((kl.sum(-1) + qz2.log_prob(z2) - self.pz().log_prob(z2)).sum().cpu())
            means.append(base.loc.cpu())
        return {
            "kl_per_dim": torch.stack(kls).sum(0) / x.shape[0],
            "kl": torch.stack(totals).sum() / x.shape[0],
            "activity": torch.cat(means).var(0, unbiased=False),
        }

"""A VAE with discrete latents: ``n_latents`` categorical variables of ``n_categories`` values each.

z is written as one flat vector of ``n_latents`` one-hot blocks, shape (..., n_latents *
n_categories) (this width is the config's ``latent_dim``); latent l's categories are columns
``l * n_categories`` to ``(l + 1) * n_categories - 1``. q(z|x) is a product of categoricals whose
logits come from an MLP encoder; p(z) is uniform or a learned product of categoricals; p(x|z) is
any of :mod:`vaekit.likelihoods`' families on an MLP decoder of the one-hot vector.

z takes ``n_categories ** n_latents`` values, so where that number is small p(x) is a finite sum,
computed exactly by :func:`log_likelihood_exact`. Training (in training mode, as ``fit`` runs it)
uses the configured ``estimator``:

- ``exact``: the ELBO by enumeration, sum_z q(z|x) [log p(x|z) + log p(z) - log q(z|x)], with the
  KL in closed form; exact value and exact gradient (``samples`` is not used).
- ``gumbel``: the Gumbel-softmax relaxation (Jang et al. 2017; Maddison et al. 2017) at
  temperature ``temperature``, annealed as max(temperature_min, temperature *
  exp(-anneal_rate * step)). With ``straight_through`` (the default) the decoder sees the one-hot
  argmax and the gradient flows through the relaxed sample: the bound's value is that of the
  discrete model, its gradient biased. Without, the decoder sees the relaxed sample itself, the
  bound is the relaxed one (not a bound on the discrete model), and its gradient's bias shrinks
  as the temperature falls while its variance grows.
- ``reinforce``: z drawn from q(z|x) as is, with the score-function gradient and leave-one-out
  baselines (:func:`vaekit.objectives.score_function_term`); unbiased. Use ``samples`` >= 2.
- ``auto`` (the default): ``exact`` where the space has at most ``enumerate_limit`` values, else
  ``gumbel``.

In evaluation mode ``forward`` always returns K draws from q(z|x), the terms that
:func:`vaekit.estimators.log_likelihood` and :func:`vaekit.estimators.elbo` expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, register_kl

from ..config import (
    Constraints,
    check_count,
    check_settings,
    configure,
    int_at_least,
    non_negative_number,
    not_above,
    one_of,
    positive_int,
    positive_number,
    shape,
    sizes,
)
from ..errors import ConfigError, DataError
from ..estimators import as_input, examples, keeps_mode
from ..likelihoods import LIKELIHOODS
from ..nets import ACTIVATIONS, MLP
from ..objectives import Terms, elbo
from .base import Capabilities, Model, graph_in_training
from .registry import register_model
from .vae import LIKELIHOOD_CONSTRAINTS

ESTIMATORS = ("auto", "exact", "gumbel", "reinforce")
CATEGORICAL_PRIORS = ("uniform", "learned")
#: Floats of decoder output one chunk of :func:`log_likelihood_exact` may hold.
EXACT_CHUNK_BUDGET = 2**24


@dataclass(frozen=True)
class CategoricalConfig:
    """Everything needed to rebuild a :class:`CategoricalVAE`; the ``model`` table of config.json.

    data_shape: shape of one example. n_latents: number of categorical latent variables.
    n_categories: values each takes. hidden, activation: the MLPs (the decoder mirrors the
    encoder). likelihood: one of ``vaekit.likelihoods.LIKELIHOODS``. prior: "uniform" or
    "learned" (a learned product of categoricals). estimator: "auto", "exact", "gumbel" or
    "reinforce" (see the module's docstring). temperature, temperature_min, anneal_rate: the
    Gumbel-softmax temperature, its floor, and its decay per training step. straight_through: the
    decoder sees one-hot samples (True) or relaxed ones (False) under "gumbel".
    enumerate_limit: the most values of z the model enumerates (the exact estimator, whose
    memory grows as enumerate_limit * batch_size * data size, and exact log p(x)).
    likelihood_components, decoder_min_logvar, decoder_max_logvar, decoder_std: as in
    :class:`vaekit.VAEConfig`.
    """

    data_shape: tuple[int, ...] = (784,)
    n_latents: int = 20
    n_categories: int = 10
    hidden: tuple[int, ...] = (500,)
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    prior: str = "uniform"
    estimator: str = "auto"
    temperature: float = 1.0
    temperature_min: float = 0.5
    anneal_rate: float = 0.0
    straight_through: bool = True
    enumerate_limit: int = 1024
    likelihood_components: int = 1
    decoder_min_logvar: float = -8.0
    decoder_max_logvar: float = 4.0
    decoder_std: float = 0.1

    def __post_init__(self) -> None:
        check_settings(self, CATEGORICAL_CONSTRAINTS)

    @property
    def data_dim(self) -> int:
        """Number of scalars in one example."""
        return math.prod(self.data_shape)

    @property
    def latent_dim(self) -> int:
        """Width of z as the decoder reads it: n_latents one-hot blocks of n_categories."""
        return self.n_latents * self.n_categories

    @property
    def n_values(self) -> int:
        """Number of values z takes: n_categories ** n_latents (a Python int, never overflows)."""
        return self.n_categories**self.n_latents

    @property
    def enumerable(self) -> bool:
        """True when z takes at most ``enumerate_limit`` values."""
        return self.n_values <= self.enumerate_limit

    @property
    def training_estimator(self) -> str:
        """The estimator training uses, with "auto" resolved."""
        if self.estimator != "auto":
            return self.estimator
        return "exact" if self.enumerable else "gumbel"


def _enumerable(names: tuple[str, ...], values: tuple[Any, ...]) -> None:
    estimator, n_latents, n_categories, limit = values
    if estimator == "exact" and n_categories**n_latents > limit:
        raise ConfigError(
            f"estimator 'exact' enumerates {n_categories}**{n_latents} values of z, "
            f"more than enumerate_limit {limit}; raise enumerate_limit or "
            "choose estimator gumbel or reinforce"
        )


CATEGORICAL_CONSTRAINTS: Constraints = {
    "data_shape": shape,
    "n_latents": positive_int,
    "n_categories": int_at_least(2),
    "likelihood_components": positive_int,
    "enumerate_limit": positive_int,
    "hidden": sizes,
    "activation": one_of(ACTIVATIONS),
    "likelihood": one_of(LIKELIHOODS),
    "prior": one_of(CATEGORICAL_PRIORS),
    "estimator": one_of(ESTIMATORS),
    "temperature": positive_number,
    "temperature_min": positive_number,
    ("temperature_min", "temperature"): not_above,
    "anneal_rate": non_negative_number,
    ("estimator", "n_latents", "n_categories", "enumerate_limit"): _enumerable,
    **LIKELIHOOD_CONSTRAINTS,
}


class Categoricals(Distribution):
    """Independent categoricals written as one flat one-hot vector.

    ``logits`` (..., n_latents, n_categories) give batch shape (...) and event shape
    (n_latents * n_categories,). ``mean`` is the vector of probabilities, ``mode`` the one-hot
    argmax, ``sample`` one-hot draws; ``base_dist`` is the torch ``Categorical`` over each latent
    (batch shape (..., n_latents)), as ``Independent`` has, for per-latent KLs.
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = False

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits - logits.logsumexp(-1, keepdim=True)  # normalised log-probabilities
        self.n_latents, self.n_categories = logits.shape[-2:]
        self.base_dist = Categorical(logits=self.logits, validate_args=False)
        super().__init__(
            batch_shape=logits.shape[:-2],
            event_shape=(self.n_latents * self.n_categories,),
            validate_args=False,
        )

    @property
    def probs(self) -> Tensor:
        """(..., n_latents, n_categories) probabilities."""
        return self.logits.exp()

    @property
    def mean(self) -> Tensor:
        """E[z], the probabilities as a flat vector (..., n_latents * n_categories)."""
        return self.probs.flatten(-2)

    @property
    def mode(self) -> Tensor:
        """The most probable value of each latent, one-hot, (..., n_latents * n_categories)."""
        return one_hot(self.logits.argmax(-1), self.n_categories, self.logits.dtype)

    @property
    def variance(self) -> Tensor:
        p = self.probs
        return (p * (1 - p)).flatten(-2)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """One-hot draws, (*sample_shape, ..., n_latents * n_categories), from torch's RNG."""
        with torch.no_grad():
            index = self.base_dist.sample(torch.Size(sample_shape))
        return one_hot(index, self.n_categories, self.logits.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        """log P(z) summed over the latents, for one-hot ``value`` (..., latent_dim)."""
        return (value * self.logits.flatten(-2)).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.logits).sum((-2, -1))


@register_kl(Categoricals, Categoricals)
def _kl_categoricals(q: Categoricals, p: Categoricals) -> Tensor:
    return (q.probs * (q.logits - p.logits)).sum((-2, -1))


def one_hot(index: Tensor, n_categories: int, dtype: torch.dtype) -> Tensor:
    """Category indices (..., n_latents) as flat one-hot vectors (..., n_latents * n_categories)."""
    return F.one_hot(index, n_categories).to(dtype).flatten(-2)


def enumerate_values(
    n_latents: int, n_categories: int, start: int, stop: int, device: torch.device | None = None
) -> Tensor:
    """Values ``start`` to ``stop - 1`` of z in a fixed order, as indices (stop - start, n_latents).

    Value i has latent l = digit l of i written in base n_categories (the last latent varies
    fastest).
    """
    i = torch.arange(start, stop, device=device)
    powers = n_categories ** torch.arange(n_latents - 1, -1, -1, device=device)
    return (i[:, None] // powers) % n_categories


class CategoricalPrior(nn.Module):
    """p(z): a product of ``n_latents`` categoricals, uniform or with learned logits."""

    def __init__(self, n_latents: int, n_categories: int, learned: bool = False) -> None:
        super().__init__()
        logits = torch.zeros(n_latents, n_categories)
        if learned:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits, persistent=False)

    def forward(self) -> Categoricals:
        return Categoricals(self.logits)

    def log_probs(self) -> Tensor:
        """Normalised log p(z_l = c), (n_latents, n_categories)."""
        return torch.log_softmax(self.logits, -1)


@register_model
class CategoricalVAE(Model):
    """VAE whose latent is ``n_latents`` categorical variables (see the module's docstring).

    Build it from a :class:`CategoricalConfig` or its fields::

        model = CategoricalVAE(data_shape=(64,), n_latents=2, n_categories=10, hidden=(200,))

    Inputs ``x`` have shape (B, *data_shape); latents ``z`` have shape (..., latent_dim) with
    ``latent_dim = n_latents * n_categories``, one one-hot block per latent.
    """

    kind = "categorical"
    config_class: type = CategoricalConfig

    def __init__(
        self, config: CategoricalConfig | dict[str, Any] | None = None, /, **fields: Any
    ) -> None:
        super().__init__()
        self.config: CategoricalConfig = configure(CategoricalConfig, config, fields)
        c = self.config
        self.prior = CategoricalPrior(c.n_latents, c.n_categories, learned=c.prior == "learned")
        self.likelihood = LIKELIHOODS[c.likelihood].from_config(c)
        self.encoder = MLP(c.data_dim, c.hidden, c.latent_dim, c.activation)
        self.decoder = MLP(
            c.latent_dim,
            tuple(reversed(c.hidden)),
            self.likelihood.n_params * c.data_dim,
            c.activation,
        )
        # Training steps taken with the Gumbel-softmax estimator (its temperature's clock);
        # saved with the weights so that a reloaded model goes on at the same temperature.
        self.register_buffer("gumbel_steps", torch.zeros((), dtype=torch.int64))

    # -- the model ---------------------------------------------------------------------------

    def pz(self) -> Categoricals:
        """The prior p(z): batch shape (), event shape (latent_dim,)."""
        return self.prior()

    @graph_in_training
    def encode(self, x: Tensor, condition: Any = None) -> Categoricals:
        """q(z|x): independent categoricals, batch shape (B,), event shape (latent_dim,).

        Its ``.mean`` holds the probabilities q(z_l = c | x) and ``.mode`` the one-hot argmax.
        The model is not conditional: ``condition`` must be None.
        """
        return Categoricals(self._encode_logits(x, condition))

    def _encode_logits(self, x: Tensor, condition: Any = None) -> Tensor:
        """Normalised log q(z_l = c | x), (B, n_latents, n_categories)."""
        c = self.config
        x = as_input(x)
        if tuple(x.shape[1:]) != c.data_shape:
            raise DataError(
                f"input has example shape {tuple(x.shape[1:])} but the model expects {c.data_shape}"
            )
        self.condition(condition, x.shape[0])
        h = self.encoder(x.reshape(x.shape[0], -1).to(self.device, self._dtype))
        return torch.log_softmax(h.reshape(x.shape[0], c.n_latents, c.n_categories), -1)

    @graph_in_training
    def decode(self, z: Tensor, condition: Any = None) -> Distribution:
        """p(x|z) for z (..., latent_dim): batch shape (...), event shape data_shape.

        z is one-hot per latent for the model's own values; other points of the simplex (the
        probabilities ``encode`` gives, relaxed samples) are decoded as the same network reads them.
        z is read in the model's dtype, on its device. ``condition`` must be None.
        """
        self.condition(condition, 1)
        return self.likelihood(self._decode_params(self._latents(z)))

    def _decode_params(self, z: Tensor) -> Tensor:
        """The decoder's output for ``z`` (..., latent_dim) as (..., n_params, *data_shape)."""
        params = self.decoder(z.to(self._dtype))
        return params.reshape(*z.shape[:-1], self.likelihood.n_params, *self.config.data_shape)

    def forward(
        self,
        x: Tensor,
        k: int = 1,
        generator: torch.Generator | None = None,
        condition: Any = None,
    ) -> Terms:
        """Terms of the bounds for ``x`` (B, *data_shape): log p(x|z), log p(z), log q(z|x).

        In evaluation mode: ``k`` draws z ~ q(z|x) (shape (k, B)), with ``pathwise=False`` so
        that a bound's gradient includes the score-function term. In training mode: the terms of
        the configured estimator, enumerated (rows: all values of z) for "exact". The closed-form
        KL (B,) is always given. ``generator`` makes the draws reproducible.
        """
        log_q = self._encode_logits(x, condition)  # (B, L, C)
        x, k = as_input(x).to(self.device, self._dtype), check_count("k", k)
        if not self.training:
            return self._sampled_terms(x, log_q, k, generator)
        estimator = self.config.training_estimator
        if estimator == "exact":
            return self.enumerated_terms(x, log_q)
        if estimator == "gumbel":
            return self._gumbel_terms(x, log_q, k, generator)
        return self._sampled_terms(x, log_q, k, generator)

    def kl(self, log_q: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) in closed form, (B,), from log q (B, n_latents, n_categories)."""
        return (log_q.exp() * (log_q - self.prior.log_probs())).sum((-2, -1))

    def _gumbel(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        u = torch.rand(shape, generator=generator, device=self.device, dtype=self._dtype)
        tiny = torch.finfo(self._dtype).tiny
        return -torch.log(-torch.log(u.clamp_min(tiny)))

    def _sampled_terms(
        self, x: Tensor, log_q: Tensor, k: int, generator: torch.Generator | None
    ) -> Terms:
        """k exact draws from q(z|x) by the Gumbel-max trick; (k, B) terms, pathwise=False."""
        c = self.config
        g = self._gumbel((k, *log_q.shape), generator)  # (k, B, L, C)
        z = one_hot((log_q + g).argmax(-1), c.n_categories, log_q.dtype)  # (k, B, latent_dim)
        return Terms(
            log_px_z=self.likelihood.log_prob(self._decode_params(z), x),
            log_pz=z @ self.prior.log_probs().reshape(-1),
            log_qz_x=(z * log_q.flatten(1)).sum(-1),
            kl=self.kl(log_q),
            pathwise=False,
        )

    def temperature(self) -> Tensor:
        """The Gumbel-softmax temperature now: max(temperature_min, temperature *
        exp(-anneal_rate * steps)), a 0-d tensor (no host sync)."""
        c = self.config
        decay = torch.exp(-c.anneal_rate * self.gumbel_steps.to(self._dtype))
        return torch.clamp(c.temperature * decay, min=c.temperature_min)

    def _gumbel_terms(
        self, x: Tensor, log_q: Tensor, k: int, generator: torch.Generator | None
    ) -> Terms:
        """k relaxed draws (Gumbel-softmax): straight-through one-hot or relaxed; (k, B) terms."""
        c = self.config
        g = self._gumbel((k, *log_q.shape), generator)  # (k, B, L, C)
        soft = torch.softmax((log_q + g) / self.temperature(), -1)
        if c.straight_through:
            hard = F.one_hot(soft.argmax(-1), c.n_categories).to(soft.dtype)
            z = (hard - soft.detach() + soft).flatten(-2)  # one-hot value, relaxed gradient
        else:
            z = soft.flatten(-2)
        if torch.is_grad_enabled():
            self.gumbel_steps += 1
        return Terms(
            log_px_z=self.likelihood.log_prob(self._decode_params(z), x),
            log_pz=z @ self.prior.log_probs().reshape(-1),
            log_qz_x=(z * log_q.flatten(1)).sum(-1),
            kl=self.kl(log_q),
        )

    def enumerated_terms(self, x: Tensor, log_q: Tensor | None = None) -> Terms:
        """The terms at every value of z, rows (n_values, B), marked ``enumerated``.

        ``objectives.elbo`` of them is the exact ELBO, with an exact gradient. Needs the space to
        have at most ``enumerate_limit`` values.
        """
        c = self.config
        self._check_enumerable("the exact ELBO")
        if log_q is None:
            log_q = self._encode_logits(x)
        x = x.to(self.device, self._dtype)
        z = self.values(0, c.n_values)  # (V, latent_dim)
        params = self._decode_params(z)  # (V, n_params, *data_shape)
        params = params[:, None].expand(-1, x.shape[0], *params.shape[1:])
        return Terms(
            log_px_z=self.likelihood.log_prob(params, x),  # (V, B)
            log_pz=(z @ self.prior.log_probs().reshape(-1))[:, None].expand(-1, x.shape[0]),
            log_qz_x=z @ log_q.flatten(1).T,  # (V, B)
            kl=self.kl(log_q),
            enumerated=True,
        )

    def values(self, start: int, stop: int) -> Tensor:
        """Values ``start`` to ``stop - 1`` of z (see :func:`enumerate_values`) as one-hot
        vectors, (stop - start, latent_dim)."""
        c = self.config
        index = enumerate_values(c.n_latents, c.n_categories, start, stop, self.device)
        return one_hot(index, c.n_categories, self._dtype)

    def _check_enumerable(self, what: str) -> None:
        c = self.config
        if not c.enumerable:
            raise ConfigError(
                f"{what} sums over {c.n_categories}**{c.n_latents} values of z, more than "
                f"enumerate_limit {c.enumerate_limit}; raise enumerate_limit or use the "
                "importance-weighted estimate"
            )

    # -- conveniences ------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True, condition: Any = None) -> Tensor:
        """``n`` draws (n, *data_shape): z ~ p(z), then E[x|z] (``mean=True``) or x ~ p(x|z).
        Uses torch's global RNG."""
        self.condition(condition, n)
        px_z = self.decode(self.pz().sample((check_count("n", n),)))
        return px_z.mean if mean else px_z.sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor, condition: Any = None) -> Tensor:
        """E[x|z] at the most probable z under q(z|x) (each latent's argmax); shape of ``x``."""
        return self.decode(self.encode(x, condition).mode).mean

    @torch.no_grad()
    def elbo_exact(self, x: Tensor) -> Tensor:
        """Per-example ELBO by enumeration in nats (N,), without gradients. ``x``: a tensor or
        numpy array, checked as :func:`vaekit.estimators.log_likelihood` checks it."""
        return elbo(self.enumerated_terms(examples(self, x).to(self.device)))

    def log_likelihood_exact(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Exact log p(x) in nats (N,), in the model's dtype like :meth:`log_likelihood` (the
        module function :func:`log_likelihood_exact` returns its float64 sum)."""
        return log_likelihood_exact(self, x, **kwargs).to(self._dtype)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(discrete_latent=True, exact_likelihood=self.config.enumerable)

    @keeps_mode
    @torch.no_grad()
    def latent_stats(
        self, x: Tensor, *, batch_size: int = 1000, seed: int = 0, **_: Any
    ) -> dict[str, Tensor]:
        """Per latent variable (n_latents,): ``kl_per_dim``, the mean KL(q(z_l|x) || p(z_l)) in
        nats, and ``activity``, sum over its categories of Var_x(q(z_l = c | x)); and ``kl`` (),
        the mean KL(q(z|x) || p(z)), their sum (q and p factorise over the latents). All in
        closed form; ``seed`` is not used."""
        self.eval()
        log_p = self.prior.log_probs()
        kls, probs = [], []
        for i in range(0, x.shape[0], batch_size):
            log_q = self._encode_logits(x[i : i + batch_size].to(self.device))
            kls.append((log_q.exp() * (log_q - log_p)).sum(-1).sum(0).cpu())  # (L,)
            probs.append(log_q.exp().cpu())
        p = torch.cat(probs)  # (N, L, C)
        kl_per_dim = torch.stack(kls).sum(0) / x.shape[0]
        return {
            "kl_per_dim": kl_per_dim,
            "kl": kl_per_dim.sum(),
            "activity": p.var(0, unbiased=False).sum(-1),
        }


@keeps_mode
@torch.no_grad()
def log_likelihood_exact(
    model: CategoricalVAE, x: Tensor, *, batch_size: int = 1000, values_per_chunk: int | None = None
) -> Tensor:
    """Exact log p(x) = logsumexp_z [log p(x|z) + log p(z)] in nats per example, shape (N,).

    The sum runs over all ``n_categories ** n_latents`` values of z, in chunks of
    ``values_per_chunk`` (default: as many as fit a fixed memory budget) and batches of
    ``batch_size`` examples, combined with a running logsumexp in float64. Raises
    :class:`ConfigError` when z takes more than the model's ``enumerate_limit`` values. ``x``:
    (N, *data_shape), a tensor or numpy array, checked as
    :func:`vaekit.estimators.log_likelihood` checks it.
    """
    x = examples(model, x)
    model.eval()
    c = model.config
    model._check_enumerable("exact log p(x)")
    device = model.device
    n = x.shape[0]
    batch = max(1, min(batch_size, n))
    row_cost = model.likelihood.n_params * c.data_dim * batch
    chunk = values_per_chunk or max(1, EXACT_CHUNK_BUDGET // row_cost)
    log_p = model.prior.log_probs().reshape(-1)
    out = torch.full((n,), -math.inf, dtype=torch.float64)
    for v0 in range(0, c.n_values, chunk):
        z = model.values(v0, min(v0 + chunk, c.n_values))  # (V, latent_dim)
        params = model._decode_params(z)  # (V, n_params, *data_shape)
        log_pz = (z @ log_p)[:, None]  # (V, 1)
        for i in range(0, n, batch):
            xb = x[i : i + batch].to(device=device, dtype=model._dtype)
            p = params[:, None].expand(-1, xb.shape[0], *params.shape[1:])
            log_joint = model.likelihood.log_prob(p, xb) + log_pz  # (V, b)
            part = torch.logsumexp(log_joint.double(), dim=0).cpu()
            out[i : i + batch] = torch.logaddexp(out[i : i + batch], part)
    return out

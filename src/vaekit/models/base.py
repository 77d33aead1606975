"""What every model kind declares: the protocol the trainer, the estimators and the commands use.

A kind is an ``nn.Module`` subclass of :class:`Model` with a ``kind`` name, a frozen
``config_class`` whose fields are its constructor's arguments, and the methods below:

- ``pz()`` -> p(z); ``encode(x, condition)`` -> q(z|x); ``decode(z, condition)`` -> p(x|z),
  each a distribution;
- ``forward(x, k, generator, condition)`` -> :class:`vaekit.objectives.Terms` of shape (k, B):
  the per-example log-densities every bound is computed from;
- ``sample(n, mean=, condition=)``, ``reconstruct(x, condition)``, ``sample_latents(n)`` and
  ``latent_stats(x)``;
- ``capabilities``: a :class:`Capabilities` record of what else it offers (noise-driven
  ``terms(x, eps, autocast, condition)`` for the fast path, a condition, discrete or
  enumerable latents, ...); ``noise_dim`` and ``free_bits`` for the trainer.

Every kind takes ``condition=None`` in the same places; :meth:`Model.condition` makes it what
the networks take, and refuses one given to a kind that is not conditional.

Nothing here knows the trainer, the evaluator, data sets or the command line: the bounds as
methods (``elbo``, ``log_likelihood``) come from :mod:`vaekit.estimators` and saving from
:mod:`vaekit.checkpoint`, both below the models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Distribution,
    Independent,
    Normal,
    kl_divergence,
)

from .. import checkpoint, estimators
from ..errors import DataError
from ..objectives import Terms
from .registry import load as load_model

F = TypeVar("F", bound=Callable[..., Any])


def graph_in_training(method: F) -> F:
    """Run ``encode``/``decode`` without autograd where no graph can be wanted: a model in eval
    mode (as :func:`vaekit.load` and :func:`vaekit.fit` leave it) whose tensor arguments do not
    require gradients. Its results are then plain tensors (``encode(x).mean.numpy()`` works); in
    train mode, or with an input that requires gradients (refining q(z|x), gradients with
    respect to x), the graph is kept as before."""

    @functools.wraps(method)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        wanted = self.training or any(
            isinstance(a, Tensor) and a.requires_grad for a in (*args, *kwargs.values())
        )
        if wanted or not torch.is_grad_enabled():
            return method(self, *args, **kwargs)
        with torch.no_grad():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Capabilities:
    """What a model can do beyond the protocol, declared by its kind (the trainer, estimators and
    commands read these flags; none asks a model's class)."""

    #: ``terms(x, eps, autocast, condition)`` gives the terms of ``forward`` for given standard
    #: normal noise ``eps`` (k, B, noise_dim): the fast path and bf16 autocast need it.
    noise_terms: bool = False
    #: Those terms come from closed forms, with no distribution objects and no value read back
    #: to the host (a CUDA graph can capture them, conditions included).
    closed_form: bool = False
    #: ``forward(x, k)`` is exactly ``terms(x, eps)`` with fresh noise, so a loop may call
    #: ``terms`` in its place (a subclass that overrides ``forward`` or ``encode`` is not).
    forward_is_terms: bool = False
    #: q(z|x, c) and p(x|z, c) take a condition c: one-hot labels or vectors.
    conditional: bool = False
    #: z is categorical: there is no continuous latent space to walk or refine.
    discrete_latent: bool = False
    #: log p(x) by enumerating every value of z (``log_likelihood_exact``).
    exact_likelihood: bool = False
    #: ``encode`` is one diagonal Gaussian over the z that ``pz`` and ``decode`` take, so
    #: q(z|x) can be refined per example with the model held fixed.
    refinable: bool = False
    #: Examples are rows of token ids (strings), reported per token.
    tokens: bool = False


class Model(nn.Module):
    """The base of every model kind: the protocol's defaults, the bounds as methods, saving and
    loading, and the device and dtype of its parameters. A kind adds ``pz``, ``encode``,
    ``decode``, ``forward``, ``sample`` and ``reconstruct``."""

    kind: ClassVar[str]
    config_class: ClassVar[type]
    config: Any

    @property
    def capabilities(self) -> Capabilities:
        """What this model offers beyond the protocol; see :class:`Capabilities`."""
        return Capabilities()

    @property
    def noise_dim(self) -> int:
        """Standard-normal numbers per sample that ``terms`` takes (the latent size unless a
        kind has several stochastic layers)."""
        return int(self.config.latent_dim)

    @property
    def floats_per_row(self) -> int:
        """Activation floats that one (sample, example) pair takes through the encoder and the
        decoder; the estimators size their chunks of work by it."""
        return 2 * sum(self.config.hidden)

    @property
    def free_bits(self) -> float:
        """Nats per latent dimension below which training holds the KL term constant (free
        bits; 0: none). The trainer reads this: free bits act on the ELBO's KL term only."""
        return 0.0

    def condition(self, condition: Any, n: int) -> Tensor | None:
        """The condition of ``n`` examples as the model takes it; None for a model without one
        (then a condition given is a :class:`DataError`)."""
        if condition is not None:
            raise DataError("this model is not conditional (condition_dim = 0); give no condition")
        return None

    def terms(
        self,
        x: Tensor,
        eps: Tensor,
        autocast: torch.dtype | None = None,
        condition: Any = None,
    ) -> Terms:
        """The terms of ``forward`` for given standard normal noise ``eps`` (k, B, noise_dim);
        only a kind whose capabilities include ``noise_terms`` has them."""
        raise NotImplementedError(
            f"model kind {self.kind!r} has no noise terms (capabilities.noise_terms is False)"
        )

    def elbo(
        self,
        x: Tensor,
        *,
        samples: int = 1,
        seed: int = 0,
        batch_size: int = 1000,
        condition: Any = None,
    ) -> Tensor:
        """Per-example ELBO in nats (N,), without gradients; see :func:`vaekit.estimators.elbo`."""
        return estimators.elbo(
            self, x, samples=samples, seed=seed, batch_size=batch_size, condition=condition
        )

    def log_likelihood(
        self, x: Tensor, k: int = 5000, *, seed: int = 0, condition: Any = None
    ) -> Tensor:
        """Importance-weighted estimate of log p(x) in nats (N,), in the model's dtype like
        :meth:`elbo` (the log-sum-exp runs in float64; :func:`vaekit.log_likelihood` returns
        that float64 result); see :func:`vaekit.estimators.log_likelihood`."""
        ll = estimators.log_likelihood(self, x, k=k, seed=seed, condition=condition)
        return ll.to(self._dtype)

    def latent_stats(
        self, x: Tensor, *, batch_size: int = 1000, samples: int = 16, seed: int = 0, **kw: Any
    ) -> dict[str, Tensor]:
        """Posterior statistics over ``x``; see :func:`vaekit.estimators.latent_stats`. This
        default is for a diagonal Gaussian q(z|x); a kind with other latents overrides it."""
        return estimators.gaussian_latent_stats(
            self, x, batch_size=batch_size, samples=samples, seed=seed, **kw
        )

    @property
    def standard_normal_latents(self) -> bool:
        """Whether z ~ p(z), what the decoder takes, is N(0, I) (then pictures place latents at
        its exact quantiles; otherwise at quantiles of draws from :meth:`sample_latents`)."""
        return False

    @torch.no_grad()
    def sample_latents(self, n: int) -> Tensor:
        """``n`` draws z ~ p(z) of what the decoder takes, (n, latent_dim); torch's global RNG.
        This default draws from ``pz()``; a kind whose decoder takes other latents overrides it."""
        return self.pz().sample((n,))

    def fit(self, data: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Train in place; the same arguments as :func:`vaekit.fit`, which this calls through the
        package's public name (the trainer sits above the models and is not imported here).
        Returns the history, one record per epoch."""
        import vaekit

        return vaekit.fit(self, data, **kwargs)

    def save(self, path: str | Path, **metadata: Any) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into the folder ``path``."""
        return checkpoint.save(self, path, **metadata)

    def check_saveable(self) -> None:
        """Raise :class:`ConfigError` when :func:`vaekit.load` could not rebuild this model from
        its config; :func:`vaekit.save` asks before it writes anything. A kind whose modules
        all come from its config has nothing to check."""

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
        """Rebuild a model from a folder written by :meth:`save` (no pickle involved)."""
        return load_model(path, device=device)

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _latents(self, z: Tensor, width: int | None = None, setting: str = "latent_dim") -> Tensor:
        """``z`` (..., width) (a tensor or numpy array) on the model's device, in its dtype, for
        a network; ``width`` (default: the config's latent_dim) is the config's ``setting``. A
        :class:`DataError` names a z of another width."""
        z = torch.as_tensor(z)
        width = int(self.config.latent_dim) if width is None else width
        if z.dim() == 0 or z.shape[-1] != width:
            raise DataError(
                f"latents of shape {tuple(z.shape)} do not fit the model's {setting} = {width}; "
                f"give z of shape (..., {width})"
            )
        return z.to(device=self.device, dtype=self._dtype)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device


def as_condition(values: Any, condition_dim: int) -> Tensor:
    """Conditions as floats: integer labels (N,) or one int become one-hot (N, condition_dim) or
    (condition_dim,); float vectors (N, condition_dim) or (condition_dim,) pass through.

    Raises DataError for a label outside [0, condition_dim), a vector of the wrong width, or
    values that are not finite.
    """
    c = torch.as_tensor(values)
    if not (c.is_floating_point() or c.dtype == torch.bool):
        if c.dim() > 1:
            raise DataError(f"labels must be one integer per example, got shape {tuple(c.shape)}")
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= condition_dim):
            bad = int(c.min()) if int(c.min()) < 0 else int(c.max())
            raise DataError(
                f"label {bad} is outside 0..{condition_dim - 1}; the model has condition_dim = "
                f"{condition_dim} (one per class)"
            )
        return torch.nn.functional.one_hot(c.long(), condition_dim).float()
    c = c.float()
    if c.dim() not in (1, 2) or c.shape[-1] != condition_dim:
        raise DataError(
            f"conditions of shape {tuple(c.shape)} do not match condition_dim = {condition_dim}; "
            f"give (N, {condition_dim}) vectors or integer labels"
        )
    if not torch.isfinite(c).all():
        raise DataError("conditions hold NaN or infinite values")
    return c


def _fp32(dist: Distribution) -> Distribution:
    """The same distribution with float32 parameters (vaekit's Normal and Bernoulli families)."""
    if isinstance(dist, Independent):
        return Independent(_fp32(dist.base_dist), dist.reinterpreted_batch_ndims)
    if isinstance(dist, Normal):
        return Normal(dist.loc.float(), dist.scale.float(), validate_args=False)
    if isinstance(dist, Bernoulli):
        return Bernoulli(logits=dist.logits.float(), validate_args=False)
    return dist


def distribution_terms(
    model: Model,
    x: Tensor,
    eps: Tensor,
    autocast: torch.dtype | None = None,
    condition: Tensor | None = None,
) -> Terms:
    """The terms of a model with one diagonal Gaussian q(z|x) for given noise ``eps`` (k, B,
    latent_dim), from its distributions: ``encode``, z = mu + sigma * eps, ``decode``, ``pz``.

    With ``autocast`` (e.g. torch.bfloat16) the networks run under autocast and the
    distributions, log-densities and KL are computed in float32.
    """
    kw = {} if condition is None else {"condition": condition}
    ac = torch.autocast(
        x.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None
    )
    with ac:
        qz_x = model.encode(x, **kw)
    qz_x = _fp32(qz_x) if autocast is not None else qz_x
    base = qz_x.base_dist
    z = base.loc + base.scale * eps  # (k, B, latent_dim)
    with ac:
        px_z = model.decode(z, **kw)
    px_z = _fp32(px_z) if autocast is not None else px_z
    pz = model.pz()
    return Terms(
        log_px_z=px_z.log_prob(x.to(z.dtype)),
        log_pz=pz.log_prob(z),
        log_qz_x=qz_x.log_prob(z),
        kl=kl_divergence(qz_x, pz) if model.prior.analytic_kl else None,
        z=z,
        qz_loc=base.loc,
        qz_logvar=2 * base.scale.log(),
    )


def model_terms(
    model: Model,
    x: Tensor,
    eps: Tensor,
    autocast: torch.dtype | None = None,
    condition: Tensor | None = None,
) -> Terms:
    """``model(x, k)`` with the noise given: ``eps`` (k, B, noise_dim) standard normal, for a
    model whose capabilities include ``noise_terms``. ``condition``: the batch's (B,
    condition_dim) conditions as :meth:`Model.condition` made them (a loop checks them once, not
    at every step); none for an unconditional model."""
    kw = {} if condition is None else {"condition": condition}
    return model.terms(x, eps, autocast, **kw)

"""The VAE: prior p(z), decoder p(x|z) and encoder q(z|x), built from one frozen config.

This is the one place a config becomes modules. ``encode`` returns q(z|x) as a distribution,
``decode`` returns p(x|z) as a distribution, and ``forward(x, k)`` returns the per-example terms
from which every bound in :mod:`vaekit.objectives` is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution

from ..config import (
    Constraints,
    below,
    check_count,
    check_settings,
    configure,
    non_negative_int,
    one_of,
    positive_int,
    positive_number,
    shape,
    sizes,
)
from ..distributions import Rescaled, diag_normal, gaussian_log_prob_eps, soft_clamp
from ..errors import ConfigError, DataError
from ..estimators import as_input
from ..likelihoods import LIKELIHOODS, Likelihood
from ..nets import (
    ACTIVATIONS,
    ENTRY_POINT_GROUP,
    PLUGIN_DOCS,
    UPSAMPLES,
    Discriminator,
    NetSpec,
    build_networks,
    check_network,
)
from ..objectives import Terms
from ..priors import PRIORS, StandardNormalPrior
from .base import Capabilities, Model, as_condition, distribution_terms, graph_in_training
from .registry import register_model

#: The likelihood settings every kind with a p(x|z) from :mod:`vaekit.likelihoods` shares.
LIKELIHOOD_CONSTRAINTS: Constraints = {
    "data_shape": shape,
    "likelihood": one_of(LIKELIHOODS),
    "likelihood_components": positive_int,
    ("decoder_min_logvar", "decoder_max_logvar"): below,
    "decoder_std": positive_number,
}
#: The networks' settings shared by the kinds built of MLPs.
MLP_CONSTRAINTS: Constraints = {
    "latent_dim": positive_int,
    "hidden": sizes,
    "activation": one_of(ACTIVATIONS),
}
#: Soft bounds on a Gaussian q(z|x)'s log-variance.
ENCODER_CONSTRAINTS: Constraints = {("encoder_min_logvar", "encoder_max_logvar"): below}


def _image_shape(names: tuple[str, str], values: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    image_shape, data_shape = values
    if image_shape and (len(image_shape) != 3 or math.prod(image_shape) != math.prod(data_shape)):
        raise ConfigError(
            f"image_shape {list(image_shape)} must be [C, H, W] with C*H*W equal to the "
            f"{math.prod(data_shape)} values of data_shape {list(data_shape)}"
        )


def _standardization(
    names: tuple[str, ...], values: tuple[tuple[float, ...], tuple[float, ...], Any, str]
) -> None:
    """data_shift and data_scale: both empty, or one finite value per data dimension each (the
    scales positive), for a likelihood of real values."""
    shift, scale, data_shape, likelihood = values
    if not shift and not scale:
        return
    dim = math.prod(data_shape)
    if len(shift) != dim or len(scale) != dim:
        raise ConfigError(
            f"data_shift and data_scale need one value per data dimension ({dim}); got "
            f"{len(shift)} and {len(scale)}"
        )
    if not all(math.isfinite(v) for v in shift) or not all(
        math.isfinite(v) and v > 0 for v in scale
    ):
        raise ConfigError("data_shift must be finite numbers and data_scale positive ones")
    if LIKELIHOODS[likelihood].support != "real":
        raise ConfigError(
            f"data_shift and data_scale standardise real-valued data, but likelihood "
            f"{likelihood!r} models values in [0, 1]; leave them out or choose a Gaussian "
            "likelihood"
        )


def _vamp_unconditioned(names: tuple[str, str], values: tuple[int, str]) -> None:
    condition_dim, prior = values
    if condition_dim and prior == "vamp":
        raise ConfigError(
            "prior 'vamp' has no condition for its pseudo-inputs; a conditional model "
            "(condition_dim > 0) needs another prior, e.g. mog"
        )


@dataclass(frozen=True)
class VAEConfig:
    """Everything needed to rebuild a model; saved as the ``model`` table of config.json.

    data_shape: shape of one example, e.g. (784,) or (1, 28, 28).
    latent_dim: number of latent dimensions.
    hidden: widths of the fully connected layers of encoder and decoder (the decoder mirrors
        the encoder); with a conv network, of the layers between the conv stages and z.
    network: one of ``vaekit.nets.NETWORKS``: "mlp" (fully connected, the AEVB paper's),
        "conv" (stride-2 convolutions) or "resnet" (the same with residual blocks).
    channels: widths of the conv stages; each halves height and width in the encoder and
        doubles them in the decoder, so both must be divisible by 2 ** len(channels).
    res_blocks: residual blocks per stage of the "resnet" network.
    conv_upsample: how the conv networks' decoder doubles height and width, one of
        ``vaekit.nets.UPSAMPLES``: "resize" (nearest-neighbour, then a 3x3 convolution: no
        checkerboard artefacts) or "transpose" (4x4 stride-2 transposed convolutions). A model
        table saved before this setting existed has none and is read as "transpose".
    image_shape: (C, H, W) the conv networks see a flat example as, e.g. [1, 28, 28] for MNIST
        stored as (784,); empty: ``data_shape`` itself, which must then be (C, H, W).
    condition_dim: width of the condition c of a conditional VAE, q(z|x, c) and p(x|z, c): a
        one-hot label (integer labels are turned into one-hot vectors) or any vector; 0: none.
    activation: one of ``vaekit.nets.ACTIVATIONS`` (tanh as in the AEVB paper, relu, ...).
    likelihood: one of ``vaekit.likelihoods.LIKELIHOODS``.
    likelihood_components: logistics per data dimension of the ``discretized_logistic``
        likelihood (1: a single discretized logistic).
    prior: one of ``vaekit.priors.PRIORS``.
    prior_components: mixture components of the ``mog`` prior, pseudo-inputs of ``vamp``.
    decoder_min_logvar, decoder_max_logvar: soft bounds on a Gaussian decoder's log-variance.
    decoder_std: standard deviation of the ``gaussian_fixed`` likelihood, in data units.
    encoder_min_logvar, encoder_max_logvar: soft bounds on q(z|x)'s log-variance.
    discriminator: widths of the hidden layers of a discriminator on z, part of the model, that
        objective "factorvae" trains alongside it to estimate the total correlation of q(z)
        (``vaekit.nets.DISCRIMINATOR_HIDDEN``, six layers of 1000, is the paper's); empty:
        none. It takes no part in p(x), q(z|x) or any bound the model reports.
    data_shift, data_scale: a standardisation of real-valued data, one value per data dimension
        (e.g. each column's mean and standard deviation over the training split, as
        :func:`vaekit.data.standardization` gives them): the networks see (x - data_shift) /
        data_scale, while ``encode``, ``decode``, ``sample``, ``reconstruct`` and every bound
        take and give x in the data's own units (log p(x) includes the Jacobian, -sum(log
        data_scale) nats). Empty (the default): none.
    """

    #: Settings added since runs were first saved, at the value a model table saved before the
    #: setting existed was built with, where that is not the default of a new model (see
    #: vaekit.models.registry.model_config).
    predated: ClassVar[dict[str, Any]] = {"conv_upsample": "transpose"}

    data_shape: tuple[int, ...] = (784,)
    latent_dim: int = 20
    hidden: tuple[int, ...] = (500,)
    activation: str = "tanh"
    network: str = "mlp"
    channels: tuple[int, ...] = (32, 64)
    res_blocks: int = 1
    conv_upsample: str = "resize"
    image_shape: tuple[int, ...] = ()
    condition_dim: int = 0
    likelihood: str = "bernoulli"
    likelihood_components: int = 1
    prior: str = "standard_normal"
    prior_components: int = 10
    decoder_min_logvar: float = -8.0
    decoder_max_logvar: float = 4.0
    decoder_std: float = 0.1
    encoder_min_logvar: float = -12.0
    encoder_max_logvar: float = 6.0
    discriminator: tuple[int, ...] = ()
    data_shift: tuple[float, ...] = ()
    data_scale: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_settings(self, VAE_CONSTRAINTS)

    @property
    def data_dim(self) -> int:
        """Number of scalars in one example."""
        return math.prod(self.data_shape)


VAE_CONSTRAINTS: Constraints = {
    **MLP_CONSTRAINTS,
    **LIKELIHOOD_CONSTRAINTS,
    "network": check_network,
    "channels": sizes,
    "res_blocks": non_negative_int,
    "conv_upsample": one_of(UPSAMPLES),
    ("image_shape", "data_shape"): _image_shape,
    "condition_dim": non_negative_int,
    "prior": one_of(PRIORS),
    "prior_components": positive_int,
    ("condition_dim", "prior"): _vamp_unconditioned,
    **ENCODER_CONSTRAINTS,
    "discriminator": sizes,
    ("data_shift", "data_scale", "data_shape", "likelihood"): _standardization,
}


@register_model
class VAE(Model):
    """Variational autoencoder with a diagonal Gaussian q(z|x) (Kingma & Welling 2014).

    Build it from a :class:`VAEConfig` (or a dict of its fields, as a TOML table holds them), from
    its fields as keyword arguments, or both (the keywords replace the config's fields)::

        model = VAE(data_shape=(784,), latent_dim=20, likelihood="bernoulli")
        model = VAE({"data_shape": [784], "latent_dim": 20}, hidden=(400,))

    A name that is not a field is a :class:`ConfigError` listing the fields.

    Inputs ``x`` have shape ``(B, *data_shape)``; latents ``z`` have shape ``(..., latent_dim)``.
    The networks (``network``: MLP, conv or resnet), likelihood and prior are looked up by name
    in ``NETWORKS``, ``LIKELIHOODS`` and ``PRIORS``. With ``condition_dim`` > 0 it is a
    conditional VAE, q(z|x, c) and p(x|z, c) with p(z) unchanged: encode, decode, forward, terms,
    sample and reconstruct then take ``condition`` (see :meth:`condition`).
    """

    kind = "vae"
    config_class: type = VAEConfig

    def __init__(self, config: VAEConfig | dict[str, Any] | None = None, /, **fields: Any) -> None:
        super().__init__()
        refuse_modules(fields)
        self.config: VAEConfig = configure(VAEConfig, config, fields)
        c = self.config
        self.prior = PRIORS[c.prior].from_config(c)
        self.likelihood = LIKELIHOODS[c.likelihood].from_config(c)
        spec = NetSpec(
            shape=c.image_shape or c.data_shape,
            encoder_out=2 * c.latent_dim,
            decoder_in=c.latent_dim,
            out_per_dim=self.likelihood.n_params,
            hidden=c.hidden,
            activation=c.activation,
            condition_dim=c.condition_dim,
            channels=c.channels,
            res_blocks=c.res_blocks,
            conv_upsample=c.conv_upsample,
        )
        self.encoder, self.decoder = build_networks(c.network, spec)
        self._networks_built = True  # from here on, __setattr__ refuses other networks
        self._standardize(c)
        self.prior.bind(self._encode_params)
        widths = getattr(c, "discriminator", ())
        #: FactorVAE's discriminator on z (None without one); see VAEConfig.discriminator.
        self.discriminator = Discriminator(c.latent_dim, widths) if widths else None

    def _standardize(self, c: VAEConfig) -> None:
        """Buffers data_shift and data_scale (data_shape; None without a standardisation) and
        the log-Jacobian sum(log data_scale) (nats)."""
        shift = scale = None
        if c.data_scale:
            shift = torch.tensor(c.data_shift, dtype=torch.float64).reshape(c.data_shape)
            scale = torch.tensor(c.data_scale, dtype=torch.float64).reshape(c.data_shape)
        self.register_buffer("data_shift", shift, persistent=False)
        self.register_buffer("data_scale", scale, persistent=False)
        self.log_data_scale = math.fsum(math.log(v) for v in c.data_scale)

    def _standardized(self, x: Tensor) -> Tensor:
        """Examples ``x`` (B, ...) of data_dim values each, in any layout (the data's shape, or
        flat), as the networks see them: (x - data_shift) / data_scale."""
        if self.data_scale is None:
            return x
        shape = x.shape[1:]
        shift, scale = self.data_shift.reshape(shape), self.data_scale.reshape(shape)
        return (x - shift.to(x.dtype)) / scale.to(x.dtype)

    # -- the model ---------------------------------------------------------------------------

    def pz(self) -> Distribution:
        """The prior p(z), event shape ``(latent_dim,)``."""
        return self.prior()

    @graph_in_training
    def encode(self, x: Tensor, condition: Any = None) -> Distribution:
        """q(z|x) (q(z|x, c) for a conditional model): a diagonal Gaussian with batch shape (B,)
        and event shape (latent_dim,), on the model's device (``x`` is moved there).

        Its ``.mean`` is the embedding of ``x``; draw from it with ``.rsample()``. ``condition``
        (conditional models only): integer labels (B,), vectors (B, condition_dim), or one label
        or vector for every example.
        """
        x = as_input(x)
        c = self.config
        if tuple(x.shape[1:]) != c.data_shape:
            raise DataError(
                f"input has example shape {tuple(x.shape[1:])} but the model expects {c.data_shape}"
            )
        loc, logvar = self._encode_params(x, self.condition(condition, x.shape[0]))
        return diag_normal(loc, logvar)

    def _encode_params(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z|x)'s mean and soft-clamped log-variance, each (B, latent_dim)."""
        c = self.config
        x = self._standardized(x.to(self.device, self._dtype))
        h = self.encoder(x.reshape(x.shape[0], -1), condition)
        loc, raw_logvar = h.chunk(2, dim=-1)
        return loc, soft_clamp(raw_logvar, c.encoder_min_logvar, c.encoder_max_logvar)

    @graph_in_training
    def decode(self, z: Tensor, condition: Any = None) -> Distribution:
        """p(x|z) (p(x|z, c) for a conditional model) for z of shape (..., latent_dim): batch
        shape (...), event shape data_shape. ``condition`` as for :meth:`encode`: one per row of
        z's second-to-last dim (labels (n,) or vectors (n, condition_dim), shared by any leading
        dims of z) or one for all. z may be of any float dtype and on any device: it is read in
        the model's."""
        z = self._latents(z)
        n = z.shape[-2] if z.dim() > 1 else 1
        px_z = self.likelihood(self._decode_params(z, self.condition(condition, n)))
        if self.data_scale is None:
            return px_z
        dtype = self._dtype
        return Rescaled(px_z, self.data_shift.to(dtype), self.data_scale.to(dtype))

    def _decode_params(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """The decoder's output for ``z`` (..., latent_dim) as (..., n_params, *data_shape)."""
        if condition is not None:  # (n, condition_dim) -> z's leading shape
            if z.dim() == 1:
                condition = condition.reshape(-1)
            condition = condition.expand(*z.shape[:-1], condition.shape[-1])
        params = self.decoder(z, condition)  # (..., n_params * D)
        return params.reshape(*z.shape[:-1], self.likelihood.n_params, *self.config.data_shape)

    def condition(self, condition: Any, n: int) -> Tensor | None:
        """The condition for ``n`` examples as a float tensor (n, condition_dim), or None for an
        unconditional model.

        Accepts integer labels (n,) (made one-hot), vectors (n, condition_dim), or a single label
        (an int) or vector (condition_dim,) for all ``n``. Raises DataError for a missing or
        ill-shaped condition, a label out of range, or a condition given to an unconditional model.
        """
        dim = self.config.condition_dim
        if not dim:
            return super().condition(condition, n)  # refuses one given
        if condition is None:
            raise DataError(
                f"this model is conditional (condition_dim = {dim}): give a condition for the "
                "examples (labels or vectors)"
            )
        c = as_condition(condition, dim)
        if c.dim() == 1:
            c = c.expand(n, dim)
        if c.shape[0] != n:
            raise DataError(f"{c.shape[0]} conditions for {n} examples; give one per example")
        return c.to(device=self.device, dtype=self._dtype)

    def forward(
        self,
        x: Tensor,
        k: int = 1,
        generator: torch.Generator | None = None,
        condition: Any = None,
    ) -> Terms:
        """Terms of the bounds for ``x`` (B, *data_shape) with ``k`` reparameterised samples each.

        Returns log p(x|z), log p(z), log q(z|x) of shape (k, B) and the closed-form KL (B,) when
        the prior allows one. ``generator`` makes the noise reproducible. ``condition``: see
        :meth:`encode` (conditional models only). ``x`` is moved to the model's device.
        """
        k = check_count("k", k)
        x = as_input(x).to(self.device)
        if tuple(x.shape[1:]) != self.config.data_shape:
            self.encode(x, condition)  # raises the DataError that names the shapes
        eps_shape = (k, x.shape[0], self.config.latent_dim)
        eps = torch.randn(eps_shape, generator=generator, device=x.device, dtype=self._dtype)
        return self.terms(x, eps, condition=condition)

    def terms(
        self,
        x: Tensor,
        eps: Tensor,
        autocast: torch.dtype | None = None,
        condition: Any = None,
    ) -> Terms:
        """The terms of :meth:`forward` for given noise ``eps`` (k, B, latent_dim), N(0, I).

        Computed from closed forms (the likelihood's and prior's ``log_prob`` and ``kl``), with
        no distribution objects; they agree with the distributions' values to float rounding.
        With ``autocast`` (e.g. torch.bfloat16) the networks run under autocast and the
        log-densities and KL are computed in float32.
        """
        if not self._closed_form():  # a subclass's encode or decode: use its distributions
            return distribution_terms(self, x, eps, autocast, condition)
        if not _prepared(condition, x.shape[0], self.config.condition_dim):
            condition = self.condition(condition, x.shape[0])
        return self._terms(x, eps, autocast, condition)

    def _terms(
        self, x: Tensor, eps: Tensor, autocast: torch.dtype | None, cond: Tensor | None
    ) -> Terms:
        """:meth:`terms` for a condition already made by :meth:`condition` (or None): no checks
        of it here, so nothing reads a value back to the host (a CUDA graph captures this)."""
        ac = torch.autocast(
            x.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None
        )
        with ac:
            loc, logvar = self._encode_params(x, cond)
        if autocast is not None:
            loc, logvar = loc.float(), logvar.float()
        z = loc + torch.exp(0.5 * logvar) * eps  # (k, B, latent_dim)
        with ac:
            params = self._decode_params(z, cond)
        if autocast is not None:
            params = params.float()
        log_qz_x = gaussian_log_prob_eps(eps, logvar)
        return Terms(
            log_px_z=self.likelihood.log_prob(params, self._standardized(x.to(z.dtype)))
            - self.log_data_scale,
            log_pz=self.prior.log_prob(z),
            log_qz_x=log_qz_x,
            kl=self.prior.kl(loc, logvar) if self.prior.analytic_kl else None,
            z=z,
            qz_loc=loc,
            qz_logvar=logvar,
        )

    def _closed_form(self) -> bool:
        """True unless a subclass overrides encode or decode (then its distributions are used)."""
        return type(self).encode is VAE.encode and type(self).decode is VAE.decode

    @property
    def capabilities(self) -> Capabilities:
        cls = type(self)
        return Capabilities(
            noise_terms=True,
            closed_form=self._closed_form() and cls.terms is VAE.terms,
            forward_is_terms=cls.forward is VAE.forward and cls.encode is VAE.encode,
            conditional=self.config.condition_dim > 0,
            refinable=True,
        )

    @property
    def floats_per_row(self) -> int:
        rest = sum(self.config.hidden)  # a plug-in's network sized on the meta device
        return sum(getattr(net, "floats_per_row", rest) for net in (self.encoder, self.decoder))

    # -- networks are rebuilt from the config alone ------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _NETWORK_ROLES and self.__dict__.get("_networks_built"):
            raise ConfigError(
                f"the VAE's {name} is built from its network setting and cannot be replaced "
                f"(load rebuilds it from config.json alone): {_PLUGIN_HINT}"
            )
        super().__setattr__(name, value)

    def check_saveable(self) -> None:
        """A model whose weights no longer have the names and shapes its config builds (a
        network changed in place) is a :class:`ConfigError`: load could not read it back.
        :func:`vaekit.save` (and so ``model.save``) asks before anything is written."""
        mismatch = self._unbuildable_weight()
        if mismatch:
            raise ConfigError(
                f"this VAE's weights are not those its network setting {self.config.network!r} "
                f"builds ({mismatch}), so load could not rebuild it: {_PLUGIN_HINT}"
            )

    def _unbuildable_weight(self) -> str | None:
        """The first weight whose name or shape differs from what the config builds (counted on
        the meta device: shapes only), as "name is [shape], not [shape]"; None when all agree or
        the networks cannot be built on the meta device."""
        try:
            with torch.device("meta"):
                built = {k: list(v.shape) for k, v in VAE(self.config).state_dict().items()}
        except (RuntimeError, NotImplementedError, TypeError):
            return None
        have = {k: list(v.shape) for k, v in self.state_dict().items()}
        for key in sorted(built.keys() ^ have.keys()) + sorted(built.keys() & have.keys()):
            if key not in have:
                return f"{key} {built[key]} is missing"
            if key not in built:
                return f"{key} {have[key]} is not one of them"
            if have[key] != built[key]:
                return f"{key} is {have[key]}, not {built[key]}"
        return None

    # -- conveniences ------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True, condition: Any = None) -> Tensor:
        """``n`` draws from the model, shape (n, *data_shape).

        With ``mean=True`` (the default) returns E[x|z] for z ~ p(z), the image people look at;
        with ``mean=False`` draws x ~ p(x|z) as well. Uses torch's global RNG. A conditional
        model needs ``condition``: one label (an int) or vector for all, or one per draw.
        """
        px_z = self.decode(self.sample_latents(check_count("n", n)), condition)
        return px_z.mean if mean else px_z.sample()

    @torch.no_grad()
    def sample_latents(self, n: int) -> Tensor:
        """``n`` draws z ~ p(z) of what the decoder takes, (n, latent_dim); torch's global RNG."""
        return self.prior.sample(n)

    @property
    def standard_normal_latents(self) -> bool:
        return isinstance(self.prior, StandardNormalPrior)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, condition: Any = None) -> Tensor:
        """E[x|z] at z = the posterior mean of q(z|x); shape of ``x``."""
        return self.decode(self.encode(x, condition).mean, condition).mean

    @torch.no_grad()
    def start_from_data(self, x: Tensor) -> None:
        """Before a new run's first step (``fit`` calls it): the likelihood's own parameters
        that were never trained, from the training data ``x`` (N, *data_shape) as the likelihood
        sees it (standardised where the model standardises): see
        :meth:`vaekit.likelihoods.Likelihood.start_from_data`."""
        if type(self.likelihood).start_from_data is not Likelihood.start_from_data:
            self.likelihood.start_from_data(self._standardized(x.to(self.device, self._dtype)))


#: The attributes holding the networks a VAE builds from its ``network`` setting.
_NETWORK_ROLES = ("encoder", "decoder")
_PLUGIN_HINT = (
    f"give your own networks as a builder registered by an installed package in the entry-point "
    f"group {ENTRY_POINT_GROUP!r} and set network to its name (see {PLUGIN_DOCS})"
)


def refuse_modules(fields: dict[str, Any]) -> None:
    """A :class:`ConfigError` for modules given as ``encoder=`` or ``decoder=`` among
    ``fields`` (a VAE's, or :func:`vaekit.fit`'s keyword arguments)."""
    for role in _NETWORK_ROLES:
        if role in fields:
            raise ConfigError(
                f"{role}= is not a setting: a module passed in could not be rebuilt by load; "
                f"{_PLUGIN_HINT}"
            )


def _prepared(condition: Any, n: int, dim: int) -> bool:
    """Whether ``condition`` is already as :meth:`VAE.condition` makes it for ``n`` examples (a
    float tensor (n, dim)), judged from its type and shape alone (no value is read back)."""
    if condition is None:
        return dim == 0
    return (
        isinstance(condition, Tensor)
        and condition.is_floating_point()
        and tuple(condition.shape) == (n, dim)
    )

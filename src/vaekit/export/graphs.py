"""Each model kind's networks as plain modules for ONNX: tensors in, a tuple of tensors out.

A :class:`Graph` is one file to write: a module, the names, dtypes and meanings of its inputs and
outputs (the batch axis first, dynamic), and a way to draw random inputs that the model accepts
(for checking the exported file against PyTorch). ``vaekit.export.KINDS`` names the builder of
each kind's graphs, which gives for each part that cannot be exported a line saying why.

What each kind exports:

- ``vae`` (mlp, conv, resnet; conditional too; audio runs are vae runs on spectrograms): encoder
  x [, condition] -> mean, logvar of q(z|x); decoder z [, condition] -> p(x|z)'s parameters.
- ``hvae``: encoder x -> q(z1|x); decoder z1 -> p(x|z1); prior z2 -> mean, logvar of p(z1|z2)
  (with p(z2) = N(0, I), what sampling needs).
- ``categorical``: encoder x -> logits, log q(z_l = c | x) (n_latents, n_categories), normalised;
  decoder one-hot z -> p(x|z)'s parameters.
- ``text``: encoder token ids -> mean, logvar; decoder z, ids -> log_probs (T, V): row i is log
  p(x_i | x_<i, z), the tokens before position i read from ids (see :mod:`.text`).

p(x|z)'s parameters by likelihood (:data:`HEADS`): bernoulli -> logits; the Gaussian families ->
mean and logvar (per example, the learned or fixed ones broadcast); discretized_logistic ->
logits, means, log_scales of shape (*data_shape, components).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..distributions import soft_clamp
from ..likelihoods import (
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianFixedLikelihood,
    GaussianLikelihood,
    GaussianPerDimLikelihood,
    GaussianSharedLikelihood,
    Likelihood,
)

#: Draws random inputs of one batch size: (batch, generator) -> input tensors.
Draw = Callable[[int, torch.Generator], tuple[Tensor, ...]]


@dataclass(frozen=True)
class Port:
    """One input or output of a graph: ``name``, ``dtype`` ("float32" or "int64"), ``shape``
    of one example (the batch axis, named "batch", comes first) and what it holds."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    meaning: str

    def describe(self) -> dict[str, Any]:
        """The JSON record of this port: the shape with "batch" first."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": ["batch", *self.shape],
            "meaning": self.meaning,
        }


@dataclass(frozen=True)
class Graph:
    """One ONNX file: ``name`` (the file is NAME.onnx), the module to trace, its inputs, its
    outputs' names and meanings (shapes are read from a traced run), and ``draw``."""

    name: str
    module: nn.Module
    inputs: tuple[Port, ...]
    outputs: tuple[tuple[str, str], ...]
    draw: Draw
    meaning: str


class Unexportable(Exception):
    """A part of a model that has no ONNX graph; the message says which and why, one line."""


# -- p(x|z)'s parameters ------------------------------------------------------------------------


def _bernoulli(lik: Any, params: Tensor) -> tuple[Tensor, ...]:
    (logits,) = lik._split(params)
    return (logits,)


def _gaussian(lik: Any, params: Tensor) -> tuple[Tensor, ...]:
    mean, raw_logvar = lik._split(params)
    return mean, soft_clamp(raw_logvar, lik.min_logvar, lik.max_logvar)


def _gaussian_learned(lik: Any, params: Tensor) -> tuple[Tensor, ...]:
    (mean,) = lik._split(params)
    logvar = soft_clamp(lik.raw_logvar, lik.min_logvar, lik.max_logvar)
    return mean, logvar.expand_as(mean)


def _gaussian_fixed(lik: Any, params: Tensor) -> tuple[Tensor, ...]:
    (mean,) = lik._split(params)
    return mean, (2 * torch.log(lik.std)).expand_as(mean)


def _logistic(lik: Any, params: Tensor) -> tuple[Tensor, ...]:
    return lik._unpack(params)


_MEAN = ("mean", "mean of p(x|z)")
_LOGVAR = ("logvar", "log-variance of p(x|z), natural log")
#: Likelihood class -> (decoder output -> p(x|z)'s parameters, their names and meanings).
HEADS: dict[type[Likelihood], tuple[Callable[[Any, Tensor], tuple[Tensor, ...]], tuple]] = {
    BernoulliLikelihood: (_bernoulli, (("logits", "Bernoulli logits of p(x|z)"),)),
    GaussianLikelihood: (_gaussian, (_MEAN, _LOGVAR)),
    GaussianPerDimLikelihood: (_gaussian_learned, (_MEAN, _LOGVAR)),
    GaussianSharedLikelihood: (_gaussian_learned, (_MEAN, _LOGVAR)),
    GaussianFixedLikelihood: (_gaussian_fixed, (_MEAN, _LOGVAR)),
    DiscretizedLogisticLikelihood: (
        _logistic,
        (
            ("logits", "mixture logits per data dim, last axis: components"),
            ("means", "component means in data units, last axis: components"),
            ("log_scales", "component log-scales in data units, last axis: components"),
        ),
    ),
}


def head(likelihood: Likelihood) -> tuple[Callable[[Tensor], tuple[Tensor, ...]], tuple]:
    """p(x|z)'s parameters from the decoder's output (..., n_params, *data_shape), and their
    (name, meaning) pairs; :class:`Unexportable` for a likelihood with no entry in HEADS."""
    entry = HEADS.get(type(likelihood))
    if entry is None:
        raise Unexportable(
            f"decoder: likelihood {type(likelihood).__name__} has no ONNX form (one of "
            f"{', '.join(sorted(c.__name__ for c in HEADS))} has)"
        )
    fn, names = entry
    return (lambda params: fn(likelihood, params)), names


# -- random inputs ----------------------------------------------------------------------------


def draw_examples(likelihood: Likelihood, shape: tuple[int, ...]) -> Draw:
    """Examples in the likelihood's support: uniform in [0, 1] for unit data (on the 8-bit
    grid for a discretized likelihood), standard normal otherwise."""

    def draw(batch: int, g: torch.Generator) -> tuple[Tensor, ...]:
        if likelihood.support != "unit":
            return (torch.randn((batch, *shape), generator=g),)
        x = torch.rand((batch, *shape), generator=g)
        if likelihood.levels:
            x = torch.round(x * (likelihood.levels - 1)) / (likelihood.levels - 1)
        return (x,)

    return draw


def draw_normal(width: int) -> Draw:
    """Standard normal rows (batch, width)."""
    return lambda batch, g: (torch.randn((batch, width), generator=g),)


def draw_one_hot(n_latents: int, n_categories: int) -> Draw:
    """One-hot blocks (batch, n_latents * n_categories), each latent's value uniform."""

    def draw(batch: int, g: torch.Generator) -> tuple[Tensor, ...]:
        index = torch.randint(n_categories, (batch, n_latents), generator=g)
        return (nn.functional.one_hot(index, n_categories).float().flatten(1),)

    return draw


def with_condition(draw: Draw, condition_dim: int) -> Draw:
    """``draw``'s inputs and one-hot conditions of random classes (batch, condition_dim)."""
    if not condition_dim:
        return draw

    def both(batch: int, g: torch.Generator) -> tuple[Tensor, ...]:
        labels = torch.randint(condition_dim, (batch,), generator=g)
        return (*draw(batch, g), nn.functional.one_hot(labels, condition_dim).float())

    return both


# -- the kinds --------------------------------------------------------------------------------


class Call(nn.Module):
    """``fn(*inputs)`` as a module that holds ``model`` (so its weights are the graph's)."""

    def __init__(self, model: nn.Module, fn: Callable[..., tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.fn(*inputs))


_ENCODED = (("mean", "mean of q(z|x)"), ("logvar", "log-variance of q(z|x), natural log"))


def _x_port(model: Any) -> Port:
    return Port("x", "float32", tuple(model.config.data_shape), "examples")


def _condition_port(dim: int) -> tuple[Port, ...]:
    meaning = "condition: one-hot label (or the vector the model was trained with)"
    return (Port("condition", "float32", (dim,), meaning),) if dim else ()


def _decoder(model: Any, decode: Callable[..., Tensor], z: Port, draw: Draw, extra: tuple) -> Graph:
    """The decoder graph: ``decode(z, *extra)`` -> decoder output, then p(x|z)'s parameters."""
    params_of, names = head(model.likelihood)
    if getattr(model, "data_scale", None) is not None:  # p(x|z) in the data's own units
        params_of = _in_data_units(params_of, model.data_shift.float(), model.data_scale.float())
    return Graph(
        "decoder",
        Call(model, lambda *inputs: params_of(decode(*inputs))),
        (z, *extra),
        names,
        draw,
        f"p(x|z): the parameters of its {model.config.likelihood} likelihood",
    )


def _in_data_units(
    params_of: Callable[[Tensor], tuple[Tensor, ...]], shift: Tensor, scale: Tensor
) -> Callable[[Tensor], tuple[Tensor, ...]]:
    """``params_of`` of a model on standardised data, its (mean, logvar) of p(x|z) moved back to
    the data's units: mean * scale + shift, logvar + 2 log scale (every real likelihood's head
    gives those two)."""

    def in_units(params: Tensor) -> tuple[Tensor, ...]:
        mean, logvar = params_of(params)
        return mean * scale + shift, logvar + 2 * torch.log(scale)

    return in_units


def vae_graphs(model: Any) -> list[Graph | Unexportable]:
    """Encoder and decoder of a :class:`vaekit.VAE` (conditional ones take ``condition``)."""
    c = model.config
    cond = _condition_port(c.condition_dim)
    x_draw = with_condition(draw_examples(model.likelihood, c.data_shape), c.condition_dim)
    encoder = Graph(
        "encoder",
        Call(model, lambda x, *cd: model._encode_params(x, cd[0] if cd else None)),
        (_x_port(model), *cond),
        _ENCODED,
        x_draw,
        "q(z|x): a diagonal Gaussian",
    )
    z = Port("z", "float32", (c.latent_dim,), "latents")
    z_draw = with_condition(draw_normal(c.latent_dim), c.condition_dim)
    decode = lambda z, *cd: model._decode_params(z, cd[0] if cd else None)  # noqa: E731
    return [encoder, _try(lambda: _decoder(model, decode, z, z_draw, cond))]


def hvae_graphs(model: Any) -> list[Graph | Unexportable]:
    """q(z1|x), p(x|z1) and p(z1|z2) of a :class:`vaekit.HVAE`."""
    c = model.config
    encoder = Graph(
        "encoder",
        Call(model, lambda x: model._gaussian(model.encoder, x.reshape(x.shape[0], -1))),
        (_x_port(model),),
        (("mean", "mean of q(z1|x)"), ("logvar", "log-variance of q(z1|x), natural log")),
        draw_examples(model.likelihood, c.data_shape),
        "q(z1|x), the bottom layer: a diagonal Gaussian",
    )
    z1 = Port("z", "float32", (c.latent_dim,), "z1, the bottom latent layer")
    decoder = _try(lambda: _decoder(model, model._decode_params, z1, draw_normal(c.latent_dim), ()))
    prior = Graph(
        "prior",
        Call(model, lambda z2: model._gaussian(model.decoder2, z2)),
        (Port("z2", "float32", (c.latent_dim2,), "z2, the top latent layer; p(z2) = N(0, I)"),),
        (("mean", "mean of p(z1|z2)"), ("logvar", "log-variance of p(z1|z2), natural log")),
        draw_normal(c.latent_dim2),
        "p(z1|z2): a diagonal Gaussian; sample z2 ~ N(0, I), then z1, then decode z1",
    )
    return [encoder, decoder, prior]


def categorical_graphs(model: Any) -> list[Graph | Unexportable]:
    """q(z|x)'s logits and p(x|z) of a :class:`vaekit.models.CategoricalVAE`."""
    c = model.config
    encoder = Graph(
        "encoder",
        Call(model, lambda x: (model._encode_logits(x),)),
        (_x_port(model),),
        (("logits", "log q(z_l = c | x), normalised over the categories c"),),
        draw_examples(model.likelihood, c.data_shape),
        "q(z|x): n_latents independent categoricals",
    )
    meaning = "latents: n_latents one-hot blocks of n_categories, latent l in columns l*C..l*C+C-1"
    z = Port("z", "float32", (c.latent_dim,), meaning)
    draw = draw_one_hot(c.n_latents, c.n_categories)
    return [encoder, _try(lambda: _decoder(model, model._decode_params, z, draw, ()))]


def _try(build: Callable[[], Graph]) -> Graph | Unexportable:
    try:
        return build()
    except Unexportable as err:
        return err

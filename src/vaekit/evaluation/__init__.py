"""Evaluation of a trained model: the report (ELBO, importance-weighted log p(x), bits/dim,
reconstruction and latent usage) and, in :mod:`.gaps`, inference for a given x.

The estimators themselves (per-example ELBO, log p(x), latent statistics) are in
:mod:`vaekit.estimators`, below the models; this package sits above them and the trainer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..estimators import (
    condition_rows,
    conditions_of,
    elbo,
    examples,
    keeps_mode,
    latent_stats,
    log_likelihood,
    sharded,
)
from .gaps import check_refinable, inference_gaps, refine_posterior
from .text import evaluate_text

#: Any model kind (:class:`vaekit.models.base.Model`).
VAE = nn.Module

__all__ = [
    "check_refinable",
    "elbo",
    "evaluate",
    "evaluate_text",
    "inference_gaps",
    "latent_stats",
    "log_likelihood",
    "refine_posterior",
]


@keeps_mode
@torch.no_grad()
def evaluate(
    model: VAE,
    x: Tensor,
    *,
    k: int = 1000,
    seed: int = 0,
    progress: bool = False,
    condition: Tensor | None = None,
    bin_levels: int | None = None,
) -> dict:
    """The usual report on a data set ``x`` (N, *data_shape), as plain Python numbers.

    Keys: ``n``, ``elbo`` (nats), ``log_likelihood`` (nats, K-sample IW estimate), ``k``,
    ``bits_per_dim`` (from the IW estimate), ``reconstruction_mse`` (mean squared error of the
    reconstruction at the posterior mean, per dimension; for a model of standardised data also
    ``reconstruction_mse_standardized``, in units of each dimension's data_scale: 1 is no
    better than its mean), ``kl`` (nats), ``kl_per_dim`` (list),
    ``active_units`` (count of dims with activity > 0.01). ``condition``: the conditions of a
    conditional model, one per example. For a model whose latent takes few enough values to
    enumerate (``model.capabilities.exact_likelihood``), also ``exact_log_likelihood`` (nats, by
    the model's ``log_likelihood_exact``).

    ``bin_levels`` (e.g. 256) says the data are discrete, k / (levels - 1): a continuous
    likelihood's density is then turned into the probability of each value's bin of width
    1 / (levels - 1), so ``bits_per_dim`` = (-log p(x) / D + log(levels - 1)) / log 2 is in the
    discrete bits/dim that 8-bit image models report (key ``bits_per_dim_basis`` says so).
    A likelihood that is already discrete (Bernoulli, discretized logistic) needs no term.

    ``x`` may be a tensor or a numpy array; data that is empty, not finite, of another example
    shape or outside the likelihood's support is a :class:`vaekit.DataError`, as in ``fit``.

    A text model (:class:`vaekit.TextVAE`) gets the report of
    :func:`vaekit.evaluation.text.evaluate_text`, whose bits are per token and whose
    reconstructions are counted in strings and tokens (the squared error of token ids and bits
    per padded position would mean nothing).
    """
    if model.capabilities.tokens:
        if condition is not None or bin_levels is not None:
            raise ConfigError("a text model's report takes no condition and no bin_levels")
        return evaluate_text(model, x, k=k, seed=seed, progress=progress)
    x = examples(model, x)
    model.eval()
    d = model.config.data_dim
    condition = conditions_of(model, condition, x.shape[0])
    kw = {} if condition is None else {"condition": condition}
    # inside a process group (torchrun) the processes share the examples: same numbers
    elbos = sharded.elbo(model, x, seed=seed, **kw)
    ll = sharded.log_likelihood(model, x, k=k, seed=seed, progress=progress, **kw)
    stats = latent_stats(model, x, seed=seed, **kw)
    sq_err = scaled_err = 0.0
    scale = getattr(model, "data_scale", None)  # a standardised table's columns
    for i in range(0, x.shape[0], 1000):
        xb = x[i : i + 1000].to(model.device)
        recon = model.reconstruct(xb, **condition_rows(condition, i, 1000))
        sq_err += float(((recon - xb) ** 2).sum())
        if scale is not None:
            scaled_err += float((((recon - xb) / scale.to(xb.dtype)) ** 2).sum())
    exact = {}
    if model.capabilities.exact_likelihood:
        exact = {"exact_log_likelihood": float(model.log_likelihood_exact(x).mean())}
    nats_per_dim = float(-ll.mean() / d)
    basis = {}
    continuous = model.likelihood.support == "real" and model.likelihood.levels is None
    if bin_levels is not None and continuous:
        nats_per_dim += math.log(bin_levels - 1)
        basis = {"bits_per_dim_basis": f"density times the bin width 1/{bin_levels - 1}"}
    return {
        "n": int(x.shape[0]),
        "elbo": float(elbos.mean()),
        "log_likelihood": float(ll.mean()),
        "k": int(k),
        **exact,
        "bits_per_dim": nats_per_dim / math.log(2),
        **basis,
        "reconstruction_mse": sq_err / (x.shape[0] * d),
        **(
            {"reconstruction_mse_standardized": scaled_err / (x.shape[0] * d)}
            if scale is not None
            else {}
        ),
        "kl": float(stats["kl"] if "kl" in stats else stats["kl_per_dim"].sum()),
        "kl_per_dim": [round(float(v), 6) for v in stats["kl_per_dim"]],
        "active_units": int((stats["activity"] > 0.01).sum()),
    }

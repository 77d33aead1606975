"""Inference for a given x: the best diagonal Gaussian q*(z|x) with the model held fixed, and
the gaps of the ELBO it measures."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from tqdm.auto import tqdm

from ..config import check_count
from ..distributions import diag_normal
from ..errors import ConfigError
from ..estimators import (
    condition_rows,
    conditions_of,
    examples,
    keeps_mode,
    log_likelihood,
    seeded_generator,
)
from ..train.optim import FlatAdam

#: Any model kind (:class:`vaekit.models.base.Model`).
VAE = nn.Module

# -- inference for given x: the best diagonal Gaussian, and the gaps of the ELBO -------------------
#
# The encoder answers the inference problem for every x in one pass, q(z|x); for a given x the
# best diagonal Gaussian q*(z|x) (the generative model held fixed) can do better. Cremer, Li &
# Duvenaud (2018) split the ELBO's shortfall log p(x) - ELBO(q) into an approximation gap,
# log p(x) - ELBO(q*), the price of the Gaussian family, and an amortization gap,
# ELBO(q*) - ELBO(q), the price of one network for all x.

#: Draws of the last comparison of :func:`refine_posterior`, refined q against the encoder's.
CHECK_SAMPLES = 64


def check_refinable(model: VAE) -> None:
    """A :class:`ConfigError` unless ``model``'s kind is one :func:`refine_posterior` takes."""
    if not model.capabilities.refinable:
        raise ConfigError(
            "refining q(z|x) needs a model with one diagonal Gaussian latent (kind 'vae' or "
            f"'text'); this model is kind {model.kind!r}"
        )


def _check_refinement(model: VAE, steps: int, lr: float, samples: int, batch_size: int) -> None:
    """A :class:`ConfigError` for a model kind or a setting that refinement cannot take, before
    any work is done."""
    check_refinable(model)
    check_count("steps", steps, least=0)
    check_count("samples", samples)
    check_count("batch_size", batch_size)
    number = isinstance(lr, numbers.Real) and not isinstance(lr, bool)
    if not (number and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")


def _gaussian_log_w(
    model: VAE, x: Tensor, loc: Tensor, log_std: Tensor, eps: Tensor, kw: dict[str, Tensor]
) -> Tensor:
    """Log-weights log p(x|z) + log p(z) - log q(z|x), (S, B), of q(z|x) = N(loc,
    diag(exp(log_std))^2) for ``x`` (B, ...) at z = loc + exp(log_std) * eps, ``eps``
    (S, B, latent_dim). Their mean over S estimates the ELBO, with no error at all when q is the
    exact posterior. log q is taken at q's parameters held fixed, which leaves every value as it
    is and drops the score term from the gradient: the "sticking the landing" estimator (Roeder,
    Wu & Duvenaud 2017), whose variance vanishes as q reaches the posterior."""
    std = log_std.exp()
    z = loc + std * eps  # (S, B, latent_dim)
    log_qz_x = diag_normal(loc.detach(), scale=std.detach()).log_prob(z)
    log_pz = model.prior.log_prob(z)  # closed form; a mixture goes in chunks without gradients
    return model.decode(z, **kw).log_prob(x) + log_pz - log_qz_x


def _model_input(model: VAE, x: Tensor) -> Tensor:
    """``x`` on the model's device in its float dtype (a text model reads its ids from floats)."""
    return x.to(model.device, next(model.parameters()).dtype)


@keeps_mode
def refine_posterior(
    model: VAE,
    x: Tensor,
    *,
    steps: int = 500,
    lr: float = 0.05,
    samples: int = 4,
    seed: int = 0,
    batch_size: int = 1000,
    condition: Any = None,
    progress: bool = False,
) -> Distribution:
    """Inference for given ``x`` (N, *data_shape) with the model held fixed: for each example the
    diagonal Gaussian q*(z|x) that maximises its ELBO, started at the encoder's q(z|x). ``x``: a
    tensor or numpy array, checked as for :func:`log_likelihood`.

    Each example's mean and log standard deviation take ``steps`` Adam steps (learning rate
    ``lr``, decayed to 0 along a half cosine) on its ELBO, estimated with ``samples``
    reparameterised draws a step and the path-derivative gradient, which has no variance at the
    exact posterior (Roeder, Wu & Duvenaud 2017). Adam updates each coordinate on its own, so
    no example's steps depend on the others in its batch. An example whose refined q scores
    below the encoder's on a last estimate (``CHECK_SAMPLES`` common draws) keeps the
    encoder's. The model's weights get no gradient and are not changed.

    Returns q*(z|x): a diagonal Gaussian with batch shape (N,) and event shape (latent_dim,), on
    the model's device, without gradients. ``condition``: the conditions of a conditional model,
    one per example. Models whose capabilities say ``refinable`` only (kinds "vae" and "text").
    """
    _check_refinement(model, steps, lr, samples, batch_size)
    x = examples(model, x)
    model.eval()
    condition = conditions_of(model, condition, x.shape[0])
    g = seeded_generator(model.device, seed)
    locs, scales = [], []
    batches = -(-x.shape[0] // batch_size)
    bar = tqdm(total=batches * steps, disable=not progress, unit="step", leave=False,
               desc=f"refine q of {x.shape[0]} examples")  # fmt: skip
    for start in range(0, x.shape[0], batch_size):
        xb = _model_input(model, x[start : start + batch_size])
        kw = condition_rows(condition, start, batch_size)
        with torch.no_grad():
            qz_x = model.encode(xb, **kw).base_dist
        loc = qz_x.loc.detach().clone().requires_grad_(True)
        log_std = qz_x.scale.log().detach().clone().requires_grad_(True)
        optimizer = FlatAdam([loc, log_std], lr)  # skips a step that is not finite
        for t in range(steps):
            optimizer.lr.fill_(lr * 0.5 * (1.0 + math.cos(math.pi * t / steps)))
            eps = torch.randn((samples, *loc.shape), generator=g, device=loc.device,
                              dtype=loc.dtype)  # fmt: skip
            with torch.enable_grad():
                bound = _gaussian_log_w(model, xb, loc, log_std, eps, kw).mean(0).sum()
                loc.grad, log_std.grad = torch.autograd.grad(-bound, [loc, log_std])
            optimizer(bound.detach())
            bar.update()
        with torch.no_grad():  # noisy steps can leave an example worse off than it started
            eps = torch.randn((max(CHECK_SAMPLES, samples), *loc.shape), generator=g,
                              device=loc.device, dtype=loc.dtype)  # fmt: skip
            before = _gaussian_log_w(model, xb, qz_x.loc, qz_x.scale.log(), eps, kw).mean(0)
            better = _gaussian_log_w(model, xb, loc, log_std, eps, kw).mean(0) >= before  # (B,)
            locs.append(torch.where(better[:, None], loc, qz_x.loc))
            scales.append(torch.where(better[:, None], log_std.exp(), qz_x.scale))
    bar.close()
    loc_all, scale_all = torch.cat(locs), torch.cat(scales)
    return diag_normal(loc_all, scale=scale_all)


@keeps_mode
@torch.no_grad()
def inference_gaps(
    model: VAE,
    x: Tensor,
    *,
    k: int = 5000,
    steps: int = 500,
    lr: float = 0.05,
    samples: int = 100,
    seed: int = 0,
    batch_size: int = 1000,
    condition: Any = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """Where the ELBO of ``x`` (N, *data_shape) falls short of log p(x), per example, in nats.

    Returns (N,) float64 tensors on the CPU:

    - ``log_likelihood``: the K-sample importance-weighted estimate (:func:`log_likelihood`);
    - ``elbo``: the ELBO of the encoder's q(z|x);
    - ``elbo_refined``: the ELBO of q*(z|x), the best diagonal Gaussian for each x found by
      :func:`refine_posterior` (``steps``, ``lr``);
    - ``approximation_gap`` = log_likelihood - elbo_refined: what a diagonal Gaussian cannot
      capture of the true posterior (KL(q* || p(z|x)));
    - ``amortization_gap`` = elbo_refined - elbo: what sharing one encoder among all x costs.

    Both ELBOs use the same ``samples`` draws of noise, so their difference carries little Monte
    Carlo error. The approximation gap inherits the downward bias of the K-sample estimate (it
    reads low by that bias, and can be slightly negative when the gap is near zero). Cremer, Li
    & Duvenaud, *Inference Suboptimality in Variational Autoencoders*, 2018.
    """
    _check_refinement(model, steps, lr, samples, batch_size)
    check_count("k", k)
    x = examples(model, x)
    model.eval()  # refine_posterior puts the mode back: the ELBOs below need evaluation mode
    refined = refine_posterior(
        model, x, steps=steps, lr=lr, seed=seed, batch_size=batch_size, condition=condition,
        progress=progress,
    )  # fmt: skip
    conditions = conditions_of(model, condition, x.shape[0])
    g = seeded_generator(model.device, seed)
    amortized, best = [], []
    for start in range(0, x.shape[0], batch_size):
        xb = _model_input(model, x[start : start + batch_size])
        kw = condition_rows(conditions, start, batch_size)
        q = model.encode(xb, **kw).base_dist
        q_star = refined.base_dist
        loc, scale = (t[start : start + batch_size] for t in (q_star.loc, q_star.scale))
        eps = torch.randn((samples, *loc.shape), generator=g, device=loc.device, dtype=loc.dtype)
        for out, (mu, sigma) in ((amortized, (q.loc, q.scale)), (best, (loc, scale))):
            log_w = _gaussian_log_w(model, xb, mu, sigma.log(), eps, kw)  # (S, B)
            out.append(log_w.double().mean(0).cpu())
    kw_all = {} if conditions is None else {"condition": conditions}
    log_px = log_likelihood(model, x, k=k, seed=seed, progress=progress, **kw_all)
    elbo_q, elbo_best = torch.cat(amortized), torch.cat(best)
    return {
        "log_likelihood": log_px,
        "elbo": elbo_q,
        "elbo_refined": elbo_best,
        "approximation_gap": log_px - elbo_best,
        "amortization_gap": elbo_best - elbo_q,
    }

"""Estimators of a trained model: importance-weighted log p(x), the per-example ELBO and the
statistics of the latents, for any model kind through the protocol of :mod:`vaekit.models.base`.

Everything here runs without gradients, in batches, and is reproducible under ``seed``: the noise
comes from a generator seeded once, consumed in a fixed order. These sit below the models, whose
``elbo`` and ``log_likelihood`` methods call them; the report and the inference gaps are in
:mod:`vaekit.evaluation`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence
from tqdm.auto import tqdm

from ..config import check_count
from ..data.checks import as_tensor, check_examples
from ..distributions import rsample
from ..errors import ConfigError
from ..objectives import elbo as elbo_bound
from .fused import fused_applies, log_likelihood_fused

#: Any model kind (:class:`vaekit.models.base.Model`).
VAE = nn.Module

F = TypeVar("F", bound=Callable[..., Any])

#: Floats of decoder output (and hidden activations) one evaluation chunk may hold, per device.
#: On CPU, 2**24 floats (10,000 rows of a 784-400-20 VAE, several live 31 MB tensors) made
#: glibc return the memory to the system after each chunk and fault it in again for the next:
#: 680k page faults and 1.4 s of system time for 60 test images at K = 5000; 2**23 none
#: (2.4 s against 1.7 s in all).
CHUNK_BUDGET = {"cpu": 2**23, "cuda": 2**28}

#: Most decoder passes (importance samples K x examples) one log p(x) estimate may take:
#: 10^10, 200 times the usual K = 5000 on 10,000 test images. Memory does not grow with K (the
#: samples are taken in chunks), time does: a 784-400-20 MLP made 1.8 x 10^5 passes a second on
#: one CPU core (60 images at K = 5000 in 1.7 s, above), so 10^10 is about 15 hours there. Past
#: the bound, log p(x) is refused with the count; ``max_passes=None`` lifts it.
MAX_DECODER_PASSES = 10**10


def check_passes(k: int, n: int, max_passes: int | None = MAX_DECODER_PASSES) -> int:
    """The decoder passes (``k`` samples x ``n`` examples) of a log p(x) estimate; a
    :class:`ConfigError` with the count, before any work, where they exceed ``max_passes``
    (None: no bound)."""
    passes = k * n
    if max_passes is not None and passes > max_passes:
        most = max_passes // max(n, 1)
        raise ConfigError(
            f"log p(x) with k={k} on {n} examples takes {passes:.1e} decoder passes, more than "
            f"the {max_passes:.0e} vaekit allows (k=5000 on 10,000 examples takes 5.0e+07); "
            f"lower k (at most {most} for {n} examples) or use fewer examples"
        )
    return passes


def work_line(k: int, n: int) -> str:
    """What a log p(x) estimate costs, for a person: ``log p(x): K=5000 on 10000 examples,
    5.0e+07 decoder passes``."""
    return f"log p(x): K={k} on {n} examples, {k * n:.1e} decoder passes"


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _rows_per_chunk(model: VAE, device: torch.device) -> int:
    """How many (sample, example) pairs fit in one chunk of the budget."""
    c = model.config
    row_cost = model.likelihood.n_params * c.data_dim + model.floats_per_row + 4 * c.latent_dim
    budget = CHUNK_BUDGET.get(device.type, CHUNK_BUDGET["cpu"])
    return max(1, budget // row_cost)


def condition_rows(condition: Tensor | None, start: int, size: int) -> dict[str, Tensor]:
    """``{"condition": rows start..start+size}``, or nothing for an unconditional call."""
    if condition is None:
        return {}
    return {"condition": condition[start : start + size]}


def keeps_mode(f: F) -> F:
    """Decorator of a function of ``(model, ...)`` that puts the model in evaluation mode: the
    model's training flag is put back as it was afterwards, so a training loop of one's own that
    estimates a bound now and then goes on training as it did (a categorical model on its exact
    ELBO, a text model with word dropout and free bits)."""

    @functools.wraps(f)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        was_training = model.training
        try:
            return f(model, *args, **kwargs)
        finally:
            model.train(was_training)

    return wrapper  # type: ignore[return-value]


def check_data(model: VAE, x: Tensor, name: str = "data") -> None:
    """Raise :class:`DataError` unless ``x`` is non-empty, finite, of the model's example shape and
    inside the support of its likelihood (:func:`vaekit.data.checks.check_examples`)."""
    lik = model.likelihood
    check_examples(
        x,
        model.config.data_shape,
        support=lik.support,
        levels=lik.levels,
        likelihood=model.config.likelihood,
        name=name,
    )


def examples(model: VAE, x: Any, name: str = "data") -> Tensor:
    """``x`` as a tensor (a numpy array's dtype kept, other data sets as float32) after
    :func:`vaekit.train.check_data`: a :class:`DataError` for data that is empty, not finite,
    of another example shape or outside the likelihood's support."""
    keep = isinstance(x, np.ndarray | Tensor)  # their dtype is kept; other data as float32
    x = as_tensor(x, name, None if keep else torch.float32)
    check_data(model, x, name)
    return x


def as_input(x: Any, name: str = "x") -> Tensor:
    """``x`` (a tensor, numpy array or nested lists of numbers) as a tensor of its own numeric
    dtype, for a model's ``encode``/``reconstruct``: a :class:`DataError` naming ``name`` for
    strings, dicts, ragged lists, object or complex arrays, before torch sees them."""
    return as_tensor(x, name, None)


def conditions_of(model: VAE, condition: Any, n: int) -> Tensor | None:
    """The conditions of ``n`` examples as (n, condition_dim) floats, or None when not given."""
    return None if condition is None else model.condition(condition, n)


@keeps_mode
@torch.no_grad()
def log_likelihood(
    model: VAE,
    x: Tensor,
    k: int = 5000,
    *,
    seed: int = 0,
    rows_per_chunk: int | None = None,
    progress: bool = False,
    fused: bool | None = None,
    matmul_precision: str = "tf32x3",
    condition: Tensor | None = None,
    max_passes: int | None = MAX_DECODER_PASSES,
) -> Tensor:
    """Importance-weighted estimate of log p(x) in nats per example, shape (N,).

    log p(x) ~ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x) (Burda et al. 2016).
    The K samples are split into chunks of at most ``rows_per_chunk`` (sample, example) pairs and
    combined with a running logsumexp, so memory does not grow with K. ``x``: (N, *data_shape),
    a tensor or numpy array, checked as :func:`vaekit.fit` checks its data (:func:`examples`).

    On CUDA, for a one-hidden-layer relu/tanh decoder with a Bernoulli likelihood and a standard
    normal prior, a fused kernel computes the log-weights without writing the logits to memory
    (``fused=None``: whenever it applies; ``False``: never; ``True``: required, else ValueError).
    ``matmul_precision`` is its matrix-product mode: "ieee" (plain float32), "tf32x3" (three
    TF32 products, about float32 accuracy; the default) or "tf32" (fastest, about 1e-3 relative
    error in the logits). The log-sum-exp over samples is in float64 either way.

    ``condition`` (N, condition_dim) or labels (N,): the conditions of a conditional model.

    ``max_passes``: the most decoder passes (K x N) to take on (:data:`MAX_DECODER_PASSES`;
    None: no bound); more is a :class:`ConfigError` with the count, before any work. The
    progress bar counts the passes.
    """
    check_count("k", k)
    x = examples(model, x)
    check_passes(k, x.shape[0], max_passes)
    model.eval()
    condition = conditions_of(model, condition, x.shape[0])
    if fused is not False:
        why = fused_applies(model) if condition is None else "the model is conditional"
        if why is None:
            per_pass = max(1, min(x.shape[0], 2**26 // (k * (model.config.latent_dim + 1))))
            return log_likelihood_fused(
                model,
                x,
                k,
                seed,
                matmul_precision,
                (rows_per_chunk or per_pass * k) // k or 1,
                progress,
            )
        if fused:
            raise ValueError(f"the fused log-likelihood kernel does not apply: {why}")
    device = model.device
    g = seeded_generator(device, seed)
    rows = rows_per_chunk or _rows_per_chunk(model, device)
    n = x.shape[0]
    batch = max(1, min(n, rows // k))  # examples per pass
    k_chunk = max(1, min(k, rows // batch))  # samples per pass
    out = torch.empty(n, dtype=torch.float64)
    bar = passes_bar(n * k, progress)
    for start in range(0, n, batch):
        xb = x[start : start + batch].to(device)
        total = torch.full((xb.shape[0],), -math.inf, device=device, dtype=torch.float64)
        for k0 in range(0, k, k_chunk):
            kw = condition_rows(condition, start, batch)
            log_w = model(xb, k=min(k_chunk, k - k0), generator=g, **kw).log_w  # (k_chunk, B)
            total = torch.logaddexp(total, torch.logsumexp(log_w.double(), dim=0))
            bar.update(log_w.shape[0] * xb.shape[0])
        out[start : start + batch] = (total - math.log(k)).cpu()
    bar.close()
    return out


def passes_bar(total: int, progress: bool) -> Any:
    """A progress bar of ``total`` decoder passes (shown with SI prefixes: 1.2G), or a silent one
    where ``progress`` is False."""
    return tqdm(
        total=total, disable=not progress, unit="pass", unit_scale=True, desc="log p(x)",
        leave=False,
    )  # fmt: skip


@keeps_mode
@torch.no_grad()
def elbo(
    model: VAE,
    x: Tensor,
    *,
    samples: int = 1,
    seed: int = 0,
    batch_size: int = 1000,
    condition: Tensor | None = None,
) -> Tensor:
    """ELBO per example in nats, shape (N,), with ``samples`` Monte Carlo samples each.

    ``x``: (N, *data_shape), a tensor or numpy array, checked as for :func:`log_likelihood`.

    ``condition``: the conditions of a conditional model, one per example."""
    check_count("samples", samples)
    check_count("batch_size", batch_size)
    x = examples(model, x)
    model.eval()
    condition = conditions_of(model, condition, x.shape[0])
    device = model.device
    g = seeded_generator(device, seed)
    parts = [
        elbo_bound(
            model(
                x[i : i + batch_size].to(device),
                k=samples,
                generator=g,
                **condition_rows(condition, i, batch_size),
            )
        ).cpu()
        for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(parts) if parts else torch.empty(0)


@keeps_mode
@torch.no_grad()
def latent_stats(
    model: VAE,
    x: Tensor,
    *,
    batch_size: int = 1000,
    samples: int = 16,
    seed: int = 0,
    condition: Tensor | None = None,
) -> dict[str, Tensor]:
    """Posterior statistics over a data set ``x`` (N, *data_shape).

    Returns ``kl_per_dim`` (latent_dim,): the average KL(q(z_d|x) || p(z_d)) of each latent
    dimension to the prior's marginal p(z_d), in nats; ``kl`` (): the average KL(q(z|x) || p(z));
    and ``activity`` (latent_dim,): Var_x(E_q[z_d|x]), the quantity whose exceeding 0.01 makes a
    unit "active" (Burda et al. 2016). The KLs are in closed form for a factorised Gaussian prior
    and Monte Carlo estimates with ``samples`` draws per example (seeded) for a mixture prior.
    A model with a ``latent_stats`` method of its own (the two-layer
    :class:`vaekit.HVAE`, whose p(z1) has no closed form, and
    :class:`vaekit.CategoricalVAE`, whose latents are categorical) gives them itself.
    """
    check_count("batch_size", batch_size)
    x = examples(model, x)
    model.eval()
    kw = {} if condition is None else {"condition": condition}
    return model.latent_stats(x, batch_size=batch_size, samples=samples, seed=seed, **kw)


@torch.no_grad()
def gaussian_latent_stats(
    model: VAE,
    x: Tensor,
    *,
    batch_size: int = 1000,
    samples: int = 16,
    seed: int = 0,
    condition: Tensor | None = None,
) -> dict[str, Tensor]:
    """:func:`latent_stats` of a model whose q(z|x) is one diagonal Gaussian over the z that
    ``pz`` and ``decode`` take (the default ``latent_stats`` of every model kind)."""
    condition = conditions_of(model, condition, x.shape[0])
    prior = model.prior
    g = seeded_generator(model.device, seed)
    means, kls, totals = [], [], []
    for i in range(0, x.shape[0], batch_size):
        kw = condition_rows(condition, i, batch_size)
        qz_x = model.encode(x[i : i + batch_size].to(model.device), **kw)
        if prior.analytic_kl:
            kl_d = kl_divergence(qz_x.base_dist, model.pz().base_dist)  # (B, latent_dim)
            totals.append(kl_d.sum().cpu())
        else:
            z = rsample(qz_x, samples, g)  # (S, B, latent_dim)
            kl_d = (qz_x.base_dist.log_prob(z) - prior.marginal_log_prob(z)).mean(0)
            totals.append((qz_x.log_prob(z) - prior.log_prob(z)).mean(0).sum().cpu())
        kls.append(kl_d.sum(0).cpu())  # (latent_dim,)
        means.append(qz_x.mean.cpu())
    mu_all = torch.cat(means)
    return {
        "kl_per_dim": torch.stack(kls).sum(0) / x.shape[0],
        "kl": torch.stack(totals).sum() / x.shape[0],
        "activity": mu_all.var(0, unbiased=False),
    }

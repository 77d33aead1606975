"""Evaluation: importance-weighted log p(x), ELBO, bits/dim, reconstruction and latent usage.

Everything here runs without gradients, in batches, and is reproducible under ``seed``: the noise
comes from a generator seeded once, consumed in a fixed order.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .objectives import elbo as elbo_bound

if TYPE_CHECKING:
    from .model import VAE

#: Floats of decoder output (and hidden activations) one evaluation chunk may hold, per device.
CHUNK_BUDGET = {"cpu": 2**24, "cuda": 2**28}


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _rows_per_chunk(model: VAE, device: torch.device) -> int:
    """How many (sample, example) pairs fit in one chunk of the budget."""
    c = model.config
    row_cost = model.likelihood.n_params * c.data_dim + 2 * sum(c.hidden) + 4 * c.latent_dim
    budget = CHUNK_BUDGET.get(device.type, CHUNK_BUDGET["cpu"])
    return max(1, budget // row_cost)


@torch.no_grad()
def log_likelihood(
    model: VAE,
    x: Tensor,
    k: int = 5000,
    *,
    seed: int = 0,
    rows_per_chunk: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Importance-weighted estimate of log p(x) in nats per example, shape (N,).

    log p(x) ~ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x) (Burda et al. 2016).
    The K samples are split into chunks of at most ``rows_per_chunk`` (sample, example) pairs and
    combined with a running logsumexp, so memory does not grow with K. ``x``: (N, *data_shape).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model.eval()
    device = model.device
    g = _generator(device, seed)
    rows = rows_per_chunk or _rows_per_chunk(model, device)
    n = x.shape[0]
    batch = max(1, min(n, rows // k))  # examples per pass
    k_chunk = max(1, min(k, rows // batch))  # samples per pass
    out = torch.empty(n, dtype=torch.float64)
    bar = tqdm(total=n, disable=not progress, unit="ex", desc="log p(x)", leave=False)
    for start in range(0, n, batch):
        xb = x[start : start + batch].to(device)
        total = torch.full((xb.shape[0],), -math.inf, device=device, dtype=torch.float64)
        for k0 in range(0, k, k_chunk):
            log_w = model(xb, k=min(k_chunk, k - k0), generator=g).log_w  # (k_chunk, B)
            total = torch.logaddexp(total, torch.logsumexp(log_w.double(), dim=0))
        out[start : start + batch] = (total - math.log(k)).cpu()
        bar.update(xb.shape[0])
    bar.close()
    return out


@torch.no_grad()
def elbo(
    model: VAE, x: Tensor, *, samples: int = 1, seed: int = 0, batch_size: int = 1000
) -> Tensor:
    """ELBO per example in nats, shape (N,), with ``samples`` Monte Carlo samples each."""
    model.eval()
    device = model.device
    g = _generator(device, seed)
    parts = [
        elbo_bound(model(x[i : i + batch_size].to(device), k=samples, generator=g)).cpu()
        for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(parts) if parts else torch.empty(0)


@torch.no_grad()
def latent_stats(model: VAE, x: Tensor, *, batch_size: int = 1000) -> dict[str, Tensor]:
    """Posterior statistics over a data set ``x`` (N, *data_shape).

    Returns ``kl_per_dim`` (latent_dim,): the average closed-form KL of each latent dimension to
    N(0, 1) in nats, and ``activity`` (latent_dim,): Var_x(E_q[z_d|x]), the quantity whose
    exceeding 0.01 makes a unit "active" (Burda et al. 2016).
    """
    model.eval()
    means, kls = [], []
    for i in range(0, x.shape[0], batch_size):
        qz_x = model.encode(x[i : i + batch_size].to(model.device))
        mu, var = qz_x.mean, qz_x.variance  # (B, latent_dim)
        kls.append((0.5 * (mu**2 + var - var.log() - 1)).sum(0).cpu())
        means.append(mu.cpu())
    mu_all = torch.cat(means)
    return {
        "kl_per_dim": torch.stack(kls).sum(0) / x.shape[0],
        "activity": mu_all.var(0, unbiased=False),
    }


@torch.no_grad()
def evaluate(
    model: VAE, x: Tensor, *, k: int = 1000, seed: int = 0, progress: bool = False
) -> dict:
    """The usual report on a data set ``x`` (N, *data_shape), as plain Python numbers.

    Keys: ``n``, ``elbo`` (nats), ``log_likelihood`` (nats, K-sample IW estimate), ``k``,
    ``bits_per_dim`` (from the IW estimate), ``reconstruction_mse`` (mean squared error of the
    reconstruction at the posterior mean, per dimension), ``kl`` (nats), ``kl_per_dim`` (list),
    ``active_units`` (count of dims with activity > 0.01).
    """
    model.eval()
    d = model.config.data_dim
    elbos = elbo(model, x, seed=seed)
    ll = log_likelihood(model, x, k=k, seed=seed, progress=progress)
    stats = latent_stats(model, x)
    sq_err = 0.0
    for i in range(0, x.shape[0], 1000):
        xb = x[i : i + 1000].to(model.device)
        sq_err += float(((model.reconstruct(xb) - xb) ** 2).sum())
    return {
        "n": int(x.shape[0]),
        "elbo": float(elbos.mean()),
        "log_likelihood": float(ll.mean()),
        "k": int(k),
        "bits_per_dim": float(-ll.mean() / (d * math.log(2))),
        "reconstruction_mse": sq_err / (x.shape[0] * d),
        "kl": float(stats["kl_per_dim"].sum()),
        "kl_per_dim": [round(float(v), 6) for v in stats["kl_per_dim"]],
        "active_units": int((stats["activity"] > 0.01).sum()),
    }

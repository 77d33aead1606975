"""Evaluation: importance-weighted log p(x), ELBO, bits/dim, reconstruction and latent usage.

Everything here runs without gradients, in batches, and is reproducible under ``seed``: the noise
comes from a generator seeded once, consumed in a fixed order.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, kl_divergence
from tqdm.auto import tqdm

from .errors import ConfigError
from .model import check_count
from .objectives import elbo as elbo_bound

if TYPE_CHECKING:
    from .model import VAE

F = TypeVar("F", bound=Callable[..., Any])

#: Floats of decoder output (and hidden activations) one evaluation chunk may hold, per device.
#: On CPU, 2**24 floats (10,000 rows of a 784-400-20 VAE, several live 31 MB tensors) made
#: glibc return the memory to the system after each chunk and fault it in again for the next:
#: 680k page faults and 1.4 s of system time for 60 test images at K = 5000; 2**23 none
#: (2.4 s against 1.7 s in all).
CHUNK_BUDGET = {"cpu": 2**23, "cuda": 2**28}


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _rows_per_chunk(model: VAE, device: torch.device) -> int:
    """How many (sample, example) pairs fit in one chunk of the budget."""
    c = model.config
    hidden = sum(
        getattr(m, "floats_per_row", sum(c.hidden)) for m in (model.encoder, model.decoder)
    )
    row_cost = model.likelihood.n_params * c.data_dim + hidden + 4 * c.latent_dim
    budget = CHUNK_BUDGET.get(device.type, CHUNK_BUDGET["cpu"])
    return max(1, budget // row_cost)


def _condition_chunk(condition: Tensor | None, start: int, size: int) -> dict[str, Tensor]:
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


def examples(model: VAE, x: Any, name: str = "data") -> Tensor:
    """``x`` as a tensor (a numpy array's dtype kept, other data sets as float32) after
    :func:`vaekit.train.check_data`: a :class:`DataError` for data that is empty, not finite,
    of another example shape or outside the likelihood's support."""
    from .train import as_tensor, check_data

    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    x = x if isinstance(x, Tensor) else as_tensor(x, name)
    check_data(model, x, name)
    return x


def _conditions(model: VAE, condition: Any, n: int) -> Tensor | None:
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
    """
    check_count("k", k)
    x = examples(model, x)
    model.eval()
    condition = _conditions(model, condition, x.shape[0])
    if fused is not False:
        why = fused_applies(model) if condition is None else "the model is conditional"
        if why is None:
            per_pass = max(1, min(x.shape[0], 2**26 // (k * (model.config.latent_dim + 1))))
            return _log_likelihood_fused(
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
            kw = _condition_chunk(condition, start, batch)
            log_w = model(xb, k=min(k_chunk, k - k0), generator=g, **kw).log_w  # (k_chunk, B)
            total = torch.logaddexp(total, torch.logsumexp(log_w.double(), dim=0))
        out[start : start + batch] = (total - math.log(k)).cpu()
        bar.update(xb.shape[0])
    bar.close()
    return out


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
    condition = _conditions(model, condition, x.shape[0])
    device = model.device
    g = _generator(device, seed)
    parts = [
        elbo_bound(
            model(
                x[i : i + batch_size].to(device),
                k=samples,
                generator=g,
                **_condition_chunk(condition, i, batch_size),
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
    :class:`vaekit.hierarchical.HVAE`, whose p(z1) has no closed form, and
    :class:`vaekit.discrete.CategoricalVAE`, whose latents are categorical) gives them itself.
    """
    from .model import rsample

    check_count("batch_size", batch_size)
    x = examples(model, x)
    model.eval()
    if hasattr(model, "latent_stats"):
        return model.latent_stats(x, batch_size=batch_size, seed=seed)
    condition = _conditions(model, condition, x.shape[0])
    prior = model.prior
    g = _generator(model.device, seed)
    means, kls, totals = [], [], []
    for i in range(0, x.shape[0], batch_size):
        kw = _condition_chunk(condition, i, batch_size)
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
    reconstruction at the posterior mean, per dimension), ``kl`` (nats), ``kl_per_dim`` (list),
    ``active_units`` (count of dims with activity > 0.01). ``condition``: the conditions of a
    conditional model, one per example. For a model whose latent takes few
    enough values to enumerate (``model.config.enumerable``), also ``exact_log_likelihood``
    (nats, by :func:`vaekit.discrete.log_likelihood_exact`).

    ``bin_levels`` (e.g. 256) says the data are discrete, k / (levels - 1): a continuous
    likelihood's density is then turned into the probability of each value's bin of width
    1 / (levels - 1), so ``bits_per_dim`` = (-log p(x) / D + log(levels - 1)) / log 2 is in the
    discrete bits/dim that 8-bit image models report (key ``bits_per_dim_basis`` says so).
    A likelihood that is already discrete (Bernoulli, discretized logistic) needs no term.

    ``x`` may be a tensor or a numpy array; data that is empty, not finite, of another example
    shape or outside the likelihood's support is a :class:`vaekit.DataError`, as in ``fit``.

    A text model (:class:`vaekit.TextVAE`) gets :func:`vaekit.text.evaluate_text`'s report,
    whose bits are per token and whose reconstructions are counted in strings and tokens (the
    squared error of token ids and bits per padded position would mean nothing).
    """
    if getattr(model, "kind", None) == "text":
        from .text import evaluate_text

        if condition is not None or bin_levels is not None:
            raise ConfigError("a text model's report takes no condition and no bin_levels")
        return evaluate_text(model, x, k=k, seed=seed, progress=progress)
    x = examples(model, x)
    model.eval()
    d = model.config.data_dim
    condition = _conditions(model, condition, x.shape[0])
    kw = {} if condition is None else {"condition": condition}
    elbos = elbo(model, x, seed=seed, **kw)
    ll = log_likelihood(model, x, k=k, seed=seed, progress=progress, **kw)
    stats = latent_stats(model, x, seed=seed, **kw)
    sq_err = 0.0
    for i in range(0, x.shape[0], 1000):
        xb = x[i : i + 1000].to(model.device)
        recon = model.reconstruct(xb, **_condition_chunk(condition, i, 1000))
        sq_err += float(((recon - xb) ** 2).sum())
    exact = {}
    if getattr(model.config, "enumerable", False):
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
        "kl": float(stats["kl"] if "kl" in stats else stats["kl_per_dim"].sum()),
        "kl_per_dim": [round(float(v), 6) for v in stats["kl_per_dim"]],
        "active_units": int((stats["activity"] > 0.01).sum()),
    }


# -- inference for given x: the best diagonal Gaussian, and the gaps of the ELBO -------------------
#
# The encoder answers the inference problem for every x in one pass, q(z|x); for a given x the
# best diagonal Gaussian q*(z|x) (the generative model held fixed) can do better. Cremer, Li &
# Duvenaud (2018) split the ELBO's shortfall log p(x) - ELBO(q) into an approximation gap,
# log p(x) - ELBO(q*), the price of the Gaussian family, and an amortization gap,
# ELBO(q*) - ELBO(q), the price of one network for all x.

#: Model kinds whose ``encode`` is a diagonal Gaussian over the same z that ``pz`` and ``decode``
#: take (the two-layer model's q(z1|x) is not, and the categorical model's posterior is exact).
REFINABLE_KINDS = ("vae", "text")
#: Draws of the last comparison of :func:`refine_posterior`, refined q against the encoder's.
CHECK_SAMPLES = 64


def check_refinable(model: VAE) -> None:
    """A :class:`ConfigError` unless ``model``'s kind is one :func:`refine_posterior` takes."""
    kind = getattr(model, "kind", "?")
    if kind not in REFINABLE_KINDS:
        raise ConfigError(
            f"refining q(z|x) needs a model with one diagonal Gaussian latent (kind "
            f"{' or '.join(map(repr, REFINABLE_KINDS))}); this model is kind {kind!r}"
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
    log_qz_x = Independent(Normal(loc.detach(), std.detach(), validate_args=False), 1).log_prob(z)
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
    one per example. Kinds "vae" and "text" only (:data:`REFINABLE_KINDS`).
    """
    from .train import FlatAdam

    _check_refinement(model, steps, lr, samples, batch_size)
    x = examples(model, x)
    model.eval()
    condition = _conditions(model, condition, x.shape[0])
    g = _generator(model.device, seed)
    locs, scales = [], []
    bar = tqdm(total=x.shape[0], disable=not progress, unit="ex", desc="refine q", leave=False)
    for start in range(0, x.shape[0], batch_size):
        xb = _model_input(model, x[start : start + batch_size])
        kw = _condition_chunk(condition, start, batch_size)
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
        with torch.no_grad():  # noisy steps can leave an example worse off than it started
            eps = torch.randn((max(CHECK_SAMPLES, samples), *loc.shape), generator=g,
                              device=loc.device, dtype=loc.dtype)  # fmt: skip
            before = _gaussian_log_w(model, xb, qz_x.loc, qz_x.scale.log(), eps, kw).mean(0)
            better = _gaussian_log_w(model, xb, loc, log_std, eps, kw).mean(0) >= before  # (B,)
            locs.append(torch.where(better[:, None], loc, qz_x.loc))
            scales.append(torch.where(better[:, None], log_std.exp(), qz_x.scale))
        bar.update(xb.shape[0])
    bar.close()
    loc_all, scale_all = torch.cat(locs), torch.cat(scales)
    return Independent(Normal(loc_all, scale_all, validate_args=False), 1)


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
    conditions = _conditions(model, condition, x.shape[0])
    g = _generator(model.device, seed)
    amortized, best = [], []
    for start in range(0, x.shape[0], batch_size):
        xb = _model_input(model, x[start : start + batch_size])
        kw = _condition_chunk(conditions, start, batch_size)
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


# -- fused importance-weighted log-likelihood on CUDA ---------------------------------------------
#
# At K = 5000 on 10,000 MNIST images the decoder runs on 5e7 latent samples: 4e10 logits. The
# general path writes them to memory and reads them back, chunk by chunk (3.7 s on an H100,
# BENCHMARKS.md), so for the common case (one hidden layer, relu or tanh, Bernoulli likelihood,
# N(0, I) prior) one Triton kernel (1.6 s) computes, per sample, z = mu + sigma * eps, both
# decoder layers and log w = log p(x|z) + log p(z) - log q(z|x), keeping the logits in
# registers. Noise comes from the seeded generator as in the general path; log-sum-exp over
# samples is in float64.

_FUSED_ACTIVATIONS = {"relu": 0, "tanh": 1}
_kernel_cache: dict[str, object] = {}


def _fused_kernel():
    if "k" in _kernel_cache:
        return _kernel_cache["k"]
    import triton
    import triton.language as tl

    @triton.jit
    def iw_bernoulli_kernel(
        eps_ptr,  # (B, K, L) standard normal noise
        mu_ptr,  # (B, L)
        sigma_ptr,  # (B, L)
        x_ptr,  # (B, D)
        w1_ptr,  # (H, L)
        b1_ptr,  # (H,)
        w2_ptr,  # (D, H)
        b2_ptr,  # (D,)
        out_ptr,  # (B, K) log-weights
        K,
        L,
        H,
        D,
        ACT: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_L: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_N: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        kb = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        rows = kb * BLOCK_M + tl.arange(0, BLOCK_M)
        rmask = rows < K
        ls = tl.arange(0, BLOCK_L)
        lmask = ls < L
        eps = tl.load(
            eps_ptr + b * K * L + rows[:, None] * L + ls[None, :],
            mask=rmask[:, None] & lmask[None, :],
            other=0.0,
        )
        mu = tl.load(mu_ptr + b * L + ls, mask=lmask, other=0.0)
        sigma = tl.load(sigma_ptr + b * L + ls, mask=lmask, other=1.0)
        z = mu[None, :] + sigma[None, :] * eps  # (BLOCK_M, BLOCK_L); padding columns are 0
        # log p(z) - log q(z|x); the 2 pi constants cancel.
        log_w = (
            -0.5 * tl.sum(z * z, 1)
            + 0.5 * tl.sum(eps * eps, 1)
            + tl.sum(tl.where(lmask, tl.log(sigma), 0.0), 0)
        )
        for n0 in range(0, D, BLOCK_N):
            ns = n0 + tl.arange(0, BLOCK_N)
            nmask = ns < D
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for h0 in range(0, H, BLOCK_H):
                hs = h0 + tl.arange(0, BLOCK_H)
                hmask = hs < H
                w1t = tl.load(
                    w1_ptr + hs[None, :] * L + ls[:, None],
                    mask=lmask[:, None] & hmask[None, :],
                    other=0.0,
                )
                b1 = tl.load(b1_ptr + hs, mask=hmask, other=0.0)
                h = tl.dot(z, w1t, input_precision=PRECISION) + b1[None, :]
                if ACT == 0:  # noqa: SIM108 (constexpr branch)
                    h = tl.maximum(h, 0.0)
                else:
                    h = 1.0 - 2.0 / (tl.exp(2.0 * h) + 1.0)
                w2t = tl.load(
                    w2_ptr + ns[None, :] * H + hs[:, None],
                    mask=hmask[:, None] & nmask[None, :],
                    other=0.0,
                )
                acc = tl.dot(h, w2t, acc, input_precision=PRECISION)
            b2 = tl.load(b2_ptr + ns, mask=nmask, other=0.0)
            xv = tl.load(x_ptr + b * D + ns, mask=nmask, other=0.0)
            logit = acc + b2[None, :]
            softplus = tl.maximum(logit, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(logit)))
            term = xv[None, :] * logit - softplus  # log Bernoulli(x | sigmoid(logit))
            log_w += tl.sum(tl.where(nmask[None, :], term, 0.0), 1)
        tl.store(out_ptr + b * K + rows, log_w, mask=rmask)

    _kernel_cache["k"] = iw_bernoulli_kernel
    return iw_bernoulli_kernel


def fused_applies(model: VAE) -> str | None:
    """None when :func:`log_likelihood` can use the fused CUDA kernel for ``model``, else why."""
    from .likelihoods import BernoulliLikelihood
    from .model import VAE
    from .priors import StandardNormalPrior

    c = model.config
    if model.device.type != "cuda":
        return "the model is not on a CUDA device"
    if type(model).forward is not VAE.forward or type(model).encode is not VAE.encode:
        return f"{type(model).__name__} overrides forward or encode"
    if getattr(c, "network", "mlp") != "mlp":
        return f"network {c.network!r} (the kernel is for mlp)"
    if getattr(c, "condition_dim", 0):
        return "the model is conditional"
    if type(model.likelihood) is not BernoulliLikelihood:
        return f"likelihood {c.likelihood!r} (the kernel is for bernoulli)"
    if type(model.prior) is not StandardNormalPrior:
        return f"prior {c.prior!r} (the kernel is for standard_normal)"
    if len(c.hidden) != 1 or c.activation not in _FUSED_ACTIVATIONS:
        return "the decoder is not one hidden layer with relu or tanh"
    if model._dtype != torch.float32:
        return "the model is not float32"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return None


@torch.no_grad()
def _log_likelihood_fused(
    model: VAE,
    x: Tensor,
    k: int,
    seed: int,
    precision: str,
    examples_per_pass: int,
    progress: bool,
) -> Tensor:
    import triton

    kernel = _fused_kernel()
    device = model.device
    g = _generator(device, seed)
    c = model.config
    lin1, lin2 = model.decoder[0], model.decoder[2]
    w1, b1 = lin1.weight.contiguous(), lin1.bias.contiguous()  # (H, L), (H,)
    w2, b2 = lin2.weight.contiguous(), lin2.bias.contiguous()  # (D, H), (D,)
    L, H, D = c.latent_dim, c.hidden[0], c.data_dim
    block_m, block_n, block_h = 128, 64, 64
    n = x.shape[0]
    out = torch.empty(n, dtype=torch.float64)
    bar = tqdm(total=n, disable=not progress, unit="ex", desc="log p(x)", leave=False)
    for start in range(0, n, examples_per_pass):
        xb = x[start : start + examples_per_pass].to(device).reshape(-1, D).float().contiguous()
        b = xb.shape[0]
        base = model.encode(xb.reshape(b, *c.data_shape)).base_dist
        mu, sigma = base.loc.contiguous(), base.scale.contiguous()  # (b, L)
        eps = torch.randn((b, k, L), generator=g, device=device)
        log_w = torch.empty((b, k), device=device)
        grid = (triton.cdiv(k, block_m), b)
        kernel[grid](
            eps, mu, sigma, xb, w1, b1, w2, b2, log_w, k, L, H, D,
            ACT=_FUSED_ACTIVATIONS[c.activation],
            BLOCK_M=block_m,
            BLOCK_L=max(16, triton.next_power_of_2(L)),
            BLOCK_H=block_h,
            BLOCK_N=block_n,
            PRECISION=precision,
            num_warps=8,
        )  # fmt: skip
        out[start : start + b] = (torch.logsumexp(log_w.double(), dim=1) - math.log(k)).cpu()
        bar.update(b)
    bar.close()
    return out

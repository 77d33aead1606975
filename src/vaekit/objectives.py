"""Objectives as functions of per-example terms. Bounds are to be *maximised*; a training loss is
their negative mean.

Shapes: K samples per example, B examples. All values are in nats per example, summed over data
and latent dimensions.

Two flags of :class:`Terms` serve discrete latents (:class:`vaekit.CategoricalVAE`) and cost
nothing on the Gaussian path. ``enumerated``: the K rows are every value of z, so each bound is
computed exactly as an expectation under q(z|x). ``pathwise=False``: z was drawn without
reparameterisation, so autograd alone misses the score-function part of the gradient; each bound
then adds a term whose value is exactly zero and whose gradient is that part, with leave-one-out
baselines, as Pyro's surrogate losses do (:func:`score_function_term`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .distributions import HALF_LOG_2PI
from .errors import ConfigError


@dataclass
class Terms:
    """The pieces of the bounds for a batch, from ``VAE.forward(x, k)`` or from one's own
    networks, in nats, each of shape (K, B) for K samples z_k ~ q(z|x) of B examples::

        z = qz_x.rsample((K,))  # (K, B, latent_dim)
        terms = Terms(px_z.log_prob(x), pz.log_prob(z), qz_x.log_prob(z))
        loss = -vaekit.iwae(terms).mean()
    """

    log_px_z: Tensor  # (K, B) log p(x|z_k)
    log_pz: Tensor  # (K, B) log p(z_k)
    log_qz_x: Tensor  # (K, B) log q(z_k|x)
    kl: Tensor | None = None  # (B,) closed-form KL(q(z|x) || p(z)); None: estimated from samples
    #: False when z was drawn from q(z|x) without reparameterisation (discrete z): the values are
    #: right, and :func:`elbo` and :func:`iwae` add the score-function part of the gradient.
    pathwise: bool = True
    #: True when the K rows are every value of z instead of K draws: the bounds are then exact
    #: expectations under q(z|x) = exp(log_qz_x), not Monte Carlo estimates.
    enumerated: bool = False
    #: The draws z (K, B, D) and q(z|x)'s mean and log-variance (B, D), from a model whose
    #: q(z|x) is one diagonal Gaussian (the VAE); None where it is not. The objectives that look
    #: at the aggregate posterior q(z) of the batch (:func:`btcvae`, :func:`factorvae`) need them.
    z: Tensor | None = None
    qz_loc: Tensor | None = None
    qz_logvar: Tensor | None = None

    def expect(self, t: Tensor) -> Tensor:
        """E_q[t] per example (B,) from rows ``t`` (K, B): the mean over the K samples, or the sum
        weighted by q(z|x) when the rows enumerate z."""
        if self.enumerated:
            return (self.log_qz_x.exp() * t).sum(0)
        return t.mean(0)

    @property
    def log_w(self) -> Tensor:
        """Importance log-weights log p(x, z_k) - log q(z_k|x), shape (K, B)."""
        return self.log_px_z + self.log_pz - self.log_qz_x

    @property
    def kl_estimate(self) -> Tensor:
        """KL(q || p) per example (B,): closed form where available, else the K-sample average
        (exact when the rows enumerate z)."""
        if self.kl is not None:
            return self.kl
        return self.expect(self.log_qz_x - self.log_pz)


def elbo(terms: Terms, beta: float | Tensor = 1.0) -> Tensor:
    """ELBO per example (B,): E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)).

    The expectation is the average over the K samples (the paper's L); the KL is analytic when
    ``terms.kl`` is given, a Monte Carlo estimate otherwise. ``beta`` != 1 gives the beta-VAE
    objective and KL warm-up. With enumerated terms it is the exact ELBO
    sum_z q(z|x) log p(x|z) - beta * KL. With ``pathwise=False`` terms the score-function term
    is added, each sample's baseline being the mean of the other samples' terms (Kool et al.
    2019's leave-one-out baseline).
    """
    bound = terms.expect(terms.log_px_z) - beta * terms.kl_estimate
    if not terms.pathwise and terms.log_qz_x.requires_grad:
        with torch.no_grad():
            g = terms.log_px_z  # (K, B) what each sample adds to the bound, times K
            if terms.kl is None:
                g = g + beta * (terms.log_pz - terms.log_qz_x)
            K = g.shape[0]
            signal = (g - _others_mean(g)) / K if K > 1 else _batch_signal(bound)
        bound = bound + score_function_term(terms, signal)
    return bound


def iwae(terms: Terms, beta: float | Tensor = 1.0) -> Tensor:
    """Importance-weighted bound per example (B,): log (1/K) sum_k w_k (Burda et al. 2016).

    With K = 1 it is the single-sample ELBO with a Monte Carlo KL. ``beta`` tempers the
    prior/posterior ratio inside the weights (used for warm-up). With enumerated terms it is its
    limit as K grows, log sum_z q(z|x) w(z) = log p(x) (at beta = 1), which no longer depends on
    q: training on it fits p by maximum likelihood and leaves q(z|x) untrained. With
    ``pathwise=False`` terms the score-function term is added with VIMCO's baselines (Mnih &
    Rezende 2016): the bound with sample k's log-weight replaced by the mean of the others'.
    """
    log_w = terms.log_px_z + beta * (terms.log_pz - terms.log_qz_x)  # (K, B)
    if terms.enumerated:
        return torch.logsumexp(log_w + terms.log_qz_x, dim=0)
    bound = logmeanexp(log_w, dim=0)
    if not terms.pathwise and terms.log_qz_x.requires_grad:
        with torch.no_grad():
            K = log_w.shape[0]
            if K > 1:
                # log sum_{j != k} w_j from exclusive prefix and suffix log-cumsum-exps.
                pad = torch.full_like(log_w[:1], -math.inf)
                before = torch.cat([pad, torch.logcumsumexp(log_w, 0)[:-1]])
                after = torch.cat([torch.logcumsumexp(log_w.flip(0), 0).flip(0)[1:], pad])
                others = torch.logaddexp(before, after)  # (K, B)
                held = torch.logaddexp(others, _others_mean(log_w)) - math.log(K)
                signal = bound - held  # (K, B)
            else:
                signal = _batch_signal(bound)
        bound = bound + score_function_term(terms, signal.detach())
    return bound


def score_function_term(terms: Terms, signal: Tensor) -> Tensor:
    """Zeros (B,) whose gradient is sum_k signal_k * grad log q(z_k|x).

    For z_k drawn from q(z|x) without reparameterisation, the gradient of E[f] is
    E[grad f] + E[sum_k (f - b_k) grad log q(z_k|x)] for any baseline b_k that does not depend
    on z_k; ``signal`` (K, B) is f - b_k, computed without gradients. The value returned is
    exactly zero, so adding it to a bound changes the bound's gradient and not its value.
    """
    log_q = terms.log_qz_x  # (K, B)
    return (signal * (log_q - log_q.detach())).sum(0)


def _others_mean(t: Tensor) -> Tensor:
    """Row k of the result is the mean of the rows of ``t`` (K, B) other than k."""
    return (t.sum(0, keepdim=True) - t) / (t.shape[0] - 1)


def _batch_signal(f: Tensor) -> Tensor:
    """(1, B) learning signal for one sample per example: f less the mean of the other examples'
    (independent of this example's z), or f itself for a batch of one."""
    return (f - _others_mean(f[:, None])[:, 0])[None] if f.shape[0] > 1 else f[None]


def logmeanexp(x: Tensor, dim: int) -> Tensor:
    """log(mean(exp(x))) along ``dim``, computed stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


# -- the aggregate posterior: beta-TCVAE and FactorVAE -------------------------------------------
#
# Both penalise the total correlation TC = KL(q(z) || prod_d q(z_d)) of the aggregate posterior
# q(z) = (1/N) sum_n q(z|x_n) over the N training examples. beta-TCVAE estimates log q(z) from
# the minibatch; FactorVAE trains a discriminator to tell z ~ q(z) from latents whose dimensions
# were shuffled across the batch (draws from prod_d q(z_d)) and reads TC off its logit.

#: Estimators of log q(z) from a minibatch (Chen et al. 2018, appendix C).
TC_ESTIMATORS = ("mws", "mss")


@dataclass
class KLParts:
    """Chen et al. (2018)'s split of the KL term per sample, each (K, B) in nats::

        log q(z|x) - log p(z) = [log q(z|x) - log q(z)]                 index-code MI
                              + [log q(z) - log prod_d q(z_d)]           total correlation
                              + [log prod_d q(z_d) - log prod_d p(z_d)]  dimension-wise KL

    The three sum to ``log_qz_x - log_pz`` of the terms (a one-sample estimate of KL(q(z|x) ||
    p(z)) whose mean is the analytic KL) whatever estimate of q(z) they use; their batch means
    estimate the expectations of the paper's eq. (2) over the data.
    """

    mi: Tensor
    tc: Tensor
    dim_kl: Tensor


def _posterior(terms: Terms, objective: str) -> tuple[Tensor, Tensor, Tensor]:
    if terms.z is None or terms.qz_loc is None or terms.qz_logvar is None:
        raise ConfigError(
            f"objective {objective!r} needs terms that carry the draws z and q(z|x)'s mean and "
            "log-variance (a VAE with a diagonal Gaussian q(z|x) gives them)"
        )
    return terms.z, terms.qz_loc, terms.qz_logvar


def log_importance_weights(
    batch: int,
    dataset_size: int,
    estimator: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """log w (B, B): the weight of q(z_i|x_j) in the estimate q(z_i) ~ sum_j w_ij q(z_i|x_j) for
    z_i drawn from q(z|x_i), x_1..x_B a minibatch of a data set of N = ``dataset_size``.

    "mws", minibatch-weighted sampling: every w_ij = 1 / (N B) (the paper's eq. S6). The weights
    sum to 1/N, not 1: where the q(z|x_j) overlap, log q(z) comes out low by about log N (and
    TC high by (D - 1) log N); where they do not (narrow posteriors, N >> B), low by about
    log B. The offsets are constants: the gradients are the paper's.
    "mss", minibatch-stratified sampling (eq. S8): w_ii = 1/N, one other example, (i + 1)
    mod B, (N - M) / (N M), the rest 1/M, with M = B - 1: each row sums to one, and the
    estimate of q(z_i) is unbiased for a batch drawn without replacement (log q(z) is then low
    only by Jensen's gap, about v / (2 M) for the relative variance v of q(z_i|x_j) over j).
    (A widely copied version puts the (N - M) / (N M) weight twice in row B - 2 and not in row
    B - 1; here each row has it once.) Built on ``device`` with no host copy (a CUDA graph
    captures it).
    """
    if dataset_size < batch:
        raise ConfigError(
            f"dataset_size {dataset_size} is smaller than the batch of {batch}; give the number "
            "of training examples (0 lets fit fill it in)"
        )
    if estimator not in TC_ESTIMATORS:
        raise ConfigError(
            f"unknown tc_estimator {estimator!r}; choose one of {', '.join(TC_ESTIMATORS)}"
        )
    N = float(dataset_size)
    if estimator == "mws" or batch == 1:
        return torch.full((batch, batch), -math.log(N * batch), device=device, dtype=dtype)
    M = batch - 1
    eye = torch.eye(batch, device=device, dtype=dtype)
    w = 1.0 / M + (1.0 / N - 1.0 / M) * eye
    w = w + ((N - M) / (N * M) - 1.0 / M) * eye.roll(1, dims=1)  # (i, i + 1 mod B)
    return w.log()  # a weight of 0 (N = M) is -inf: that term drops out


def kl_parts(terms: Terms, dataset_size: int, estimator: str = "mws") -> KLParts:
    """The KL term of each sample split as :class:`KLParts`, q(z) and q(z_d) estimated from the
    batch with ``estimator`` ("mws" or "mss", see :func:`log_importance_weights`) for a data set
    of ``dataset_size`` examples. The terms must carry z (K, B, D), ``qz_loc`` and
    ``qz_logvar`` (B, D); p(z) must factorise over the dimensions (as N(0, I) does) for the
    last part to be the dimension-wise KL. Costs K B^2 D log-densities."""
    z, loc, logvar = _posterior(terms, "btcvae")
    B = z.shape[1]
    # log q(z_{k,i,d} | x_j): sample i's draw under example j's posterior, (K, B, B, D)
    lq = -0.5 * ((z[:, :, None] - loc) ** 2 * torch.exp(-logvar) + logvar) - HALF_LOG_2PI
    log_w = log_importance_weights(B, dataset_size, estimator, device=lq.device, dtype=lq.dtype)
    log_qz = torch.logsumexp(log_w + lq.sum(-1), dim=-1)  # (K, B)
    log_qz_prod = torch.logsumexp(log_w[..., None] + lq, dim=-2).sum(-1)  # (K, B)
    return KLParts(
        mi=terms.log_qz_x - log_qz,
        tc=log_qz - log_qz_prod,
        dim_kl=log_qz_prod - terms.log_pz,
    )


def btcvae(
    terms: Terms,
    beta: float | Tensor = 1.0,
    *,
    alpha: float | Tensor = 1.0,
    gamma: float | Tensor = 1.0,
    dataset_size: int,
    estimator: str = "mws",
) -> Tensor:
    """beta-TCVAE's objective per example (B,) (Chen et al. 2018, eq. 4):
    E_q[log p(x|z)] - alpha MI - beta TC - gamma dimension-wise KL, the parts from
    :func:`kl_parts` (``estimator`` "mws" or "mss", ``dataset_size`` N).

    Computed as the ELBO (with the analytic KL where the terms have it) less
    (alpha - 1) MI + (beta - 1) TC + (gamma - 1) dim-KL: the parts sum to a one-sample KL whose
    expectation is the analytic KL, so this has the paper's expectation, with less variance,
    and at alpha = beta = gamma = 1 it is exactly :func:`elbo`. The paper's experiments keep
    alpha = gamma = 1. Each example's value depends on the rest of its batch, through q(z).
    """
    parts = kl_parts(terms, dataset_size, estimator)
    extra = (alpha - 1) * parts.mi + (beta - 1) * parts.tc + (gamma - 1) * parts.dim_kl
    return elbo(terms) - terms.expect(extra)


def permute_dims(z: Tensor, keys: Tensor) -> Tensor:
    """``z`` (B, D) with each column shuffled across the rows on its own: column d is put in the
    order of ``argsort(keys[:, d])``. With ``keys`` (B, D) independent of ``z`` and of each
    other (standard normal noise, say), the rows are draws from prod_d q(z_d) when the rows of
    ``z`` are draws from q(z) (Kim & Mnih 2018, algorithm 1)."""
    return z.gather(0, keys.argsort(dim=0))


def discriminator_loss(discriminator: Callable[..., Tensor], z: Tensor, keys: Tensor) -> Tensor:
    """The FactorVAE discriminator's loss (0-dim): binary cross-entropy of telling the first half
    of ``z`` (B, D), draws from q(z), labelled 1, from the second half with its dimensions
    shuffled by :func:`permute_dims` under ``keys`` (at least B/2 rows), labelled 0; the mean
    over both halves. ``z`` is detached: this loss trains the discriminator only. For B < 2 it
    is 0."""
    h = z.shape[0] // 2
    if h == 0:
        return z.new_zeros(())
    z = z.detach()
    joint = discriminator(z[:h])  # (h,) logits of "drawn from q(z)"
    shuffled = discriminator(permute_dims(z[h : 2 * h], keys[:h].detach()))
    return 0.5 * (F.softplus(-joint).mean() + F.softplus(shuffled).mean())


def factorvae(
    terms: Terms,
    beta: float | Tensor = 1.0,
    *,
    gamma: float | Tensor,
    discriminator: Callable[..., Tensor],
) -> Tensor:
    """FactorVAE's objective per example (B,) (Kim & Mnih 2018, eq. 2), plus the discriminator's
    training signal: ELBO (KL weight ``beta``) - gamma TC, where TC of each draw z is the
    density-ratio estimate log D(z) / (1 - D(z)) = the ``discriminator``'s logit at z, computed
    with its weights held (``discriminator(z, frozen=True)``), so this part trains the VAE only.

    The value returned is that objective; its gradient also carries minus the gradient of
    :func:`discriminator_loss` on the batch's first draws (detached, so that part trains the
    discriminator only), added as ``loss.detach() - loss``, which is exactly zero. One optimizer
    stepping on ``-bound.mean()`` then updates both, as the paper's algorithm 1 does with two
    (a shared optimizer is the one deviation: same learning rate and Adam betas for both, where
    the paper gives the discriminator Adam(1e-4, betas 0.5, 0.9); Adam's steps do not depend on
    the scale of a loss). The half-batch split replaces the paper's second minibatch: the draws
    of the first half are the discriminator's "joint" examples, the second half shuffled its
    "product of marginals" ones, shuffled by the order of the first half's reparameterisation
    noise (independent of the second half's z, and reproducible under the run's seed).
    """
    z, loc, logvar = _posterior(terms, "factorvae")
    tc = discriminator(z, frozen=True)  # (K, B)
    bound = elbo(terms, beta) - gamma * terms.expect(tc)
    keys = (z[0] - loc) * torch.exp(-0.5 * logvar)  # the noise of the first draws, (B, D)
    d_loss = discriminator_loss(discriminator, z[0], keys)
    return bound + (d_loss.detach() - d_loss)


#: Name in a config -> bound function. :func:`btcvae` and :func:`factorvae` also take settings
#: as keywords (the trainer passes them from its config: :mod:`vaekit.train.objective`).
OBJECTIVES = {"elbo": elbo, "iwae": iwae, "btcvae": btcvae, "factorvae": factorvae}

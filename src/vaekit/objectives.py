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
from dataclasses import dataclass

import torch
from torch import Tensor


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


#: Name in a config -> bound function.
OBJECTIVES = {"elbo": elbo, "iwae": iwae}

"""Objectives as functions of per-example terms. Bounds are to be *maximised*; a training loss is
their negative mean.

Shapes: K samples per example, B examples. All values are in nats per example, summed over data
and latent dimensions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Terms:
    """The pieces of the bounds for a batch, from ``VAE.forward(x, k)``."""

    log_px_z: Tensor  # (K, B) log p(x|z_k)
    log_pz: Tensor  # (K, B) log p(z_k)
    log_qz_x: Tensor  # (K, B) log q(z_k|x)
    kl: Tensor | None  # (B,) closed-form KL(q(z|x) || p(z)), or None where there is none

    @property
    def log_w(self) -> Tensor:
        """Importance log-weights log p(x, z_k) - log q(z_k|x), shape (K, B)."""
        return self.log_px_z + self.log_pz - self.log_qz_x

    @property
    def kl_estimate(self) -> Tensor:
        """KL(q || p) per example (B,): closed form where available, else the K-sample average."""
        if self.kl is not None:
            return self.kl
        return (self.log_qz_x - self.log_pz).mean(0)


def elbo(terms: Terms, beta: float | Tensor = 1.0) -> Tensor:
    """ELBO per example (B,): E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)).

    The expectation is the average over the K samples (the paper's L); the KL is analytic when
    ``terms.kl`` is given, a Monte Carlo estimate otherwise. ``beta`` != 1 gives the beta-VAE
    objective and KL warm-up.
    """
    return terms.log_px_z.mean(0) - beta * terms.kl_estimate


def iwae(terms: Terms, beta: float | Tensor = 1.0) -> Tensor:
    """Importance-weighted bound per example (B,): log (1/K) sum_k w_k (Burda et al. 2016).

    With K = 1 it is the single-sample ELBO with a Monte Carlo KL. ``beta`` tempers the
    prior/posterior ratio inside the weights (used for warm-up).
    """
    log_w = terms.log_px_z + beta * (terms.log_pz - terms.log_qz_x)  # (K, B)
    return logmeanexp(log_w, dim=0)


def logmeanexp(x: Tensor, dim: int) -> Tensor:
    """log(mean(exp(x))) along ``dim``, computed stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


#: Name in a config -> bound function.
OBJECTIVES = {"elbo": elbo, "iwae": iwae}

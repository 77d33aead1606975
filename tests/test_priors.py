"""Priors p(z): log-densities against scipy, closed-form KLs against torch.distributions and Monte
Carlo, and learned parameters that receive gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from vaekit import VAE
from vaekit.priors import PRIORS, LearnedGaussianPrior, StandardNormalPrior


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def diagonal_q(batch: int, dim: int, seed: int) -> Independent:
    g = gen(seed)
    loc = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    scale = torch.rand(batch, dim, generator=g, dtype=torch.float64) + 0.2
    return Independent(Normal(loc, scale), 1)


def test_registry() -> None:
    assert {
        "standard_normal": StandardNormalPrior,
        "learned_gaussian": LearnedGaussianPrior,
    } == PRIORS
    assert all(cls.analytic_kl for cls in PRIORS.values())


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_event_shape_is_latent_dim(name: str) -> None:
    pz = PRIORS[name](5)()
    assert pz.event_shape == (5,) and pz.batch_shape == ()
    assert pz.log_prob(torch.randn(3, 4, 5)).shape == (3, 4)
    assert pz.sample((7,)).shape == (7, 5)


def test_standard_normal_log_prob_matches_scipy() -> None:
    prior = StandardNormalPrior(3).double()
    z = torch.randn(10, 3, generator=gen(1), dtype=torch.float64)
    expected = stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z.numpy())
    assert np.allclose(prior().log_prob(z).numpy(), expected)
    assert list(prior.parameters()) == []  # nothing to learn
    assert prior.state_dict() == {}  # nothing to save: rebuilt from latent_dim


def test_learned_gaussian_log_prob_matches_scipy() -> None:
    prior = LearnedGaussianPrior(3).double()
    with torch.no_grad():
        prior.loc.copy_(torch.tensor([0.5, -1.0, 2.0]))
        prior.log_scale.copy_(torch.tensor([0.0, -0.7, 0.4]))
    z = torch.randn(10, 3, generator=gen(1), dtype=torch.float64)
    cov = np.diag(np.exp(2 * np.array([0.0, -0.7, 0.4])))
    expected = stats.multivariate_normal(np.array([0.5, -1.0, 2.0]), cov).logpdf(z.numpy())
    assert np.allclose(prior().log_prob(z).detach().numpy(), expected)


def test_learned_gaussian_starts_as_standard_normal() -> None:
    z = torch.randn(6, 4)
    assert torch.allclose(
        LearnedGaussianPrior(4)().log_prob(z), StandardNormalPrior(4)().log_prob(z)
    )
    assert {n for n, _ in LearnedGaussianPrior(4).named_parameters()} == {"loc", "log_scale"}


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_kl_matches_full_covariance_gaussian_and_formula(name: str) -> None:
    prior = PRIORS[name](4).double()
    if isinstance(prior, LearnedGaussianPrior):
        with torch.no_grad():
            prior.loc.copy_(torch.tensor([0.3, -0.2, 1.0, 0.0]))
            prior.log_scale.copy_(torch.tensor([0.1, -0.5, 0.3, 0.0]))
    pz = prior()
    qz_x = diagonal_q(5, 4, seed=2)
    kl = kl_divergence(qz_x, pz)  # (5,)
    # Against full-covariance Gaussians, a different code path in torch.
    q_full = MultivariateNormal(qz_x.mean, covariance_matrix=torch.diag_embed(qz_x.variance))
    p_full = MultivariateNormal(pz.mean, covariance_matrix=torch.diag(pz.variance))
    assert torch.allclose(kl, kl_divergence(q_full, p_full))
    # And the textbook formula.
    m, v, mp, vp = qz_x.mean, qz_x.variance, pz.mean, pz.variance
    formula = 0.5 * (v / vp + (m - mp) ** 2 / vp - 1 + vp.log() - v.log()).sum(-1)
    assert torch.allclose(kl, formula)


def test_kl_matches_monte_carlo() -> None:
    pz = LearnedGaussianPrior(3).double()()
    qz_x = diagonal_q(2, 3, seed=3)
    n = 200000
    z = qz_x.sample((n,))  # (n, 2, 3)
    log_ratio = qz_x.log_prob(z) - pz.log_prob(z)  # (n, 2)
    se = log_ratio.std(0) / math.sqrt(n)
    assert torch.all((log_ratio.mean(0) - kl_divergence(qz_x, pz)).abs() < 4 * se)


def test_model_kl_term_uses_the_prior_and_trains_it() -> None:
    model = VAE(data_shape=(4,), latent_dim=2, hidden=(3,), prior="learned_gaussian")
    with torch.no_grad():
        model.prior.loc.fill_(0.7)
    x = torch.randn(5, 4)
    terms = model(x, k=1)
    assert torch.allclose(
        terms.kl, kl_divergence(model.encode(x), Independent(Normal(0.7, 1.0).expand((2,)), 1))
    )
    terms.kl.sum().backward()
    assert model.prior.loc.grad.abs().sum() > 0 and model.prior.log_scale.grad.abs().sum() > 0
    assert "prior.loc" in model.state_dict() and "prior.log_scale" in model.state_dict()

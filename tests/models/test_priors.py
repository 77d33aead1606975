"""Priors p(z): log-densities against scipy, closed-form KLs against torch.distributions and Monte
Carlo, and learned parameters that receive gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from vaekit import VAE
from vaekit.priors import (
    PRIORS,
    LearnedGaussianPrior,
    MixturePrior,
    Prior,
    StandardNormalPrior,
    VampPrior,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def diagonal_q(batch: int, dim: int, seed: int) -> Independent:
    g = gen(seed)
    loc = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    scale = torch.rand(batch, dim, generator=g, dtype=torch.float64) + 0.2
    return Independent(Normal(loc, scale), 1)


def build(name: str, latent_dim: int) -> Prior:
    """A prior of the kind ``name`` as a model builds it (a VampPrior with its encoder)."""
    return VAE(data_shape=(4,), latent_dim=latent_dim, hidden=(3,), prior=name).prior


def test_registry() -> None:
    assert {
        "standard_normal": StandardNormalPrior,
        "learned_gaussian": LearnedGaussianPrior,
        "mog": MixturePrior,
        "vamp": VampPrior,
    } == PRIORS
    assert [n for n, cls in PRIORS.items() if cls.analytic_kl] == [
        "standard_normal",
        "learned_gaussian",
    ]


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_event_shape_is_latent_dim(name: str) -> None:
    prior = build(name, 5)
    pz = prior()
    assert pz.event_shape == (5,) and pz.batch_shape == ()
    assert pz.log_prob(torch.randn(3, 4, 5)).shape == (3, 4)
    assert pz.sample((7,)).shape == (7, 5)
    z = torch.randn(3, 4, 5)
    assert torch.allclose(prior.log_prob(z), pz.log_prob(z), atol=1e-5)
    assert prior.marginal_log_prob(z).shape == (3, 4, 5)


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


@pytest.mark.parametrize("name", ["learned_gaussian", "standard_normal"])
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
    # And vaekit's own closed form, the one training uses (from q's mean and log-variance).
    assert torch.allclose(prior.kl(qz_x.mean, qz_x.variance.log()), kl)


def test_kl_matches_monte_carlo() -> None:
    """The learned prior's closed-form KL, at a prior away from N(0, I), against the average of
    log q - log p over draws from q."""
    prior = LearnedGaussianPrior(3).double()
    with torch.no_grad():
        prior.loc.copy_(torch.tensor([0.5, -1.0, 0.2]))
        prior.log_scale.copy_(torch.tensor([-0.3, 0.4, 0.1]))
    pz = prior()
    qz_x = diagonal_q(2, 3, seed=3)
    n = 200000
    z = qz_x.sample((n,))  # (n, 2, 3)
    log_ratio = qz_x.log_prob(z) - pz.log_prob(z)  # (n, 2)
    se = log_ratio.std(0) / math.sqrt(n)
    kl = prior.kl(qz_x.mean, qz_x.variance.log())  # (2,)
    assert torch.all((log_ratio.mean(0) - kl).abs() < 4 * se)


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


# -- mixture priors --------------------------------------------------------------------------------


def set_mixture(prior: MixturePrior, seed: int) -> None:
    g = gen(seed)
    with torch.no_grad():
        for p in (prior.logits, prior.loc, prior.log_scale):
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.7)


def test_mog_log_prob_matches_mixture_same_family() -> None:
    prior = MixturePrior(3, components=4).double()
    set_mixture(prior, 1)
    reference = MixtureSameFamily(
        Categorical(logits=prior.logits.detach()),
        Independent(Normal(prior.loc.detach(), prior.log_scale.detach().exp()), 1),
    )
    z = torch.randn(6, 2, 3, generator=gen(2), dtype=torch.float64)
    assert torch.allclose(prior.log_prob(z), reference.log_prob(z))
    assert torch.allclose(prior().log_prob(z), reference.log_prob(z))
    # The per-coordinate marginals are one-dimensional mixtures with the same weights.
    for d in range(3):
        marginal = MixtureSameFamily(
            Categorical(logits=prior.logits.detach()),
            Normal(prior.loc.detach()[:, d], prior.log_scale.detach()[:, d].exp()),
        )
        assert torch.allclose(prior.marginal_log_prob(z)[..., d], marginal.log_prob(z[..., d]))


def test_mixture_draws_follow_the_mixture() -> None:
    prior = MixturePrior(3, components=4).double()
    set_mixture(prior, 1)
    with torch.no_grad():
        prior.loc[:, 0] = torch.tensor([-6.0, -2.0, 2.0, 6.0], dtype=torch.float64)  # apart
    w = torch.softmax(prior.logits.detach(), -1)
    loc, scale = prior.loc.detach(), prior.log_scale.detach().exp()
    torch.manual_seed(0)
    z = prior.sample(100_000)
    assert z.shape == (100_000, 3) and not z.requires_grad

    def cdf(v: np.ndarray) -> np.ndarray:  # the first coordinate's marginal
        return sum(float(w[k]) * stats.norm.cdf(v, float(loc[k, 0]), float(scale[k, 0]))
                   for k in range(4))  # fmt: skip

    assert stats.kstest(z[:, 0].numpy(), cdf).pvalue > 0.01
    mean = (w[:, None] * loc).sum(0)
    torch.testing.assert_close(z.mean(0), mean, atol=0.03, rtol=0)


def test_mog_with_one_component_is_the_learned_gaussian() -> None:
    mog, gaussian = MixturePrior(3, components=1).double(), LearnedGaussianPrior(3).double()
    set_mixture(mog, 3)
    with torch.no_grad():
        gaussian.loc.copy_(mog.loc[0])
        gaussian.log_scale.copy_(mog.log_scale[0])
    z = torch.randn(10, 3, generator=gen(4), dtype=torch.float64)
    assert torch.allclose(mog.log_prob(z), gaussian.log_prob(z))
    assert torch.allclose(mog.marginal_log_prob(z).sum(-1), gaussian.log_prob(z))


def test_mog_parameters_learn_and_are_saved() -> None:
    torch.manual_seed(0)
    model = VAE(data_shape=(4,), latent_dim=2, hidden=(3,), prior="mog", prior_components=3)
    assert model.prior.loc.shape == (3, 2) and not model.prior.analytic_kl
    terms = model(torch.rand(5, 4), k=2)
    assert terms.kl is None
    (-(terms.log_pz.sum())).backward()
    for name in ("logits", "loc", "log_scale"):
        assert getattr(model.prior, name).grad.abs().sum() > 0
        assert f"prior.{name}" in model.state_dict()


def test_vamp_prior_is_the_average_posterior_at_the_pseudo_inputs() -> None:
    torch.manual_seed(0)
    model = VAE(data_shape=(4,), latent_dim=2, hidden=(5,), prior="vamp", prior_components=3)
    u = model.prior.pseudo_inputs.detach()
    assert u.shape == (3, 4)
    qz_u = model.encode(u)  # batch (3,), event (2,)
    z = torch.randn(7, 2)
    expected = torch.logsumexp(qz_u.log_prob(z[:, None]), dim=-1) - math.log(3)
    assert torch.allclose(model.prior.log_prob(z), expected, atol=1e-6)
    # The prior moves with the encoder and with its pseudo-inputs.
    model.prior.log_prob(z).sum().backward()
    assert model.prior.pseudo_inputs.grad.abs().sum() > 0
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert "prior.pseudo_inputs" in model.state_dict()


def test_vamp_prior_follows_a_copied_model() -> None:
    import copy

    torch.manual_seed(0)
    model = VAE(data_shape=(4,), latent_dim=2, hidden=(5,), prior="vamp", prior_components=3)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.encoder[0].weight.add_(1.0)
    z = torch.randn(4, 2)
    assert not torch.allclose(twin.prior.log_prob(z), model.prior.log_prob(z))
    expected = torch.logsumexp(
        twin.encode(twin.prior.pseudo_inputs).log_prob(z[:, None]), dim=-1
    ) - math.log(3)
    assert torch.allclose(twin.prior.log_prob(z), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["mog", "vamp"])
def test_bounds_keep_their_order_with_mixture_priors(name: str) -> None:
    """ELBO <= IWAE(K) <= log p(x) on average, with log p(x) from a very large K."""
    from vaekit.estimators import elbo as evaluate_elbo
    from vaekit.evaluation import log_likelihood

    torch.manual_seed(0)
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(8,), prior=name, prior_components=4)
    x = torch.rand(8, 6).round()
    xr = x.repeat(500, 1)  # each example 500 times: the bounds' averages, not single draws
    elbo_1 = evaluate_elbo(model, xr, samples=1, seed=1)
    iwae_10 = log_likelihood(model, xr, k=10, seed=2)
    ll = float(log_likelihood(model, x, k=20000, seed=3).mean())
    gap = iwae_10 - elbo_1
    assert float(gap.mean()) > 4 * float(gap.std()) / math.sqrt(gap.numel())
    assert float(iwae_10.mean()) < ll + 4 * float(iwae_10.std()) / math.sqrt(iwae_10.numel())


@pytest.mark.parametrize("name", ["mog", "vamp"])
def test_evaluating_a_mixture_prior_holds_no_more_than_a_chunk_of_its_components(
    name: str,
) -> None:
    """A mixture's log-density builds a (rows, K, D) array; evaluation (no gradient) goes through
    it in chunks of MIXTURE_CHUNK_FLOATS, so no allocation is as large as the whole array (here
    3 chunks), and the values are those of the unchunked computation."""
    from torch.autograd.profiler import profile

    from vaekit.estimators import latent_stats, log_likelihood
    from vaekit.priors import MIXTURE_CHUNK_FLOATS

    torch.manual_seed(0)
    K, D, k = 256, 8, 1024
    model = VAE(data_shape=(4,), latent_dim=D, hidden=(3,), prior=name, prior_components=K)
    rows = 3 * MIXTURE_CHUNK_FLOATS // (K * D)  # (sample, example) pairs: 3 chunks' worth
    x = torch.rand(rows // k, 4).round()
    with torch.no_grad(), profile(profile_memory=True, use_kineto=False) as prof:
        log_likelihood(model, x, k=k, rows_per_chunk=rows)
        latent_stats(model, x, samples=k)
    largest = max(e.cpu_memory_usage for e in prof.function_events)  # bytes of one allocation
    assert 0 < largest <= 1.5 * MIXTURE_CHUNK_FLOATS * 4  # float32: about one chunk
    z = torch.randn(3, rows // 3, D, generator=gen(5))
    with torch.no_grad():
        chunked, marginal = model.prior.log_prob(z), model.prior.marginal_log_prob(z)
    assert torch.equal(chunked, model.prior.log_prob(z).detach())  # gradient on: one piece
    assert torch.equal(marginal, model.prior.marginal_log_prob(z).detach())


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_latents_of_the_wrong_width_are_named(name: str) -> None:
    """A prior used with one's own encoder names z of another width; N(0, I)'s closed form
    summed any width into a number."""
    from vaekit import DataError

    prior = VAE(data_shape=(4,), latent_dim=3, hidden=(5,), prior=name).prior
    with pytest.raises(DataError, match=r"over 3 latent dims; got z of shape \(2, 4\)"):
        prior.log_prob(torch.zeros(2, 4))
    if prior.analytic_kl:
        with pytest.raises(DataError, match=r"over 3 latent dims; got z of shape \(2, 2\)"):
            prior.kl(torch.zeros(2, 2), torch.zeros(2, 2))
    assert prior.log_prob(torch.zeros(5, 2, 3)).shape == (5, 2)


def test_priors_built_by_hand_say_what_they_need() -> None:
    """Settings out of range, a VampPrior without its encoder and the KL of a mixture (which has
    no closed form) are ConfigErrors saying what to do, not torch's NotImplementedError."""
    from vaekit import ConfigError
    from vaekit.priors import MixturePrior, VampPrior

    with pytest.raises(ConfigError, match="components must be a positive integer, got 0"):
        MixturePrior(2, components=0)
    vamp = VampPrior(2, 3, (4,))
    with pytest.raises(ConfigError, match=r"needs the model's encoder: call bind\(encode\)"):
        vamp.log_prob(torch.zeros(1, 2))
    for prior in (MixturePrior(2, 3), VAE(data_shape=(4,), latent_dim=2, prior="vamp").prior):
        with pytest.raises(ConfigError, match=r"has no closed-form KL \(analytic_kl is False\)"):
            prior.kl(torch.zeros(1, 2), torch.zeros(1, 2))

"""beta-TCVAE's split of the KL term and FactorVAE's discriminator, against closed forms.

The total correlation of a Gaussian N(0, C) is -0.5 log det R, R the correlation matrix of C.
Here the posteriors q(z|x_n) = N(mu_n, s^2 I) sit around means mu_n ~ N(0, S) (a fresh draw for
every batch: a data set too large to repeat an example), so the aggregate posterior q(z) is
exactly N(0, S + s^2 I) and its TC is known. The minibatch estimators are biased at a finite
batch; the tests derive that bias to first order and check the estimates against it.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from vaekit import VAE
from vaekit.distributions import gaussian_log_prob_eps
from vaekit.nets import Discriminator
from vaekit.objectives import (
    Terms,
    btcvae,
    discriminator_loss,
    elbo,
    factorvae,
    kl_parts,
    log_importance_weights,
    permute_dims,
)

CORRELATED = [[1.0, 0.8, 0.6], [0.8, 1.0, 0.7], [0.6, 0.7, 1.0]]
INDEPENDENT = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]]


def gaussian_tc(cov: Tensor) -> float:
    """TC of N(0, cov) in nats: -0.5 log det of its correlation matrix."""
    sd = cov.diagonal().sqrt()
    return -0.5 * float(torch.logdet(cov / sd[:, None] / sd[None, :]))


def log_normal(z: Tensor, cov: Tensor) -> Tensor:
    """log N(z; 0, cov) for z (..., D)."""
    return torch.distributions.MultivariateNormal(torch.zeros(cov.shape[0]), cov).log_prob(z)


def posterior_batch(cov: Tensor, s: float, batch: int, g: torch.Generator) -> Terms:
    """Terms of one batch: mu_n ~ N(0, cov), q(z|x_n) = N(mu_n, s^2 I), one draw z each."""
    D = cov.shape[0]
    loc = torch.randn(batch, D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    logvar = torch.full_like(loc, 2 * math.log(s))
    eps = torch.randn(1, batch, D, generator=g, dtype=torch.float64)
    z = loc + s * eps
    log_pz = -(0.5 * z**2 + 0.5 * math.log(2 * math.pi)).sum(-1)
    return Terms(
        log_px_z=torch.zeros(1, batch, dtype=torch.float64),
        log_pz=log_pz,
        log_qz_x=gaussian_log_prob_eps(eps, logvar),
        z=z,
        qz_loc=loc,
        qz_logvar=logvar,
    )


def predicted_tc(terms: Terms, cov: Tensor, s: float, w_self: float, w_other: float) -> Tensor:
    """First-order prediction of each sample's TC estimate (1, B), and its Jensen part.

    An estimate log(w_self q(z_i|x_i) + w_other sum_{j != i} q(z_i|x_j)): given z_i, each of the
    B - 1 other terms has mean q(z_i) (the Gaussian aggregate) and relative variance
    v = E[q(z|x)^2] / q(z)^2 - 1, with E_mu[N(z; mu, s^2 I)^2] = (4 pi s^2)^(-D/2)
    N(z; 0, S + s^2 I / 2). So E[log estimate] = log m - var / (2 m^2) + O(B^-2), with
    m = w_self q_self + w_other (B - 1) q and var = w_other^2 (B - 1) v q^2. The same for each
    dimension's marginal; TC = joint - sum of marginals.
    """
    z, loc = terms.z[0], terms.qz_loc
    B, D = loc.shape
    eye = torch.eye(D, dtype=torch.float64)

    def log_estimate(zz: Tensor, mu: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        d = c.shape[0]
        log_self = log_normal(zz - mu, s**2 * torch.eye(d, dtype=torch.float64))
        log_q = log_normal(zz, c + s**2 * torch.eye(d, dtype=torch.float64))
        log_sq = -0.5 * d * math.log(4 * math.pi * s**2) + log_normal(
            zz, c + 0.5 * s**2 * torch.eye(d, dtype=torch.float64)
        )
        v = torch.exp(log_sq - 2 * log_q) - 1
        m = w_self * log_self.exp() + w_other * (B - 1) * log_q.exp()
        var = w_other**2 * (B - 1) * v * log_q.exp() ** 2
        return m.log(), -var / (2 * m**2)

    joint, jensen = log_estimate(z, loc, cov)
    for d in range(D):
        one = eye[d : d + 1].T  # (D, 1): picks dimension d
        m_d, j_d = log_estimate(z @ one, loc @ one, cov[d : d + 1, d : d + 1])
        joint, jensen = joint - m_d, jensen - j_d
    return (joint + jensen)[None], jensen[None]


@pytest.mark.parametrize("estimator", ["mss", "mws"])
@pytest.mark.parametrize("cov", [CORRELATED, INDEPENDENT], ids=["correlated", "independent"])
def test_tc_estimate_matches_the_gaussian_closed_form_within_its_bias(cov, estimator) -> None:
    """Eight batches of 1024: the mean TC estimate against -0.5 log det R.

    MSS weighs each q(z_i|x_j) so that the weights sum to one: its estimate of q(z_i) is
    unbiased and log q(z) is low only by Jensen's gap, to first order var / (2 m^2) (derived in
    predicted_tc, a few hundredths of a nat here). MWS weighs every term 1 / (N B), a total of
    1/N: its log q(z) is low by log N and its TC high by (D - 1) log N, a constant that the
    prediction carries (with the self term's weight 1 / (N B)). The tolerance is four standard
    errors of the mean over batches plus half the first-order Jensen term (the second-order
    remainder is far smaller at this batch size)."""
    S = torch.tensor(cov, dtype=torch.float64)
    s, B, N, D = 0.5, 1024, 50_000, 3
    if estimator == "mss":
        N = 10**9  # an unrepeated draw of every batch: weights 1/N on the self term, 1/M others
    w_self, w_other = (1 / (N * B), 1 / (N * B)) if estimator == "mws" else (1 / N, 1 / (B - 1))
    truth = gaussian_tc(S + s**2 * torch.eye(D, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    means, predicted, jensen = [], [], []
    for _ in range(8):
        terms = posterior_batch(S, s, B, g)
        parts = kl_parts(terms, N, estimator)
        pred, jen = predicted_tc(terms, S, s, w_self, w_other)
        means.append(float(parts.tc.mean()))
        predicted.append(float(pred.mean()))
        jensen.append(float(jen.mean()))
    mean = sum(means) / len(means)
    se = float(torch.tensor(means).std()) / math.sqrt(len(means))
    offset = (D - 1) * math.log(N) if estimator == "mws" else 0.0
    prediction = sum(predicted) / len(predicted)
    bias = abs(sum(jensen) / len(jensen))
    assert abs(mean - prediction) < 4 * se + 0.5 * bias + 1e-3
    assert bias < 0.05  # Jensen's gap at B = 1024: 0.005 to 0.03 nats here
    if estimator == "mss":  # the closed form, but for Jensen's gap
        assert abs(mean - truth) < 4 * se + 1.5 * bias + 1e-3
    else:  # the same up to (D - 1) log N and the self term's (r - 1) / B (r = q(z|x) / q(z))
        assert abs(mean - offset - truth) < 0.1


def test_the_three_parts_sum_to_the_sampled_kl() -> None:
    g = torch.Generator().manual_seed(1)
    terms = posterior_batch(torch.tensor(CORRELATED, dtype=torch.float64), 0.3, 64, g)
    for estimator in ("mws", "mss"):
        p = kl_parts(terms, 1000, estimator)
        assert p.mi.shape == p.tc.shape == p.dim_kl.shape == (1, 64)
        total = p.mi + p.tc + p.dim_kl
        assert torch.allclose(total, terms.log_qz_x - terms.log_pz, rtol=0, atol=1e-10)


def test_the_log_weights_are_the_papers() -> None:
    """MWS: 1/(N B) everywhere. MSS with B = 4, M = 3, N = 10: 1/N on the diagonal, (N - M) /
    (N M) at (i, i + 1 mod B), 1/M elsewhere; each row sums to one."""
    mws = log_importance_weights(4, 10, "mws").exp()
    assert torch.allclose(mws, torch.full((4, 4), 1 / 40, dtype=torch.float64))
    w = log_importance_weights(4, 10, "mss").exp()
    a, b, c = 1 / 10, 7 / 30, 1 / 3
    expected = torch.tensor(
        [[a, b, c, c], [c, a, b, c], [c, c, a, b], [b, c, c, a]], dtype=torch.float64
    )
    assert torch.allclose(w, expected, rtol=0, atol=1e-12)
    assert torch.allclose(w.sum(1), torch.ones(4, dtype=torch.float64))


def small_vae(**kw) -> VAE:
    torch.manual_seed(0)
    return VAE(data_shape=(12,), latent_dim=3, hidden=(16,), **kw)


def test_btcvae_at_unit_weights_is_the_elbo_exactly_and_in_expectation() -> None:
    """alpha = beta = gamma = 1: the weighted parts are the KL, so the objective is the ELBO; it
    takes the analytic KL, so it is exactly vaekit's ELBO. The paper's form, log p(x|z) less the
    three parts, is the one-sample ELBO, whose mean over many draws is that ELBO."""
    model = small_vae()
    x = torch.rand(32, 12, generator=torch.Generator().manual_seed(3))
    terms = model(x, k=1, generator=torch.Generator().manual_seed(4))
    for estimator in ("mws", "mss"):
        got = btcvae(terms, 1.0, alpha=1.0, gamma=1.0, dataset_size=1000, estimator=estimator)
        assert torch.equal(got, elbo(terms))
        p = kl_parts(terms, 1000, estimator)
        paper = (terms.log_px_z - p.mi - p.tc - p.dim_kl).mean(0)
        assert torch.allclose(paper, elbo(Terms(terms.log_px_z, terms.log_pz, terms.log_qz_x)))
    many = model(x[:4], k=20_000, generator=torch.Generator().manual_seed(5))
    sampled_kl = many.log_qz_x - many.log_pz  # (K, 4): what the three parts sum to
    se = sampled_kl.std(0) / math.sqrt(20_000)
    assert ((sampled_kl.mean(0) - many.kl).abs() < 4 * se).all()


def test_btcvae_weights_each_part() -> None:
    model = small_vae()
    x = torch.rand(16, 12, generator=torch.Generator().manual_seed(3))
    terms = model(x, k=2, generator=torch.Generator().manual_seed(4))
    p = kl_parts(terms, 500, "mss")
    got = btcvae(terms, 6.0, alpha=0.5, gamma=2.0, dataset_size=500, estimator="mss")
    want = elbo(terms) - (-0.5 * p.mi + 5.0 * p.tc + 1.0 * p.dim_kl).mean(0)
    assert torch.allclose(got, want)


def test_permute_dims_shuffles_each_column_on_its_own() -> None:
    z = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(permute_dims(z, torch.arange(12.0).reshape(4, 3)), z)
    keys = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    out = permute_dims(z, keys)
    for d in range(3):
        assert torch.equal(out[:, d].sort().values, z[:, d])
        assert torch.equal(out[:, d], z[keys[:, d].argsort(), d])


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_the_discriminator_estimates_tc_with_the_right_sign_and_size(rho: float) -> None:
    """Trained 400 steps on z ~ N(0, [[1, rho], [rho, 1]]) against its shuffled dimensions, the
    mean logit at fresh draws estimates TC = -0.5 log(1 - rho^2): 0 and 0.51 nats."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    chol = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    disc = Discriminator(2, (64, 64))
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3)
    for _ in range(400):
        z = torch.randn(1024, 2, generator=g) @ chol.T
        loss = discriminator_loss(disc, z, torch.randn(1024, 2, generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        tc = float(disc(torch.randn(20_000, 2, generator=g) @ chol.T).mean())
    truth = -0.5 * math.log(1 - rho**2)
    if rho == 0:
        assert abs(tc) < 0.05
    else:
        assert 0.6 * truth < tc < 1.4 * truth


def test_factorvae_gradients_stay_on_their_side() -> None:
    """The VAE's part (ELBO - gamma TC) moves no discriminator weight; the discriminator's loss
    moves no encoder or decoder weight; the objective's value is the VAE's part, exactly, and
    its gradient is the sum of both parts' (the discriminator's with the sign of a loss)."""
    model = small_vae(discriminator=(8, 8))
    x = torch.rand(16, 12, generator=torch.Generator().manual_seed(3))
    disc = model.discriminator
    vae_params = [p for n, p in model.named_parameters() if not n.startswith("discriminator")]
    d_params = list(disc.parameters())

    def grads(value: Tensor) -> list[Tensor]:
        model.zero_grad(set_to_none=True)
        value.backward()
        params = vae_params + d_params
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]

    def terms() -> Terms:
        return model(x, k=1, generator=torch.Generator().manual_seed(4))

    t = terms()
    vae_part = (elbo(t) - 10.0 * disc(t.z, frozen=True).mean(0)).mean()
    g_vae = grads(vae_part)
    assert all(float(g.abs().sum()) == 0 for g in g_vae[len(vae_params) :])
    assert any(float(g.abs().sum()) > 0 for g in g_vae[: len(vae_params)])
    t = terms()
    keys = (t.z[0] - t.qz_loc) * torch.exp(-0.5 * t.qz_logvar)
    g_disc = grads(discriminator_loss(disc, t.z[0], keys))
    assert all(float(g.abs().sum()) == 0 for g in g_disc[: len(vae_params)])
    assert all(float(g.abs().sum()) > 0 for g in g_disc[len(vae_params) :])
    t = terms()
    bound = factorvae(t, 1.0, gamma=10.0, discriminator=disc)
    assert torch.equal(bound.mean(), vae_part.detach())
    g_all = grads(bound.mean())
    for a, b, c in zip(g_all, g_vae, g_disc, strict=True):
        assert torch.allclose(a, b - c, atol=1e-6)


def test_the_discriminator_saves_loads_and_stays_out_of_the_bounds(tmp_path) -> None:
    import vaekit

    model = small_vae(discriminator=(8,))
    with torch.no_grad():
        for p in model.discriminator.parameters():
            p.normal_()
    model.save(tmp_path / "run")
    back = vaekit.load(tmp_path / "run")
    assert back.config.discriminator == (8,)
    for a, b in zip(model.discriminator.parameters(), back.discriminator.parameters(), strict=True):
        assert torch.equal(a, b)
    plain = small_vae()  # the same encoder and decoder, no discriminator
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("discriminator")}
    plain.load_state_dict(state)
    x = torch.rand(8, 12, generator=torch.Generator().manual_seed(3))
    assert torch.equal(back.elbo(x, seed=1), plain.elbo(x, seed=1))
    assert torch.equal(back.log_likelihood(x, k=50, seed=1), plain.log_likelihood(x, k=50, seed=1))
    assert VAE(data_shape=(12,), latent_dim=3).discriminator is None

"""The bounds against a linear-Gaussian VAE, whose log p(x) and p(z|x) are known exactly, and the
reparameterised gradient against finite differences."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from vaekit import VAE, Terms, elbo, iwae
from vaekit.objectives import OBJECTIVES, btcvae, factorvae, logmeanexp

if TYPE_CHECKING:
    from conftest import LinearGaussian

MakeLG = Callable[..., "LinearGaussian"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_objectives_are_named_by_config() -> None:
    assert {"elbo": elbo, "iwae": iwae, "btcvae": btcvae, "factorvae": factorvae} == OBJECTIVES


# -- the exact posterior -----------------------------------------------------------------------


def test_encoder_can_be_set_to_the_exact_posterior(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()
    x = lg.sample_x(6, gen(1))
    qz_x = lg.model.encode(x)
    A, c = lg.posterior_loc_map()
    Sigma = lg.posterior_cov()
    assert torch.allclose(Sigma, torch.diag(torch.diagonal(Sigma)), atol=1e-12)  # diagonal
    assert torch.allclose(qz_x.mean, x @ A.T + c, atol=1e-10)
    assert torch.allclose(qz_x.variance, torch.diagonal(Sigma).expand(6, -1), rtol=1e-9)


def test_elbo_with_exact_posterior_equals_log_px(linear_gaussian: MakeLG) -> None:
    # With q(z|x) = p(z|x), every weight p(x, z) / q(z|x) equals p(x): no slack, no variance.
    lg = linear_gaussian()
    x = lg.sample_x(8, gen(1))
    log_px = lg.log_px(x)
    terms = lg.model(x, k=3, generator=gen(2))
    assert torch.allclose(terms.log_w, log_px.expand(3, -1), atol=1e-4, rtol=0)
    assert torch.allclose(iwae(terms), log_px, atol=1e-4, rtol=0)
    mc_kl_terms = Terms(terms.log_px_z, terms.log_pz, terms.log_qz_x, kl=None)
    assert torch.allclose(elbo(mc_kl_terms), log_px, atol=1e-4, rtol=0)
    # In closed form (E_q[log p(x|z)] - KL) too; the analytic KL vaekit uses is that KL.
    qz_x = lg.model.encode(x)
    assert torch.allclose(lg.expected_elbo(x, qz_x.mean, qz_x.variance), log_px, atol=1e-4)
    m, v = qz_x.mean, qz_x.variance
    assert torch.allclose(terms.kl, 0.5 * (v + m**2 - 1 - v.log()).sum(-1))


def test_elbo_with_analytic_kl_and_exact_posterior_averages_to_log_px(
    linear_gaussian: MakeLG,
) -> None:
    # With the closed-form KL only log p(x|z) is sampled: the ELBO is log p(x) on average.
    lg = linear_gaussian()
    x = lg.sample_x(4, gen(1))
    bound = elbo(lg.model(x, k=20000, generator=gen(2)))  # (4,) each a 20000-sample average
    log_px_z = lg.model(x, k=20000, generator=gen(2)).log_px_z
    se = log_px_z.std(0) / math.sqrt(20000)
    assert torch.all((bound - lg.log_px(x)).abs() < 4 * se)


# -- bounds with an imperfect q ------------------------------------------------------------------


def test_iwae_with_one_sample_equals_elbo_in_expectation(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()
    lg.set_encoder(loc_scale=0.8, loc_shift=0.3, var_scale=2.0)
    n = 20000
    x = lg.sample_x(1, gen(1)).expand(n, -1)  # one point, n independent replicates
    terms = lg.model(x, k=1, generator=gen(2))
    iwae_1 = iwae(terms)  # (n,) log_w with a Monte Carlo KL
    elbo_1 = elbo(terms)  # (n,) one-sample log p(x|z) with the closed-form KL
    diff = iwae_1 - elbo_1
    se = diff.std() / math.sqrt(n)
    assert abs(diff.mean()) < 4 * se
    # ... and both agree with the ELBO in closed form.
    qz_x = lg.model.encode(x[:1])
    exact_elbo = lg.expected_elbo(x[:1], qz_x.mean, qz_x.variance)
    for bound in (iwae_1, elbo_1):
        assert abs(bound.mean() - exact_elbo) < 4 * bound.std() / math.sqrt(n)
    # The gap is real, so the comparisons above can tell the bound from log p(x).
    assert lg.log_px(x[:1]) - exact_elbo > 0.1


def test_elbo_below_iwae10_below_log_px(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()
    lg.set_encoder(loc_scale=0.8, loc_shift=0.3, var_scale=2.0)
    x = lg.sample_x(16, gen(1))
    reps = 400
    x_rep = x.repeat(reps, 1)  # (reps * 16, D)
    elbo_hat = elbo(lg.model(x_rep, k=1, generator=gen(2))).reshape(reps, 16).mean(1)  # (reps,)
    iwae10_hat = iwae(lg.model(x_rep, k=10, generator=gen(3))).reshape(reps, 16).mean(1)
    log_px = lg.log_px(x).mean()

    def se(v: Tensor) -> float:
        return float(v.detach().std() / math.sqrt(len(v)))

    assert elbo_hat.mean() + 4 * (se(elbo_hat) + se(iwae10_hat)) < iwae10_hat.mean()
    assert iwae10_hat.mean() + 4 * se(iwae10_hat) < log_px


def test_iwae_with_20000_samples_is_within_002_nats_of_log_px(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()
    lg.set_encoder(loc_scale=0.9, loc_shift=0.2, var_scale=1.5)
    x = lg.sample_x(8, gen(1))
    terms = lg.model(x, k=20000, generator=gen(2))
    log_px = lg.log_px(x)
    assert torch.all((iwae(terms) - log_px).abs() < 0.02)
    # The ELBO of the same q is clearly further off, so the agreement is the samples' doing.
    assert torch.all(log_px - elbo(terms) > 0.05)


# -- the functions themselves --------------------------------------------------------------------


def random_terms(k: int, b: int, seed: int = 0, kl: bool = True) -> Terms:
    g = gen(seed)

    def r() -> Tensor:
        return torch.randn(k, b, generator=g, dtype=torch.float64)

    return Terms(
        log_px_z=r() - 50,
        log_pz=r() - 3,
        log_qz_x=r(),
        kl=torch.rand(b, generator=g, dtype=torch.float64) if kl else None,
    )


def test_elbo_is_mean_reconstruction_minus_beta_kl() -> None:
    terms = random_terms(k=4, b=3)
    for beta in (0.0, 0.5, 1.0):
        expected = terms.log_px_z.mean(0) - beta * terms.kl
        assert torch.allclose(elbo(terms, beta), expected)
    # Without a closed-form KL, the Monte Carlo estimate log q - log p stands in.
    mc = random_terms(k=4, b=3, kl=False)
    expected = (mc.log_px_z - (mc.log_qz_x - mc.log_pz)).mean(0)
    assert torch.allclose(elbo(mc), expected)


def test_iwae_with_one_sample_is_elbo_with_monte_carlo_kl() -> None:
    terms = random_terms(k=1, b=5, kl=False)
    assert torch.allclose(iwae(terms), elbo(terms))
    assert torch.allclose(iwae(terms), terms.log_w[0])


def test_iwae_is_log_mean_of_weights() -> None:
    terms = random_terms(k=7, b=4)
    log_w = terms.log_px_z + terms.log_pz - terms.log_qz_x
    expected = torch.log(torch.exp(log_w + 60).mean(0)) - 60  # exp(-50) fits in float64
    assert torch.allclose(iwae(terms), expected, rtol=0, atol=1e-10)
    # beta tempers the prior / posterior ratio only.
    tempered = terms.log_px_z + 0.3 * (terms.log_pz - terms.log_qz_x)
    expected = torch.log(torch.exp(tempered + 60).mean(0)) - 60
    assert torch.allclose(iwae(terms, beta=0.3), expected, rtol=0, atol=1e-10)


def test_iwae_is_stable_for_very_negative_log_weights() -> None:
    log_w = torch.tensor([[-1000.0, -2000.0], [-1000.0, -2000.0 + math.log(3)]])  # (K=2, B=2)
    zeros = torch.zeros_like(log_w)
    bound = iwae(Terms(log_px_z=log_w, log_pz=zeros, log_qz_x=zeros, kl=None))
    assert torch.isfinite(bound).all()
    assert torch.allclose(bound, torch.tensor([-1000.0, -2000.0 + math.log(2)]))
    assert logmeanexp(log_w, dim=0).shape == (2,)


def test_iwae_is_nondecreasing_in_k_on_average(linear_gaussian: MakeLG) -> None:
    # Burda et al.: E[IWAE_K] <= E[IWAE_2K]; here K = 1, 4, 32 on the same point.
    lg = linear_gaussian()
    lg.set_encoder(loc_scale=0.8, loc_shift=0.3, var_scale=2.0)
    x = lg.sample_x(1, gen(1)).expand(2000, -1)
    means = [float(iwae(lg.model(x, k=k, generator=gen(k))).mean().detach()) for k in (1, 4, 32)]
    assert means[0] < means[1] < means[2] < float(lg.log_px(x[:1]))


# -- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bound", [elbo, iwae])
def test_reparameterized_gradient_matches_finite_differences(bound: Callable) -> None:
    model = VAE(
        data_shape=(4,),
        latent_dim=2,
        hidden=(3,),
        likelihood="gaussian",
        prior="learned_gaussian",
    ).double()
    x = torch.randn(3, 4, generator=gen(1), dtype=torch.float64)
    names = [name for name, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def loss(*values: Tensor) -> Tensor:
        # The same noise on every call: the bound is then a deterministic function of the weights.
        terms = functional_call(
            model, dict(zip(names, values, strict=True)), (x,), {"k": 2, "generator": gen(3)}
        )
        return -bound(terms).mean()

    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_mean_reparameterized_gradient_is_gradient_of_expected_elbo(
    linear_gaussian: MakeLG,
) -> None:
    # The reparameterised estimator is unbiased: averaged over eps it is the gradient of the
    # closed-form ELBO with respect to q's parameters (here the encoder's biases).
    lg = linear_gaussian()
    lg.set_encoder(loc_scale=0.8, loc_shift=0.3, var_scale=2.0)
    x = lg.sample_x(2, gen(1))
    bias = lg.model.encoder[0].bias

    def grad_of(value: Tensor) -> Tensor:
        (g,) = torch.autograd.grad(value, bias)
        return g

    qz_x = lg.model.encode(x)
    exact = grad_of(lg.expected_elbo(x, qz_x.mean, qz_x.variance).sum())
    groups = torch.stack(
        [grad_of(elbo(lg.model(x, k=2000, generator=gen(10 + i))).sum()) for i in range(10)]
    )  # (10, 2M) gradient estimates, each from 2000 samples
    se = groups.std(0) / math.sqrt(len(groups))
    assert torch.all((groups.mean(0) - exact).abs() < 4 * se + 1e-9)
    assert exact.abs().max() > 0.1  # a gradient worth matching


# -- the score-function learning signals, term by term ---------------------------------------------
# With pathwise=False the gradient of a bound with respect to log q(z_k|x) is its pathwise part
# plus the learning signal of sample k. The unbiasedness tests (test_categorical.py) cannot see a
# baseline that is off by a constant or leaves out an example; these check the signals exactly.


def _log_q_gradient(bound, terms: dict[str, Tensor], beta: float = 1.0) -> Tensor:
    log_q = terms["log_qz_x"].clone().requires_grad_(True)
    t = Terms(terms["log_px_z"], terms["log_pz"], log_q, kl=None, pathwise=False)
    (grad,) = torch.autograd.grad(bound(t, beta).sum(), log_q)
    return grad  # (K, B)


def test_vimco_signal_is_the_bound_less_the_bound_with_sample_k_replaced() -> None:
    """Mnih & Rezende's VIMCO: signal_k = L - L with log w_k replaced by the mean of the others';
    the pathwise part of d L / d log q_k is -softmax(log w)_k."""
    K, B = 4, 3
    log_px_z = torch.randn(K, B, generator=gen(0), dtype=torch.float64)
    log_q = torch.randn(K, B, generator=gen(1), dtype=torch.float64)
    log_pz = torch.zeros(K, B, dtype=torch.float64)
    grad = _log_q_gradient(iwae, {"log_px_z": log_px_z, "log_pz": log_pz, "log_qz_x": log_q})
    log_w = log_px_z - log_q
    bound = torch.logsumexp(log_w, 0) - math.log(K)
    held = []
    for k in range(K):
        others = torch.cat([log_w[:k], log_w[k + 1 :]]).mean(0, keepdim=True)
        held.append(torch.logsumexp(torch.cat([log_w[:k], others, log_w[k + 1 :]]), 0))
    signal = bound - (torch.stack(held) - math.log(K))
    assert torch.allclose(grad, signal - torch.softmax(log_w, 0))


@pytest.mark.parametrize("K", [1, 3])
def test_elbo_signal_is_leave_one_out_with_a_monte_carlo_kl(K: int) -> None:
    """f_k = log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)); signal_k = (f_k - mean of the other
    samples' f) / K, and with K = 1 f_b less the mean of the other examples' f; the pathwise part
    of d ELBO / d log q_k is -beta / K."""
    B, beta = 3, 0.5
    terms = {
        "log_px_z": torch.randn(K, B, generator=gen(0), dtype=torch.float64),
        "log_pz": torch.randn(K, B, generator=gen(1), dtype=torch.float64),
        "log_qz_x": torch.randn(K, B, generator=gen(2), dtype=torch.float64),
    }
    grad = _log_q_gradient(elbo, terms, beta)
    f = terms["log_px_z"] + beta * (terms["log_pz"] - terms["log_qz_x"])  # (K, B)
    if K > 1:
        signal = (f - (f.sum(0) - f) / (K - 1)) / K
    else:
        signal = f - (f.sum(1, keepdim=True) - f) / (B - 1)
    assert torch.allclose(grad, signal - beta / K)


def test_terms_of_one_s_own_networks_need_no_closed_form_kl() -> None:
    """Terms(log_px_z, log_pz, log_qz_x) as one writes them for one's own networks: without a
    closed-form KL the ELBO's KL is the sample average log q - log p."""
    log_px_z, log_pz, log_qz_x = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    terms = Terms(log_px_z, log_pz, log_qz_x)
    assert terms.kl is None
    assert torch.allclose(elbo(terms), (log_px_z + log_pz - log_qz_x).mean(0))

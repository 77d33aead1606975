"""Observation models p(x|z): event shapes, log-densities against explicit formulas and scipy, the
soft clamp on variances, and learned variances that actually learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import Tensor

from vaekit import VAE
from vaekit.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    GaussianFixedLikelihood,
    GaussianLikelihood,
    GaussianPerDimLikelihood,
    GaussianSharedLikelihood,
    Likelihood,
    soft_clamp,
)


def build(name: str, data_shape: tuple[int, ...]) -> Likelihood:
    cls = LIKELIHOODS[name]
    if issubclass(cls, GaussianFixedLikelihood):
        return cls(data_shape, 0.3)
    return cls(data_shape)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
@pytest.mark.parametrize("data_shape", [(6,), (1, 3, 4), (2, 5)])
def test_event_shape_is_data_shape(name: str, data_shape: tuple[int, ...]) -> None:
    likelihood = build(name, data_shape)
    params = torch.randn(3, 2, likelihood.n_params, *data_shape)  # (K, B, n_params, *data_shape)
    px_z = likelihood(params)
    assert px_z.event_shape == data_shape
    assert px_z.batch_shape == (3, 2)
    x = torch.rand(2, *data_shape)
    assert px_z.log_prob(x).shape == (3, 2)
    assert px_z.mean.shape == (3, 2, *data_shape)


def test_model_decoder_emits_n_params_per_dim() -> None:
    for name, cls in LIKELIHOODS.items():
        model = VAE(data_shape=(1, 3, 4), latent_dim=2, hidden=(5,), likelihood=name)
        assert model.decoder.out_features == cls.n_params * 12
        assert model.decode(torch.randn(7, 2)).event_shape == (1, 3, 4)


def test_bernoulli_log_prob_is_cross_entropy() -> None:
    logits = torch.randn(4, 1, 6, dtype=torch.float64, generator=gen(1))
    x = torch.rand(4, 6, dtype=torch.float64, generator=gen(2))  # [0, 1], not only {0, 1}
    px_z = BernoulliLikelihood((6,))(logits)
    p = torch.sigmoid(logits[:, 0])
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    assert torch.allclose(px_z.log_prob(x), expected)
    # On binary data it is scipy's Bernoulli pmf.
    xb = (x > 0.5).double()
    scipy_lp = stats.bernoulli.logpmf(xb.numpy(), p.numpy()).sum(-1)
    assert np.allclose(px_z.log_prob(xb).numpy(), scipy_lp)
    assert torch.allclose(px_z.mean, p)


def normal_logpdf(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / logvar.exp())


def test_gaussian_log_prob_matches_formula_and_scipy() -> None:
    params = torch.randn(5, 2, 3, 4, dtype=torch.float64, generator=gen(1))  # (B, 2, 3, 4)
    x = torch.randn(5, 3, 4, dtype=torch.float64, generator=gen(2))
    lik = GaussianLikelihood((3, 4), min_logvar=-8.0, max_logvar=4.0)
    mean, raw_logvar = params[:, 0], params[:, 1]
    logvar = soft_clamp(raw_logvar, -8.0, 4.0)
    expected = normal_logpdf(x, mean, logvar).sum((-2, -1))
    assert torch.allclose(lik(params).log_prob(x), expected)
    scipy_lp = stats.norm.logpdf(x.numpy(), mean.numpy(), (0.5 * logvar).exp().numpy())
    assert np.allclose(lik(params).log_prob(x).numpy(), scipy_lp.sum((-2, -1)))


def test_gaussian_logvar_is_soft_clamped() -> None:
    lik = GaussianLikelihood((3,), min_logvar=-2.0, max_logvar=1.0)
    raw = torch.tensor([[[0.0, 0.0, 0.0], [-1e4, 0.0, 1e4]]])  # (1, 2, 3)
    var = lik(raw).variance[0]
    assert math.exp(-2.0) <= var[0] <= math.exp(-2.0) * 1.001
    assert abs(var[1] - 1.0) < 0.2
    assert math.exp(1.0) * 0.999 <= var[2] <= math.exp(1.0)


def test_gaussian_fixed_log_prob_uses_the_given_std() -> None:
    mean = torch.randn(4, 1, 5, dtype=torch.float64, generator=gen(1))
    x = torch.randn(4, 5, dtype=torch.float64, generator=gen(2))
    lik = GaussianFixedLikelihood((5,), std=0.25).double()
    expected = stats.norm.logpdf(x.numpy(), mean[:, 0].numpy(), 0.25).sum(-1)
    assert np.allclose(lik(mean).log_prob(x).numpy(), expected)
    assert list(lik.parameters()) == []  # fixed, not learned
    with pytest.raises(ValueError, match="decoder_std"):
        GaussianFixedLikelihood((5,), std=0.0)


@pytest.mark.parametrize("cls", [GaussianPerDimLikelihood, GaussianSharedLikelihood])
def test_learned_variance_log_prob_matches_formula(cls: type[GaussianLikelihood]) -> None:
    lik = cls((2, 3)).double()
    with torch.no_grad():
        lik.raw_logvar.copy_(torch.randn(lik.raw_logvar.shape, dtype=torch.float64))
    mean = torch.randn(4, 1, 2, 3, dtype=torch.float64, generator=gen(1))
    x = torch.randn(4, 2, 3, dtype=torch.float64, generator=gen(2))
    logvar = soft_clamp(lik.raw_logvar, lik.min_logvar, lik.max_logvar)
    expected = normal_logpdf(x, mean[:, 0], logvar.expand(2, 3)).sum((-2, -1))
    assert torch.allclose(lik(mean).log_prob(x), expected)


@pytest.mark.parametrize(
    ("cls", "shape"), [(GaussianPerDimLikelihood, (4,)), (GaussianSharedLikelihood, ())]
)
def test_learned_variance_is_a_parameter_that_learns(
    cls: type[GaussianLikelihood], shape: tuple[int, ...]
) -> None:
    lik = cls((4,))
    assert [p.shape for p in lik.parameters()] == [shape]
    # Maximum likelihood under a zero mean: the variance goes to the data's second moment.
    true_std = torch.tensor([0.3, 0.6, 1.0, 2.0])
    x = torch.randn(4000, 4, generator=gen(1)) * true_std
    optimizer = torch.optim.Adam(lik.parameters(), lr=0.05)
    zeros = torch.zeros(1, 4)  # (n_params, D): batch shape ()
    for _ in range(300):
        optimizer.zero_grad()
        loss = -lik(zeros).log_prob(x).mean()
        loss.backward()
        optimizer.step()
    learned_var = lik(zeros).variance.detach()  # (4,)
    target = (x**2).mean(0) if cls is GaussianPerDimLikelihood else (x**2).mean().expand(4)
    assert torch.allclose(learned_var, target, rtol=0.02)


@pytest.mark.parametrize(
    ("name", "key"),
    [("gaussian_per_dim", "likelihood.raw_logvar"), ("gaussian_shared", "likelihood.raw_logvar")],
)
def test_model_registers_learned_variance(name: str, key: str) -> None:
    model = VAE(data_shape=(4,), latent_dim=2, hidden=(3,), likelihood=name)
    assert key in dict(model.named_parameters())
    assert key in model.state_dict()
    terms = model(torch.randn(5, 4), k=2)
    (-terms.log_px_z.mean()).backward()
    assert dict(model.named_parameters())[key].grad.abs().sum() > 0


# -- soft_clamp ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(-1e30, 1e30, allow_nan=False),
    lo=st.floats(-20.0, 10.0),
    width=st.floats(0.5, 30.0),
)
def test_soft_clamp_stays_in_bounds(x: float, lo: float, width: float) -> None:
    hi = lo + width
    for dtype in (torch.float32, torch.float64):
        y = soft_clamp(torch.tensor(x, dtype=dtype), lo, hi)
        lo_t, hi_t = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
        assert lo_t <= y <= hi_t, (x, lo, hi, float(y))


def test_soft_clamp_is_near_identity_in_the_middle() -> None:
    lo, hi = -12.0, 6.0
    x = torch.linspace(-6.0, 0.0, 61, dtype=torch.float64)  # >= 6 from either end
    y = soft_clamp(x, lo, hi)
    assert torch.allclose(y, x, atol=0.005)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(soft_clamp(x, lo, hi).sum(), x)
    assert torch.allclose(grad, torch.ones_like(grad), atol=0.005)


def test_soft_clamp_is_increasing_with_nonzero_gradient() -> None:
    x = torch.linspace(-30.0, 30.0, 601, dtype=torch.float64, requires_grad=True)
    y = soft_clamp(x, -8.0, 4.0)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.all(y[1:] > y[:-1])
    assert torch.all(grad > 0)
    assert torch.isfinite(grad).all()

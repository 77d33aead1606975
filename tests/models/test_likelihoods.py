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

from vaekit import VAE, ConfigError, DataError
from vaekit.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
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
    for name in LIKELIHOODS:
        model = VAE(data_shape=(1, 3, 4), latent_dim=2, hidden=(5,), likelihood=name)
        assert model.decoder.out_features == model.likelihood.n_params * 12
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
    with pytest.raises(ConfigError, match="decoder_std must be a positive number"):
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


# -- discretized logistic mixture ------------------------------------------------------------------

GRID = torch.arange(256, dtype=torch.float64) / 255  # the 256 values of 8-bit data in [0, 1]


def logistic_cdf(y: float, mean: float, scale: float) -> float:
    return 1.0 / (1.0 + math.exp(-(y - mean) / scale))


@pytest.mark.parametrize("components", [1, 3])
def test_discretized_logistic_bins_sum_to_one(components: int) -> None:
    lik = DiscretizedLogisticLikelihood((5,), components=components)
    assert lik.n_params == 3 * components
    params = torch.randn(4, lik.n_params, 5, dtype=torch.float64, generator=gen(1)) * 2
    params[:, components : 2 * components] += 0.5  # means around the middle of [0, 1]
    x = GRID[:, None, None].expand(256, 4, 5)  # every level, for each of 4 x 5 dims
    log_p = lik(params).base_dist.log_prob(x)  # (256, 4, 5) elementwise
    assert torch.allclose(torch.logsumexp(log_p, dim=0), torch.zeros(4, 5).double(), atol=1e-9)
    # Narrow components far outside [0, 1] still give a proper distribution.
    params[:, 2 * components :] = -20.0  # log-scales at their floor
    params[:, components : 2 * components] = 3.0
    log_p = lik(params).base_dist.log_prob(x)
    assert torch.allclose(torch.logsumexp(log_p, dim=0), torch.zeros(4, 5).double(), atol=1e-9)
    assert float(log_p[255].max()) > -1e-6  # all mass in the top bin


def test_discretized_logistic_one_component_is_a_cdf_difference() -> None:
    lik = DiscretizedLogisticLikelihood((3,)).double()
    mean, log_scale = 0.4, -2.5
    params = torch.tensor([[[0.0] * 3, [mean] * 3, [log_scale] * 3]], dtype=torch.float64)
    x = torch.tensor([[0.0, 100 / 255, 1.0]], dtype=torch.float64)  # bottom, interior, top bins
    s = math.exp(float(soft_clamp(torch.tensor(log_scale, dtype=torch.float64), -9.0, 2.0)))
    h = 0.5 / 255
    expected = [
        math.log(logistic_cdf(h, mean, s)),
        math.log(logistic_cdf(100 / 255 + h, mean, s) - logistic_cdf(100 / 255 - h, mean, s)),
        math.log(1 - logistic_cdf(1 - h, mean, s)),
    ]
    log_p = lik(params).base_dist.log_prob(x)[0]
    assert torch.allclose(log_p, torch.tensor(expected, dtype=torch.float64), rtol=1e-9)
    assert torch.allclose(lik.log_prob(params, x), log_p.sum()[None])
    assert torch.allclose(lik(params).log_prob(x), log_p.sum())


def test_discretized_logistic_closed_form_matches_distribution() -> None:
    lik = DiscretizedLogisticLikelihood((2, 3), components=2)
    params = torch.randn(3, 4, 6, 2, 3, generator=gen(2))  # (K, B, 3M, *data_shape)
    x = torch.randint(0, 256, (4, 2, 3), generator=gen(3)) / 255.0
    assert torch.allclose(lik.log_prob(params, x), lik(params).log_prob(x), atol=1e-4)


def test_discretized_logistic_samples_lie_on_the_grid_with_the_right_frequencies() -> None:
    lik = DiscretizedLogisticLikelihood((1,), components=2).double()
    params = torch.tensor([[[0.0], [1.0], [0.2], [0.7], [-3.0], [-2.0]]], dtype=torch.float64)
    px_z = lik(params).base_dist
    torch.manual_seed(0)
    draws = px_z.sample((40000,))[:, 0, 0]  # (40000,)
    levels = draws * 255
    assert torch.equal(levels, levels.round()) and draws.min() >= 0 and draws.max() <= 1
    counts = torch.bincount(levels.round().long(), minlength=256).double()
    probs = px_z.log_prob(GRID[:, None, None])[:, 0, 0].exp()
    expected = probs * draws.numel()
    assert float(((counts - expected) ** 2 / expected.clamp(1)).sum()) < 256 + 6 * math.sqrt(512)
    # The mean is the mean of the discrete distribution.
    assert torch.allclose(px_z.mean[0, 0], (probs * GRID).sum(), rtol=1e-9)


def test_discretized_logistic_model_needs_8_bit_data() -> None:
    from vaekit import DataError, fit

    model = VAE(data_shape=(4,), latent_dim=2, hidden=(5,), likelihood="discretized_logistic")
    x = torch.randint(0, 256, (20, 4)) / 255.0
    history = fit(model, x, epochs=1, batch_size=10)
    assert math.isfinite(history[-1]["train_bound"])
    with pytest.raises(DataError, match="off the grid k/255"):
        fit(model, x + 0.3 / 255, epochs=1)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fit(model, x * 2, epochs=1)


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_output_of_the_wrong_shape_is_named(name: str) -> None:
    """A decoder of one's own that gives (B, D), forgetting the n_params axis, or x of another
    shape, is a DataError that says the shape to give, not "too many values to unpack"."""
    lik = LIKELIHOODS[name]((2, 3))
    want = rf"\(\.\.\., {lik.n_params}, 2, 3\)"
    params = torch.zeros(4, lik.n_params, 2, 3)
    x = torch.full((4, 2, 3), 0.5)
    for bad in (torch.zeros(4, 2, 3), torch.zeros(4, lik.n_params, 6), torch.zeros(3)):
        with pytest.raises(DataError, match=f"takes decoder output of shape {want}"):
            lik(bad)
        with pytest.raises(DataError, match=f"takes decoder output of shape {want}"):
            lik.log_prob(bad, x)
    with pytest.raises(DataError, match=r"takes x of shape \(\.\.\., 2, 3\), got \(4, 6\)"):
        lik.log_prob(params, x.reshape(4, 6))
    assert lik.log_prob(params, x).shape == (4,)

"""Evaluation: the importance-weighted log p(x) against the exact value of a linear-Gaussian VAE,
its chunking, seeding and shape; the ELBO, latent statistics and the summary report."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import torch
from torch import Tensor
from torch.distributions import kl_divergence

from vaekit import VAE, ConfigError, DataError, evaluate, log_likelihood
from vaekit.estimators import elbo as evaluate_elbo
from vaekit.estimators import latent_stats
from vaekit.evaluation import inference_gaps
from vaekit.evaluation import refine_posterior as evaluate_refine

if TYPE_CHECKING:
    from conftest import LinearGaussian

MakeLG = Callable[..., "LinearGaussian"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def iw_standard_error(log_w: Tensor) -> Tensor:
    """Delta-method standard error of log mean(w) from the K log-weights (K, B): std(w) /
    (sqrt(K) mean(w)), computed with weights rescaled by their maximum."""
    w = (log_w - log_w.max(0).values).exp()
    return w.std(0) / (math.sqrt(log_w.shape[0]) * w.mean(0))


def test_shape_dtype_and_k_check() -> None:
    model = VAE(data_shape=(1, 2, 3), latent_dim=2, hidden=(4,))
    ll = log_likelihood(model, torch.rand(5, 1, 2, 3), k=7)
    assert ll.shape == (5,) and ll.dtype == torch.float64 and torch.isfinite(ll).all()
    with pytest.raises(ConfigError, match="k must be a positive integer, got 0"):
        log_likelihood(model, torch.rand(5, 1, 2, 3), k=0)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.linspace(0, 2.5, 24).reshape(4, 6), r"values in \[0, 2.5\] but the bernoulli"),
        (torch.full((4, 6), math.nan), "data holds NaN or infinite values .first in example 0"),
        (torch.rand(0, 6), "data is empty"),
        (torch.rand(4, 5), r"data has example shape \(5,\) but the model expects \(6,\)"),
    ],
    ids=["outside [0, 1]", "NaN", "empty", "shape"],
)
@pytest.mark.parametrize("what", ["log_likelihood", "elbo", "latent_stats", "evaluate"])
def test_bad_data_is_one_data_error(x: Tensor, match: str, what: str) -> None:
    """What fit refuses, the estimates refuse too, instead of a number (NaN, or log p(x) of
    values a Bernoulli cannot take) or torch's error."""
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,))
    run = {
        "log_likelihood": lambda: log_likelihood(model, x, k=3),
        "elbo": lambda: evaluate_elbo(model, x),
        "latent_stats": lambda: latent_stats(model, x),
        "evaluate": lambda: evaluate(model, x, k=3),
    }[what]
    with pytest.raises(DataError, match=match):
        run()


def test_numpy_data_is_estimated_as_its_tensor() -> None:
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,))
    x = torch.rand(5, 6, dtype=torch.float64)
    assert torch.equal(log_likelihood(model, x.numpy(), k=4), log_likelihood(model, x, k=4))
    assert torch.equal(evaluate_elbo(model, x.numpy()), evaluate_elbo(model, x))
    assert evaluate(model, x.numpy(), k=4) == evaluate(model, x, k=4)


def test_elbo_refuses_no_samples() -> None:
    """The mean over zero samples would be NaN for every example."""
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,))
    with pytest.raises(ConfigError, match="samples must be a positive integer, got 0"):
        model.elbo(torch.rand(3, 6), samples=0)


def test_one_sample_with_fixed_seed_is_one_log_weight() -> None:
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,), likelihood="gaussian")
    x = torch.randn(9, 6)
    ll = log_likelihood(model, x, k=1, seed=5)
    log_w = model(x, k=1, generator=gen(5)).log_w[0]  # (9,)
    assert torch.allclose(ll, log_w.double().detach())


def test_reproducible_under_a_seed() -> None:
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,))
    x = torch.rand(4, 6)
    a = log_likelihood(model, x, k=50, seed=3)
    b = log_likelihood(model, x, k=50, seed=3, rows_per_chunk=7)
    assert torch.equal(a, log_likelihood(model, x, k=50, seed=3))
    assert torch.equal(b, log_likelihood(model, x, k=50, seed=3, rows_per_chunk=7))
    assert not torch.equal(a, log_likelihood(model, x, k=50, seed=4))
    assert model.log_likelihood(x, k=50, seed=3).equal(a.float())  # the model's dtype, as elbo
    assert model.log_likelihood(x, k=50, seed=3).dtype == model.elbo(x).dtype == torch.float32


@pytest.mark.parametrize(("k", "rows_per_chunk"), [(7, 3), (7, 1), (10, 25), (5, 10**6)])
def test_chunks_combine_exactly_with_the_exact_posterior(
    linear_gaussian: MakeLG, k: int, rows_per_chunk: int
) -> None:
    # With q = p(z|x) every log-weight is log p(x), so any split of the K samples into chunks must
    # give log p(x) exactly: a wrong normaliser or a dropped chunk would show.
    lg = linear_gaussian()
    x = lg.sample_x(5, gen(1))
    ll = log_likelihood(lg.model, x, k=k, rows_per_chunk=rows_per_chunk)
    assert torch.allclose(ll, lg.log_px(x), atol=1e-8, rtol=0)


def test_chunking_does_not_change_the_estimate_beyond_mc_error(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()
    lg.set_encoder(loc_scale=0.8, loc_shift=0.3, var_scale=2.0)
    x = lg.sample_x(6, gen(1))
    k = 4000
    se = iw_standard_error(lg.model(x, k=k, generator=gen(9)).log_w.detach())  # (6,)
    whole = log_likelihood(lg.model, x, k=k, seed=0)  # one pass
    chunked = log_likelihood(lg.model, x, k=k, seed=0, rows_per_chunk=333)  # 1 example, 333 samples
    assert not torch.equal(whole, chunked)  # different noise, so this compares distributions
    assert torch.all((whole - chunked).abs() < 4 * math.sqrt(2) * se)
    # Both estimate the exact log p(x).
    log_px = lg.log_px(x)
    for ll in (whole, chunked):
        assert torch.all((ll - log_px).abs() < 4 * se + 0.01)


def test_more_samples_tighten_the_bound(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()
    lg.set_encoder(loc_scale=0.8, loc_shift=0.3, var_scale=2.0)
    x = lg.sample_x(64, gen(1))
    ll_1 = log_likelihood(lg.model, x, k=1).mean()
    ll_100 = log_likelihood(lg.model, x, k=100).mean()
    exact = lg.log_px(x).mean()
    assert ll_1 < ll_100 < exact + 0.01
    assert exact - ll_100 < 0.3 * (exact - ll_1)


def test_elbo_matches_closed_form(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()
    lg.set_encoder(loc_scale=0.8, loc_shift=0.3, var_scale=2.0)
    x = lg.sample_x(3, gen(1))
    samples = 5000
    bound = evaluate_elbo(lg.model, x, samples=samples, seed=2, batch_size=2)
    qz_x = lg.model.encode(x)
    exact = lg.expected_elbo(x, qz_x.mean, qz_x.variance).detach()
    se = lg.model(x, k=samples, generator=gen(2)).log_px_z.detach().std(0) / math.sqrt(samples)
    assert bound.shape == (3,)
    assert torch.all((bound - exact).abs() < 4 * se)
    assert torch.equal(bound, lg.model.elbo(x, samples=samples, seed=2, batch_size=2))


def test_latent_stats(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()
    x = lg.sample_x(50, gen(1))
    stats = latent_stats(lg.model, x, batch_size=7)
    qz_x = lg.model.encode(x)
    m, v = qz_x.mean.detach(), qz_x.variance.detach()
    assert torch.allclose(stats["kl_per_dim"], (0.5 * (m**2 + v - v.log() - 1)).mean(0))
    assert torch.allclose(stats["activity"], m.var(0, unbiased=False))
    assert torch.allclose(stats["kl_per_dim"].sum(), lg.model(x).kl.detach().mean())


def test_evaluate_report(linear_gaussian: MakeLG) -> None:
    lg = linear_gaussian()  # exact posterior: ELBO = log p(x)
    x = lg.sample_x(20, gen(1))
    report = evaluate(lg.model, x, k=10)
    exact = float(lg.log_px(x).mean())
    assert report["n"] == 20 and report["k"] == 10
    assert report["log_likelihood"] == pytest.approx(exact, abs=1e-6)
    assert report["elbo"] == pytest.approx(exact, abs=0.5)
    assert report["bits_per_dim"] == pytest.approx(-exact / (5 * math.log(2)), rel=1e-6)
    assert report["kl"] == pytest.approx(sum(report["kl_per_dim"]), abs=1e-4)
    assert report["active_units"] == 2
    recon = lg.model.reconstruct(x)
    assert report["reconstruction_mse"] == pytest.approx(float(((recon - x) ** 2).mean()))
    for key, value in report.items():
        assert isinstance(value, int | float | list), key


def test_kl_per_dim_is_measured_against_the_models_own_prior() -> None:
    torch.manual_seed(0)
    model = VAE(data_shape=(6,), latent_dim=3, hidden=(8,), prior="learned_gaussian")
    with torch.no_grad():
        model.prior.loc.fill_(2.0)
        model.prior.log_scale.fill_(-0.5)
    x = torch.rand(40, 6)
    kl_per_dim = latent_stats(model, x)["kl_per_dim"]
    with torch.no_grad():
        expected = kl_divergence(model.encode(x), model.pz()).mean()
    assert kl_per_dim.shape == (3,)
    assert kl_per_dim.sum().item() == pytest.approx(expected.item(), rel=1e-5)


def test_latent_stats_with_a_mixture_prior_are_monte_carlo_kls() -> None:
    torch.manual_seed(0)
    model = VAE(data_shape=(6,), latent_dim=3, hidden=(8,), prior="mog", prior_components=4)
    x = torch.rand(30, 6)
    stats = latent_stats(model, x, samples=4000, seed=1)
    with torch.no_grad():
        qz_x = model.encode(x)
        z = qz_x.sample((4000,))  # (S, N, 3)
        kl = (qz_x.log_prob(z) - model.prior.log_prob(z)).mean()
        marginal = model.prior().component_distribution.base_dist  # (K, 3) Normals
        weights = model.prior().mixture_distribution.probs  # (K,)
        log_p_d = torch.logsumexp(
            weights.log()[:, None] + marginal.log_prob(z[..., None, :]), dim=-2
        )  # (S, N, 3): log of each coordinate's marginal mixture
        kl_d = (qz_x.base_dist.log_prob(z) - log_p_d).mean((0, 1))
    assert float(stats["kl"]) == pytest.approx(float(kl), abs=0.02)
    assert torch.allclose(stats["kl_per_dim"], kl_d, atol=0.02)
    report = evaluate(model, x, k=10)
    assert report["kl"] == pytest.approx(float(kl), abs=0.1)


def test_bits_per_dim_of_a_density_counts_bins_of_one_level_step() -> None:
    """For a continuous likelihood on data with 256 levels, bits/dim converts the density to
    the probability of a bin of width 1/255 (the levels' spacing on [0, 1])."""
    from vaekit.evaluation import evaluate as evaluate_report

    torch.manual_seed(0)
    m = VAE(data_shape=(4,), latent_dim=3, hidden=(5,), likelihood="gaussian_fixed").double()
    x = torch.rand(64, 4, generator=gen(0), dtype=torch.float64)
    r = evaluate_report(m, x, k=4, bin_levels=256)
    expected = (-r["log_likelihood"] / 4 + math.log(255)) / math.log(2)
    assert r["bits_per_dim"] == pytest.approx(expected, rel=1e-12)


def test_active_units_count_dimensions_whose_mean_varies_by_more_than_001() -> None:
    """A linear encoder on x = +-1 whose means are 0.05 x, 0.2 x and x: activities 0.0025, 0.04
    and 1, so two units are active at Burda et al.'s threshold of 0.01."""
    from vaekit.evaluation import evaluate as evaluate_report

    m = VAE(data_shape=(1,), latent_dim=3, hidden=(), likelihood="gaussian_fixed").double()
    with torch.no_grad():
        linear = next(mod for mod in m.encoder.modules() if isinstance(mod, torch.nn.Linear))
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[:3, 0] = torch.tensor([0.05, 0.2, 1.0])  # rows 0-2: the means
    x = torch.tensor([[-1.0], [1.0]] * 32, dtype=torch.float64)
    assert evaluate_report(m, x, k=2)["active_units"] == 2


# -- inference for given x: refined q*(z|x) and the gaps of the ELBO ----------------------------


def correlated_linear_gaussian(linear_gaussian: MakeLG) -> tuple[LinearGaussian, Tensor]:
    """A linear-Gaussian VAE whose decoder columns are correlated, so p(z|x) is a correlated
    Gaussian that no diagonal one equals, with an encoder far from its best; and data from it."""
    lg = linear_gaussian(data_dim=5, latent_dim=2, s=0.75)
    g = gen(1)
    base = torch.randn(5, generator=g, dtype=torch.float64)
    lg.W = torch.stack([base, base + 0.4 * torch.randn(5, generator=g, dtype=torch.float64)], 1)
    with torch.no_grad():
        lg.model.decoder[0].weight.copy_(lg.W)
    lg.set_encoder(loc_scale=0.5, loc_shift=0.3, var_scale=3.0)
    return lg, lg.sample_x(20, g)


def best_diagonal(lg: LinearGaussian, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The diagonal Gaussian of largest ELBO, (loc (B, M), var (B, M)), and its approximation
    gap KL(q* || p(z|x)) (): with posterior precision L = I + W^T W / s^2 the mean-field
    optimum has the posterior's mean and variances 1 / L_ii, so the gap is
    (sum_i log L_ii - log det L) / 2 for every x."""
    precision = torch.eye(lg.latent_dim, dtype=torch.float64) + lg.W.T @ lg.W / lg.s**2
    loc = (x - lg.b) @ lg.W @ torch.linalg.inv(precision) / lg.s**2
    var = (1 / torch.diagonal(precision)).expand_as(loc)
    gap = 0.5 * (torch.diagonal(precision).log().sum() - torch.logdet(precision))
    return loc, var, gap


def test_refine_posterior_finds_the_best_diagonal_gaussian(linear_gaussian: MakeLG) -> None:
    lg, x = correlated_linear_gaussian(linear_gaussian)
    loc, var, _ = best_diagonal(lg, x)
    best = lg.expected_elbo(x, loc, var)  # (B,) closed form
    q = lg.model.encode(x).base_dist
    assert (best - lg.expected_elbo(x, q.loc, q.scale**2)).min() > 1.0  # the encoder's is worse
    q_star = evaluate_refine(lg.model, x, steps=300, samples=8).base_dist
    assert q_star.loc.shape == q_star.scale.shape == (20, 2)
    shortfall = best - lg.expected_elbo(x, q_star.loc, q_star.scale**2)
    assert shortfall.max() < 0.02 and shortfall.min() > -1e-9  # nothing beats the optimum
    assert (q_star.loc - loc).abs().max() < 0.1
    assert ((q_star.scale**2 / var).log().abs() < 0.2).all()


def test_inference_gaps_match_their_closed_forms(linear_gaussian: MakeLG) -> None:
    lg, x = correlated_linear_gaussian(linear_gaussian)
    loc, var, approximation = best_diagonal(lg, x)
    with torch.no_grad():
        q = lg.model.encode(x).base_dist
    amortization = lg.expected_elbo(x, loc, var) - lg.expected_elbo(x, q.loc, q.scale**2)
    gaps = inference_gaps(lg.model, x, k=5000, steps=300, samples=20000)
    assert set(gaps) == {
        "log_likelihood", "elbo", "elbo_refined", "approximation_gap", "amortization_gap"
    }  # fmt: skip
    assert all(v.shape == (20,) and v.dtype == torch.float64 for v in gaps.values())
    assert approximation > 0.1  # a gap to find
    assert gaps["approximation_gap"].mean() == pytest.approx(float(approximation), abs=0.03)
    assert gaps["amortization_gap"].mean() == pytest.approx(float(amortization.mean()), abs=0.03)
    assert gaps["log_likelihood"].mean() == pytest.approx(float(lg.log_px(x).mean()), abs=0.02)


def test_an_exact_posterior_leaves_no_gap(linear_gaussian: MakeLG) -> None:
    """Orthogonal decoder columns: p(z|x) is diagonal and the encoder is it; both gaps vanish."""
    lg = linear_gaussian()
    x = lg.sample_x(20, gen(2))
    gaps = inference_gaps(lg.model, x, k=1000, steps=100, samples=200)
    assert gaps["amortization_gap"].abs().max() < 0.01
    assert gaps["approximation_gap"].abs().max() < 1e-3  # every log-weight is log p(x)


def test_the_refinement_log_weights_are_the_models_own(linear_gaussian: MakeLG) -> None:
    """With the encoder's q and the same noise, the log-weights refinement averages are those
    of training and log p(x) (VAE.terms); their gradient is the path derivative, which is zero
    for every draw when q is the exact posterior (sticking the landing)."""
    from vaekit.evaluation.gaps import _gaussian_log_w

    lg, x = correlated_linear_gaussian(linear_gaussian)
    eps = torch.randn(3, 20, 2, generator=gen(3), dtype=torch.float64)
    with torch.no_grad():
        q = lg.model.encode(x).base_dist
        ours = _gaussian_log_w(lg.model, x, q.loc, q.scale.log(), eps, {})
        torch.testing.assert_close(ours, lg.model.terms(x, eps).log_w)
    exact = linear_gaussian()  # orthogonal columns: the encoder is p(z|x)
    x = exact.sample_x(5, gen(4))
    with torch.no_grad():
        q = exact.model.encode(x).base_dist
    loc, log_std = q.loc.clone().requires_grad_(), q.scale.log().requires_grad_()
    log_w = _gaussian_log_w(exact.model, x, loc, log_std, eps[:, :5], {})
    torch.testing.assert_close(log_w, exact.log_px(x).expand(3, 5).detach())
    grads = torch.autograd.grad(log_w.sum(), [loc, log_std])
    assert max(float(g.abs().max()) for g in grads) < 1e-9


@pytest.mark.parametrize("name", ["mog", "vamp"])
def test_inference_gaps_hold_no_more_than_a_chunk_of_a_mixture_priors_components(
    name: str,
) -> None:
    """The gaps' ELBOs take log p(z) from the prior's closed form, which goes through a
    mixture's (rows, K, D) array in chunks without gradients (priors.MIXTURE_CHUNK_FLOATS): with
    samples x examples 3 chunks' worth of rows, no allocation holds the whole array."""
    from torch.autograd.profiler import profile

    from vaekit.priors import MIXTURE_CHUNK_FLOATS

    torch.manual_seed(0)
    K, D, samples = 256, 8, 100
    model = VAE(data_shape=(4,), latent_dim=D, hidden=(3,), prior=name, prior_components=K)
    x = torch.rand(3 * MIXTURE_CHUNK_FLOATS // (K * D * samples) + 1, 4, generator=gen(6)).round()
    with profile(profile_memory=True, use_kineto=False) as prof:
        gaps = inference_gaps(model, x, k=8, steps=2, samples=samples)
    largest = max(e.cpu_memory_usage for e in prof.function_events)  # bytes of one allocation
    assert 0 < largest <= 1.5 * MIXTURE_CHUNK_FLOATS * 4  # float32: about one chunk
    assert torch.isfinite(gaps["amortization_gap"]).all()


def test_refining_changes_no_weight_and_zero_steps_is_the_encoder() -> None:
    model = VAE(data_shape=(6,), latent_dim=3, hidden=(8,), prior="mog", prior_components=2)
    x = (torch.rand(10, 6, generator=gen(4)) > 0.5).float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = evaluate_refine(model, x, steps=0).base_dist
    torch.testing.assert_close(q.loc, model.encode(x).base_dist.loc)
    gaps = inference_gaps(model, x, k=50, steps=30, samples=500)  # a prior with no closed KL
    assert gaps["amortization_gap"].mean() > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_refining_a_conditional_model_uses_the_conditions() -> None:
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(8,), condition_dim=3)
    x = (torch.rand(8, 6, generator=gen(5)) > 0.5).float()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    a = evaluate_refine(model, x, steps=20, condition=labels).base_dist.loc
    b = evaluate_refine(model, x, steps=20, condition=(labels + 1) % 3).base_dist.loc
    assert not torch.allclose(a, b)
    with pytest.raises(DataError, match="conditional"):
        evaluate_refine(model, x, steps=1)


def test_refining_a_model_without_one_gaussian_latent_is_one_line() -> None:
    from vaekit.models import build_model, model_config

    table = {"kind": "hvae", "data_shape": [6], "hidden": [8], "latent_dim": 3, "hidden2": [4]}
    model = build_model(model_config({**table, "latent_dim2": 2}))
    with pytest.raises(ConfigError, match=r"one diagonal Gaussian latent.*kind 'hvae'"):
        evaluate_refine(model, torch.rand(4, 6))
    with pytest.raises(ConfigError, match="steps must be an integer of at least 0, got -1"):
        evaluate_refine(VAE(data_shape=(6,), latent_dim=2, hidden=(8,)), torch.rand(4, 6),
                        steps=-1)  # fmt: skip


def test_refining_names_a_setting_it_cannot_take_before_any_work() -> None:
    """steps, samples, batch_size, lr and the K of log p(x) are each a ConfigError naming the
    value, not a TypeError or a reshape error from inside the loop; inference_gaps refuses K
    before it refines anything (a model that cannot refine shows the order)."""
    from vaekit.evaluation import inference_gaps, refine_posterior

    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,))
    x = (torch.rand(3, 6, generator=gen(6)) > 0.5).float()
    for kw, message in (
        ({"steps": 2.5}, "steps must be an integer of at least 0, got 2.5"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"samples": 0}, "samples must be a positive integer, got 0"),
        ({"lr": "0.1"}, "lr must be a positive number, got '0.1'"),
    ):
        for run in (refine_posterior, inference_gaps):
            with pytest.raises(ConfigError, match=re.escape(message)):
                run(model, x, **kw)
    with pytest.raises(ConfigError, match="k must be a positive integer, got 0"):
        inference_gaps(model, torch.full((3, 6), math.nan), k=0, steps=2)  # before the data


def test_refining_checks_its_data_as_the_estimates_do() -> None:
    from vaekit.evaluation import inference_gaps, refine_posterior

    model = VAE(data_shape=(6,), latent_dim=2, hidden=(4,))
    x = torch.rand(3, 6, dtype=torch.float64)
    q = refine_posterior(model, x.numpy(), steps=2)
    assert torch.equal(q.mean, refine_posterior(model, x, steps=2).mean)
    for run in (refine_posterior, inference_gaps):
        with pytest.raises(DataError, match=r"data has values in \[0, 2.5\] but the bernoulli"):
            run(model, torch.linspace(0, 2.5, 12).reshape(2, 6), steps=2)


def test_estimates_put_back_the_model_s_training_mode() -> None:
    """An estimate in the middle of one's own training loop leaves the model training: a
    categorical model goes on with its exact ELBO (not the sampled terms of evaluation mode)."""
    from vaekit import CategoricalVAE, TextVAE
    from vaekit.estimators import latent_stats
    from vaekit.evaluation import evaluate_text
    from vaekit.models.categorical import log_likelihood_exact

    cat = CategoricalVAE(data_shape=(6,), n_latents=1, n_categories=3, hidden=(4,))
    x = torch.rand(4, 6).round()
    for estimate in (
        lambda m: log_likelihood(m, x, k=2),
        lambda m: evaluate_elbo(m, x),
        lambda m: latent_stats(m, x),
        lambda m: evaluate(m, x, k=2),
        lambda m: log_likelihood_exact(m, x),
        lambda m: m.latent_stats(x),
    ):
        for training in (True, False):
            cat.train(training)
            estimate(cat)
            assert cat.training is training
    cat.train()
    cat.log_likelihood(x, k=2)
    assert cat(x).enumerated  # the training loop's terms, still
    text = TextVAE(vocab=("a", "b"), data_shape=(4,), latent_dim=2, embed_dim=3, hidden=(4,))
    evaluate_text(text, text.ids(["ab", "b"]), k=2)
    assert text.training

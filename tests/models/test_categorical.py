"""The categorical-latent VAE against enumeration: a tiny model (2 latents of 3 values, Bernoulli
over 6 pixels) has only 9 values of z, so log p(x), the posterior p(z|x), the ELBO and their
gradients are finite sums that the tests write out independently of vaekit's code."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli

from vaekit import CategoricalConfig, CategoricalVAE, ConfigError, DataError, elbo, iwae
from vaekit.checkpoint import save
from vaekit.estimators import log_likelihood
from vaekit.evaluation import evaluate
from vaekit.models import build_model, load, model_config, model_table
from vaekit.models.categorical import enumerate_values, log_likelihood_exact
from vaekit.objectives import Terms


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny(seed: int = 1, scale: float = 2.0, **fields) -> CategoricalVAE:
    """A float64 model with 2 latents x 3 categories over 6 pixels, a learned prior, and weights
    scaled up so that q(z|x), p(z) and p(x|z) are far from uniform."""
    torch.manual_seed(seed)
    fields = {"data_shape": (6,), "n_latents": 2, "n_categories": 3, "hidden": (5,),
              "prior": "learned", **fields}  # fmt: skip
    model = CategoricalVAE(**fields).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(generator=gen(seed + 100)).mul_(scale)
    return model


def pixels(n: int = 4, seed: int = 3, n_pixels: int = 6) -> Tensor:
    return torch.bernoulli(torch.full((n, n_pixels), 0.5), generator=gen(seed)).double()


def block_model(
    n_latents: int = 2, n_categories: int = 3, pixels_per_latent: int = 3
) -> CategoricalVAE:
    """A linear model whose encoder is the exact posterior p(z|x).

    Its decoder is linear, and pixel block l reads only latent l, so p(z|x) is a product of
    categoricals whose logits are linear in x: log p(z_l = c | x) = log p(z_l = c) +
    sum_{i in block l} (x_i a_ic - softplus(a_ic)) + const, where a_ic is pixel i's logit when
    z_l = c. The (linear) encoder is set to exactly that.
    """
    P, C = pixels_per_latent, n_categories
    model = tiny(n_latents=n_latents, n_categories=C, hidden=(), data_shape=(n_latents * P,))
    dec, enc = model.decoder[0], model.encoder[0]
    log_prior = torch.log_softmax(model.prior.logits.detach(), -1)
    with torch.no_grad():
        mask = torch.block_diag(*[torch.ones(P, C, dtype=torch.float64)] * n_latents)
        dec.weight.mul_(mask)  # (pixels, latents * categories)
        enc.weight.zero_()
        for j in range(n_latents):
            rows, cols = slice(P * j, P * j + P), slice(C * j, C * j + C)
            a = dec.weight[rows, cols] + dec.bias[rows, None]  # (pixel, category)
            enc.weight[cols, rows] = a.T
            enc.bias[cols] = log_prior[j] - F.softplus(a).sum(0)
    return model


def brute_force(model: CategoricalVAE, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """By explicit loops over the 9 values (a, b) of z: log p(x, z) (9, B), log q(z|x) (9, B)
    and the values' one-hot vectors (9, 6)."""
    log_prior = torch.log_softmax(model.prior.logits, -1)  # (2, 3)
    q_logits = model.encoder(x).reshape(-1, 2, 3)
    log_q = q_logits - q_logits.logsumexp(-1, keepdim=True)  # (B, 2, 3)
    joint, post, zs = [], [], []
    for a, b in itertools.product(range(3), range(3)):
        z = torch.zeros(6, dtype=torch.float64)
        z[a] = 1.0
        z[3 + b] = 1.0
        px_z = Bernoulli(logits=model.decoder(z))
        joint.append(px_z.log_prob(x).sum(-1) + log_prior[0, a] + log_prior[1, b])
        post.append(log_q[:, 0, a] + log_q[:, 1, b])
        zs.append(z)
    return torch.stack(joint), torch.stack(post), torch.stack(zs)


def flat_grad(model: CategoricalVAE, value: Tensor) -> Tensor:
    grads = torch.autograd.grad(value, list(model.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


# -- exact log p(x) and the bounds -----------------------------------------------------------


def test_exact_log_likelihood_is_the_sum_over_all_z() -> None:
    model, x = tiny(), pixels(5)
    log_joint, _, _ = brute_force(model, x)
    expected = torch.logsumexp(log_joint, 0)
    got = log_likelihood_exact(model, x)
    assert got.dtype == torch.float64 and got.shape == (5,)
    assert torch.allclose(got, expected, atol=1e-10, rtol=0)
    # chunked over values and examples, the same sum
    chunked = model.log_likelihood_exact(x, batch_size=2, values_per_chunk=4)
    assert torch.allclose(chunked, expected, atol=1e-10, rtol=0)
    # a proper distribution: p(x) over all 64 binary images sums to one
    every = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)), dtype=torch.float64)
    assert math.isclose(float(torch.logsumexp(log_likelihood_exact(model, every), 0)), 0.0,
                        abs_tol=1e-10)  # fmt: skip


def test_enumeration_order() -> None:
    values = enumerate_values(2, 3, 0, 9)
    assert values.tolist() == [list(v) for v in itertools.product(range(3), range(3))]
    assert enumerate_values(3, 4, 5, 7).tolist() == [[0, 1, 1], [0, 1, 2]]


def test_importance_weighted_estimate_converges_to_exact() -> None:
    # 3 latents x 4 categories: 64 values of z; q(z|x) is the posterior flattened (its logits
    # halved), close to it but not equal, as a trained encoder's would be.
    model = block_model(n_latents=3, n_categories=4, pixels_per_latent=3)
    with torch.no_grad():
        model.encoder[0].weight.mul_(0.5)
        model.encoder[0].bias.mul_(0.5)
    x = pixels(32, n_pixels=9)
    exact = log_likelihood_exact(model, x)
    assert float((exact - model.elbo_exact(x)).mean()) > 0.3  # the bounds have a gap to close
    errors = {}
    for k in (1, 10, 100, 5000):
        estimate = log_likelihood(model, x, k=k, seed=k)
        errors[k] = (estimate - exact).abs()
        if k == 1:  # one sample: an ELBO, clearly below log p(x) on average
            assert float((estimate - exact).mean()) < -0.2
    assert float(errors[5000].mean()) < 0.02 and float(errors[5000].max()) < 0.05
    means = [float(errors[k].mean()) for k in (1, 10, 100, 5000)]
    assert means == sorted(means, reverse=True)


def test_exact_elbo_is_the_expectation_of_the_monte_carlo_elbo() -> None:
    model, x = tiny(), pixels(4)
    exact = model.elbo_exact(x)
    log_joint, log_q, _ = brute_force(model, x)
    assert torch.allclose(exact, (log_q.exp() * (log_joint - log_q)).sum(0), atol=1e-10)
    n = 200_000
    model.eval()
    terms = model(x, k=n, generator=gen(5))  # z ~ q(z|x)
    for t in (terms, Terms(terms.log_px_z, terms.log_pz, terms.log_qz_x, kl=None)):
        per_sample = t.log_px_z - (t.kl if t.kl is not None else t.log_qz_x - t.log_pz)
        se = per_sample.std(0) / math.sqrt(n)
        assert ((elbo(t).detach() - exact).abs() < 4 * se).all()


def test_sampling_draws_values_with_their_probabilities_under_q() -> None:
    model, x = tiny(), pixels(2)
    model.eval()
    _, log_q, _ = brute_force(model, x)
    with torch.no_grad():
        terms = model(x, k=50_000, generator=gen(2))
    # each draw's log q(z|x) names its value; their frequencies match q
    for b in range(2):
        hits = (terms.log_qz_x[:, b, None] - log_q[None, :, b]).abs() < 1e-9  # (draws, 9)
        counts = hits.sum(0)
        freq = counts.double() / 50_000
        q = log_q[:, b].exp().detach()
        assert counts.sum() == 50_000
        assert (freq - q).abs().max() < 4 * (q * (1 - q) / 50_000).sqrt().max()


def test_elbo_gap_is_the_kl_to_the_exact_posterior() -> None:
    model, x = tiny(), pixels(6)
    log_joint, log_q, _ = brute_force(model, x)
    log_px = torch.logsumexp(log_joint, 0)
    log_post = log_joint - log_px  # log p(z|x), (9, B)
    kl = (log_q.exp() * (log_q - log_post)).sum(0)
    exact_elbo = model.elbo_exact(x)
    assert (exact_elbo <= log_likelihood_exact(model, x)).all()
    assert torch.allclose(log_px - exact_elbo, kl, atol=1e-10)
    assert (kl > 1e-3).all()


def test_elbo_equals_log_px_when_q_is_the_exact_posterior() -> None:
    model = block_model()
    x = pixels(6)
    log_joint, log_q, _ = brute_force(model, x)
    log_px = torch.logsumexp(log_joint, 0)
    assert torch.allclose(log_q, log_joint - log_px, atol=1e-10)  # q is the posterior
    assert torch.allclose(model.elbo_exact(x), log_px, atol=1e-10)
    model.eval()
    terms = model(x, k=7, generator=gen(1))
    assert torch.allclose(terms.log_w, log_px.expand(7, -1), atol=1e-10)  # no variance left


# -- gradients -------------------------------------------------------------------------------


def test_exact_elbo_gradient_matches_finite_differences() -> None:
    model, x = tiny(), pixels(3)
    model.train()
    loss = elbo(model.enumerated_terms(x)).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    h = 1e-6
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads, strict=True):
            flat, g = p.view(-1), g.reshape(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + h
                up = float(model.elbo_exact(x).sum())
                flat[i] = old - h
                down = float(model.elbo_exact(x).sum())
                flat[i] = old
                assert math.isclose(float(g[i]), (up - down) / (2 * h), abs_tol=1e-6, rel_tol=1e-6)


def exact_elbo_gradient(x: Tensor) -> Tensor:
    """The gradient of the tiny model's exact ELBO summed over ``x``, by enumeration."""
    model = tiny()
    return flat_grad(model, elbo(model.enumerated_terms(x)).sum())


def replicated_gradient(
    model: CategoricalVAE, x: Tensor, objective, k: int, chunks: int = 20, copies: int = 200
) -> tuple[Tensor, Tensor]:
    """Mean and standard error over ``chunks`` independent estimates of the gradient of
    sum_b objective(x_b), each averaging ``copies`` draws per example."""
    model.train()
    xs = x.repeat(copies, 1)
    estimates = torch.stack([
        flat_grad(model, objective(model(xs, k=k, generator=gen(i))).sum() / copies)
        for i in range(chunks)
    ])  # fmt: skip
    return estimates.mean(0), estimates.std(0) / math.sqrt(chunks)


@pytest.mark.parametrize("k", [1, 3])
def test_reinforce_elbo_gradient_is_unbiased(k: int) -> None:
    x = pixels(4)
    exact = exact_elbo_gradient(x)
    model = tiny(estimator="reinforce")
    mean, se = replicated_gradient(model, x, elbo, k)
    assert ((mean - exact).abs() <= 5 * se + 1e-9).all()
    # Without the score-function term the estimate is far off: the test can tell.
    naive, naive_se = replicated_gradient(
        model, x, lambda t: elbo(Terms(t.log_px_z, t.log_pz, t.log_qz_x, t.kl)), k
    )
    assert ((naive - exact).abs() > 10 * naive_se + 1e-6).any()


def test_reinforce_iwae_gradient_is_unbiased() -> None:
    # E[IWAE_2] = sum over pairs (z1, z2) of q(z1) q(z2) log((w(z1) + w(z2)) / 2), by enumeration.
    x = pixels(4)
    model = tiny()
    t = model.enumerated_terms(x)
    lq, lw = t.log_qz_x, t.log_w  # (9, B)
    pair_q = torch.exp(lq[:, None] + lq[None])  # (9, 9, B)
    expected = (pair_q * (torch.logaddexp(lw[:, None], lw[None]) - math.log(2))).sum((0, 1))
    exact = flat_grad(model, expected.sum())
    mean, se = replicated_gradient(tiny(estimator="reinforce"), x, iwae, 2)
    assert ((mean - exact).abs() <= 5 * se + 1e-9).all()


def test_gumbel_gradient_approaches_the_exact_one_as_temperature_falls() -> None:
    # Relaxed: the bias of the Gumbel-softmax gradient shrinks to nothing as the temperature
    # falls (while its noise grows). Straight-through: it shrinks but stays, pointing the right way.
    x = pixels(4)
    model = tiny(scale=1.0)
    exact = flat_grad(model, elbo(model.enumerated_terms(x)).sum())
    bias, noise, cosine = {}, {}, {}
    for straight_through in (False, True):
        for tau in (2.0, 0.5, 0.1):
            model = tiny(scale=1.0, estimator="gumbel", temperature=tau, temperature_min=tau,
                         straight_through=straight_through)  # fmt: skip
            mean, se = replicated_gradient(model, x, elbo, 1)
            key = (straight_through, tau)
            bias[key] = float((mean - exact).norm() / exact.norm())
            noise[key] = float(se.norm() / exact.norm())
            cosine[key] = float(F.cosine_similarity(mean, exact, dim=0))
    assert bias[False, 2.0] > bias[False, 0.5] > bias[False, 0.1]
    assert bias[False, 2.0] > 0.3 and bias[False, 0.1] < 0.02 + 2 * noise[False, 0.1]
    assert bias[True, 2.0] > bias[True, 0.5] and cosine[True, 0.5] > 0.9
    assert bias[True, 0.1] > 3 * noise[True, 0.1]


def test_gumbel_temperature_anneals_per_training_step() -> None:
    model = tiny(estimator="gumbel", temperature=2.0, temperature_min=0.5, anneal_rate=0.1)
    x = pixels(3)
    model.train()
    for _ in range(5):
        elbo(model(x)).sum().backward()
    assert int(model.gumbel_steps) == 5
    assert math.isclose(float(model.temperature()), 2.0 * math.exp(-0.5), rel_tol=1e-12)
    with torch.no_grad():
        model(x)  # not a training step
    model.eval()
    model(x)
    assert int(model.gumbel_steps) == 5
    model.gumbel_steps.fill_(1000)
    assert float(model.temperature()) == 0.5


# -- training, checkpoints, config -----------------------------------------------------------


def prototypes(n: int = 96, seed: int = 0) -> Tensor:
    """Binary 6-pixel data from 3 prototypes with 5% of pixels flipped."""
    g = gen(seed)
    protos = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0.0]])
    x = protos[torch.randint(0, 3, (n,), generator=g)]
    flip = torch.rand(x.shape, generator=g) < 0.05
    return torch.where(flip, 1 - x, x)


@pytest.mark.parametrize(
    "estimator, samples", [("exact", 1), ("gumbel", 1), ("reinforce", 4)]
)  # fmt: skip
def test_training_raises_the_bound(estimator: str, samples: int) -> None:
    x = prototypes()
    torch.manual_seed(0)
    model = CategoricalVAE(
        data_shape=(6,), n_latents=2, n_categories=3, hidden=(16,), estimator=estimator
    )
    before = float(model.elbo_exact(x).mean())
    history = model.fit(x, epochs=40, batch_size=32, lr=1e-2, samples=samples)
    after = float(model.elbo_exact(x).mean())
    assert history[-1]["path"] == "eager" and history[-1]["skipped_steps"] == 0
    assert after > before + 1.0
    assert after <= float(log_likelihood_exact(model, x).mean())


def test_save_and_load_bit_for_bit(tmp_path) -> None:
    model = tiny(estimator="gumbel", anneal_rate=0.01).float()
    model.fit(prototypes(), epochs=2, batch_size=32)
    save(model, tmp_path / "run")
    again = load(tmp_path / "run")
    assert isinstance(again, CategoricalVAE) and again.config == model.config
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and int(b["gumbel_steps"]) == 6
    assert all(torch.equal(a[key], b[key]) for key in a)
    x = prototypes(5).float()
    model.eval()
    ta, tb = model(x, k=3, generator=gen(4)), again(x, k=3, generator=gen(4))
    assert torch.equal(ta.log_w, tb.log_w)
    assert torch.equal(log_likelihood_exact(model, x), log_likelihood_exact(again, x))


def test_config_table_round_trip_and_errors() -> None:
    config = CategoricalConfig(data_shape=(6,), n_latents=3, n_categories=4, prior="learned")
    table = model_table(config)
    assert table["kind"] == "categorical" and table["n_latents"] == 3
    assert model_config(table) == config
    assert isinstance(build_model(config), CategoricalVAE)
    assert config.latent_dim == 12 and config.n_values == 64 and config.enumerable
    assert CategoricalConfig(n_latents=20, n_categories=10).training_estimator == "gumbel"
    assert CategoricalConfig(n_latents=2, n_categories=10).training_estimator == "exact"
    bad = [
        ({"estimator": "exact", "n_latents": 20}, "enumerate_limit 1024"),
        ({"estimator": "magic"}, "unknown estimator 'magic'"),
        ({"prior": "standard_normal"}, "unknown prior"),
        ({"n_categories": 1}, "n_categories must be 2 or more"),
        ({"temperature": 0.2, "temperature_min": 0.5}, "temperature_min 0.5"),
        ({"anneal_rate": -1.0}, "anneal_rate"),
    ]
    for fields, message in bad:
        with pytest.raises(ConfigError, match=message):
            CategoricalConfig(**fields)
    big = CategoricalVAE(data_shape=(6,), n_latents=20, n_categories=10, hidden=(4,))
    with pytest.raises(ConfigError, match=r"10\*\*20 values of z"):
        log_likelihood_exact(big, pixels(2).float())


def test_encode_decode_sample_shapes() -> None:
    model = tiny()
    x = pixels(5)
    qz_x = model.encode(x)
    assert qz_x.batch_shape == (5,) and qz_x.event_shape == (6,)
    probs = qz_x.mean.reshape(5, 2, 3)
    assert torch.allclose(probs.sum(-1), torch.ones(5, 2, dtype=torch.float64))
    mode = qz_x.mode.reshape(5, 2, 3)
    assert torch.equal(mode.argmax(-1), probs.argmax(-1)) and (mode.sum(-1) == 1).all()
    draws = qz_x.sample((4,))
    assert draws.shape == (4, 5, 6) and (draws.reshape(4, 5, 2, 3).sum(-1) == 1).all()
    index = draws.reshape(4, 5, 2, 3).argmax(-1)  # (4, 5, 2)
    picked = torch.gather(qz_x.logits.expand(4, -1, -1, -1), -1, index[..., None])
    assert torch.allclose(qz_x.log_prob(draws), picked.sum((-2, -1)))
    assert model.decode(draws).batch_shape == (4, 5)
    assert model.sample(7).shape == (7, 6) and model.sample(7, mean=False).shape == (7, 6)
    assert model.reconstruct(x).shape == x.shape
    with pytest.raises(DataError, match="example shape"):
        model.encode(torch.zeros(2, 5, dtype=torch.float64))


def test_evaluate_reports_exact_log_likelihood() -> None:
    model, x = tiny(), pixels(6)
    report = evaluate(model, x, k=50)
    assert math.isclose(
        report["exact_log_likelihood"], float(log_likelihood_exact(model, x).mean())
    )
    assert len(report["kl_per_dim"]) == 2 and 0 <= report["active_units"] <= 2
    q = model.encode(x)
    kl = (q.probs * (q.logits - torch.log_softmax(model.prior.logits, -1))).sum(-1).mean(0)
    assert torch.allclose(torch.tensor(report["kl_per_dim"], dtype=torch.float64), kl, atol=1e-6)


def test_resumed_training_repeats_bit_for_bit(tmp_path) -> None:
    # The Gumbel-softmax temperature's clock (gumbel_steps) is part of the saved state.
    def make() -> CategoricalVAE:
        torch.manual_seed(0)
        return CategoricalVAE(data_shape=(6,), n_latents=2, n_categories=3, hidden=(8,),
                              estimator="gumbel", anneal_rate=0.05, prior="learned")  # fmt: skip

    x = prototypes()
    whole = make()
    whole.fit(x, epochs=3, batch_size=32, out=tmp_path / "whole")
    make().fit(x, epochs=2, batch_size=32, out=tmp_path / "parts")
    resumed = make()
    resumed.fit(x, epochs=3, batch_size=32, out=tmp_path / "parts", resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    assert int(a["gumbel_steps"]) == 9 and all(torch.equal(a[key], b[key]) for key in a)


def test_enumerated_iwae_is_log_px_and_the_score_term_leaves_values_alone() -> None:
    model, x = tiny(), pixels(5)
    assert torch.allclose(iwae(model.enumerated_terms(x)), log_likelihood_exact(model, x))
    model.eval()
    for objective in (elbo, iwae):
        for k in (1, 4):
            t = model(x, k=k, generator=gen(k))
            assert not t.pathwise and t.log_qz_x.requires_grad
            plain = Terms(t.log_px_z, t.log_pz, t.log_qz_x, t.kl)  # no score-function term
            assert torch.equal(objective(t), objective(plain))


def test_reduced_precision_is_refused_in_one_line() -> None:
    model = CategoricalVAE(data_shape=(6,), n_latents=2, n_categories=3, hidden=(8,))
    with pytest.raises(ConfigError, match=r"precision='bf16' .* set precision=fp32"):
        model.fit(prototypes(), epochs=1, precision="bf16")


def test_the_distribution_objects_agree_with_the_closed_forms() -> None:
    """encode(x) and pz() as torch distributions: the registered KL is KL(q || p), the model's
    own closed form; p(z) sums to one over every value of z, for the uniform prior (whose buffer
    holds unnormalised zeros) and the learned one."""
    from torch.distributions import kl_divergence

    model, x = tiny(), pixels(4)
    assert torch.allclose(
        kl_divergence(model.encode(x), model.pz()), model.kl(model._encode_logits(x))
    )
    for prior in ("uniform", "learned"):
        m = tiny(prior=prior)
        z = m.values(0, 9)  # all 3^2 values
        total = m.pz().log_prob(z).exp().sum()
        assert torch.allclose(total, torch.tensor(1.0, dtype=torch.float64))


def test_activity_sums_the_variance_of_the_probabilities_over_categories() -> None:
    model, x = tiny(), pixels(50, seed=4)
    probs = model._encode_logits(x).exp()  # (50, n_latents, n_categories)
    stats = model.latent_stats(x)
    assert torch.allclose(stats["activity"], probs.var(0, unbiased=False).sum(-1))


def test_latent_stats_kl_is_the_whole_kl_by_enumeration() -> None:
    """latent_stats gives "kl" as every kind does: E_x KL(q(z|x) || p(z)), here against the
    sum over all values of z."""
    from vaekit.estimators import latent_stats

    model, x = tiny(prior="learned"), pixels(20, seed=4)
    with torch.no_grad():
        terms = model.enumerated_terms(x)
        want = terms.expect(terms.log_qz_x - terms.log_pz).mean()
    stats = latent_stats(model, x)
    assert torch.allclose(stats["kl"], want, atol=1e-5) and stats["kl"].shape == ()


def test_exact_values_take_numpy_arrays_and_refuse_bad_data() -> None:
    torch.manual_seed(0)
    model = CategoricalVAE(data_shape=(4,), n_latents=1, n_categories=3, hidden=(4,))
    x = torch.rand(5, 4, dtype=torch.float64)
    assert torch.equal(model.log_likelihood_exact(x.numpy()), model.log_likelihood_exact(x))
    assert torch.equal(model.elbo_exact(x.numpy()), model.elbo_exact(x))
    with pytest.raises(DataError, match=r"values in \[0, 3\] but the bernoulli likelihood"):
        model.log_likelihood_exact(torch.linspace(0, 3, 8).reshape(2, 4))
    with pytest.raises(DataError, match="NaN or infinite values"):
        model.elbo_exact(torch.full((2, 4), math.nan))


def test_kinds_without_a_condition_refuse_one_alike() -> None:
    from vaekit import HVAE, TextVAE

    models = [
        tiny(),
        HVAE(data_shape=(6,), hidden=(4,), latent_dim=2, hidden2=(4,), latent_dim2=2),
        TextVAE(vocab=("a", "b"), data_shape=(4,), latent_dim=2, embed_dim=3, hidden=(4,)),
    ]
    for model in models:
        assert model.free_bits == (0.125 if model.kind == "text" else 0.0)
        assert not model.capabilities.conditional
        with pytest.raises(DataError, match="not conditional"):
            model.sample(2, condition=0)

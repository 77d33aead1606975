"""The two-stochastic-layer model (kind "hvae"): its bounds against the exact marginal of a
linear-Gaussian two-layer model, its terms against torch.distributions, checkpoints, the fast
loop, and training through the library and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import inverse_soft_clamp, run_cli
from torch.distributions import MultivariateNormal

from vaekit import HVAE, ConfigError, DataError, TrainConfig, fit, load
from vaekit.estimators import elbo, latent_stats, log_likelihood
from vaekit.evaluation import evaluate
from vaekit.models import MODELS, build_model, model_config
from vaekit.objectives import iwae
from vaekit.train import FastRun, select_path


class LinearGaussian2:
    """z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, d I), x | z1 ~ N(W z1 + b, s^2 I), in float64.

    p(x) = N(W a + b, W C W^T + s^2 I) with C = A A^T + d I. A's columns lie along coordinate
    axes and W's columns are orthogonal, so the exact posterior factorises as
    p(z1|x) p(z2|z1) with diagonal covariances, which the model's q(z1|x) q(z2|z1) can equal.
    """

    def __init__(self, D: int = 5, L1: int = 3, L2: int = 2, s: float = 0.75, d: float = 0.5):
        g = torch.Generator().manual_seed(0)
        f64 = torch.float64
        Q, _ = torch.linalg.qr(torch.randn(D, L1, generator=g, dtype=f64))
        self.W = Q * torch.linspace(1.5, 0.8, L1, dtype=f64)  # (D, L1)
        self.b = torch.randn(D, generator=g, dtype=f64)
        self.A = torch.zeros(L1, L2, dtype=f64)
        self.A[torch.arange(L2), torch.arange(L2)] = torch.linspace(1.2, 0.7, L2, dtype=f64)
        self.a = torch.randn(L1, generator=g, dtype=f64)
        self.s, self.d = s, d
        self.model = HVAE(
            data_shape=(D,),
            hidden=(),
            latent_dim=L1,
            hidden2=(),
            latent_dim2=L2,
            likelihood="gaussian_fixed",
            decoder_std=s,
        ).double()
        c = self.model.config
        self.lo, self.hi = c.encoder_min_logvar, c.encoder_max_logvar
        with torch.no_grad():
            self.model.decoder[0].weight.copy_(self.W)
            self.model.decoder[0].bias.copy_(self.b)
            self._set(self.model.decoder2[0], self.A, self.a, torch.full((L1,), d, dtype=f64))
        self.set_encoder()

    def _set(self, layer, weight, bias, var) -> None:
        """A linear Gaussian layer: loc = weight @ h + bias, a constant variance ``var``."""
        n = weight.shape[0]
        layer.weight.zero_()
        layer.weight[:n] = weight
        layer.bias[:n] = bias
        layer.bias[n:] = inverse_soft_clamp(var.log(), self.lo, self.hi)

    def px(self) -> MultivariateNormal:
        L1 = self.W.shape[1]
        C = self.A @ self.A.T + self.d * torch.eye(L1, dtype=torch.float64)
        cov = self.W @ C @ self.W.T + self.s**2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return MultivariateNormal(self.W @ self.a + self.b, covariance_matrix=cov)

    @torch.no_grad()
    def set_encoder(self, loc_scale: float = 1.0, var_scale: float = 1.0) -> None:
        """q = the exact posterior, or one with its mean maps scaled by ``loc_scale`` and its
        variances multiplied by ``var_scale``."""
        L1, L2 = self.A.shape
        C = self.A @ self.A.T + self.d * torch.eye(L1, dtype=torch.float64)
        prec1 = torch.linalg.inv(C) + self.W.T @ self.W / self.s**2
        S1 = torch.linalg.inv(prec1)  # diagonal
        M1 = S1 @ self.W.T / self.s**2
        c1 = S1 @ (torch.linalg.inv(C) @ self.a - self.W.T @ self.b / self.s**2)
        S2 = torch.linalg.inv(torch.eye(L2, dtype=torch.float64) + self.A.T @ self.A / self.d)
        M2 = S2 @ self.A.T / self.d
        c2 = -M2 @ self.a
        self._set(self.model.encoder[0], loc_scale * M1, loc_scale * c1, S1.diag() * var_scale)
        self._set(self.model.encoder2[0], loc_scale * M2, loc_scale * c2, S2.diag() * var_scale)

    def sample_x(self, n: int) -> torch.Tensor:
        return self.px().sample((n,))


@pytest.fixture
def lg2() -> LinearGaussian2:
    return LinearGaussian2()


def test_exact_posterior_makes_every_log_weight_log_px(lg2: LinearGaussian2) -> None:
    x = lg2.sample_x(20)
    log_w = lg2.model(x, k=7, generator=torch.Generator().manual_seed(1)).log_w  # (7, 20)
    exact = lg2.px().log_prob(x)
    assert torch.allclose(log_w, exact.expand_as(log_w), atol=1e-9)


def test_elbo_below_iwae_below_log_px_and_large_k_is_close(lg2: LinearGaussian2) -> None:
    lg2.set_encoder(loc_scale=0.9, var_scale=1.6)
    x = lg2.sample_x(200)
    exact = float(lg2.px().log_prob(x).mean())
    bound1 = float(elbo(lg2.model, x, samples=20, seed=1).mean())
    with torch.no_grad():
        iwae10 = float(iwae(lg2.model(x, k=10, generator=torch.Generator().manual_seed(2))).mean())
    iwae_big = float(log_likelihood(lg2.model, x, k=5000, seed=3).mean())
    assert bound1 < iwae10 - 0.05 and iwae10 < exact - 0.01
    assert bound1 < exact - 0.2  # the distortion costs something
    assert abs(iwae_big - exact) < 0.02


def test_latent_draws_follow_z1s_marginal_prior(lg2: LinearGaussian2) -> None:
    # z1 = A z2 + a + sqrt(d) e: N(a, A A^T + d I)
    torch.manual_seed(0)
    z1 = lg2.model.sample_latents(200_000)
    cov = lg2.A @ lg2.A.T + lg2.d * torch.eye(3, dtype=torch.float64)
    assert z1.shape == (200_000, 3) and not lg2.model.standard_normal_latents
    torch.testing.assert_close(z1.mean(0), lg2.a, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(z1.T), cov, atol=0.02, rtol=0)


def test_terms_match_torch_distributions() -> None:
    m = HVAE(data_shape=(6,), hidden=(8,), latent_dim=3, hidden2=(5,), latent_dim2=2).double()
    x = torch.rand(4, 6, dtype=torch.float64)
    eps = torch.randn(3, 4, 5, dtype=torch.float64)
    t = m.terms(x, eps)
    qz1 = m.encode(x)
    z1 = qz1.base_dist.loc + qz1.base_dist.scale * eps[..., :3]
    qz2 = m.encode2(z1)
    z2 = qz2.base_dist.loc + qz2.base_dist.scale * eps[..., 3:]
    assert torch.allclose(t.log_px_z, m.decode(z1).log_prob(x))
    assert torch.allclose(t.log_pz, m.pz1_z2(z2).log_prob(z1) + m.pz().log_prob(z2))
    assert torch.allclose(t.log_qz_x, qz1.log_prob(z1) + qz2.log_prob(z2))
    assert t.kl is None and t.log_w.shape == (3, 4)


def test_default_is_the_iwae_papers_architecture() -> None:
    m = HVAE()
    widths = [
        [layer.out_features for layer in net if isinstance(layer, torch.nn.Linear)]
        for net in (m.encoder, m.encoder2, m.decoder2, m.decoder)
    ]
    assert widths == [[200, 200, 200], [100, 100, 100], [100, 100, 200], [200, 200, 784]]
    assert m.noise_dim == 150 and MODELS["hvae"] is HVAE


def test_config_errors_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="latent_dim2"):
        HVAE(latent_dim2=0)
    with pytest.raises(ConfigError, match="hidden2"):
        HVAE(hidden2=(10, -1))
    with pytest.raises(ConfigError, match="activation"):
        model_config({"kind": "hvae", "activation": "swish"})
    with pytest.raises(ConfigError, match=r"unknown setting model\.prior"):
        model_config({"kind": "hvae", "prior": "standard_normal"})
    with pytest.raises(DataError, match="expects"):
        HVAE(data_shape=(6,), hidden=(4,), latent_dim=2, hidden2=(), latent_dim2=1)(
            torch.rand(2, 5)
        )


def small() -> HVAE:
    torch.manual_seed(0)
    return build_model(
        model_config(
            {
                "kind": "hvae",
                "data_shape": [12],
                "hidden": [16],
                "latent_dim": 4,
                "hidden2": [8],
                "latent_dim2": 2,
            }
        )
    )


def test_save_load_is_bit_for_bit(tmp_path: Path) -> None:
    m = small()
    for p in m.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    m.save(tmp_path / "run")
    same = load(tmp_path / "run")
    assert type(same) is HVAE and same.config == m.config
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["kind"] == "hvae"
    for (ka, a), (kb, b) in zip(m.state_dict().items(), same.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(a, b)
    x = torch.rand(5, 12)
    g = [torch.Generator().manual_seed(4) for _ in range(2)]
    assert torch.equal(m(x, k=3, generator=g[0]).log_w, same(x, k=3, generator=g[1]).log_w)


def test_library_training_raises_the_bound_and_reports() -> None:
    x = torch.rand(300, 12, generator=torch.Generator().manual_seed(1))
    m = small()
    history = fit(m, x, valid=x[:50], epochs=4, batch_size=50, lr=1e-2, objective="iwae",
                  samples=5, binarize="dynamic")  # fmt: skip
    assert history[0]["path"] == "eager" and "CUDA" in history[0]["notice"]
    assert history[-1]["train_bound"] > history[0]["train_bound"]
    xb = x[:40].bernoulli(generator=torch.Generator().manual_seed(0))
    report = evaluate(m, xb, k=20)
    assert report["log_likelihood"] >= report["elbo"] - 1.0
    assert len(report["kl_per_dim"]) == 4 and 0 <= report["active_units"] <= 4
    stats = latent_stats(m, xb)
    assert stats["kl_per_dim"].shape == (4,) and stats["activity"].shape == (4,)
    assert report["kl"] == pytest.approx(float(stats["kl"]), rel=1e-6)


def test_latent_stats_kl_is_the_bounds_kl_term() -> None:
    """The whole KL of latent_stats (one sample per example) against the Monte Carlo KL of the
    bound's terms (many samples), on a model whose posterior is far from its prior."""
    m = small()
    for p in m.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.rand(300, 12, generator=torch.Generator().manual_seed(1)).bernoulli()
    stats = latent_stats(m, x, seed=3)
    assert not torch.equal(stats["kl"], latent_stats(m, x, seed=4)["kl"])  # the seed is used
    with torch.no_grad():
        d = m(x, k=100, generator=torch.Generator().manual_seed(4)).kl_estimate  # (300,)
    assert float(d.mean()) > 1.0
    # the per-example KL has a standard deviation of about 2.6 nats: 300 draws give +-0.15
    assert abs(float(stats["kl"]) - float(d.mean())) < 0.45

    assert m.sample(3).shape == (3, 12) and m.reconstruct(x[:2]).shape == (2, 12)


def test_fast_loop_runs_it_and_agrees_with_the_eager_loop() -> None:
    x = torch.rand(400, 12, generator=torch.Generator().manual_seed(2))
    cfg = TrainConfig(epochs=3, batch_size=50, binarize="dynamic", seed=3, steps_per_launch=3)
    assert "CUDA" in select_path(small(), cfg, 400)[1]  # on CPU fit itself stays eager
    fast = list(FastRun(small(), x, cfg, "graph").epochs(False))
    eager = fit(small(), x, config=cfg)
    assert fast[-1]["step"] == 3 * 8 and fast[-1]["skipped_steps"] == 0
    assert abs(fast[-1]["train_bound"] - eager[-1]["train_bound"]) < 0.5


def test_cli_trains_and_uses_an_hvae_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sets = ["kind=hvae", "hidden=[32]", "latent_dim=4", "hidden2=[16]", "latent_dim2=2"]
    run = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", run, "--epochs", "2", "-k", "10", "-q"]
    code, out, err = run_cli(capsys, *args, *(a for s in sets for a in ("--set", s)))
    assert code == 0, err
    assert 'kind="hvae"' in out and "valid log p(x)" in out
    assert json.loads((run / "config.json").read_text())["model"]["latent_dim2"] == 2
    z = tmp_path / "z.npy"
    for cmd in (
        ["evaluate", run, "-k", "10", "-q"],
        ["sample", run, "-n", "4"],
        ["reconstruct", run, "-n", "3"],
        ["encode", run, "--output", z],
        ["decode", run, z],
        ["info", run],
        ["interpolate", run, "0", "1"],
        ["manifold", run, "-n", "3"],
    ):
        code, out, err = run_cli(capsys, *cmd)
        assert code == 0, (cmd, err)
        if cmd[0] == "manifold":  # z1's prior is p(z1|z2) p(z2): a grid at its quantiles
            assert "quantiles of the prior's marginals" in out
    report = json.loads((run / "eval.json").read_text())
    assert math.isfinite(report["log_likelihood"]) and len(report["kl_per_dim"]) == 4
    assert np.load(z).shape == (report["n"], 4)


def test_latent_stats_by_hand_with_the_same_noise() -> None:
    """kl is log q(z1|x) + log q(z2|z1) - log p(z1|z2) - log p(z2) averaged over one seeded draw
    per example, kl_per_dim z1's share of it per dimension, activity Var_x(E[z1|x])."""
    m = small().double()
    for p in m.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.rand(20, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = x.bernoulli()
    stats = latent_stats(m, x, seed=5)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        q1 = m.encode(x).base_dist
        z1 = q1.loc + q1.scale * torch.randn(q1.loc.shape, generator=g, dtype=torch.float64)
        q2 = m.encode2(z1)
        z2 = q2.mean + q2.stddev * torch.randn(q2.mean.shape, generator=g, dtype=torch.float64)
        per_dim = q1.log_prob(z1) - m.pz1_z2(z2).base_dist.log_prob(z1)  # (20, latent_dim)
        total = per_dim.sum(-1) + q2.log_prob(z2) - m.pz().log_prob(z2)  # (20,)
    assert torch.allclose(stats["kl"], total.mean())
    assert torch.allclose(stats["kl_per_dim"], per_dim.mean(0))
    assert abs(float(stats["kl"] - stats["kl_per_dim"].sum())) > 0.05  # z2's share counts
    assert torch.allclose(stats["activity"], q1.loc.var(0, unbiased=False))


def test_the_layers_name_latents_of_the_wrong_width() -> None:
    from vaekit import DataError

    model = HVAE(data_shape=(4,), hidden=(3,), latent_dim=3, hidden2=(3,), latent_dim2=2)
    with pytest.raises(DataError, match=r"\(2, 5\) do not fit the model's latent_dim = 3"):
        model.encode2(torch.zeros(2, 5))
    with pytest.raises(DataError, match=r"\(2, 3\) do not fit the model's latent_dim2 = 2"):
        model.pz1_z2(torch.zeros(2, 3))
    assert model.pz1_z2(model.encode2(torch.zeros(2, 3)).mean).mean.shape == (2, 3)

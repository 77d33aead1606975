"""The FactorVAE and beta-VAE scores: examples drawn with one factor held fixed, from generated
data (shapes) and from a pool of examples with a factors array, and the scores of encoders whose
latents are known functions of the factors."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vaekit.data import Dataset, load
from vaekit.data.shapes import render
from vaekit.errors import ConfigError, DataError
from vaekit.metrics import FactorSampler, beta_vae_score, factor_vae_score, mig

SIZES = (3, 4, 5)


def _factor_data(copies: int = 4) -> Dataset:
    """Examples that are their own factors: every combination of SIZES ``copies`` times, as
    float32 (N, 3), split in three."""
    f = np.array(list(itertools.product(*(range(s) for s in SIZES))) * copies, dtype=np.int64)
    f = f[np.random.default_rng(0).permutation(len(f))]
    x = torch.from_numpy(f.astype(np.float32))
    parts = np.array_split(np.arange(len(f)), 3)
    ds = Dataset("factors", *(x[p] for p in parts))
    ds.train_factors, ds.valid_factors, ds.test_factors = (f[p] for p in parts)
    ds.factor_names, ds.factor_sizes = ["a", "b", "c"], list(SIZES)
    return ds


class Encoder:
    """A 'model' whose posterior mean is ``fn(x)``."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def encode(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(mean=self.fn(x))


def test_the_pool_sampler_fixes_the_factor() -> None:
    ds = _factor_data()
    sampler = FactorSampler(ds)
    rng = np.random.default_rng(1)
    f, x = sampler.matching(1, np.array([0, 3, 3, 2]), rng)
    assert f[:, 1].tolist() == [0, 3, 3, 2]
    assert np.array_equal(x.numpy(), f.astype(np.float32))  # the examples of those factors
    f, x = sampler.sample(50, rng)
    assert np.array_equal(x.numpy(), f.astype(np.float32))
    with pytest.raises(DataError, match="no example has factor 0 = 7"):
        sampler.matching(0, np.array([7]), rng)


def test_the_shapes_sampler_draws_new_examples() -> None:
    sampler = FactorSampler(load("shapes", examples=30))
    f, x = sampler.matching(2, np.full(20, 7), np.random.default_rng(0))
    assert (f[:, 2] == 7).all() and len({tuple(r) for r in f}) > 15  # the rest free
    assert torch.equal(x, torch.from_numpy(render(f)).float()[:, None])


def test_latents_that_are_the_factors_score_one() -> None:
    ds = _factor_data()
    model = Encoder(lambda x: x * torch.tensor([2.0, -1.0, 0.5]))
    assert factor_vae_score(model, ds, train_votes=200, eval_votes=200) == 1.0
    assert beta_vae_score(model, ds, train_points=200, eval_points=200) == 1.0


def test_factor_vae_score_by_hand() -> None:
    # latents (a, b), c in none: votes fixing a choose latent 0, fixing b latent 1, fixing c
    # either; the majority vote maps latent 0 to a and 1 to b, so every vote fixing c is wrong:
    # the score is 1 - P(c is fixed) = 2/3
    ds = _factor_data()
    model = Encoder(lambda x: x[:, :2])
    score = factor_vae_score(model, ds, train_votes=600, eval_votes=3000, seed=2)
    assert score == pytest.approx(2 / 3, abs=0.03)  # 3.5 standard errors


def test_latents_independent_of_the_factors_score_chance() -> None:
    ds = _factor_data()
    g = torch.Generator().manual_seed(0)
    model = Encoder(lambda x: torch.randn(len(x), 4, generator=g))
    assert beta_vae_score(model, ds, train_points=300, eval_points=300) < 0.5  # chance: 1/3
    assert factor_vae_score(model, ds, train_votes=300, eval_votes=600) < 0.5


def test_collapsed_latents_are_pruned() -> None:
    ds = _factor_data()
    model = Encoder(lambda x: torch.cat([x[:, :1], torch.zeros(len(x), 2)], 1))
    # only latent 0 is active: fixing a votes for it, and so does every other vote
    assert factor_vae_score(model, ds, train_votes=300, eval_votes=600) < 0.45
    assert factor_vae_score(Encoder(lambda x: 0 * x), ds, train_votes=10, eval_votes=10) == 0.0


def test_shapes_positions_found_by_an_image_centroid() -> None:
    ds = load("shapes", examples=30)
    grid = torch.arange(64, dtype=torch.float32)

    def centroid(x: torch.Tensor) -> torch.Tensor:
        img = x[:, 0]
        mass = img.sum((1, 2))
        cx = (img.sum(1) * grid).sum(1) / mass
        cy = (img.sum(2) * grid).sum(1) / mass
        return torch.stack([cx, cy, mass], 1)

    sampler = FactorSampler(ds)
    f, x = sampler.sample(3000, np.random.default_rng(0))
    z = centroid(x).numpy()
    assert mig(z[:, :2], f[:, 3:]) > 0.6  # x and y, each in its own latent
    # fixing pos_x or pos_y votes right, scale mostly for the mass, orientation and shape not:
    # about 2 or 3 in 5
    score = factor_vae_score(Encoder(centroid), ds, batch_size=32, train_votes=200, eval_votes=200)
    assert 0.35 < score < 0.75


def test_scores_refuse_data_without_class_factors() -> None:
    ds = load("digits")
    with pytest.raises(DataError, match="no factors of variation"):
        factor_vae_score(Encoder(lambda x: x), ds)
    real = _factor_data()
    real.train_factors = real.train_factors * 0.5
    with pytest.raises(DataError, match="real values"):
        beta_vae_score(Encoder(lambda x: x), real)
    with pytest.raises(ConfigError, match="batch_size"):
        factor_vae_score(Encoder(lambda x: x), _factor_data(), batch_size=0)

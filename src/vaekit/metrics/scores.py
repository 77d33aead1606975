"""The scores that encode examples generated with one factor held fixed: the beta-VAE score
(Higgins et al. 2017) and the FactorVAE score (Kim & Mnih 2018), as disentanglement_lib computes
them, on the mean of q(z|x)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from .sampling import FactorSampler, representation

if TYPE_CHECKING:
    from ..data import Dataset


def _positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def factor_vae_score(
    model: Any,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    train_votes: int = 1000,
    eval_votes: int = 500,
    variance_examples: int = 10000,
    prune: float = 0.05,
    seed: int = 0,
) -> float:
    """The FactorVAE disentanglement score (Kim & Mnih 2018) of ``model`` on ``dataset`` (a data
    set with class factors: shapes, dsprites or one with a factors file).

    Each latent's scale is its standard deviation over ``variance_examples`` examples; latents
    whose scale is below ``prune`` (collapsed to the prior; disentanglement_lib's study uses 0.05)
    take no part. A vote: fix one factor, chosen uniformly, at one value over ``batch_size``
    examples (the others free), and take the active latent with the least variance relative to
    its scale. A majority-vote classifier maps each latent to the factor that most often chose
    it on ``train_votes`` votes; the score is its accuracy on ``eval_votes`` new votes, in
    [0, 1] (0 when no latent is active). disentanglement_lib uses batch 64 and 10,000 / 5,000
    votes; the defaults here are 1,000 / 500 (a standard error of about 2 points) to fit a CPU.
    """
    _positive(batch_size=batch_size, train_votes=train_votes, eval_votes=eval_votes,
              variance_examples=variance_examples)  # fmt: skip
    if batch_size < 2 or variance_examples < 2:
        raise ConfigError("batch_size and variance_examples must be 2 or more for a variance")
    sampler = FactorSampler(dataset)
    rng = np.random.default_rng(seed)
    _, x = sampler.sample(variance_examples, rng)
    scale = np.var(representation(model, x), axis=0, ddof=1)
    active = np.sqrt(scale) >= prune
    if not active.any():
        return 0.0
    votes_train = _votes(model, sampler, rng, batch_size, train_votes, scale, active)
    classifier = votes_train.argmax(axis=0)  # (D,) the factor each latent stands for
    votes_eval = _votes(model, sampler, rng, batch_size, eval_votes, scale, active)
    return float(votes_eval[classifier, np.arange(len(classifier))].sum() / votes_eval.sum())


def _votes(model, sampler, rng, batch_size, n, scale, active, chunk=16) -> np.ndarray:
    """(F, D) counts of (fixed factor, latent of least relative variance) over ``n`` votes; the
    examples of ``chunk`` votes are encoded together."""
    votes = np.zeros((sampler.num_factors, len(scale)), np.int64)
    dims = np.nonzero(active)[0]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ks = rng.integers(0, sampler.num_factors, size=m)
        values = sampler.values(ks, rng)  # one value of the fixed factor per vote
        xs = [
            sampler.matching(int(k), np.full(batch_size, v), rng)[1]
            for k, v in zip(ks, values, strict=True)
        ]
        z = representation(model, _cat(xs)).reshape(m, batch_size, -1)
        local = np.var(z, axis=1, ddof=1)  # (m, D)
        best = dims[np.argmin(local[:, dims] / scale[dims], axis=1)]
        np.add.at(votes, (ks, best), 1)
    return votes


def beta_vae_score(
    model: Any,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    train_points: int = 1000,
    eval_points: int = 500,
    seed: int = 0,
) -> float:
    """The beta-VAE disentanglement score (Higgins et al. 2017) of ``model`` on ``dataset`` (with
    class factors).

    A point: fix one factor, chosen uniformly, between the two examples of each of
    ``batch_size`` pairs (a value per pair, the other factors free) and take the mean absolute
    difference of the pairs' latents, (D,). A logistic regression (scikit-learn's defaults, as
    disentanglement_lib) learns the fixed factor from ``train_points`` points; the score is its
    accuracy on ``eval_points`` new ones, in [0, 1]. disentanglement_lib uses batch 64 and
    10,000 / 5,000 points; the defaults here are 1,000 / 500 to fit a CPU.
    """
    from sklearn.linear_model import LogisticRegression

    _positive(batch_size=batch_size, train_points=train_points, eval_points=eval_points)
    sampler = FactorSampler(dataset)
    rng = np.random.default_rng(seed)
    x_train, y_train = _pairs(model, sampler, rng, batch_size, train_points)
    x_eval, y_eval = _pairs(model, sampler, rng, batch_size, eval_points)
    if len(np.unique(y_train)) < 2:
        return float(np.mean(y_eval == y_train[0]))
    classifier = LogisticRegression(random_state=seed, max_iter=1000)
    classifier.fit(x_train, y_train)
    return float(classifier.score(x_eval, y_eval))


def _pairs(model, sampler, rng, batch_size, n, chunk=16) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (n, D) of mean absolute latent differences and their fixed factors (n,)."""
    points, labels = [], []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ks = rng.integers(0, sampler.num_factors, size=m)
        first, second = [], []
        for k in ks:
            f1, x1 = sampler.sample(batch_size, rng)
            _, x2 = sampler.matching(int(k), f1[:, k], rng)
            first.append(x1)
            second.append(x2)
        z1 = representation(model, _cat(first)).reshape(m, batch_size, -1)
        z2 = representation(model, _cat(second)).reshape(m, batch_size, -1)
        points.append(np.abs(z1 - z2).mean(axis=1))
        labels.append(ks)
    return np.concatenate(points), np.concatenate(labels)


def _cat(xs: list) -> Any:
    import torch

    return torch.cat(xs)

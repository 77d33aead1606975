"""vaekit.sklearn.VAETransformer: scikit-learn's own estimator checks, pipelines and grid search,
and its log-density against the exact marginal of a linear-Gaussian model."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from vaekit.errors import ConfigError, DataError
from vaekit.sklearn import VAETransformer


def small(**params: object) -> VAETransformer:
    """A transformer that fits in a few milliseconds (for the checks, not for quality)."""
    settings = {"hidden": (8,), "epochs": 2, "batch_size": 32, "n_importance_samples": 8}
    return VAETransformer(**{**settings, **params})


@parametrize_with_checks([small()])
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


@pytest.mark.parametrize(
    "check",
    [
        "check_get_feature_names_out_error",
        "check_transformer_get_feature_names_out",
        "check_set_output_transform",
        # these three skip (unittest.SkipTest) where pandas is not installed
        "check_transformer_get_feature_names_out_pandas",
        "check_set_output_transform_pandas",
        "check_global_output_transform_pandas",
    ],
)
def test_scikit_learn_feature_name_and_set_output_checks(check: str) -> None:
    """scikit-learn's checks of get_feature_names_out and set_output, which this version's
    parametrize_with_checks does not yield (its own test suite calls them separately)."""
    getattr(estimator_checks, check)("VAETransformer", small(random_state=0))


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, ...]:
    X, y = load_breast_cancer(return_X_y=True)
    return tuple(train_test_split(X, y, test_size=0.25, stratify=y, random_state=0))


def test_pipeline_fits_and_predicts(cancer) -> None:
    X_train, X_test, y_train, y_test = cancer
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("vae", VAETransformer(latent_dim=2, epochs=30, random_state=0)),
            ("clf", LogisticRegression()),
        ]
    )
    pipe.fit(X_train, y_train)
    assert pipe.predict(X_test).shape == y_test.shape
    # two latent features already separate the classes far better than chance (63% majority)
    assert pipe.score(X_test, y_test) > 0.85
    assert list(pipe[:-1].get_feature_names_out()) == ["vae0", "vae1"]


def test_grid_search_over_latent_dim(cancer) -> None:
    X_train, _, y_train, _ = cancer
    pipe = Pipeline([("vae", small(random_state=0)), ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"vae__latent_dim": [1, 3]}, cv=2).fit(X_train, y_train)
    assert search.best_params_["vae__latent_dim"] in (1, 3)
    assert (
        search.best_estimator_[0].transform(X_train).shape[1]
        == search.best_params_["vae__latent_dim"]
    )


def test_raw_columns_of_different_scales_are_standardised(cancer) -> None:
    X_train = cancer[0]
    vae = small(random_state=0).fit(X_train)
    assert vae.likelihood_ == "gaussian"
    np.testing.assert_allclose(vae.mean_, X_train.mean(axis=0))
    np.testing.assert_allclose(vae.scale_, X_train.std(axis=0))
    Z = vae.transform(X_train)
    assert Z.dtype == np.float64 and Z.shape == (len(X_train), 2)
    back = vae.inverse_transform(Z)
    assert back.shape == X_train.shape
    # decoded means are in the data's units: column means of the same order as the data's
    np.testing.assert_allclose(back.mean(axis=0), X_train.mean(axis=0), rtol=0.5, atol=0.1)


def test_likelihood_auto_choice() -> None:
    rng = np.random.default_rng(0)
    binary = (rng.random((40, 5)) < 0.3).astype(float)
    vae = small(random_state=0).fit(binary)
    assert vae.likelihood_ == "bernoulli"
    np.testing.assert_array_equal(vae.scale_, 1.0)
    # a Bernoulli model's inverse transform gives probabilities, its samples 0 and 1
    probs = vae.inverse_transform(vae.transform(binary))
    assert ((probs > 0) & (probs < 1)).all()
    assert set(np.unique(vae.sample(50, random_state=0))) <= {0.0, 1.0}
    with pytest.raises(DataError, match="X"):
        vae.transform(binary + 0.5)
    fractions = rng.random((40, 5))
    assert small(random_state=0).fit(fractions).likelihood_ == "gaussian"
    explicit = small(likelihood="bernoulli", random_state=0).fit(fractions)
    assert explicit.likelihood_ == "bernoulli" and (explicit.scale_ == 1).all()
    per_dim = small(likelihood="gaussian_per_dim", random_state=0).fit(binary)
    assert per_dim.likelihood_ == "gaussian_per_dim" and per_dim.scale_.min() < 1


def test_bad_settings_name_the_setting() -> None:
    X = np.random.default_rng(0).normal(size=(20, 3))
    for params, name in [
        ({"likelihood": "poisson"}, "likelihood"),
        ({"standardize": "yes"}, "standardize"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"epochs": 0}, "epochs"),
        ({"n_importance_samples": 0}, "n_importance_samples"),
    ]:
        with pytest.raises(ConfigError, match=name):
            small(**params).fit(X)
    with pytest.raises(ConfigError, match="standardize"):
        small(likelihood="bernoulli", standardize=True).fit(np.eye(3))
    with pytest.raises(DataError, match="latent_dim"):
        small(random_state=0).fit(X).inverse_transform(np.zeros((2, 5)))


def test_zero_variance_column() -> None:
    X = np.random.default_rng(0).normal(size=(30, 3))
    X[:, 1] = 7.0
    vae = small(random_state=0).fit(X)
    assert vae.scale_[1] == 1.0 and vae.mean_[1] == 7.0
    assert np.isfinite(vae.score_samples(X)).all()


def test_deterministic_under_random_state_and_pickle_round_trip(cancer) -> None:
    X = cancer[0]
    a, b = small(random_state=3).fit(X), small(random_state=3).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    np.testing.assert_array_equal(a.transform(X), a.transform(X))
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(a.sample(4, random_state=1), b.sample(4, random_state=1))
    assert not np.array_equal(a.transform(X), small(random_state=4).fit(X).transform(X))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.transform(X), a.transform(X))
    np.testing.assert_array_equal(c.score_samples(X), a.score_samples(X))
    np.testing.assert_array_equal(c.inverse_transform(X[:, :2]), a.inverse_transform(X[:, :2]))
    state = a.__getstate__()
    assert "model_" not in state and isinstance(state["_model_weights"], bytes)
    assert "model_" in a.__dict__  # pickling leaves the estimator as it was
    d = clone(a)
    assert d.get_params() == a.get_params() and not hasattr(d, "model_")


def test_torch_global_random_state_untouched() -> None:
    X = np.random.default_rng(0).normal(size=(20, 3))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small(random_state=0).fit(X).sample(2, random_state=0)
    assert torch.equal(torch.rand(3), expected)


def test_score_samples_change_of_units_is_exactly_the_log_jacobian(cancer) -> None:
    """Scaling column j by 2**k_j leaves the standardised data bit for bit the same (powers of two
    are exact in floating point), so the fitted models are identical and log p(x) in the new
    units is log p(x) in the old minus sum_j k_j log 2, the log-Jacobian of the change."""
    X = cancer[0]
    powers = np.arange(X.shape[1]) % 7 - 3  # -3..3
    X2 = X * 2.0**powers
    a, b = small(random_state=0).fit(X), small(random_state=0).fit(X2)
    np.testing.assert_array_equal(a.transform(X), b.transform(X2))
    np.testing.assert_allclose(
        a.score_samples(X) - b.score_samples(X2), powers.sum() * np.log(2.0), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        b.inverse_transform(a.transform(X)), a.inverse_transform(a.transform(X)) * 2.0**powers
    )


def test_score_samples_matches_the_exact_marginal_of_a_linear_gaussian_model() -> None:
    """With no hidden layer and a Gaussian likelihood with per-feature variance, the model is
    factor analysis on the standardised data u = (x - m) / s: p(u) = N(b, W W^T + diag(psi)),
    so p(x) = N(m + s * b, S (W W^T + diag(psi)) S) with S = diag(s). The importance-weighted
    estimate at large K must sit just below that exact log-density, in the data's units."""
    rng = np.random.default_rng(0)
    W_true = rng.normal(size=(5, 2))
    X = rng.normal(size=(400, 2)) @ W_true.T + 0.3 * rng.normal(size=(400, 5))
    X = X * np.array([1.0, 10.0, 0.1, 100.0, 3.0]) + np.array([0.0, 5.0, -1.0, 50.0, 2.0])
    vae = VAETransformer(
        latent_dim=2,
        hidden=(),
        likelihood="gaussian_per_dim",
        epochs=150,
        batch_size=50,
        lr=1e-2,
        random_state=0,
    ).fit(X)
    model = vae.model_
    with torch.no_grad():
        b = model.decode(torch.zeros(1, 2, dtype=torch.float64)).mean[0].numpy()
        W = np.stack(
            [
                model.decode(torch.eye(2, dtype=torch.float64)[i : i + 1]).mean[0].numpy() - b
                for i in range(2)
            ],
            axis=1,
        )
        psi = model.decode(torch.zeros(1, 2, dtype=torch.float64)).variance[0].numpy()
    S = np.diag(vae.scale_)
    exact = multivariate_normal(vae.mean_ + vae.scale_ * b, S @ (W @ W.T + np.diag(psi)) @ S)
    log_px = exact.logpdf(X)
    vae.set_params(n_importance_samples=2000)
    estimate = vae.score_samples(X)
    gap = log_px - estimate
    assert gap.mean() > -0.005  # a lower bound in expectation
    assert gap.mean() < 0.01 and np.abs(gap).max() < 0.05
    # the ELBO's K = 1 is a looser bound, on average
    vae.set_params(n_importance_samples=1)
    assert (log_px - vae.score_samples(X)).mean() > gap.mean()


def test_score_samples_do_not_depend_on_the_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    import vaekit.sklearn

    X = np.random.default_rng(0).normal(size=(50, 6))
    vae = small(n_importance_samples=300, random_state=0).fit(X)
    whole = vae.score_samples(X)
    monkeypatch.setattr(vaekit.sklearn, "SCORE_FLOATS", 2000)  # passes of a few rows and samples
    np.testing.assert_allclose(vae.score_samples(X), whole, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vae.score_samples(X[::-1]), whole[::-1], rtol=0, atol=1e-10)

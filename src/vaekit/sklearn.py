"""A scikit-learn estimator: :class:`VAETransformer`, a VAE as a transformer, density model and
sampler for tabular data, usable in ``Pipeline``, ``GridSearchCV`` and ``clone``.

It is built on the library's own parts: :class:`vaekit.VAE` (an MLP encoder and decoder) trained
by :func:`vaekit.fit`, in float64 on the CPU. ``transform`` gives the posterior means of q(z|x),
``inverse_transform`` the decoder's means, ``score_samples`` the importance-weighted log p(x) of
each row in nats, in the units of the data as given (the standardisation's log-Jacobian
included). With ``likelihood="auto"`` the likelihood is chosen from the data: Bernoulli when
every value is 0 or 1, otherwise a Gaussian (mean and variance from the decoder) on standardised
columns, so columns of very different scales need no care from the caller.

Pickling follows scikit-learn's rules (the estimator is the caller's object); the fitted network
travels inside it as safetensors bytes and its config as a dict, never as a pickled module.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_array,
    check_is_fitted,
    validate_data,
)

from .errors import ConfigError, DataError
from .estimators import check_data
from .likelihoods import LIKELIHOODS
from .models import VAE
from .train import fit as train

#: Likelihood ``"auto"`` picks for data that is not all 0 and 1: the AEVB paper's Gaussian, whose
#: mean and variance the decoder gives for each z. On held-out rows of scikit-learn's
#: breast-cancer, wine and diabetes data it gave a higher log p(x) than one learned variance per
#: feature ("gaussian_per_dim") at latent_dim 2 and 5 (300 epochs, two seeds): by 9.5 to 12.3,
#: 0.5 to 1.1 and 0.9 to 1.7 nats per example.
AUTO_GAUSSIAN = "gaussian"
#: Rows per forward pass in transform, inverse_transform and sample.
CHUNK_ROWS = 4096
#: Floats the (sample, row) pairs of one forward pass in score_samples may hold (64 MB).
SCORE_FLOATS = 2**23


class VAETransformer(TransformerMixin, BaseEstimator):
    """A variational autoencoder as a scikit-learn transformer for X of shape (n_samples,
    n_features).

    Parameters
    ----------
    latent_dim : int, default=2
        Number of latent dimensions: the columns of ``transform``'s output.
    hidden : tuple of int, default=(64,)
        Widths of the encoder's hidden layers (the decoder mirrors them); ``()`` makes both
        networks linear (with likelihood "gaussian_per_dim", a factor-analysis model).
    activation : str, default="tanh"
        One of ``vaekit.nets.ACTIVATIONS``.
    likelihood : str, default="auto"
        p(x|z): "auto", or a name in ``vaekit.likelihoods.LIKELIHOODS`` ("bernoulli",
        "gaussian", "gaussian_per_dim", ...). "auto" takes "bernoulli" when every value of the
        training data is 0 or 1, else ``AUTO_GAUSSIAN``. Data in [0, 1] that is not binary gets
        the Gaussian: the Bernoulli cross-entropy of a fractional value is not a density, so its
        scores would not be log p(x).
    standardize : "auto" or bool, default="auto"
        Whether features are centred and scaled to unit variance (per column, fitted on the
        training data; a constant column is only centred) before the model sees them. "auto":
        for the likelihoods on the real line, not for those on [0, 1].
    epochs, batch_size, lr : default=200, 64, 1e-3
        Training settings of :func:`vaekit.fit` (Adam on the ELBO).
    n_importance_samples : int, default=100
        K of the importance-weighted estimate of log p(x) in ``score_samples``.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the training order and noise, and the noise of ``score_samples``:
        the same value gives the same fitted model and the same scores.

    Attributes
    ----------
    model_ : vaekit.VAE, the fitted model (float64, CPU), on standardised data if standardised.
    likelihood_ : str, the likelihood used.
    mean_, scale_ : ndarray (n_features,), the standardisation (zeros and ones when none).
    history_ : list of dict, :func:`vaekit.fit`'s per-epoch records.
    seed_ : int, the torch seed drawn from ``random_state`` at fit time.
    n_features_in_, feature_names_in_ : as for every scikit-learn estimator.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        hidden: tuple[int, ...] = (64,),
        activation: str = "tanh",
        likelihood: str = "auto",
        standardize: str | bool = "auto",
        epochs: int = 200,
        batch_size: int = 64,
        lr: float = 1e-3,
        n_importance_samples: int = 100,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.likelihood = likelihood
        self.standardize = standardize
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_importance_samples = n_importance_samples
        self.random_state = random_state

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> VAETransformer:
        """Train a fresh model on X (n_samples, n_features); y is ignored. Returns self."""
        X = validate_data(self, X, dtype=np.float64)
        likelihood, standardize = self._choose_likelihood(X)
        if standardize:
            self.mean_ = X.mean(axis=0)
            scale = X.std(axis=0)
            tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(self.mean_))
            self.scale_ = np.where(scale <= tiny, 1.0, scale)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        self.likelihood_ = likelihood
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        check_positive("n_importance_samples", self.n_importance_samples)  # fails at fit
        with torch.random.fork_rng(devices=[]):  # the caller's torch RNG is left as it was
            torch.manual_seed(self.seed_)
            model = VAE(
                data_shape=(X.shape[1],),
                latent_dim=self.latent_dim,
                hidden=(self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden),
                activation=self.activation,
                likelihood=likelihood,
            ).double()
            self.history_ = train(
                model,
                self._model_input(X, model),
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                seed=self.seed_,
                fast="off",
            )
        self.model_ = model.eval()
        return self

    def _choose_likelihood(self, X: np.ndarray) -> tuple[str, bool]:
        """The likelihood and whether to standardise, from the settings and the data."""
        if self.likelihood == "auto":
            binary = bool(np.isin(X, (0.0, 1.0)).all())
            likelihood = "bernoulli" if binary else AUTO_GAUSSIAN
        elif isinstance(self.likelihood, str) and self.likelihood in LIKELIHOODS:
            likelihood = self.likelihood
        else:
            raise ConfigError(
                f"unknown likelihood {self.likelihood!r}; choose one of auto, "
                + ", ".join(LIKELIHOODS)
            )
        real = LIKELIHOODS[likelihood].support == "real"
        if self.standardize == "auto":
            return likelihood, real
        if self.standardize is True and not real:
            raise ConfigError(
                f"standardize=True moves the data off [0, 1], where likelihood {likelihood!r} "
                "lives; give standardize='auto' or False, or a Gaussian likelihood"
            )
        if not isinstance(self.standardize, bool | np.bool_):
            raise ConfigError(
                f"standardize must be 'auto', True or False, got {self.standardize!r}"
            )
        return likelihood, bool(self.standardize)

    def _model_input(self, X: np.ndarray, model: VAE | None = None) -> torch.Tensor:
        """X standardised as at fit time, as a float64 tensor, checked against the model's
        likelihood (a DataError, a ValueError, for values outside its support)."""
        x = torch.tensor((X - self.mean_) / self.scale_, dtype=torch.float64)
        check_data(model if model is not None else self.model_, x, "X")
        return x

    # -- the transformer ----------------------------------------------------------------------

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        """Posterior means E[z|x] of q(z|x): float64 array (n_samples, latent_dim)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        x = self._model_input(X)
        out = [self.model_.encode(x[i : i + CHUNK_ROWS]).mean for i in range(0, len(x), CHUNK_ROWS)]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def inverse_transform(self, X: Any) -> np.ndarray:
        """The decoder's mean E[x|z] for latents X (n_samples, latent_dim), in the units of the
        training data: float64 array (n_samples, n_features_in_). With a Bernoulli likelihood,
        the probability of each feature being 1."""
        check_is_fitted(self)
        Z = check_array(X, dtype=np.float64)
        if Z.shape[1] != self.model_.config.latent_dim:
            raise DataError(
                f"X has {Z.shape[1]} columns but the model has latent_dim "
                f"{self.model_.config.latent_dim}; give latents as transform returns them"
            )
        z = torch.from_numpy(Z)
        means = [
            self.model_.decode(z[i : i + CHUNK_ROWS]).mean for i in range(0, len(z), CHUNK_ROWS)
        ]
        return torch.cat(means).numpy() * self.scale_ + self.mean_

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of transform's columns: "vae0", "vae1", ..., an object array (latent_dim,).
        ``input_features``, if given, must match ``feature_names_in_``."""
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        return np.asarray([f"vae{i}" for i in range(self.model_.config.latent_dim)], dtype=object)

    # -- the density --------------------------------------------------------------------------

    @torch.no_grad()
    def score_samples(self, X: Any) -> np.ndarray:
        """Importance-weighted estimate of log p(x) for each row, in nats, float64 (n_samples,).

        log p(x) ~ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), K = ``n_importance_samples``,
        a lower bound in expectation that tightens as K grows (Burda et al. 2016). The density
        is that of X in its own units: a standardised model's log-density minus
        sum(log scale_). The K noise draws are the same for every row (seeded by ``seed_``), so
        a row's score does not depend on the other rows or their order."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        x = self._model_input(X)
        model, k = self.model_, check_positive("n_importance_samples", self.n_importance_samples)
        g = torch.Generator().manual_seed(self.seed_)
        eps = torch.randn((k, 1, model.config.latent_dim), generator=g, dtype=torch.float64)
        c = model.config
        pair_cost = model.likelihood.n_params * c.data_dim + model.floats_per_row + 4 * c.latent_dim
        k_chunk = max(1, min(k, SCORE_FLOATS // pair_cost))  # samples per pass
        rows = max(1, SCORE_FLOATS // (k_chunk * pair_cost))  # rows per pass
        out = []
        for i in range(0, len(x), rows):
            xb = x[i : i + rows]
            total = torch.full((len(xb),), -math.inf, dtype=torch.float64)
            for k0 in range(0, k, k_chunk):
                e = eps[k0 : k0 + k_chunk].expand(-1, len(xb), -1)  # (k_chunk, B, latent_dim)
                total = torch.logaddexp(total, torch.logsumexp(model.terms(xb, e).log_w, dim=0))
            out.append(total - math.log(k))
        return torch.cat(out).numpy() - float(np.log(self.scale_).sum())

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of :meth:`score_samples` over the rows of X (nats per example); y is ignored."""
        return float(np.mean(self.score_samples(X)))

    @torch.no_grad()
    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """``n_samples`` draws x ~ p(x) = p(x|z) p(z) in the units of the training data:
        float64 array (n_samples, n_features_in_). ``random_state`` seeds them (None: numpy's
        global random state, as scikit-learn's samplers do)."""
        check_is_fitted(self)
        n = check_positive("n_samples", n_samples)
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x = self.model_.decode(self.model_.sample_latents(n)).sample()
        return x.numpy() * self.scale_ + self.mean_

    # -- pickling: the network as safetensors bytes -------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ gives __dict__
        model = state.pop("model_", None)
        if model is not None:
            state["_model_config"] = dataclasses.asdict(model.config)
            weights = {k: v.contiguous() for k, v in model.state_dict().items()}
            state["_model_weights"] = save_tensors(weights)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        config = state.pop("_model_config", None)
        weights = state.pop("_model_weights", None)
        if config is not None:
            model = VAE(config).double()
            model.load_state_dict(load_tensors(weights))
            state["model_"] = model.eval()
        super().__setstate__(state)


def check_positive(name: str, value: Any) -> int:
    """``value`` as an int if it is a positive integer, else a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)

"""Metrics that fit predictors from latents to factors: SAP (Kumar et al. 2018) and DCI
(Eastwood & Williams 2018), with disentanglement_lib's settings."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from scipy.stats import entropy as _entropy

from ..errors import ConfigError, DataError
from .info import BINS, as_classes, check_codes, is_real

#: Predictors DCI can take its importances from.
IMPORTANCE = ("boosting", "forest")


@contextmanager
def _quiet() -> Iterator[None]:
    """scikit-learn's warnings about few examples per class and unconverged SVMs: the scores
    are defined on whatever the fit gives, as in disentanglement_lib."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The number of unique classes")
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def holdout(
    z: np.ndarray,
    factors: np.ndarray,
    z_test: np.ndarray | None,
    factors_test: np.ndarray | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(z, factors, z_test, factors_test): the given test set, or else a seeded third of the
    examples held out."""
    z, factors = check_codes(z, factors)
    if (z_test is None) != (factors_test is None):
        raise ConfigError("give both z_test and factors_test, or neither")
    if z_test is not None:
        z_test, factors_test = check_codes(z_test, factors_test)
        if z_test.shape[1] != z.shape[1] or factors_test.shape[1] != factors.shape[1]:
            raise DataError(
                f"test latents/factors {z_test.shape}/{factors_test.shape} do not match "
                f"{z.shape}/{factors.shape} in their columns"
            )
        return z, factors, z_test, factors_test
    if len(z) < 6:
        raise DataError(f"{len(z)} examples are too few to hold out a test set; give 6 or more")
    order = np.random.default_rng(seed).permutation(len(z))
    cut = len(z) - len(z) // 3
    return z[order[:cut]], factors[order[:cut]], z[order[cut:]], factors[order[cut:]]


def sap(
    z: np.ndarray,
    factors: np.ndarray,
    *,
    z_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    seed: int = 0,
) -> float:
    """Separated Attribute Predictability (Kumar et al. 2018, section 3), as disentanglement_lib.

    A score S[i, j] for each latent z_i of ``z`` (N, D) and factor v_j of ``factors`` (N, F);
    SAP is the mean over factors of the gap between the two largest scores of the factor.
    Class factors (integer dtype): S[i, j] is the test accuracy of a linear SVM
    (``LinearSVC(C=0.01, class_weight="balanced")``) predicting v_j from z_i alone, fitted on
    ``z`` and tested on ``z_test`` (default: a seeded third of the examples held out). Real
    factors (float dtype): S[i, j] is the squared correlation of z_i and v_j (0 for a constant
    latent), on all the examples. Needs D >= 2. Invariant to the order of the latents; the
    squared correlation also to affine maps of each (the SVM's fixed C is not scale-free).
    """
    if is_real(np.asarray(factors)):
        z, factors = check_codes(z, factors)
        if z_test is not None and factors_test is not None:
            zt, ft = check_codes(z_test, factors_test)
            z, factors = np.concatenate([z, zt]), np.concatenate([factors, ft])
        scores = _squared_correlations(z, factors)
    else:
        z, factors, z_test, factors_test = holdout(z, factors, z_test, factors_test, seed)
        with _quiet():
            scores = _svm_accuracies(z, factors, z_test, factors_test)
    if scores.shape[0] < 2:
        raise DataError(f"SAP needs 2 or more latent dimensions, got {scores.shape[0]}")
    top = np.sort(scores, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def _squared_correlations(z: np.ndarray, factors: np.ndarray) -> np.ndarray:
    zc, fc = z - z.mean(0), factors - factors.mean(0)
    cov = zc.T @ fc / (len(z) - 1)  # (D, F)
    var_z, var_f = zc.var(0, ddof=1), fc.var(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = cov**2 / (var_z[:, None] * var_f[None, :])
    return np.where((var_z[:, None] > 1e-12) & (var_f[None, :] > 0), s, 0.0)


def _svm_accuracies(z, factors, z_test, factors_test) -> np.ndarray:
    from sklearn.svm import LinearSVC

    scores = np.zeros((z.shape[1], factors.shape[1]))
    for j in range(factors.shape[1]):
        if len(np.unique(factors[:, j])) < 2:
            scores[:, j] = 1.0  # one class: every latent predicts it, no gap
            continue
        for i in range(z.shape[1]):
            svm = LinearSVC(C=0.01, class_weight="balanced")
            svm.fit(z[:, i : i + 1], factors[:, j])
            scores[i, j] = np.mean(svm.predict(z_test[:, i : i + 1]) == factors_test[:, j])
    return scores


def dci(
    z: np.ndarray,
    factors: np.ndarray,
    *,
    z_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    importance: str = "boosting",
    seed: int = 0,
) -> dict[str, float]:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018), as
    disentanglement_lib computes them.

    One classifier per factor predicts its class from all the latents ``z`` (N, D); the
    absolute feature importances form R (D, F). ``importance``: "boosting" (disentanglement_lib:
    scikit-learn's ``GradientBoostingClassifier()`` with its defaults, 100 trees of depth 3 per
    class) or "forest" (``RandomForestClassifier(n_estimators=100, max_depth=8,
    max_features=None)``: bagged trees that look at every latent at each split, so a factor's
    importance is not spread over latents drawn at random; about ten times faster, importances by
    mean impurity decrease as well). Real-valued factors (float dtype) are first
    histogram-discretised into 20 bins over the train and test examples together.

    disentanglement: sum over latents of (1 - H_F(R[i] / sum R[i])) weighted by the latent's
    share of R (H_F: entropy in base F); completeness: the same over factors with base D;
    informativeness: the classifiers' mean accuracy on ``z_test`` (default: a seeded third of
    the examples held out). All three in [0, 1], higher is better. Invariant to the order of the
    latents and to increasing maps of each (trees split on order), up to ties in the trees.
    """
    if importance not in IMPORTANCE:
        raise ConfigError(f"importance must be one of {', '.join(IMPORTANCE)}, got {importance!r}")
    z, factors, z_test, factors_test = holdout(z, factors, z_test, factors_test, seed)
    both = as_classes(np.concatenate([factors, factors_test]), BINS)  # one set of bins
    classes, classes_test = both[: len(factors)], both[len(factors) :]
    r = np.zeros((z.shape[1], classes.shape[1]))
    accuracy = []
    for j in range(classes.shape[1]):
        if len(np.unique(classes[:, j])) < 2:
            accuracy.append(float(np.mean(classes_test[:, j] == classes[0, j])))
            continue  # a constant factor: nothing to attribute
        model = _classifier(importance, seed)
        with _quiet():
            model.fit(z, classes[:, j])
        r[:, j] = np.abs(model.feature_importances_)
        accuracy.append(float(np.mean(model.predict(z_test) == classes_test[:, j])))
    return {
        "disentanglement": disentanglement(r),
        "completeness": completeness(r),
        "informativeness": float(np.mean(accuracy)),
    }


def _classifier(importance: str, seed: int):
    if importance == "boosting":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=seed)
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=100, max_depth=8, max_features=None, random_state=seed
    )


def disentanglement(r: np.ndarray) -> float:
    """DCI disentanglement of an importance matrix R (D latents, F factors): per latent
    1 - entropy (base F) of its row normalised, weighted by the row's share of the total."""
    r = np.asarray(r, dtype=np.float64)
    if r.shape[1] == 1:  # one factor: every latent serves only it
        per_code = np.ones(r.shape[0])
    else:
        per_code = 1.0 - _entropy(r.T + 1e-11, base=r.shape[1])
    weights = r if r.sum() > 0 else np.ones_like(r)
    return float(np.sum(per_code * weights.sum(1) / weights.sum()))


def completeness(r: np.ndarray) -> float:
    """DCI completeness of an importance matrix R (D, F): per factor 1 - entropy (base D) of its
    column normalised, weighted by the column's share of the total."""
    r = np.asarray(r, dtype=np.float64)
    if r.shape[0] == 1:  # one latent: every factor lies in it alone
        per_factor = np.ones(r.shape[1])
    else:
        per_factor = 1.0 - _entropy(r + 1e-11, base=r.shape[0])
    weights = r if r.sum() > 0 else np.ones_like(r)
    return float(np.sum(per_factor * weights.sum(0) / weights.sum()))

"""Information-theoretic pieces of the metrics: histogram discretisation, discrete entropy and
mutual information (natural logs, nats), and the Mutual Information Gap."""

from __future__ import annotations

import numpy as np

from ..errors import DataError

#: Bins of the histogram discretisation of latents (and of real-valued factors) for MIG, as in
#: disentanglement_lib's study (Locatello et al. 2019).
BINS = 20


def check_codes(z: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``z`` (N, D) latents and ``factors`` (N, F) as numpy arrays, checked: two-dimensional
    (a 1-D factor array is one factor), the same N (at least 2), finite."""
    z = np.asarray(z.detach().cpu() if hasattr(z, "detach") else z)
    factors = np.asarray(factors.detach().cpu() if hasattr(factors, "detach") else factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if z.ndim != 2 or factors.ndim != 2:
        raise DataError(f"latents must be (N, D) and factors (N, F), got {z.shape} and "
                        f"{factors.shape}")  # fmt: skip
    if len(z) != len(factors) or len(z) < 2:
        raise DataError(
            f"latents have {len(z)} rows and factors {len(factors)}; give the same number, 2 or "
            "more"
        )
    if z.dtype.kind not in "biuf" or factors.dtype.kind not in "biuf":
        raise DataError(f"latents and factors must be numbers, got {z.dtype} and {factors.dtype}")
    if not (np.isfinite(z).all() and np.isfinite(factors).all()):
        raise DataError("latents and factors must be finite; found NaN or infinite values")
    return z.astype(np.float64), factors


def is_real(factors: np.ndarray) -> bool:
    """Whether factors are real values (a float dtype) rather than classes (an integer dtype)."""
    return np.asarray(factors).dtype.kind == "f"


def discretize(x: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each column of ``x`` (N, D) as bin numbers 1..bins of its own equal-width histogram over
    its range (disentanglement_lib's histogram discretiser: ``np.digitize`` against the left
    edges). A constant column is one bin. Returns int64 (N, D)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape, np.int64)
    for j in range(x.shape[1]):
        edges = np.histogram(x[:, j], bins)[1][:-1]
        out[:, j] = np.digitize(x[:, j], edges)
    return out


def as_classes(factors: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Factor classes (N, F): integer factors as they are, real ones histogram-discretised."""
    return discretize(factors, bins) if is_real(factors) else np.asarray(factors, np.int64)


def _dense(codes: np.ndarray) -> tuple[np.ndarray, int]:
    values, inverse = np.unique(codes, return_inverse=True)
    return inverse.ravel(), len(values)


def entropy(codes: np.ndarray) -> float:
    """Entropy in nats of the empirical distribution of one column of discrete codes (N,)."""
    index, _ = _dense(codes)
    p = np.bincount(index) / len(index)
    return float(-(p * np.log(p)).sum())


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information in nats of the empirical joint distribution of two discrete codes (N,)
    (equal to ``sklearn.metrics.mutual_info_score``)."""
    ia, na = _dense(a)
    ib, nb = _dense(b)
    joint = np.bincount(ia * nb + ib, minlength=na * nb).reshape(na, nb) / len(ia)
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def mutual_info_matrix(z_codes: np.ndarray, factor_codes: np.ndarray) -> np.ndarray:
    """I(z_i; v_j) in nats, (D, F), of discrete latents (N, D) and factor classes (N, F)."""
    return np.array(
        [
            [mutual_info(z_codes[:, i], factor_codes[:, j]) for j in range(factor_codes.shape[1])]
            for i in range(z_codes.shape[1])
        ]
    )


def mig(z: np.ndarray, factors: np.ndarray, *, bins: int = BINS) -> float:
    """Mutual Information Gap (Chen et al. 2018), as disentanglement_lib computes it.

    Each latent of ``z`` (N, D), e.g. posterior means, is discretised into ``bins`` (20)
    equal-width bins of its range; factors (N, F) are classes (integer dtype) or, when real
    (float dtype), discretised the same way. For each factor v_j the gap between the largest and
    the second largest I(z_i; v_j) over the latents, divided by H(v_j), averaged over the
    factors: 1 when each factor is captured by one latent alone, 0 when none or several capture
    it equally. Factors that are constant (H = 0) are left out. Needs D >= 2.

    Invariant to the order of the latents and to increasing affine maps of each; bins are over
    each latent's range, so outliers make them coarse.
    """
    z, factors = check_codes(z, factors)
    if z.shape[1] < 2:
        raise DataError(f"MIG needs 2 or more latent dimensions, got {z.shape[1]}")
    classes = as_classes(factors, bins)
    h = np.array([entropy(classes[:, j]) for j in range(classes.shape[1])])
    keep = h > 0
    if not keep.any():
        raise DataError("every factor is constant in these examples; MIG needs varying factors")
    m = mutual_info_matrix(discretize(z, bins), classes[:, keep])  # (D, F)
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / h[keep]))

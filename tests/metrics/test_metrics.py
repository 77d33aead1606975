"""MIG, SAP and DCI on arrays: hand-computed cases, the ends of their ranges (latents that are
the factors, a rotation of them, latents independent of them) and the invariances they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import mutual_info_score

from vaekit.errors import ConfigError, DataError
from vaekit.metrics import (
    completeness,
    dci,
    discretize,
    disentanglement,
    mig,
    mutual_info,
    sap,
)


def _factors(n: int, sizes: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, sizes, size=(n, len(sizes)))


def _true_latents(f: np.ndarray, noise: float, extra: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    z = (f - f.mean(0)) / f.std(0) + noise * rng.standard_normal(f.shape)
    return np.concatenate([z, rng.standard_normal((len(f), extra))], axis=1)


#: A rotation that mixes 4 latents evenly: every entry is +-1/2 (a Hadamard matrix / 2), so each
#: rotated latent carries each of 4 like factors equally.
ROTATION = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2


# -- MIG ---------------------------------------------------------------------------------------


def test_mutual_info_is_sklearns() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 300), rng.integers(0, 7, 300)
    b[:100] = a[:100]
    assert mutual_info(a, b) == pytest.approx(mutual_info_score(a, b), abs=1e-12)


def test_discretize_as_disentanglement_lib() -> None:
    # 2 bins over [0, 1]: left edges 0 and 0.5, so 0, 0.4 -> bin 1 and 0.5, 1 -> bin 2
    assert discretize(np.array([[0.0], [0.4], [0.5], [1.0]]), 2).ravel().tolist() == [1, 1, 2, 2]
    assert len(set(discretize(np.full((3, 1), 7.0), 20).ravel())) == 1  # constant: one bin


def test_mig_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    # z1 is y and z2 is independent of it: I(z1; y) = H(y) = log 2, I(z2; y) = 0, MIG = 1
    assert mig(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), y, bins=2) == pytest.approx(1.0)
    # z2 = [0, 0, 0, 1]: H(y | z2) = 3/4 H(2/3, 1/3), so the gap over H(y) is
    # (H(y) - I(z2; y)) / H(y) = 3/4 H(2/3, 1/3) / log 2 = 3/4 (log 3 - 2/3 log 2) / log 2
    z = np.array([[0, 0], [0, 0], [1, 0], [1, 1]])
    want = 0.75 * (math.log(3) - 2 / 3 * math.log(2)) / math.log(2)
    assert mig(z, y, bins=2) == pytest.approx(want, abs=1e-12)  # 0.6887
    # two factors: the mean of their normalised gaps; z1 carries both equally -> 0 for y2
    y2 = np.stack([y, y], axis=1)
    assert mig(np.array([[0, 5], [0, 5], [1, 5], [1, 5]]), y2, bins=2) == pytest.approx(1.0)
    assert mig(np.array([[0, 0], [0, 0], [1, 1], [1, 1]]), y, bins=2) == pytest.approx(0.0)


def test_mig_ends_of_its_range() -> None:
    f = _factors(4000, (3, 6, 10))
    z = _true_latents(f, 0.02, 2)
    assert mig(z, f) > 0.9
    f = _factors(4000, (6, 6, 6, 6))
    assert mig(_true_latents(f, 0.02, 0) @ ROTATION, f) < 0.1
    rng = np.random.default_rng(5)
    assert mig(rng.standard_normal((4000, 5)), f) < 0.03


def test_mig_is_invariant_to_order_and_scale_of_latents() -> None:
    f = _factors(2000, (4, 5))
    z = _true_latents(f, 0.3, 1)
    base = mig(z, f)
    assert mig(z[:, [2, 0, 1]], f) == pytest.approx(base, abs=1e-12)
    assert mig(z * np.array([3.0, 0.01, 7.0]) + np.array([1.0, -2.0, 5.0]), f) == pytest.approx(
        base, abs=1e-3
    )


def test_mig_with_real_factors_and_bad_input() -> None:
    f = np.random.default_rng(0).uniform(size=(3000, 2))
    assert mig(np.concatenate([f, f[:, :1] * 0 + 1], 1), f) > 0.9  # real factors: 20 bins
    with pytest.raises(DataError, match="same number"):
        mig(np.zeros((5, 2)), np.zeros((4, 1), int))
    with pytest.raises(DataError, match="2 or more latent"):
        mig(np.zeros((5, 1)), np.arange(5))
    with pytest.raises(DataError, match="finite"):
        mig(np.full((5, 2), np.nan), np.arange(5))


# -- SAP ---------------------------------------------------------------------------------------


def test_sap_by_hand_with_real_factors() -> None:
    y = np.array([[0.0], [1.0], [2.0], [3.0]])
    # z1 = y: squared correlation 1; z2 = [0, 0, 0, 1]: cov = 1.5/3, var z2 = 0.75/3, var y = 5/3,
    # corr^2 = 2.25 / 3.75 = 0.6, so SAP = 1 - 0.6
    z = np.array([[0, 0], [1, 0], [2, 0], [3, 1]], dtype=float)
    assert sap(z, y) == pytest.approx(0.4, abs=1e-12)
    # rescaling and moving a latent changes no correlation
    assert sap(z * np.array([-4.0, 0.5]) + 3, y) == pytest.approx(0.4, abs=1e-12)


def test_sap_ends_of_its_range() -> None:
    f = _factors(3000, (2, 2, 2))  # binary factors: one threshold on one latent separates them
    z = _true_latents(f, 0.1, 2)
    assert sap(z, f) > 0.45  # accuracy ~1 for the right latent, ~0.5 for the others
    assert sap(z, f) == pytest.approx(sap(z[:, [4, 2, 0, 3, 1]], f), abs=1e-12)
    f = _factors(3000, (2, 2, 2, 2))
    assert sap(_true_latents(f, 0.1, 0) @ ROTATION, f) < 0.1
    assert sap(np.random.default_rng(3).standard_normal((3000, 4)), f) < 0.05


# -- DCI ---------------------------------------------------------------------------------------


def test_dci_from_an_importance_matrix_by_hand() -> None:
    assert disentanglement(np.eye(3)) == pytest.approx(1.0)
    assert completeness(np.eye(3)) == pytest.approx(1.0)
    # one latent serves both factors: no disentanglement, but each factor lies in one latent
    r = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert disentanglement(r) == pytest.approx(0.0, abs=1e-9)
    assert completeness(r) == pytest.approx(1.0, abs=1e-9)
    # rows [3, 1] and [0, 2]: 1 - H2(3/4, 1/4) weighted 4/6, and 1 weighted 2/6
    r = np.array([[3.0, 1.0], [0.0, 2.0]])
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert disentanglement(r) == pytest.approx((1 - h) * 4 / 6 + 2 / 6, abs=1e-9)
    # columns [3, 0] and [1, 2]: 1 weighted 3/6, and 1 - H2(1/3, 2/3) weighted 3/6
    h2 = scipy_entropy([1, 2], base=2)
    assert completeness(r) == pytest.approx(0.5 + (1 - h2) * 0.5, abs=1e-9)


def test_dci_ends_of_its_range() -> None:
    f = _factors(1500, (4, 4, 4, 4))
    z = _true_latents(f, 0.02, 0)
    good = dci(z, f, importance="forest")
    assert good["disentanglement"] > 0.9 and good["completeness"] > 0.9
    assert good["informativeness"] > 0.95
    rotated = dci(z @ ROTATION, f, importance="forest")
    assert rotated["disentanglement"] < 0.5 and rotated["completeness"] < 0.5
    rng = np.random.default_rng(4)
    noise = dci(rng.standard_normal((1500, 5)), f, importance="forest")
    assert noise["disentanglement"] < 0.1 and noise["informativeness"] < 0.45


def test_dci_with_boosting_as_disentanglement_lib() -> None:
    f = _factors(600, (2, 3))
    z = _true_latents(f, 0.02, 1)
    got = dci(z, f, importance="boosting")
    assert got["disentanglement"] > 0.9 and got["completeness"] > 0.9
    assert got["informativeness"] == pytest.approx(1.0)
    # trees split on the order of each latent: moving and scaling them changes nothing
    moved = dci(z * np.array([5.0, 0.1, 2.0]) - 1, f, importance="boosting")
    assert moved == pytest.approx(got, abs=1e-9)


def test_dci_is_invariant_to_the_order_of_latents() -> None:
    f = _factors(800, (3, 3))
    z = _true_latents(f, 0.2, 1)
    a = dci(z, f, importance="forest")
    b = dci(z[:, [2, 1, 0]], f, importance="forest")
    assert b == pytest.approx(a, abs=0.03)  # the forest's draws differ with the column order


def test_dci_settings_and_held_out_data() -> None:
    f = _factors(90, (2,))
    z = _true_latents(f, 0.01, 1)
    got = dci(z[:60], f[:60], z_test=z[60:], factors_test=f[60:], importance="forest")
    assert got["informativeness"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="importance must be"):
        dci(z, f, importance="lasso")
    with pytest.raises(ConfigError, match="both"):
        dci(z, f, z_test=z)


def test_dci_bins_real_factors_once_for_train_and_test() -> None:
    # the held-out factors cover only the upper half of the range: with bins of their own they
    # would be numbered differently from the train factors, and no prediction would match
    rng = np.random.default_rng(0)
    f = rng.uniform(size=(600, 1))
    z = np.concatenate([f, rng.standard_normal((600, 1))], 1)
    f_test = rng.uniform(0.5, 1.0, size=(200, 1))
    z_test = np.concatenate([f_test, rng.standard_normal((200, 1))], 1)
    got = dci(z, f, z_test=z_test, factors_test=f_test, importance="forest")
    assert got["informativeness"] > 0.8

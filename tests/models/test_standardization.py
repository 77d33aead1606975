"""A VAE on standardised data reports everything in the data's own units.

The model with data_shift s and data_scale a is the same networks run on y = (x - s) / a, so by
the change of variables x = s + a * y every density of x is that of y minus sum(log a) (the
Jacobian), and every output in x is the output in y stretched and moved back. These are closed
forms: the tests compare the standardised model against the same weights without it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

import vaekit
from vaekit import VAE
from vaekit.data import standardization
from vaekit.distributions import Rescaled
from vaekit.errors import ConfigError

D = 5


def _pair(
    likelihood: str = "gaussian", **fields: object
) -> tuple[VAE, VAE, torch.Tensor, torch.Tensor]:
    """(standardised model, the same weights without a standardisation, shift, scale)."""
    torch.manual_seed(0)
    shift = torch.tensor([100.0, -3.0, 0.5, 2000.0, 0.0], dtype=torch.float64)
    scale = torch.tensor([10.0, 0.01, 1.0, 500.0, 3.0], dtype=torch.float64)
    common = {"data_shape": (D,), "latent_dim": 2, "hidden": (8,), "likelihood": likelihood}
    common.update(fields)
    plain = VAE(**common).double().eval()
    scaled = VAE(**common, data_shift=tuple(shift.tolist()), data_scale=tuple(scale.tolist()))
    scaled = scaled.double().eval()
    scaled.load_state_dict(plain.state_dict())
    return scaled, plain, shift, scale


def _raw(shift: torch.Tensor, scale: torch.Tensor, n: int = 7) -> torch.Tensor:
    return shift + scale * torch.randn(
        n, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )


def test_rescaled_distribution_is_the_affine_image_of_its_base() -> None:
    base = Independent(Normal(torch.randn(3, 4), torch.rand(3, 4) + 0.5), 1)
    shift, scale = torch.randn(4), torch.rand(4) + 0.1
    moved = Rescaled(base, shift, scale)
    exact = Independent(Normal(base.mean * scale + shift, base.stddev * scale), 1)
    x = torch.randn(3, 4)
    torch.testing.assert_close(moved.log_prob(x), exact.log_prob(x))
    torch.testing.assert_close(moved.mean, exact.mean)
    torch.testing.assert_close(moved.variance, exact.variance)
    torch.testing.assert_close(moved.stddev, exact.stddev)
    assert moved.batch_shape == (3,) and moved.event_shape == (4,)
    assert moved.rsample((2,)).shape == (2, 3, 4)


@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian_per_dim", "gaussian_fixed"])
def test_bounds_include_the_jacobian(likelihood: str) -> None:
    scaled, plain, shift, scale = _pair(likelihood)
    x = _raw(shift, scale)
    y = (x - shift) / scale
    jacobian = float(torch.log(scale).sum())
    torch.testing.assert_close(
        scaled.log_likelihood(x, k=50, seed=3), plain.log_likelihood(y, k=50, seed=3) - jacobian
    )
    torch.testing.assert_close(
        scaled.elbo(x, samples=2, seed=3), plain.elbo(y, samples=2, seed=3) - jacobian
    )
    z = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(
        scaled.decode(z).log_prob(x[:4]), plain.decode(z).log_prob(y[:4]) - jacobian
    )


def test_encode_decode_sample_and_reconstruct_speak_the_data_s_units() -> None:
    scaled, plain, shift, scale = _pair()
    x = _raw(shift, scale)
    y = (x - shift) / scale
    torch.testing.assert_close(scaled.encode(x).mean, plain.encode(y).mean)
    z = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(scaled.decode(z).mean, plain.decode(z).mean * scale + shift)
    torch.testing.assert_close(scaled.decode(z).stddev, plain.decode(z).stddev * scale)
    torch.testing.assert_close(scaled.reconstruct(x), plain.reconstruct(y) * scale + shift)
    torch.manual_seed(5)
    a = scaled.sample(6)
    torch.manual_seed(5)
    torch.testing.assert_close(a, plain.sample(6) * scale + shift)


def test_standardization_is_each_column_s_mean_and_std() -> None:
    x = np.array([[1.0, 5.0, 7.0], [3.0, 5.0, 9.0], [5.0, 5.0, 20.0]])
    got = standardization(x)
    np.testing.assert_allclose(got["data_shift"], x.mean(0))
    np.testing.assert_allclose(got["data_scale"], [x[:, 0].std(), 1.0, x[:, 2].std()])
    assert all(isinstance(v, float) for v in got["data_shift"] + got["data_scale"])


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"data_shift": (0.0,) * D, "data_scale": (1.0,) * 3}, "one value per data dimension"),
        ({"data_shift": (0.0,) * D, "data_scale": (1.0,) * 4 + (0.0,)}, "positive"),
        ({"data_shift": (math.nan,) * D, "data_scale": (1.0,) * D}, "finite"),
        ({"data_shift": (0.0,) * D, "data_scale": (2.0,) * D, "likelihood": "bernoulli"}, "[0, 1]"),
    ],
)
def test_a_bad_standardisation_is_one_config_error(fields: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        VAE(data_shape=(D,), likelihood=fields.pop("likelihood", "gaussian"), **fields)


def test_save_and_load_keep_the_standardisation(tmp_path) -> None:
    scaled, _, shift, scale = _pair()
    x = _raw(shift, scale)
    scaled.float().save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert saved["data_scale"] == scale.tolist() and saved["data_shift"] == shift.tolist()
    loaded = vaekit.load(tmp_path / "run")
    torch.testing.assert_close(
        loaded.encode(x.float()).mean, scaled.encode(x.float()).mean, rtol=1e-5, atol=1e-5
    )
    assert loaded.log_data_scale == pytest.approx(float(torch.log(scale).sum()), rel=1e-12)

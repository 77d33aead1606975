"""Shared fixtures: a linear-Gaussian VAE whose marginal and posterior are known in closed form.

With a linear decoder x = W z + b + N(0, s^2 I) and p(z) = N(0, I):

    p(x)   = N(b, W W^T + s^2 I)
    p(z|x) = N(Sigma W^T (x - b) / s^2, Sigma),   Sigma = (I + W^T W / s^2)^-1

W has orthogonal columns, so Sigma is diagonal and a diagonal Gaussian q(z|x) can equal p(z|x).
The encoder is a single linear layer too, so q(z|x) = N(A x + c, diag(exp(soft_clamp(r)))) can be
set to the exact posterior, or to a deliberately imperfect one.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from torch import Tensor
from torch.distributions import MultivariateNormal

from vaekit import VAE
from vaekit.likelihoods import soft_clamp

# The suite is a gate: the property tests draw the same examples on every run ("ci"). Run
# VAEKIT_HYPOTHESIS=explore pytest to search new random examples (and keep failures found).
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("VAEKIT_HYPOTHESIS", "ci"))


def inverse_soft_clamp(y: Tensor, lo: float, hi: float) -> Tensor:
    """The raw value r with soft_clamp(r, lo, hi) == y, by bisection (soft_clamp is increasing)."""
    a = torch.full_like(y, lo - 60.0, dtype=torch.float64)
    b = torch.full_like(y, hi + 60.0, dtype=torch.float64)
    y = y.double()
    for _ in range(200):
        m = 0.5 * (a + b)
        below = soft_clamp(m, lo, hi) < y
        a = torch.where(below, m, a)
        b = torch.where(below, b, m)
    return 0.5 * (a + b)


@dataclass
class LinearGaussian:
    """A float64 linear-Gaussian VAE and its exact marginal and posterior."""

    model: VAE
    W: Tensor  # (D, M) decoder weight
    b: Tensor  # (D,) decoder bias
    s: float  # decoder noise standard deviation

    @property
    def data_dim(self) -> int:
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    def px(self) -> MultivariateNormal:
        """The exact marginal p(x) = N(b, W W^T + s^2 I)."""
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.data_dim, dtype=torch.float64)
        return MultivariateNormal(self.b, covariance_matrix=cov)

    def log_px(self, x: Tensor) -> Tensor:
        """Exact log p(x) in nats, (B,)."""
        return self.px().log_prob(x)

    def posterior_cov(self) -> Tensor:
        """Sigma = (I + W^T W / s^2)^-1, (M, M); diagonal because W's columns are orthogonal."""
        eye = torch.eye(self.latent_dim, dtype=torch.float64)
        return torch.linalg.inv(eye + self.W.T @ self.W / self.s**2)

    def posterior_loc_map(self) -> tuple[Tensor, Tensor]:
        """(A, c) with E[z|x] = A x + c: A = Sigma W^T / s^2, c = -A b."""
        A = self.posterior_cov() @ self.W.T / self.s**2
        return A, -A @ self.b

    def expected_elbo(self, x: Tensor, q_loc: Tensor, q_var: Tensor) -> Tensor:
        """The ELBO in closed form for q(z|x) = N(q_loc, diag(q_var)), (B,):
        E_q[log p(x|z)] - KL(q || N(0, I)), with
        E_q[log p(x|z)] = log N(x; W q_loc + b, s^2 I) - tr(W^T W diag(q_var)) / (2 s^2)."""
        D, s2 = self.data_dim, self.s**2
        resid = x - q_loc @ self.W.T - self.b  # (B, D)
        trace = (q_var * torch.diagonal(self.W.T @ self.W)).sum(-1)  # (B,)
        expected_log_px_z = -0.5 * D * math.log(2 * math.pi * s2) - ((resid**2).sum(-1) + trace) / (
            2 * s2
        )
        kl = 0.5 * (q_var + q_loc**2 - 1 - q_var.log()).sum(-1)
        return expected_log_px_z - kl

    def sample_x(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws from p(x), (n, D)."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=torch.float64)
        noise = torch.randn(n, self.data_dim, generator=generator, dtype=torch.float64)
        return z @ self.W.T + self.b + self.s * noise

    @torch.no_grad()
    def set_encoder(self, loc_scale: float = 1.0, loc_shift: float = 0.0, var_scale: float = 1.0):
        """Make q(z|x) the exact posterior, or a distorted one: its mean map scaled by
        ``loc_scale`` and shifted by ``loc_shift``, its variances multiplied by ``var_scale``."""
        A, c = self.posterior_loc_map()
        logvar = torch.log(torch.diagonal(self.posterior_cov()) * var_scale)  # (M,)
        cfg = self.model.config
        raw_logvar = inverse_soft_clamp(logvar, cfg.encoder_min_logvar, cfg.encoder_max_logvar)
        layer = self.model.encoder[0]
        M = self.latent_dim
        layer.weight.zero_()
        layer.weight[:M] = loc_scale * A
        layer.bias[:M] = loc_scale * c + loc_shift
        layer.bias[M:] = raw_logvar


def make_linear_gaussian(
    data_dim: int = 5, latent_dim: int = 2, s: float = 0.75, seed: int = 0
) -> LinearGaussian:
    """A linear-Gaussian VAE in float64 with W = Q diag(scales), Q having orthonormal columns.

    ``s`` should be exact in float32 (0.75, 0.5, ...): the likelihood keeps its std as a float32
    buffer, so 0.7 would become 0.699999988 and move log p(x) by about 1e-7.
    """
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(data_dim, latent_dim, generator=g, dtype=torch.float64))
    scales = torch.linspace(1.5, 0.8, latent_dim, dtype=torch.float64)
    W = Q * scales  # (D, M), W^T W = diag(scales^2)
    b = torch.randn(data_dim, generator=g, dtype=torch.float64)
    model = VAE(
        data_shape=(data_dim,),
        latent_dim=latent_dim,
        hidden=(),
        likelihood="gaussian_fixed",
        decoder_std=s,
    ).double()
    with torch.no_grad():
        model.decoder[0].weight.copy_(W)
        model.decoder[0].bias.copy_(b)
    lg = LinearGaussian(model=model, W=W, b=b, s=s)
    lg.set_encoder()
    return lg


@pytest.fixture
def linear_gaussian() -> Callable[..., LinearGaussian]:
    """Factory of linear-Gaussian VAEs: ``linear_gaussian(data_dim=5, latent_dim=2, s=0.75)``."""
    return make_linear_gaussian


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Every test starts from the same global RNG state, so weight initialisation repeats."""
    torch.manual_seed(0)


# -- the command line, driven in this process ----------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run ``vaekit args`` in this process; returns (exit status, stdout, stderr)."""
    from vaekit.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time of each file of a run folder, to show they did not change."""
    from vaekit.cli import RUN_FILES

    return {f: ((run / f).read_bytes(), (run / f).stat().st_mtime_ns) for f in RUN_FILES}


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (links as their targets' names), to show that a
    refused command left a folder byte for byte as it was."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def png(path: Path) -> np.ndarray:
    """Pixels of a PNG as an array, after checking it is not blank."""
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG"
        a = np.asarray(img.convert("L"), dtype=np.float64)
    assert a.std() > 0, f"{path} is blank"
    return a

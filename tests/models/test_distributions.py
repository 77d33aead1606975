"""distributions: the diagonal Gaussian and its closed-form log-densities agree with torch's."""

from __future__ import annotations

import torch
from torch.distributions import Independent, Normal

from vaekit.distributions import diag_normal, gaussian_log_prob, gaussian_log_prob_eps


def test_diag_normal_from_logvar_or_scale() -> None:
    torch.manual_seed(0)
    loc, logvar = torch.randn(4, 3), torch.randn(4, 3)
    z = torch.randn(4, 3)
    ref = Independent(Normal(loc, torch.exp(0.5 * logvar)), 1)
    by_logvar = diag_normal(loc, logvar)
    by_scale = diag_normal(loc, scale=torch.exp(0.5 * logvar))
    assert by_logvar.batch_shape == (4,) and by_logvar.event_shape == (3,)
    assert torch.allclose(by_logvar.log_prob(z), ref.log_prob(z))
    assert torch.equal(by_logvar.log_prob(z), by_scale.log_prob(z))


def test_closed_forms_match_torch() -> None:
    torch.manual_seed(1)
    loc, logvar, eps = torch.randn(5, 2), torch.randn(5, 2), torch.randn(5, 2)
    z = loc + torch.exp(0.5 * logvar) * eps
    ref = diag_normal(loc, logvar).log_prob(z)
    assert torch.allclose(gaussian_log_prob(z, loc, logvar, lambda t: t.sum(-1)), ref, atol=1e-5)
    assert torch.allclose(gaussian_log_prob_eps(eps, logvar), ref, atol=1e-5)

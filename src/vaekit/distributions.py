"""Small pieces of probability shared by the priors, the models and the estimators."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent


def rsample(qz_x: Distribution, k: int, generator: torch.Generator | None = None) -> Tensor:
    """``k`` reparameterised draws z = mu + sigma * eps from a diagonal Gaussian, (k, B, D).

    With a ``generator`` the noise eps is drawn from it, so results repeat exactly under a seed.
    """
    base = qz_x.base_dist if isinstance(qz_x, Independent) else qz_x
    loc, scale = base.loc, base.scale
    eps = torch.randn((k, *loc.shape), generator=generator, device=loc.device, dtype=loc.dtype)
    return loc + scale * eps

"""Placeholder until the full suite lands: the package imports and a tiny model runs."""

import torch

from vaekit import VAE


def test_forward_shapes():
    model = VAE(data_shape=(6,), latent_dim=2, hidden=(8,))
    terms = model(torch.rand(5, 6), k=3)
    assert terms.log_w.shape == (3, 5)
    assert terms.kl.shape == (5,)

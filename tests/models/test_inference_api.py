"""The Python API's inference results are plain tensors: a model in eval mode (as ``vaekit.load``
and ``vaekit.fit`` leave it) builds no autograd graph through its weights, and log p(x) comes in
the model's dtype like the ELBO."""

from __future__ import annotations

import pytest
import torch
from test_protocol import KINDS, make

from vaekit import VAE


@pytest.mark.parametrize("name", sorted(KINDS))
def test_eval_mode_results_have_no_graph(name: str) -> None:
    model, x, kw = make(name)
    model.eval()
    q = model.encode(x, **kw)
    z = q.mean if hasattr(q, "mean") else q.probs
    assert not z.requires_grad
    z.numpy()  # raised "Can't call numpy() on Tensor that requires grad" before
    model.train()
    q = model.encode(x, **kw)
    assert (q.mean if hasattr(q, "mean") else q.probs).requires_grad  # training keeps the graph


def test_gradients_with_respect_to_an_input_still_flow() -> None:
    model, x = VAE(data_shape=(6,), latent_dim=2, hidden=(4,)), torch.rand(5, 6).round()
    model.eval()
    z = torch.zeros(3, 2, requires_grad=True)
    model.decode(z).log_prob(x[:3]).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.decoder.parameters())  # and to the weights


def test_log_likelihood_has_the_dtype_of_the_elbo() -> None:
    model, x = VAE(data_shape=(6,), latent_dim=2, hidden=(4,)), torch.rand(5, 6).round()
    model.eval()
    assert model.log_likelihood(x, k=8).dtype == model.elbo(x).dtype == torch.float32
    double = VAE(data_shape=(6,), latent_dim=2, hidden=(4,)).double().eval()
    assert double.log_likelihood(x.double(), k=8).dtype == torch.float64

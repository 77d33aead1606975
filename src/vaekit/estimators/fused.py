"""A fused importance-weighted log-likelihood on CUDA, for the common one-layer MLP VAE."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..likelihoods import BernoulliLikelihood
from ..priors import StandardNormalPrior

# -- fused importance-weighted log-likelihood on CUDA ---------------------------------------------
#
# At K = 5000 on 10,000 MNIST images the decoder runs on 5e7 latent samples: 4e10 logits. The
# general path writes them to memory and reads them back, chunk by chunk (3.7 s on an H100,
# BENCHMARKS.md), so for the common case (one hidden layer, relu or tanh, Bernoulli likelihood,
# N(0, I) prior) one Triton kernel (1.6 s) computes, per sample, z = mu + sigma * eps, both
# decoder layers and log w = log p(x|z) + log p(z) - log q(z|x), keeping the logits in
# registers. Noise comes from the seeded generator as in the general path; log-sum-exp over
# samples is in float64.

_FUSED_ACTIVATIONS = {"relu": 0, "tanh": 1}
_kernel_cache: dict[str, object] = {}


def _fused_kernel():
    if "k" in _kernel_cache:
        return _kernel_cache["k"]
    import triton
    import triton.language as tl

    @triton.jit
    def iw_bernoulli_kernel(
        eps_ptr,  # (B, K, L) standard normal noise
        mu_ptr,  # (B, L)
        sigma_ptr,  # (B, L)
        x_ptr,  # (B, D)
        w1_ptr,  # (H, L)
        b1_ptr,  # (H,)
        w2_ptr,  # (D, H)
        b2_ptr,  # (D,)
        out_ptr,  # (B, K) log-weights
        K,
        L,
        H,
        D,
        ACT: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_L: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_N: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        kb = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        rows = kb * BLOCK_M + tl.arange(0, BLOCK_M)
        rmask = rows < K
        ls = tl.arange(0, BLOCK_L)
        lmask = ls < L
        eps = tl.load(
            eps_ptr + b * K * L + rows[:, None] * L + ls[None, :],
            mask=rmask[:, None] & lmask[None, :],
            other=0.0,
        )
        mu = tl.load(mu_ptr + b * L + ls, mask=lmask, other=0.0)
        sigma = tl.load(sigma_ptr + b * L + ls, mask=lmask, other=1.0)
        z = mu[None, :] + sigma[None, :] * eps  # (BLOCK_M, BLOCK_L); padding columns are 0
        # log p(z) - log q(z|x); the 2 pi constants cancel.
        log_w = (
            -0.5 * tl.sum(z * z, 1)
            + 0.5 * tl.sum(eps * eps, 1)
            + tl.sum(tl.where(lmask, tl.log(sigma), 0.0), 0)
        )
        for n0 in range(0, D, BLOCK_N):
            ns = n0 + tl.arange(0, BLOCK_N)
            nmask = ns < D
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for h0 in range(0, H, BLOCK_H):
                hs = h0 + tl.arange(0, BLOCK_H)
                hmask = hs < H
                w1t = tl.load(
                    w1_ptr + hs[None, :] * L + ls[:, None],
                    mask=lmask[:, None] & hmask[None, :],
                    other=0.0,
                )
                b1 = tl.load(b1_ptr + hs, mask=hmask, other=0.0)
                h = tl.dot(z, w1t, input_precision=PRECISION) + b1[None, :]
                if ACT == 0:  # noqa: SIM108 (constexpr branch)
                    h = tl.maximum(h, 0.0)
                else:
                    h = 1.0 - 2.0 / (tl.exp(2.0 * h) + 1.0)
                w2t = tl.load(
                    w2_ptr + ns[None, :] * H + hs[:, None],
                    mask=hmask[:, None] & nmask[None, :],
                    other=0.0,
                )
                acc = tl.dot(h, w2t, acc, input_precision=PRECISION)
            b2 = tl.load(b2_ptr + ns, mask=nmask, other=0.0)
            xv = tl.load(x_ptr + b * D + ns, mask=nmask, other=0.0)
            logit = acc + b2[None, :]
            softplus = tl.maximum(logit, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(logit)))
            term = xv[None, :] * logit - softplus  # log Bernoulli(x | sigmoid(logit))
            log_w += tl.sum(tl.where(nmask[None, :], term, 0.0), 1)
        tl.store(out_ptr + b * K + rows, log_w, mask=rmask)

    _kernel_cache["k"] = iw_bernoulli_kernel
    return iw_bernoulli_kernel


def fused_applies(model: Any) -> str | None:
    """None when :func:`log_likelihood` can use the fused CUDA kernel for ``model``, else why."""
    c = model.config
    if model.device.type != "cuda":
        return "the model is not on a CUDA device"
    if model.kind != "vae":
        return f"model kind {model.kind!r} (the kernel is for the one-layer vae)"
    if not model.capabilities.forward_is_terms:
        return f"{type(model).__name__} overrides forward or encode"
    if c.network != "mlp":
        return f"network {c.network!r} (the kernel is for mlp)"
    if model.capabilities.conditional:
        return "the model is conditional"
    if type(model.likelihood) is not BernoulliLikelihood:
        return f"likelihood {c.likelihood!r} (the kernel is for bernoulli)"
    if type(model.prior) is not StandardNormalPrior:
        return f"prior {c.prior!r} (the kernel is for standard_normal)"
    if len(c.hidden) != 1 or c.activation not in _FUSED_ACTIVATIONS:
        return "the decoder is not one hidden layer with relu or tanh"
    if model._dtype != torch.float32:
        return "the model is not float32"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return None


@torch.no_grad()
def log_likelihood_fused(
    model: Any,
    x: Tensor,
    k: int,
    seed: int,
    precision: str,
    examples_per_pass: int,
    progress: bool,
) -> Tensor:
    import triton

    kernel = _fused_kernel()
    device = model.device
    g = torch.Generator(device=device).manual_seed(seed)
    c = model.config
    lin1, lin2 = model.decoder[0], model.decoder[2]
    w1, b1 = lin1.weight.contiguous(), lin1.bias.contiguous()  # (H, L), (H,)
    w2, b2 = lin2.weight.contiguous(), lin2.bias.contiguous()  # (D, H), (D,)
    L, H, D = c.latent_dim, c.hidden[0], c.data_dim
    block_m, block_n, block_h = 128, 64, 64
    n = x.shape[0]
    out = torch.empty(n, dtype=torch.float64)
    bar = tqdm(
        total=n * k, disable=not progress, unit="pass", unit_scale=True, desc="log p(x)",
        leave=False,
    )  # fmt: skip
    for start in range(0, n, examples_per_pass):
        xb = x[start : start + examples_per_pass].to(device).reshape(-1, D).float().contiguous()
        b = xb.shape[0]
        base = model.encode(xb.reshape(b, *c.data_shape)).base_dist
        mu, sigma = base.loc.contiguous(), base.scale.contiguous()  # (b, L)
        eps = torch.randn((b, k, L), generator=g, device=device)
        log_w = torch.empty((b, k), device=device)
        grid = (triton.cdiv(k, block_m), b)
        kernel[grid](
            eps, mu, sigma, xb, w1, b1, w2, b2, log_w, k, L, H, D,
            ACT=_FUSED_ACTIVATIONS[c.activation],
            BLOCK_M=block_m,
            BLOCK_L=max(16, triton.next_power_of_2(L)),
            BLOCK_H=block_h,
            BLOCK_N=block_n,
            PRECISION=precision,
            num_warps=8,
        )  # fmt: skip
        out[start : start + b] = (torch.logsumexp(log_w.double(), dim=1) - math.log(k)).cpu()
        bar.update(b * k)
    bar.close()
    return out

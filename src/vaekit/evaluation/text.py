"""The report on a text model: bits per character or word, and reconstructions in strings."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..estimators import elbo, examples, keeps_mode, latent_stats, log_likelihood
from ..tokenizer import PAD, lengths


@keeps_mode
@torch.no_grad()
def evaluate_text(
    model: nn.Module, x: Tensor, *, k: int = 100, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """The report on strings ``x`` (N, T) of token ids (a tensor or numpy array) as plain
    numbers.

    Keys: ``n``, ``elbo`` and ``log_likelihood`` (nats per string, the latter a K-sample
    importance-weighted estimate), ``k``, ``tokens_per_string`` (end token included),
    ``bits_per_char`` (-log2 p(x) per token, end token included; ``bits_per_word`` instead for a
    word-level model, whose tokens are words; also as ``bits_per_dim``),
    ``kl`` (nats) and ``kl_per_dim``, ``active_units`` (Var_x E[z_d|x] > 0.01), and of the
    greedy reconstructions at E[z|x]: ``exact_reconstruction`` (fraction of strings) and
    ``token_accuracy`` (fraction of tokens, end token included).
    """
    x = examples(model, x)  # a numpy array of ids too, checked once
    model.eval()
    elbos = elbo(model, x, seed=seed)
    ll = log_likelihood(model, x, k=k, seed=seed, progress=progress)
    stats = latent_stats(model, x)
    n_tokens = lengths(x)
    exact = hits = 0
    for i in range(0, x.shape[0], 1000):
        xb = x[i : i + 1000].to(model.device)
        rec = model.reconstruct(xb)
        mask = xb != PAD
        hits += int(((rec == xb) & mask).sum())
        exact += int((rec == xb).all(-1).sum())
    total_tokens = int(n_tokens.sum())
    bits = float(-ll.sum() / (total_tokens * math.log(2)))
    return {
        "n": int(x.shape[0]),
        "elbo": float(elbos.mean()),
        "log_likelihood": float(ll.mean()),
        "k": int(k),
        "tokens_per_string": total_tokens / x.shape[0],
        f"bits_per_{'word' if model.config.level == 'word' else 'char'}": bits,
        "bits_per_dim": bits,
        "kl": float(stats["kl_per_dim"].sum()),
        "kl_per_dim": [round(float(v), 6) for v in stats["kl_per_dim"]],
        "active_units": int((stats["activity"] > 0.01).sum()),
        "exact_reconstruction": exact / x.shape[0],
        "token_accuracy": hits / total_tokens,
    }

"""The per-example ELBO and importance-weighted log p(x) of :mod:`vaekit.estimators`, with the
examples split over the processes of a process group and the results gathered, so that N
processes give the numbers of one process (same seed) in about 1/N of the time.

One process's estimators draw the noise of each chunk of examples from one seeded generator, in
order. Here every process draws the noise of every chunk in the same order and keeps the rows of
its own examples (a contiguous share, :func:`vaekit.dist.shard`), so each example meets the
noise it meets in one process; the values are then gathered by an all-reduce in which each
position has one non-zero term (exact). Drawing the noise of the other examples costs
``samples x noise_dim`` normal draws per example and sample, small beside the decoder.

This needs a model whose ``forward`` is its ``terms`` with fresh noise (capability
``forward_is_terms``): the others draw their noise inside ``forward``, and every process then
computes every example (same numbers, no speed-up). Without a group of several processes these
are the functions of :mod:`vaekit.estimators`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..config import check_count
from ..dist import Group, all_reduce_sum, current
from ..objectives import elbo as elbo_bound
from . import (
    MAX_DECODER_PASSES,
    _rows_per_chunk,
    check_passes,
    condition_rows,
    conditions_of,
    examples,
    fused_applies,
    keeps_mode,
    passes_bar,
    seeded_generator,
)
from . import elbo as plain_elbo
from . import log_likelihood as plain_log_likelihood


def _shares(model: Any, group: Group) -> bool:
    """Whether the processes of ``group`` split the examples (else each computes them all)."""
    return group.active and model.capabilities.forward_is_terms


def _gather(values: Tensor, lo: int, n: int, group: Group) -> Tensor:
    """The (n,) vector whose rows [lo, lo + len(values)) are this process's ``values`` and the
    rest the other processes' (an all-reduce of zeros but for each one's rows: exact)."""
    full = torch.zeros(n, dtype=values.dtype, device=group.device)
    full[lo : lo + values.shape[0]] = values.to(group.device)
    return all_reduce_sum(group, full, "the gathering of estimates").cpu()


def _noise(model: Any, k: int, b: int, g: torch.Generator) -> Tensor:
    """Standard normal noise (k, b, noise_dim) as ``model.forward`` draws it from ``g``."""
    shape = (k, b, model.noise_dim)
    return torch.randn(shape, generator=g, device=model.device, dtype=model._dtype)


@keeps_mode
@torch.no_grad()
def elbo(
    model: Any,
    x: Any,
    *,
    samples: int = 1,
    seed: int = 0,
    batch_size: int = 1000,
    condition: Any = None,
    group: Group | None = None,
) -> Tensor:
    """:func:`vaekit.estimators.elbo` (ELBO per example, nats, (N,)) with the examples shared by
    the processes of ``group`` (None: the current process group, if any); every process gets the
    whole (N,) result."""
    group = current() if group is None else group
    if not _shares(model, group):
        return plain_elbo(
            model, x, samples=samples, seed=seed, batch_size=batch_size, condition=condition
        )
    check_count("samples", samples)
    check_count("batch_size", batch_size)
    x = examples(model, x)
    model.eval()
    condition = conditions_of(model, condition, x.shape[0])
    n = x.shape[0]
    lo, hi = group.shard(n)
    g = seeded_generator(model.device, seed)
    parts = []
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        eps = _noise(model, samples, b, g)  # (samples, b, noise_dim), drawn for the whole chunk
        a, z = max(lo, i), min(hi, i + b)  # this process's rows of the chunk
        if a >= z:
            continue
        kw = condition_rows(condition, a, z - a)
        terms = model.terms(x[a:z].to(model.device), eps[:, a - i : z - i], **kw)
        parts.append(elbo_bound(terms).cpu())
    mine = torch.cat(parts) if parts else torch.empty(0)
    return _gather(mine, lo, n, group)


@keeps_mode
@torch.no_grad()
def log_likelihood(
    model: Any,
    x: Any,
    k: int = 5000,
    *,
    seed: int = 0,
    rows_per_chunk: int | None = None,
    progress: bool = False,
    fused: bool | None = None,
    matmul_precision: str = "tf32x3",
    condition: Any = None,
    group: Group | None = None,
    max_passes: int | None = MAX_DECODER_PASSES,
) -> Tensor:
    """:func:`vaekit.estimators.log_likelihood` (log p(x) per example, nats, (N,) float64) with
    the examples shared by the processes of ``group`` (None: the current group). The chunks are
    those of one process; each process draws every chunk's noise and computes its own rows.
    Where the fused CUDA kernel applies, every process runs it on all examples."""
    group = current() if group is None else group
    check_count("k", k)
    x = examples(model, x)
    check_passes(k, x.shape[0], max_passes)
    condition = conditions_of(model, condition, x.shape[0])
    fused_here = fused is not False and condition is None and fused_applies(model) is None
    if not _shares(model, group) or fused_here:
        return plain_log_likelihood(
            model,
            x,
            k,
            seed=seed,
            rows_per_chunk=rows_per_chunk,
            progress=progress and group.main,
            fused=fused,
            matmul_precision=matmul_precision,
            condition=condition,
            max_passes=max_passes,
        )
    model.eval()
    device = model.device
    g = seeded_generator(device, seed)
    rows = rows_per_chunk or _rows_per_chunk(model, device)
    n = x.shape[0]
    lo, hi = group.shard(n)
    batch = max(1, min(n, rows // k))  # examples per pass, as one process takes them
    k_chunk = max(1, min(k, rows // batch))  # samples per pass
    out = torch.empty(hi - lo, dtype=torch.float64)
    bar = passes_bar(n * k, progress and group.main)
    for start in range(0, n, batch):
        b = min(batch, n - start)
        a, z = max(lo, start), min(hi, start + b)  # this process's rows of the chunk
        xb = x[a:z].to(device)
        total = torch.full((max(z - a, 0),), -math.inf, device=device, dtype=torch.float64)
        for k0 in range(0, k, k_chunk):
            eps = _noise(model, min(k_chunk, k - k0), b, g)
            if a < z:
                kw = condition_rows(condition, a, z - a)
                log_w = model.terms(xb, eps[:, a - start : z - start], **kw).log_w
                total = torch.logaddexp(total, torch.logsumexp(log_w.double(), dim=0))
            bar.update(eps.shape[0] * b)
        if a < z:
            out[a - lo : z - lo] = (total - math.log(k)).cpu()
    bar.close()
    return _gather(out, lo, n, group)

"""Per-example scores for anomaly detection: each example's importance-weighted log p(x), ELBO,
reconstruction term and KL, its percentile against a reference set, and the AUROC of a score
where labels mark the outliers.

Likelihood alone is a known weak out-of-distribution score: a model may give inputs unlike its
training data a *higher* log p(x) than its own test data (Nalisnick et al. 2019, "Do deep
generative models know what they don't know?"). :func:`typicality` is the remedy of Nalisnick et
al. 2019b ("Detecting out-of-distribution inputs to deep generative models using typicality"),
for one example at a time: how far -log p(x) lies from the reference's mean, either side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import check_count
from ..errors import DataError
from ..estimators import (
    condition_rows,
    conditions_of,
    examples,
    keeps_mode,
    log_likelihood,
    seeded_generator,
)

#: The per-example columns of :func:`example_scores`, in order (nats).
SCORE_COLUMNS = ("log_px", "elbo", "recon", "kl")


@keeps_mode
@torch.no_grad()
def example_scores(
    model: Any,
    x: Tensor,
    *,
    k: int = 1000,
    seed: int = 0,
    batch_size: int = 1000,
    condition: Tensor | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-example scores of ``x`` (N, *data_shape), each (N,) float64 in nats, in ``x``'s order:

    - ``log_px``: the K-sample importance-weighted log p(x), exactly
      ``vaekit.log_likelihood(model, x, k, seed=seed)``;
    - ``elbo``: the one-sample ELBO, exactly ``vaekit.estimators.elbo(model, x, seed=seed)``,
      and its two terms from the same draw: ``recon`` = E_q[log p(x|z)] and ``kl`` =
      KL(q(z|x) || p(z)) (closed form where the model has one), so ``elbo = recon - kl``.
    """
    check_count("k", k)
    check_count("batch_size", batch_size)
    x = examples(model, x)
    condition = conditions_of(model, condition, x.shape[0])
    kw = {} if condition is None else {"condition": condition}
    log_px = log_likelihood(model, x, k=k, seed=seed, progress=progress, **kw)
    model.eval()
    g = seeded_generator(model.device, seed)
    recon, kl = [], []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].to(model.device)
        terms = model(xb, k=1, generator=g, **condition_rows(condition, i, batch_size))
        recon.append(terms.expect(terms.log_px_z).double().cpu())
        kl.append(terms.kl_estimate.double().cpu())
    r, q = torch.cat(recon).numpy(), torch.cat(kl).numpy()
    return {"log_px": log_px.double().numpy(), "elbo": r - q, "recon": r, "kl": q}


def percentiles(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The percentile of each of ``values`` (N,) among ``reference`` (M,): the percentage of the
    reference below it, ties counted half (``scipy.stats.percentileofscore``'s "mean" kind).
    (N,) in [0, 100]; a low value is unusual where a higher score is more normal."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    if ref.size == 0:
        raise DataError("the reference set is empty; give one with examples")
    v = np.asarray(values, dtype=np.float64)
    below = np.searchsorted(ref, v, side="left")
    at_most = np.searchsorted(ref, v, side="right")
    return 100.0 * (below + at_most) / (2.0 * ref.size)


def typicality(log_px: np.ndarray, reference_log_px: np.ndarray) -> np.ndarray:
    """How atypical each example is (nats, >= 0): | -log p(x) - H |, where H is the mean of
    -log p(x) over the reference, the typicality test statistic for a batch of one (Nalisnick et
    al. 2019b). Inputs of a higher likelihood than the reference's are atypical too."""
    entropy = -float(np.mean(reference_log_px))
    return np.abs(-np.asarray(log_px, dtype=np.float64) - entropy)


def auroc(outlier: np.ndarray, anomaly: np.ndarray) -> float:
    """The area under the ROC curve of ``anomaly`` (N,; higher: more anomalous) for the
    examples that ``outlier`` (N,; bool) marks (scikit-learn's ``roc_auc_score``)."""
    from sklearn.metrics import roc_auc_score

    outlier = np.asarray(outlier, dtype=bool)
    if outlier.all() or not outlier.any():
        raise DataError(
            f"the AUROC needs outliers and inliers; the labels mark {int(outlier.sum())} of "
            f"{outlier.size} examples as outliers"
        )
    return float(roc_auc_score(outlier, np.asarray(anomaly, dtype=np.float64)))

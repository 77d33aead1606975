"""Examples with chosen factor values, for the scores that hold one factor fixed: drawn anew for
generated data (``shapes``), looked up among the examples of a data set with a factors array."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError

if TYPE_CHECKING:
    from ..data import Dataset


class FactorSampler:
    """Draws (factors, examples) from a data set with known class factors.

    For a data set with ``render_factors`` (``shapes``), factors are drawn uniformly over every
    combination and the examples drawn for them, so a fixed factor leaves the others free over
    their whole range. Otherwise the examples of every split form a pool: :meth:`sample` draws
    examples of it, :meth:`matching` draws, for each wanted value, one of the examples whose
    factor has that value (the other factors as they occur in the data).
    """

    def __init__(self, dataset: Dataset) -> None:
        parts = [dataset.train_factors, dataset.valid_factors, dataset.test_factors]
        if any(p is None for p in parts):
            raise DataError(
                f"data set {dataset.name!r} has no factors of variation; use shapes, dsprites or "
                "give a factors file (factors=FILE)"
            )
        factors = np.concatenate(parts)
        if factors.dtype.kind not in "iu":
            raise DataError(
                f"the factors of {dataset.name!r} are real values; the fixed-factor scores need "
                "class factors (integers)"
            )
        self.factors = factors  # (N, F) over train, valid, test
        self.num_factors = factors.shape[1]
        self.sizes = dataset.factor_sizes
        self.render = dataset.render_factors
        self.splits = [dataset.train, dataset.valid, dataset.test]
        self.offsets = np.cumsum([0] + [len(s) for s in self.splits])
        self._sorted: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _take(self, index: np.ndarray) -> Tensor:
        """Examples at positions ``index`` of the pool (train, valid, test in turn)."""
        out = torch.empty((len(index), *self.splits[0].shape[1:]), dtype=self.splits[0].dtype)
        which = np.searchsorted(self.offsets, index, side="right") - 1
        for s, split in enumerate(self.splits):
            rows = np.nonzero(which == s)[0]
            if len(rows):
                out[torch.from_numpy(rows)] = split[torch.from_numpy(index[rows] - self.offsets[s])]
        return out

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, Tensor]:
        """``n`` factor rows (n, F) and their examples (n, ...)."""
        if self.render is not None and self.sizes is not None:
            factors = rng.integers(0, self.sizes, size=(n, self.num_factors))
            return factors, self.render(factors)
        index = rng.integers(0, len(self.factors), size=n)
        return self.factors[index], self._take(index)

    def values(self, ks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A value of factor ``ks[i]`` for each i, (n,): uniform over its classes for generated
        data, else that of a random example."""
        ks = np.asarray(ks)
        if self.render is not None and self.sizes is not None:
            return rng.integers(0, np.asarray(self.sizes)[ks])
        return self.factors[rng.integers(0, len(self.factors), size=len(ks)), ks]

    def matching(
        self, k: int, values: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, Tensor]:
        """For each of ``values`` (n,), factors (n, F) whose column ``k`` holds it and an example
        of them (n, ...); the other factors are drawn as in :meth:`sample`."""
        values = np.asarray(values)
        if self.render is not None and self.sizes is not None:
            factors = rng.integers(0, self.sizes, size=(len(values), self.num_factors))
            factors[:, k] = values
            return factors, self.render(factors)
        if k not in self._sorted:
            order = np.argsort(self.factors[:, k], kind="stable")
            self._sorted[k] = (order, self.factors[order, k])
        order, column = self._sorted[k]
        lo = np.searchsorted(column, values, side="left")
        hi = np.searchsorted(column, values, side="right")
        if (hi <= lo).any():
            raise DataError(f"no example has factor {k} = {values[hi <= lo][0]}")
        index = order[lo + (rng.random(len(values)) * (hi - lo)).astype(np.int64)]
        return self.factors[index], self._take(index)


def representation(model: Any, x: Tensor, batch_size: int = 1024) -> np.ndarray:
    """The mean of q(z|x) for examples ``x`` (N, ...), (N, D) float64, in batches, on the
    model's device; the representation every score of :mod:`vaekit.metrics` judges."""
    caps = getattr(model, "capabilities", None)
    if caps is not None and getattr(caps, "discrete_latent", False):
        raise DataError("the model's latents are discrete; the metrics judge continuous latents")
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        device = torch.device("cpu")
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            mean = model.encode(x[start : start + batch_size].to(device)).mean
            out.append(mean.reshape(len(mean), -1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))

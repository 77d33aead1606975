"""A trained run as the server holds it: its model (read-only), what its examples are, and the
latent plane the explorer draws.

Each method that calls the model takes the run's lock: a torch module is not safe to call from
several threads at once, and the server calls models from a pool of threads so that the event
loop (and ``/healthz``) never waits for one. Draws from torch's global random generator (the
prior's samples) also take :data:`RNG_LOCK`, under a generator seeded by the request.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import viz
from ..errors import DataError, VaekitError
from ..estimators import latent_stats
from ..estimators import log_likelihood as iw_log_likelihood
from ..media import media_kind, media_of
from ..reading import read_json
from ..runs import EVAL_FILE, METRICS_FILE
from .settings import RequestError

#: Held while torch's global random generator is seeded and drawn from.
RNG_LOCK = threading.Lock()
#: Draws from the prior that place the explorer's sliders (their 0.5% and 99.5% quantiles).
PRIOR_DRAWS = 2000
#: Examples encoded in one pass when the explorer's points are made.
POINTS_BATCH = 500


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's global generator seeded with ``seed`` for the block, then put back, with no other
    thread drawing from it meanwhile."""
    with RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def json_safe(value: Any) -> Any:
    """``value`` (dicts, lists, numbers, strings) with NaN and infinities as None: JSON has no
    such numbers (metrics.jsonl of a run whose bound went non-finite may hold them)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ServedRun:
    """The run ``name``: ``model`` in evaluation mode without gradients, ``config`` (its
    config.json as a dict) and, when given, test ``examples`` (N, *data_shape) with their
    ``labels`` (N,): the explorer's dots (at most ``max_points`` of them are encoded)."""

    def __init__(
        self,
        name: str,
        model: Any,
        config: dict[str, Any],
        *,
        path: Path | None = None,
        examples: Tensor | None = None,
        labels: Tensor | None = None,
        max_points: int = 1000,
    ) -> None:
        self.name, self.model, self.config, self.path = name, model, config, path
        model.eval()
        model.requires_grad_(False)
        self.lock = threading.Lock()
        self.media = media_of(config, model)
        self.kind = media_kind(config)  # "text", "audio" or None
        caps = model.capabilities
        self.discrete = bool(caps.discrete_latent)
        self.condition_dim = int(model.config.condition_dim) if caps.conditional else 0
        self.image_shape = self._image_shape()
        self.audio = self.media.settings() if self.kind == "audio" else None
        self.examples: Tensor | None = None
        self.labels: Tensor | None = None
        if examples is not None and max_points > 0 and len(examples):
            self.examples = examples[:max_points].float()
            self.labels = None if labels is None else labels[:max_points].long()
        self.points, self.kl_per_dim = self._points()
        self.plane = None if self.discrete else self._plane()

    @classmethod
    def open(
        cls,
        path: str | Path,
        name: str | None = None,
        *,
        device: str = "cpu",
        examples: Tensor | None = None,
        labels: Tensor | None = None,
        max_points: int = 1000,
    ) -> ServedRun:
        """The run folder (or one-file model) at ``path``, served as ``name`` (default: the
        folder's name)."""
        from ..models import load, read_config

        path = Path(path)
        config = read_config(path)
        model = load(path, device=device)
        return cls(
            name or path.name.removesuffix(".safetensors"),
            model,
            config,
            path=path,
            examples=examples,
            labels=labels,
            max_points=max_points,
        )

    # -- what the run is ---------------------------------------------------------------------

    def _image_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) of one example drawn as a picture, or None (text, tables)."""
        if self.kind == "text":
            return None
        data = self.config.get("data") if isinstance(self.config.get("data"), dict) else {}
        try:
            shape = viz.image_shape(
                self.model.config.data_shape, data.get("image_shape"), data.get("name")
            )
        except VaekitError:
            return None
        return shape if len(shape) == 3 else (1, *shape)

    @property
    def media_name(self) -> str:
        """ "text", "audio", "image" or "array" (a table's rows)."""
        if self.kind in ("text", "audio"):
            return self.kind
        return "image" if self.image_shape is not None else "array"

    @property
    def value_range(self) -> list[float] | None:
        """The values that map to black and white in a picture: [0, 1] for data in the unit
        interval, else None (each picture scaled to its own range)."""
        return [0.0, 1.0] if self.model.likelihood.support == "unit" else None

    def describe(self) -> dict[str, Any]:
        """What ``GET /runs`` says of the run."""
        c = self.model.config
        out: dict[str, Any] = {
            "name": self.name,
            "model": self.model.kind,
            "media": self.media_name,
            "data_shape": list(c.data_shape),
            "latent_dim": int(c.latent_dim),
            "latent": "categorical" if self.discrete else "gaussian",
            "likelihood": str(getattr(c, "likelihood", "")),
            "prior": str(getattr(c, "prior", "standard_normal")),
            "condition_dim": self.condition_dim,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "value_range": self.value_range,
            "flip_rows": self.kind == "audio",
            "exact_likelihood": bool(self.model.capabilities.exact_likelihood),
            "points": 0 if self.points is None else len(self.points),
            "plane": self.plane,
            "metrics": json_safe(self.metrics()),
        }
        if self.discrete:
            out["n_latents"], out["n_categories"] = int(c.n_latents), int(c.n_categories)
        if self.kind == "text":
            out["max_length"] = int(c.data_dim) - 1
        return out

    def metrics(self) -> dict[str, Any]:
        """The last epoch of ``metrics.jsonl`` and ``eval.json``, where the run has them."""
        out: dict[str, Any] = {}
        if self.path is None or not self.path.is_dir():
            return out
        with contextlib.suppress(DataError):  # checked as info and curves check it
            out["last_epoch"] = viz.read_metrics(self.path / METRICS_FILE)[-1]
        try:
            report = read_json(self.path / EVAL_FILE, DataError, "evaluation report")
            if isinstance(report, dict):
                out["eval"] = report
        except (OSError, VaekitError):
            pass
        return out

    # -- the explorer's plane ----------------------------------------------------------------

    def _points(self) -> tuple[Tensor | None, list[float] | None]:
        """E[z|x] of the test examples (N, latent_dim) and each dim's average KL from them."""
        if self.examples is None or self.discrete:
            return None, None
        if self.condition_dim and self.labels is None:
            return None, None  # a conditional run's dots need the examples' labels
        x = self.examples
        cond = self.conditions(self.labels, len(x), "labels") if self.condition_dim else None
        with self.lock, torch.no_grad():
            means = []
            for i in range(0, len(x), POINTS_BATCH):
                kw = {} if cond is None else {"condition": cond[i : i + POINTS_BATCH]}
                means.append(self.model.encode(x[i : i + POINTS_BATCH], **kw).mean.cpu())
            kw = {} if cond is None else {"condition": cond}
            stats = latent_stats(self.model, x, **kw)
        return torch.cat(means).float(), [float(v) for v in stats["kl_per_dim"]]

    def _plane(self) -> dict[str, Any]:
        """The explorer's plane: the two dims of largest KL (0 and 1 without test examples),
        and for every dim a range (the prior's 0.5% to 99.5% quantiles, widened to take in
        every dot) and a centre (the prior's median), where sliders start."""
        dim = int(self.model.config.latent_dim)
        with self.lock, torch.no_grad(), seeded(0):
            draws = self.model.sample_latents(PRIOR_DRAWS).detach().cpu().double()
        q = torch.tensor([0.005, 0.5, 0.995], dtype=torch.float64)
        low, centre, high = torch.quantile(draws, q, dim=0)
        if self.points is not None:
            low = torch.minimum(low, self.points.double().min(0).values)
            high = torch.maximum(high, self.points.double().max(0).values)
        kl = self.kl_per_dim or [0.0] * dim
        dims = list(viz.top_dims(kl, min(2, dim))) if self.kl_per_dim else list(range(min(2, dim)))
        return {
            "dims": dims,
            "low": [round(float(v), 4) for v in low],
            "high": [round(float(v), 4) for v in high],
            "centre": [round(float(v), 4) for v in centre],
            "kl_per_dim": self.kl_per_dim,
        }

    # -- inputs ------------------------------------------------------------------------------

    def conditions(self, labels: Any, n: int, field: str = "labels") -> Tensor | None:
        """The conditions of ``n`` examples from ``labels`` (one int, or one per example), as
        the model takes them; None for a run that is not conditional."""
        if not self.condition_dim:
            if labels is not None:
                raise RequestError(field, f"{field}: this run is not conditional; give none")
            return None
        if labels is None:
            raise RequestError(
                field,
                f"this run is conditional (condition_dim = {self.condition_dim}): give {field}, "
                f"one label in 0..{self.condition_dim - 1} or one per example",
            )
        if isinstance(labels, list) and len(labels) != n:
            raise RequestError(field, f"{field} has {len(labels)} labels for {n} examples")
        try:
            return self.model.condition(torch.as_tensor(labels, dtype=torch.int64), n)
        except DataError as err:
            raise RequestError(field, f"{field}: {err}") from None

    def latents(self, z: Tensor, field: str = "z") -> Tensor:
        """Latents (N, latent_dim) checked against the model's width."""
        dim = int(self.model.config.latent_dim)
        if z.ndim != 2 or z.shape[1] != dim:
            raise RequestError(
                field,
                f"{field} has shape {tuple(z.shape)} but the run's latent_dim is {dim}; give "
                f"rows of {dim} numbers",
            )
        return z

    def codes(self, codes: Tensor, field: str = "codes") -> Tensor:
        """One-hot latents (N, n_latents * n_categories) of a categorical run from each
        latent's value (N, n_latents)."""
        c = self.model.config
        if not self.discrete:
            raise RequestError(field, f"{field} is for runs with categorical latents; give z")
        if codes.ndim != 2 or codes.shape[1] != c.n_latents:
            raise RequestError(
                field, f"{field} has shape {tuple(codes.shape)}; give rows of {c.n_latents} values"
            )
        if bool((codes != codes.round()).any()) or codes.min() < 0 or codes.max() >= c.n_categories:
            raise RequestError(field, f"{field} must hold whole numbers in 0..{c.n_categories - 1}")
        one_hot = torch.nn.functional.one_hot(codes.long(), int(c.n_categories))
        return one_hot.reshape(len(codes), -1).float()

    def token_ids(self, x: Tensor, field: str = "x") -> Tensor:
        """Token ids (N, T) of a text run, checked: whole numbers in the vocabulary, each row
        starting with a token."""
        t, size = int(self.model.config.data_dim), int(self.model.tokenizer.size)
        if x.ndim != 2 or x.shape[1] != t:
            raise RequestError(
                field, f"{field} has shape {tuple(x.shape)}; a text run takes rows of {t} ids"
            )
        if bool((x != x.round()).any()) or x.min() < 0 or x.max() >= size:
            raise RequestError(field, f"{field} must hold whole token ids in 0..{size - 1}")
        if bool((x[:, 0] == 0).any()):
            raise RequestError(field, f"{field} has an empty row (padding only)")
        return x

    # -- the model's answers -----------------------------------------------------------------

    @contextmanager
    def using(self) -> Iterator[None]:
        """The model to oneself, without gradients."""
        with self.lock, torch.no_grad():
            yield

    def encode(self, x: Tensor, condition: Tensor | None) -> dict[str, Tensor]:
        """q(z|x) of examples ``x``: ``mean`` and ``logvar`` (N, latent_dim), or for
        categorical latents ``probs`` (N, n_latents, n_categories)."""
        kw = {} if condition is None else {"condition": condition}
        with self.using():
            qz_x = self.model.encode(x, **kw)
            if self.discrete:
                return {"probs": qz_x.probs}
            base = qz_x.base_dist
            return {"mean": base.loc, "logvar": 2 * base.scale.log()}

    def decode(self, z: Tensor, condition: Tensor | None) -> Tensor:
        """E[x|z] (N, *data_shape): the means of p(x|z), or greedy strings' ids for text."""
        kw = {} if condition is None else {"condition": condition}
        with self.using():
            return self.model.decode(z, **kw).mean

    def sample(
        self, n: int, seed: int, condition: Tensor | None, temperature: float | None
    ) -> dict[str, Tensor]:
        """``n`` latents z ~ p(z) (seeded) and E[x|z]. ``temperature`` scales the latents of a
        N(0, I) prior (z = temperature * eps)."""
        if temperature is not None and not self.model.standard_normal_latents:
            raise RequestError(
                "temperature",
                "temperature scales draws from a N(0, I) prior; this run's prior is "
                f"{getattr(self.model.config, 'prior', 'not N(0, I)')}: give none",
            )
        kw = {} if condition is None else {"condition": condition}
        with self.using():
            with seeded(seed):
                z = self.model.sample_latents(n)
            if temperature is not None:
                z = z * temperature
            return {"z": z, "x": self.model.decode(z, **kw).mean}

    def reconstruct(self, x: Tensor, condition: Tensor | None) -> dict[str, Tensor]:
        """E[x|z] at z = E[z|x] (each latent's most probable value for categorical latents)."""
        kw = {} if condition is None else {"condition": condition}
        with self.using():
            qz_x = self.model.encode(x, **kw)
            z = qz_x.mode if self.discrete else qz_x.mean
            return {"z": z, "x": self.model.decode(z, **kw).mean}

    def interpolate(self, ends: Tensor, steps: int, condition: Tensor | None) -> dict[str, Tensor]:
        """``steps`` latents evenly spaced from ``ends[0]`` to ``ends[1]`` and E[x|z] at each."""
        z = viz.interpolation_latents(ends[0], ends[1], steps)
        kw = {} if condition is None else {"condition": condition}
        with self.using():
            return {"z": z, "x": self.model.decode(z, **kw).mean}

    def encode_ends(self, x: Tensor, condition: Tensor | None) -> Tensor:
        """E[z|x] of two examples, the ends of an interpolation."""
        return self.encode(x, condition)["mean"]

    def log_likelihood(self, x: Tensor, k: int, seed: int, condition: Any) -> dict[str, Any]:
        """Importance-weighted log p(x) in nats (N,) from ``k`` samples each, and the exact
        value where the model can enumerate its latents."""
        with self.using():
            out: dict[str, Any] = {
                "log_likelihood": iw_log_likelihood(
                    self.model, x, k, seed=seed, condition=condition
                )
            }
            if self.model.capabilities.exact_likelihood:
                out["exact"] = self.model.log_likelihood_exact(x)
        return out

    def example(self, index: int) -> dict[str, Any]:
        """Test example ``index``: its values, label, E[z|x] and reconstruction."""
        if self.examples is None:
            raise RequestError("index", f"run {self.name!r} has no test examples loaded", 404)
        if not 0 <= index < len(self.examples):
            raise RequestError(
                "index", f"index {index} is outside 0..{len(self.examples) - 1}", 404
            )
        x = self.examples[index : index + 1]
        label = None if self.labels is None else int(self.labels[index])
        cond = self.conditions(label, 1) if self.condition_dim else None
        out = self.reconstruct(x, cond)
        return {"x": x, "label": label, "z": out["z"], "reconstruction": out["x"]}

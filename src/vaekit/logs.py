"""Training logs for TensorBoard: a callback of :func:`vaekit.fit` (see
:mod:`vaekit.train.callbacks`) that writes event files with ``torch.utils.tensorboard``.

What it writes into its folder (``RUN/tensorboard`` from ``vaekit train --log tensorboard``):

- each step (the eager loop; once an epoch on the fast path): ``step/bound`` (the batch's mean
  training bound, nats), ``step/lr``, ``step/beta``, ``step/skipped_steps``,
  ``step/examples_per_s``, at the run's good-step count;
- each epoch: ``epoch/train_bound``, ``epoch/valid_elbo`` (the run's own, when it validates),
  and on the first ``examples`` validation examples (one draw each, seed 0) ``epoch/recon``
  (E_q[log p(x|z)]), ``epoch/kl`` and ``kl_per_dim/zNN`` (KL of each latent dimension, nats);
  for image data, ``samples`` (decoded means of 64 fixed prior draws) and ``reconstructions``
  (8 validation examples above their reconstructions);
- at the end: the posterior means of up to ``embed`` test examples for the Embedding Projector,
  with their labels and thumbnails (``test_latents``).

TensorBoard is an optional extra (``pip install 'vaekit[tensorboard]'``). Logging never breaks
a run: the first failure (a folder that cannot be written, a full disk) is reported once through
``warn`` and the log writes nothing more. Nothing here draws from torch's global random state,
so a run trains the same weights with the log as without it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError, VaekitError
from .estimators import latent_stats
from .runs import TENSORBOARD_FOLDER

if TYPE_CHECKING:
    from .data import Dataset

#: What ``vaekit train --log`` accepts.
LOGGERS = ("tensorboard",)
#: Prior draws in the sample grid; validation examples in the reconstruction grid.
GRID_SAMPLES, GRID_PAIRS = 64, 8


def require_tensorboard() -> None:
    """A :class:`ConfigError` naming the extra to install when TensorBoard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(
            "TensorBoard logs need the tensorboard package: pip install 'vaekit[tensorboard]'"
        ) from None


def tensorboard_log(
    model: Any,
    dataset: Dataset,
    config: Any,
    run: str | Path,
    warn: Callable[[str], None] | None = None,
) -> TensorBoardLog:
    """The log that ``vaekit train --log tensorboard`` writes into ``RUN/tensorboard``: the
    validation split (binarised as ``fit`` binarises it under ``binarize="dynamic"``) for the
    per-epoch terms, the test split with its labels for the projector, pictures where the
    examples are images."""
    valid = dataset.valid
    if getattr(config, "binarize", "none") == "dynamic":
        g = torch.Generator().manual_seed(config.seed + 1)
        valid = torch.bernoulli(valid, generator=g)  # as fit's validation data
    conditional = model.capabilities.conditional
    dim = int(model.config.condition_dim) if conditional else 0

    def condition(labels: Tensor | None) -> Tensor | None:
        return None if not dim or labels is None else model.condition(labels, len(labels))

    return TensorBoardLog(
        Path(run) / TENSORBOARD_FOLDER,
        valid=valid,
        test=dataset.test,
        test_labels=dataset.test_labels,
        label_names=dataset.label_names,
        image_shape=_image_shape(model, dataset),
        valid_condition=condition(dataset.valid_labels),
        test_condition=condition(dataset.test_labels),
        warn=warn,
    )


def _image_shape(model: Any, dataset: Dataset) -> tuple[int, ...] | None:
    """How to draw the run's examples, or None where they are not images (text, sound, a
    table whose width is no square)."""
    from .viz import image_shape

    if dataset.media is not None or model.capabilities.tokens:
        return None
    try:
        return image_shape(model.config.data_shape, dataset.image_shape, dataset.name)
    except VaekitError:
        return None


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


class TensorBoardLog:
    """A :func:`vaekit.fit` callback writing TensorBoard event files into ``folder``.

    ``valid`` (N, *data_shape): examples for the per-epoch terms, KL per dimension and
    reconstructions (the first ``examples``); ``test`` with ``test_labels`` (N,) and
    ``label_names``: examples for the Embedding Projector (the first ``embed``).
    ``image_shape`` ((H, W) or (C, H, W)): draw examples as images (None: no pictures).
    ``valid_condition``/``test_condition``: one condition per example for a conditional model.
    ``warn(message)`` reports the one failure (default: a :class:`RuntimeWarning`).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        valid: Tensor | None = None,
        test: Tensor | None = None,
        test_labels: Tensor | None = None,
        label_names: list[str] | None = None,
        image_shape: tuple[int, ...] | None = None,
        valid_condition: Tensor | None = None,
        test_condition: Tensor | None = None,
        examples: int = 1000,
        embed: int = 1000,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        require_tensorboard()
        self.folder = Path(folder)
        self.valid = None if valid is None else valid[:examples]
        self.valid_condition = None if valid_condition is None else valid_condition[:examples]
        self.test = None if test is None else test[:embed]
        self.test_labels = None if test_labels is None else test_labels[:embed]
        self.test_condition = None if test_condition is None else test_condition[:embed]
        self.label_names = label_names
        self.image_shape = image_shape
        self.warn = warn or _warn
        self.failed = False
        self.writer: Any = None
        self.step = 0

    # -- the callback ---------------------------------------------------------------------------

    def on_step(self, event: dict[str, Any], model: Any) -> None:
        if self.failed:
            return
        with self._guard():
            w, step = self._writer(), int(event["step"])
            self.step = step
            for key in ("bound", "lr", "beta", "skipped_steps", "examples_per_s"):
                value = event.get(key)
                if value is not None and math.isfinite(float(value)):
                    w.add_scalar(f"step/{key}", float(value), step)

    def on_epoch(self, event: dict[str, Any], model: Any) -> None:
        if self.failed:
            return
        with self._guard():
            w, step = self._writer(), int(event["step"])
            self.step = step
            for key in ("train_bound", "valid_elbo"):
                if key in event and math.isfinite(float(event[key])):
                    w.add_scalar(f"epoch/{key}", float(event[key]), step)
            if self.valid is not None:
                with _evaluating(model):
                    self._terms(w, model, step)
                    if self.image_shape is not None:
                        self._pictures(w, model, step)
            w.flush()

    def on_end(self, model: Any) -> None:
        if self.failed:
            return
        with self._guard():
            w = self._writer()
            if self.test is not None:
                with _evaluating(model):
                    self._embedding(w, model)
            self.close()

    def close(self) -> None:
        """Write out and close the event file (safe to call twice, or after a failure)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as err:  # closing is the last write: report, never raise
                self._fail(err)

    # -- what it writes -------------------------------------------------------------------------

    def _terms(self, w: Any, model: Any, step: int) -> None:
        """Recon, KL and KL per dimension on the validation examples (one draw, seed 0)."""
        x = self.valid.to(model.device)
        kw = {} if self.valid_condition is None else {"condition": self.valid_condition}
        g = torch.Generator(device=model.device).manual_seed(0)
        recon, kl = [], []
        with torch.no_grad():
            for i in range(0, x.shape[0], 500):
                ckw = {k: v[i : i + 500].to(model.device) for k, v in kw.items()}
                terms = model(x[i : i + 500], k=1, generator=g, **ckw)
                recon.append(terms.expect(terms.log_px_z).double().cpu())
                kl.append(terms.kl_estimate.double().cpu())
        w.add_scalar("epoch/recon", float(torch.cat(recon).mean()), step)
        w.add_scalar("epoch/kl", float(torch.cat(kl).mean()), step)
        per_dim = latent_stats(model, x, seed=0, **kw)["kl_per_dim"]
        for d, value in enumerate(per_dim.tolist()):
            w.add_scalar(f"kl_per_dim/z{d:02d}", value, step)

    def _pictures(self, w: Any, model: Any, step: int) -> None:
        """The sample grid (64 fixed prior draws) and reconstructions of 8 validation examples."""
        from . import viz

        shape = self.image_shape
        with torch.random.fork_rng(devices=_cuda(model)), torch.no_grad():
            torch.manual_seed(0)
            kw = _cycled_condition(model, GRID_SAMPLES)
            samples = model.sample(GRID_SAMPLES, **kw)
        x = self.valid[:GRID_PAIRS].to(model.device)
        kw = {}
        if self.valid_condition is not None:
            kw = {"condition": self.valid_condition[:GRID_PAIRS].to(model.device)}
        with torch.no_grad():
            recon = model.reconstruct(x, **kw)
        grids = {
            "samples": viz.example_grid(samples, shape, 8, scale=1),
            "reconstructions": viz.pairs_grid(x, recon, shape, GRID_PAIRS, scale=1),
        }
        for tag, picture in grids.items():
            pixels = np.asarray(picture)
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            w.add_image(tag, pixels, step, dataformats="HWC")

    def _embedding(self, w: Any, model: Any) -> None:
        """Posterior means of the test examples, with labels and thumbnails."""
        x = self.test.to(model.device)
        kw = {} if self.test_condition is None else {"condition": self.test_condition}
        with torch.no_grad():
            z = model.encode(x, **kw).mean.reshape(x.shape[0], -1).float().cpu()
        metadata = None
        if self.test_labels is not None:
            names = self.label_names
            metadata = [
                names[int(y)] if names and 0 <= int(y) < len(names) else str(int(y))
                for y in self.test_labels
            ]
        thumbnails = None
        if self.image_shape is not None:
            from .viz import to_images

            thumbnails = torch.from_numpy(to_images(self.test, self.image_shape)).permute(
                0, 3, 1, 2
            )
        w.add_embedding(
            z, metadata=metadata, label_img=thumbnails, global_step=self.step, tag="test_latents"
        )

    # -- failures -------------------------------------------------------------------------------

    def _writer(self) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.folder.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(self.folder))
        return self.writer

    @contextmanager
    def _guard(self) -> Any:
        """Run the block (each method returns first once the log has failed); a failure is
        reported once, then the log stops writing."""
        try:
            yield
        except Exception as err:
            self._fail(err)

    def _fail(self, err: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        self.writer = None  # a broken writer is not written to again
        self.warn(
            f"TensorBoard log in {str(self.folder)!r} failed ({detail}); training goes on "
            "without it"
        )


@contextmanager
def _evaluating(model: Any) -> Any:
    """The model in evaluation mode inside the block, its training flag put back after."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _cuda(model: Any) -> list[int]:
    """The CUDA device whose random state ``fork_rng`` must keep, as a list."""
    device = model.device
    return [device.index or 0] if device.type == "cuda" else []


def _cycled_condition(model: Any, n: int) -> dict[str, Tensor]:
    """``{"condition": 0, 1, ..., classes - 1, 0, ...}`` for a model conditioned on classes."""
    if not model.capabilities.conditional:
        return {}
    dim = int(model.config.condition_dim)
    labels = torch.arange(n) % dim
    return {"condition": model.condition(labels, n)}

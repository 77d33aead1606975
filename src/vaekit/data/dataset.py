"""The data set record every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Dataset:
    """Train / valid / test splits of shape (N, *data_shape) with optional labels (N,).

    Values are float32: in [0, 1] for images (8-bit pixels are divided by 255), as given for a
    user's real-valued data.

    binary: the data suits a Bernoulli likelihood (intensities in [0, 1]); False for 8-bit
        images, integer counts and data outside [0, 1].
    defaults: settings that suit this data set, ``{"model": {...}, "train": {...}}``; a user's
        config and ``--set`` overrides take precedence.
    image_shape: (C, H, W) to view one example as an image (for plots), or None.
    label_names: class name of each label value, where known.
    binarization: "static" when the values were replaced by one fixed Bernoulli draw, else "none".
    source: the file or folder the data was read from ("" for built-in data).
    media: what the examples stand for when they are not arrays or images, saved with a run so
        its commands write them back as files: ``{"kind": "text"}`` (token ids, see
        :mod:`vaekit.text`) or ``{"kind": "audio", ...}`` (log-mel spectrograms and the
        settings that made them, see :mod:`vaekit.audio`); None otherwise.
    """

    name: str
    train: Tensor
    valid: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    valid_labels: Tensor | None = None
    test_labels: Tensor | None = None
    binary: bool = False
    defaults: dict | None = None
    image_shape: tuple[int, int, int] | None = None
    label_names: list[str] | None = None
    binarization: str = "none"
    source: str = ""
    media: dict | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.train.shape[1:])

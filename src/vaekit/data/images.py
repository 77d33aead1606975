"""Folders of images (PNG, JPEG, ...) as data sets; sub-folders are classes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .arrays import from_array
from .dataset import DEFAULT_FRACTIONS, Dataset, class_folder, hidden

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
#: The largest image side (pixels) an image folder is resized to: a larger image_size is refused
#: before any image is resized (one 4096 x 4096 RGB image is already 200 MB as float32).
MAX_IMAGE_SIDE = 4096

#: The longest side an image folder is resized to when no image_size is given: full-size photos
#: (427x640 RGB is 820k inputs) would make networks far larger than memory.
DEFAULT_MAX_SIDE = 64

#: Pillow's modes of grey images; those of more than 8 bits a pixel are scaled to 8 bits.
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def image_files(folder: Path) -> list[Path]:
    """The image files at the top of ``folder`` (by suffix, hidden ones left out), sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not hidden(p)
    )


def load_image_folder(
    folder: str | Path,
    seed: int = 0,
    *,
    image_size: int | tuple[int, int] | None = None,
    fractions: tuple[float, float] = DEFAULT_FRACTIONS,
) -> Dataset:
    """A folder of images -> (N, C, H, W) float32 in [0, 1] (8-bit pixels / 255), split 80/10/10.

    C is 1 when every image is grey, else 3 (RGB; alpha is dropped); 16-bit grey images are
    scaled to 8 bits (k / 65535 -> round(255 k / 65535)). Images are resized
    (bilinear) to ``image_size`` ((H, W), or one int for square; at most ``MAX_IMAGE_SIDE`` a
    side) or else to the most common size.
    Images in sub-folders get the sub-folder's name as their label (``label_names``, sorted); then
    the folder itself must hold no images.
    """
    folder = Path(folder)
    paths, labels, names = class_folder(folder, image_files, "images", "image")
    if not paths:
        raise DataError(
            f"{str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}), neither at its top "
            "nor in sub-folders"
        )
    images = [_read_image(p) for p in paths]
    notes = []
    if image_size is None:
        counts = Counter(im.size for im in images)
        w, h = max(counts, key=lambda s: (counts[s], s[0] * s[1]))
        if max(h, w) > DEFAULT_MAX_SIDE:
            f = DEFAULT_MAX_SIDE / max(h, w)
            h0, w0, h, w = h, w, _multiple_of_4(h * f), _multiple_of_4(w * f)
            notes.append(
                f"the images are {h0}x{w0}; training at {h}x{w}, the longest side "
                f"{DEFAULT_MAX_SIDE} pixels and each a multiple of 4, which the conv networks "
                "take (give image_size to choose another size)"
            )
    else:
        h, w = _checked_size(image_size)
    notes += _changes(images, h, w)
    x = _pixels(images, h, w)
    y = np.array(labels, dtype=np.int64) if labels is not None else None
    ds = from_array(
        folder.name, x, y, seed, folder, eight_bit=True, label_names=names, fractions=fractions
    )
    ds.notes = notes
    return ds


def _multiple_of_4(side: float) -> int:
    """A scaled side rounded to the nearest multiple of 4 (at least 4): the conv networks'
    two stride-2 stages take it (the aspect moves by at most 2 pixels a side)."""
    return max(4, 4 * round(side / 4))


def _changes(images: list[Any], h: int, w: int) -> list[str]:
    """Sentences on what reading does to a folder that mixes sizes, or grey and colour."""
    notes = []
    resized = sum(im.size != (w, h) for im in images)
    sizes = len({im.size for im in images})
    if resized and sizes > 1:
        notes.append(f"{resized} of {len(images)} images of {sizes} sizes resized to {h}x{w}")
    grey = sum(im.mode != "RGB" for im in images)
    if 0 < grey < len(images):
        notes.append(f"{grey} of {len(images)} images are grey: converted to colour (RGB)")
    return notes


def _read_image(path: Path) -> Any:
    """One image file as an 8-bit grey or RGB Pillow image, upright as its EXIF says."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            # a camera's photo taken upright is stored sideways with an EXIF orientation
            return _eight_bit_image(ImageOps.exif_transpose(im), path)
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(
            f"image {str(path)!r} has more than the {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels "
            "Pillow opens (its guard against decompression bombs); shrink it or remove it"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read image {str(path)!r}: {err}; remove or replace it") from None


def _eight_bit_image(im: Any, path: Path) -> Any:
    """A Pillow image as 8-bit grey ("L") or RGB. 16-bit grey (modes "I;16*", and "I" with
    values in 0..65535) is scaled by 255 / 65535, float grey ("F") with values in [0, 1] by 255;
    Pillow's own conversion would clip both at 255. Float grey with values in [0, 255] (8-bit
    levels stored as floats, as ImageJ saves them) is rounded as it is. Other values are a
    DataError."""
    from PIL import Image

    if im.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return im.convert("L" if im.mode in _GREY_MODES else "RGB")
    a = np.asarray(im, dtype=np.float64)
    top = 65535.0
    if im.mode == "F":
        top = 1.0 if a.size and a.max() <= 1 else 255.0
    if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= top):
        kind = "float values" if im.mode == "F" else "32-bit integers"
        raise DataError(
            f"image {str(path)!r} holds {kind} in [{a.min():g}, {a.max():g}]; vaekit reads "
            f"{'float images in [0, 1] or [0, 255]' if im.mode == 'F' else '8 and 16-bit images'}"
            ": convert it to 8 or 16-bit"
        )
    return Image.fromarray(np.round(a * (255 / top)).astype(np.uint8), "L")


def _checked_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the setting image_size (one int for square), positive and at most
    ``MAX_IMAGE_SIDE`` a side."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if h < 1 or w < 1:
        raise DataError(f"image_size must be positive, got {image_size!r}")
    if max(h, w) > MAX_IMAGE_SIDE:
        raise DataError(
            f"image_size {h}x{w} is larger than {MAX_IMAGE_SIDE} pixels a side; give a "
            "smaller image_size, e.g. 64"
        )
    return h, w


def _pixels(images: list[Any], h: int, w: int) -> np.ndarray:
    """Pillow images resized (bilinear) to h x w as (N, C, H, W) float32 in [0, 1]: C = 3 when
    any image is RGB, else 1."""
    from PIL import Image

    mode = "RGB" if any(im.mode == "RGB" for im in images) else "L"
    arrays = []
    try:
        for im in images:
            im = im.convert(mode)
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
            arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        pixels = np.stack(arrays)  # (N, C, H, W) uint8
        return pixels.astype(np.float32) / np.float32(255)
    except MemoryError:
        arrays.clear()  # free what was made before the error is reported
        pixels = np.empty(0, np.uint8)
        size = len(images) * (3 if mode == "RGB" else 1) * h * w * 4 / 1e9
        raise DataError(
            f"{len(images)} images at {h}x{w} need about {size:.1f} GB as float32, more memory "
            "than there is; give a smaller image_size"
        ) from None

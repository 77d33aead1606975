"""Pictures of a VAE: image grids, the 2-D latent manifold, latent scatter plots, training curves.

Library code: functions return images or write files and never print. Image grids need Pillow;
scatter plots and curves need matplotlib (Agg backend, no display). Both are in the ``plots``
extra and are imported only when a picture is drawn, so a missing one is a one-line
:class:`PlotsMissing` error, not an import failure of vaekit.

Shapes: ``x`` (N, *data_shape) holds examples; images (N, H, W, C) with C in {1, 3} hold values
in [0, 1]; latents ``z`` are (N, latent_dim).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .data import image_shape_hint
from .errors import ConfigError, DataError, VaekitError
from .files import write_file
from .reading import MAX_METRICS_BYTES, check_metrics_record, loads, read_regular

if TYPE_CHECKING:
    from PIL.Image import Image

#: Smallest side, in pixels, that a tile of an image grid is scaled up to by default (a 32x32
#: image is drawn at 2x, MNIST's 28x28 at 3x, 8x8 digits at 8x).
MIN_TILE = 64


class PlotsMissing(VaekitError):
    """Pillow or matplotlib is needed for a picture but is not installed."""


def _require(module: str) -> Any:
    """Import ``module`` (``"PIL.Image"`` or ``"matplotlib"``) or raise :class:`PlotsMissing`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = "pillow" if module.startswith("PIL") else module.split(".")[0]
        raise PlotsMissing(
            f"drawing pictures needs {package}: pip install 'vaekit[plots]'"
        ) from None


# -- image shapes and grids --------------------------------------------------------------------


def parse_image_shape(text: str) -> tuple[int, ...]:
    """``"28x20"`` -> (28, 20); ``"3x32x32"`` -> (3, 32, 32). Commas work as separators too."""
    parts = text.replace(",", "x").lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"image shape {text!r} is not HxW or CxHxW, e.g. 28x20") from None
    if len(shape) not in (2, 3) or any(s <= 0 for s in shape):
        raise ConfigError(f"image shape {text!r} is not HxW or CxHxW with positive sizes")
    return shape


def image_shape(
    data_shape: Sequence[int], given: Sequence[int] | None = None, name: str | None = None
) -> tuple[int, ...]:
    """How to show one example of ``data_shape``: (H, W) or (C, H, W) with C in {1, 3}.

    ``given`` (the setting image_shape) wins; then the shape a built-in data set ``name`` hints
    (:func:`vaekit.data.image_shape_hint`, Frey Face's 28 x 20); then the data shape itself:
    (D,) with D a square is sqrt(D) x sqrt(D), (H, W) and (C, H, W) are used as is.
    """
    data_shape = tuple(int(d) for d in data_shape)
    size = math.prod(data_shape)
    shape = tuple(given) if given else image_shape_hint(name)
    if shape is None:
        if len(data_shape) == 1:
            side = math.isqrt(size)
            if side * side != size:
                # the example: the most nearly square HxW of that many pixels (a table's 3
                # columns: 3x1; Frey Face's 560: 28x20)
                w = max(d for d in range(1, side + 1) if size % d == 0)
                raise DataError(
                    f"cannot show examples of shape {data_shape} as images: {size} is not a "
                    f"square; give the image shape, e.g. --image-shape {size // w}x{w}"
                )
            shape = (side, side)
        else:
            shape = data_shape
    if math.prod(shape) != size:
        raise DataError(
            f"image shape {'x'.join(map(str, shape))} has {math.prod(shape)} pixels but examples "
            f"have {size} values (shape {data_shape})"
        )
    if len(shape) == 3 and shape[0] not in (1, 3):
        raise DataError(f"image shape {shape} must be (C, H, W) with 1 or 3 channels")
    if len(shape) not in (2, 3):
        raise DataError(f"cannot show examples of shape {data_shape} as images")
    return shape


def to_images(
    x: Tensor | np.ndarray,
    shape: Sequence[int],
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Examples ``x`` (N, ...) as images (N, H, W, C) in [0, 1] for ``shape`` (H, W) or (C, H, W).

    ``value_range`` (lo, hi) maps to black and white, values outside it clipped. By default
    (0, 1) when the bulk of the values (0.5th to 99.5th percentile) lies there, give or take
    0.05: a Gaussian model's draws that stray past the data's range are clipped to it, not
    stretched into a washed-out grid. Other values map their own 0.5th..99.5th percentiles.
    """
    a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    a = a.astype(np.float32).reshape(a.shape[0], *shape)
    a = a[:, None] if len(shape) == 2 else a  # (N, C, H, W)
    if value_range is None:
        finite = a[np.isfinite(a)]
        lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5])) if finite.size else (0, 1)
        value_range = (0.0, 1.0) if lo >= -0.05 and hi <= 1.05 else (lo, hi)
    lo, hi = value_range
    a = np.clip((a - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.nan_to_num(a).transpose(0, 2, 3, 1)


def grid(
    images: np.ndarray, ncols: int | None = None, *, pad: int = 1, scale: int | None = None
) -> Image:
    """Tile images (N, H, W, C) row by row, ``ncols`` per row, into one Pillow image.

    Tiles are separated by ``pad`` grey pixels; the whole grid is enlarged ``scale`` times with
    nearest-neighbour sampling (default: until a tile's smaller side is at least 32 pixels).
    """
    pil = _require("PIL.Image")
    n, h, w, c = images.shape
    ncols = max(1, min(ncols or math.ceil(math.sqrt(n)), n))
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 0.5, np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x0 = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y : y + h, x0 : x0 + w] = images[i]
    pixels = (canvas * 255 + 0.5).astype(np.uint8)
    img = pil.fromarray(pixels[..., 0] if c == 1 else pixels, mode="L" if c == 1 else "RGB")
    scale = scale or max(1, math.ceil(MIN_TILE / min(h, w)))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), pil.NEAREST)
    return img


def example_grid(
    x: Tensor | np.ndarray,
    shape: Sequence[int],
    ncols: int | None = None,
    *,
    pad: int = 1,
    scale: int | None = None,
    value_range: tuple[float, float] | None = None,
) -> Image:
    """Examples ``x`` (N, *data_shape) drawn as a grid; see :func:`to_images` and :func:`grid`."""
    return grid(to_images(x, shape, value_range), ncols, pad=pad, scale=scale)


def pairs_grid(
    above: Tensor | np.ndarray,
    below: Tensor | np.ndarray,
    shape: Sequence[int],
    ncols: int = 10,
    *,
    scale: int | None = None,
) -> Image:
    """Originals ``above`` (N, ...) with their reconstructions ``below`` (N, ...) underneath.

    With more than ``ncols`` examples the pairs of rows repeat. Both share one value range.
    """
    n = len(above)
    both = [
        v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v) for v in (above, below)
    ]
    images = to_images(np.concatenate(both), shape)  # one value range for both
    a, b = images[:n], images[n:]
    ncols = max(1, min(ncols, n))
    rows = []
    for start in range(0, n, ncols):
        for part in (a[start : start + ncols], b[start : start + ncols]):
            fill = np.full((ncols - part.shape[0], *part.shape[1:]), 0.5, np.float32)
            rows.append(np.concatenate([part, fill]))
    return grid(np.concatenate(rows), ncols, scale=scale)


# -- latent grids ------------------------------------------------------------------------------


def manifold_latents(
    n: int, latent_dim: int, dims: tuple[int, int] = (0, 1), prior_samples: Tensor | None = None
) -> Tensor:
    """An n x n grid of latents (n * n, latent_dim), row by row, as in the AEVB paper's figure 4.

    Points evenly spaced on the unit square, at (i + 0.5) / n, go through the inverse CDF of the
    prior's marginals on dims ``dims`` (first varies down the rows, second across the columns);
    all other dims stay at the prior's median. The first row has the largest value of
    ``dims[0]``. The prior is N(0, I) (exact quantiles, others at 0), or else given by
    ``prior_samples`` (S, latent_dim), draws from it whose empirical quantiles are used (for a
    learned prior, such as a mixture, whose marginals have no closed-form inverse CDF).
    """
    if n < 1:
        raise ConfigError(f"manifold size must be at least 1, got {n}")
    d0, d1 = dims
    if not (0 <= d0 < latent_dim and 0 <= d1 < latent_dim) or d0 == d1:
        raise ConfigError(f"dims {list(dims)} must be two different dims in 0..{latent_dim - 1}")
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    if prior_samples is None:
        values0 = values1 = torch.distributions.Normal(0.0, 1.0).icdf(u).float()  # (n,)
        middle = torch.zeros(latent_dim)
    else:
        s = prior_samples.detach().to("cpu", torch.float64)
        if s.dim() != 2 or s.shape[1] != latent_dim or s.shape[0] < 2:
            raise ConfigError(
                f"prior_samples must be (S >= 2, {latent_dim}), got {tuple(prior_samples.shape)}"
            )
        values0 = torch.quantile(s[:, d0], u).float()
        values1 = torch.quantile(s[:, d1], u).float()
        middle = s.median(dim=0).values.float()
    z = middle.repeat(n, n, 1)
    z[:, :, d0] = values0.flip(0)[:, None]
    z[:, :, d1] = values1[None, :]
    return z.reshape(n * n, latent_dim)


def traversal_latents(
    z0: Tensor,
    dims: Sequence[int],
    steps: int,
    prior_samples: Tensor | None = None,
    span: float = 3.0,
) -> Tensor:
    """The latent-traversal grid (len(dims) * steps, latent_dim), row by row: row r is ``z0``
    (latent_dim,) with dim ``dims[r]`` set to each of ``steps`` values across the prior's range,
    from low to high, the other dims kept (Higgins et al. 2017, figure 7).

    The values are the prior's marginal quantiles at the probabilities of -``span`` .. ``span``
    standard deviations of a normal (0.13% to 99.87% for 3): -3 .. 3 evenly spaced for N(0, I),
    else the empirical quantiles of ``prior_samples`` (S, latent_dim), draws from a learned prior.
    """
    if steps < 2:
        raise ConfigError(f"a traversal needs at least 2 steps, got {steps}")
    latent_dim = z0.shape[-1]
    if not dims or any(not 0 <= d < latent_dim for d in dims):
        raise ConfigError(f"dims {list(dims)} must lie in 0..{latent_dim - 1}")
    t = torch.linspace(-span, span, steps, dtype=torch.float64)
    if prior_samples is None:
        values = t.float().expand(latent_dim, steps)  # (latent_dim, steps)
    else:
        s = prior_samples.detach().to("cpu", torch.float64)
        if s.dim() != 2 or s.shape[1] != latent_dim or s.shape[0] < 2:
            raise ConfigError(
                f"prior_samples must be (S >= 2, {latent_dim}), got {tuple(prior_samples.shape)}"
            )
        u = torch.distributions.Normal(0.0, 1.0).cdf(t)
        values = torch.quantile(s, u, dim=0).T.float()  # (latent_dim, steps)
    z = z0.detach().to("cpu", torch.float32).repeat(len(dims), steps, 1)  # (rows, steps, D)
    for r, d in enumerate(dims):
        z[r, :, d] = values[d]
    return z.reshape(len(dims) * steps, latent_dim)


def top_dims(kl_per_dim: Sequence[float], count: int = 2) -> tuple[int, ...]:
    """Indices of the ``count`` latent dims with the largest KL, largest first."""
    kl = torch.as_tensor(list(kl_per_dim), dtype=torch.float64)
    return tuple(int(i) for i in torch.argsort(kl, descending=True)[:count])


def interpolation_latents(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """``steps`` latents (steps, latent_dim) evenly spaced on the segment from z0 to z1."""
    if steps < 2:
        raise ConfigError(f"interpolation needs at least 2 steps, got {steps}")
    t = torch.linspace(0.0, 1.0, steps)[:, None]
    return (1 - t) * z0[None] + t * z1[None]


# -- matplotlib figures ------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    _require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def project_2d(z: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Latents (N, latent_dim) as (N, 2) points and the explained-variance ratio of each axis.

    Two or fewer dims are used as they are (ratio None); more go through PCA first.
    """
    a = z.detach().cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)
    a = a.astype(np.float64)
    if a.shape[1] == 1:
        return np.concatenate([a, np.zeros_like(a)], axis=1), None
    if a.shape[1] == 2:
        return a, None
    centred = a - a.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)  # min(N, dims) components
    points = np.zeros((a.shape[0], 2))
    ratio = np.zeros(2)
    n = min(2, vt.shape[0])  # one example has one (zero) component
    points[:, :n] = centred @ vt[:n].T
    ratio[:n] = s[:n] ** 2 / max(float((s**2).sum()), 1e-300)
    return points, ratio


def scatter(
    z: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | None = None,
    *,
    names: Sequence[str] | None = None,
    title: str = "",
) -> Any:
    """A matplotlib Figure: latent means (N, latent_dim) in 2-D, coloured by integer labels (N,).

    ``names[label]`` is shown in the legend in place of the label's number where given.
    """
    points, ratio = project_2d(z)
    fig = _figure(6.0, 5.0)
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7)
    else:
        y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
        classes = np.unique(y)
        import matplotlib

        colours = matplotlib.colormaps["tab10" if len(classes) <= 10 else "viridis"]
        if len(classes) <= 10:
            for i, c in enumerate(classes):
                m = y == c
                ax.scatter(
                    points[m, 0],
                    points[m, 1],
                    s=6,
                    alpha=0.8,
                    color=colours(i),
                    label=label_name(c, names),
                )
            ax.legend(markerscale=3, fontsize=8, loc="best", title="label")
        else:
            sc = ax.scatter(points[:, 0], points[:, 1], s=6, c=y, cmap=colours, alpha=0.8)
            fig.colorbar(sc, ax=ax, label="label")
    if ratio is None:
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]" if np.asarray(z).shape[1] > 1 else "")
    else:
        ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
    ax.set_title(title or "latent means E[z|x]")
    fig.tight_layout()
    return fig


def label_name(label: Any, names: Sequence[str] | None) -> str:
    """Class ``label`` (an integer) as text: its name where ``names`` has one (see
    :func:`printable`), else the number."""
    i = int(label)
    return printable(names[i]) if names is not None and 0 <= i < len(names) else str(i)


def printable(name: Any) -> str:
    """``name`` as text any font and file can take: a folder name that is not valid UTF-8 (read
    by Python with surrogate escapes, e.g. 'caf\\udce9') shows its bytes as \\x escapes
    ('caf\\xe9')."""
    text = str(name)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("ascii")


def curves(
    records: Sequence[dict[str, Any]] | Mapping[str, Sequence[dict[str, Any]]],
    *,
    title: str = "",
) -> Any:
    """A matplotlib Figure of the training bound and validation ELBO (nats per example) against
    training examples seen, log x-axis, as in the AEVB paper's figure 2.

    ``records``: the per-epoch dicts of one run's ``metrics.jsonl`` (keys ``examples_seen``,
    ``train_bound`` and optionally ``valid_elbo``), or a mapping of run labels to such lists to
    overlay several runs: one colour per run, the training bound solid and the validation ELBO
    dashed (the paper's figure 2 draws train and test that way for each latent size).
    """
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    overlay = isinstance(records, Mapping)
    runs = records if overlay else {"": records}
    for i, (label, run) in enumerate(runs.items()):
        train = {"color": f"C{i % 10}", "label": label} if overlay else {"label": "train bound"}
        valid = {"color": f"C{i % 10}", "linestyle": "--"} if overlay else {}
        seen = [r["examples_seen"] for r in run]
        ax.plot(seen, [r["train_bound"] for r in run], **train)
        points = [(r["examples_seen"], r["valid_elbo"]) for r in run if "valid_elbo" in r]
        if points:
            ax.plot(*zip(*points, strict=True), **(valid or {"label": "validation ELBO"}))
    handles, labels = ax.get_legend_handles_labels()
    if overlay:
        from matplotlib.lines import Line2D

        for style, text in (("-", "train bound"), ("--", "validation ELBO")):
            handles.append(Line2D([], [], color="grey", linestyle=style))
            labels.append(text)
    ax.legend(handles, labels, fontsize="small" if overlay else None)
    ax.set_xscale("log")
    ax.set_xlabel("training examples seen")
    ax.set_ylabel("bound per example (nats)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or "training curves")
    fig.tight_layout()
    return fig


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, checked to carry what :func:`curves` needs."""
    path = Path(path)
    try:
        data = read_regular(path, MAX_METRICS_BYTES, DataError, "metrics.jsonl")
    except FileNotFoundError:
        raise DataError(f"{str(path)!r} does not exist; the run has no training metrics") from None
    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"cannot read {str(path)!r}: {err}") from None
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{str(path)!r} line {i}"
        records.append(check_metrics_record(loads(line, where, DataError), where, DataError))
    if not records:
        raise DataError(f"{str(path)!r} holds no epochs yet")
    return records


# -- writing -----------------------------------------------------------------------------------


def save(picture: Any, path: str | Path) -> Path:
    """Write a Pillow image or a matplotlib Figure to ``path`` as PNG, atomically; returns path."""
    path = Path(path)
    buffer = io.BytesIO()
    if hasattr(picture, "savefig"):
        picture.savefig(buffer, format="png")
    else:
        picture.save(buffer, format="PNG", optimize=True)
    return write_file(path, buffer.getvalue())

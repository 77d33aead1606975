"""vaekit.viz: image shapes, grids, latent grids, projections, figures and their files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import viz
from vaekit.errors import ConfigError, DataError, VaekitError


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.float64)


@pytest.mark.parametrize(
    ("data_shape", "given", "name", "expected"),
    [
        ((64,), None, None, (8, 8)),
        ((784,), None, "mnist", (28, 28)),
        ((1, 28, 28), None, None, (1, 28, 28)),
        ((3, 32, 32), None, None, (3, 32, 32)),
        ((28, 20), None, None, (28, 20)),
        ((560,), None, "frey-face", (28, 20)),
        ((560,), (28, 20), None, (28, 20)),
        ((560,), [1, 28, 20], None, (1, 28, 20)),
    ],
)
def test_image_shape(data_shape, given, name, expected) -> None:
    assert viz.image_shape(data_shape, given, name) == expected


def test_image_shape_errors() -> None:
    with pytest.raises(DataError, match="--image-shape"):
        viz.image_shape((560,))
    with pytest.raises(DataError, match="49 pixels"):
        viz.image_shape((64,), (7, 7))
    with pytest.raises(DataError, match="channels"):
        viz.image_shape((5, 4, 4))


def test_parse_image_shape() -> None:
    assert viz.parse_image_shape("28x20") == (28, 20)
    assert viz.parse_image_shape("3,32,32") == (3, 32, 32)
    for bad in ("28", "x", "0x4", "1x2x3x4", "axb"):
        with pytest.raises(ConfigError):
            viz.parse_image_shape(bad)


def test_to_images_ranges() -> None:
    x = torch.linspace(0, 1, 8).repeat(2, 1)  # (2, 8): inside [0, 1] stays as is
    images = viz.to_images(x, (2, 4))
    assert images.shape == (2, 2, 4, 1)
    np.testing.assert_allclose(images[0, :, :, 0].ravel(), np.linspace(0, 1, 8), atol=1e-6)
    wide = viz.to_images(np.linspace(-3, 3, 201)[None], (1, 201)).ravel()  # its own range
    lo, hi = np.percentile(np.linspace(-3, 3, 201), [0.5, 99.5])
    np.testing.assert_allclose(wide[100], (0 - lo) / (hi - lo), atol=1e-6)
    assert wide[0] == 0 and wide[-1] == 1  # the tails past the percentiles are clipped
    # a Gaussian model's draws: data in [0, 1] and a few strays past it are clipped, not
    # stretched (before, the strays made 0.5 a washed-out grey)
    draws = np.r_[np.linspace(0, 1, 998), -0.6, 1.7].astype(np.float32)
    images = viz.to_images(draws[None], (1, 1000)).ravel()
    np.testing.assert_allclose(images[:998], np.linspace(0, 1, 998), atol=1e-6)
    assert images[998] == 0 and images[999] == 1
    rgb = viz.to_images(torch.rand(3, 3 * 4 * 5), (3, 4, 5))
    assert rgb.shape == (3, 4, 5, 3)


def test_grid_layout_and_scale() -> None:
    images = np.ones((10, 8, 6, 1), np.float32)
    img = viz.grid(images, ncols=4, scale=1)
    assert img.size == (4 * 7 + 1, 3 * 9 + 1) and img.mode == "L"
    a = np.asarray(img)
    assert a[0, 0] == 128 and a[1, 1] == 255  # grey gap, white tile
    assert a[-2, -2] == 128  # empty slots of the last row stay grey
    assert viz.grid(images, ncols=4).size == (11 * (4 * 7 + 1), 11 * (3 * 9 + 1))  # 66 px
    assert viz.grid(images, ncols=5, pad=0, scale=2).size == (2 * 30, 2 * 16)
    assert viz.grid(np.zeros((2, 4, 4, 3), np.float32), scale=1).mode == "RGB"


def test_pairs_grid_rows() -> None:
    above, below = torch.zeros(5, 16), torch.ones(5, 16)
    a = np.asarray(viz.pairs_grid(above, below, (4, 4), ncols=3, scale=1))
    assert a.shape == (4 * 5 + 1, 3 * 5 + 1)
    assert a[1, 1] == 0 and a[6, 1] == 255 and a[11, 1] == 0 and a[16, 1] == 255


def test_manifold_latents() -> None:
    z = viz.manifold_latents(4, 5, (3, 1))
    assert z.shape == (16, 5)
    grid = z.reshape(4, 4, 5)
    expected = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([0.125, 0.375, 0.625, 0.875]))
    torch.testing.assert_close(grid[0, :, 1], expected)  # across the columns
    torch.testing.assert_close(grid[:, 0, 3], expected.flip(0))  # down the rows, largest first
    assert torch.all(z[:, [0, 2, 4]] == 0)
    with pytest.raises(ConfigError):
        viz.manifold_latents(4, 2, (0, 2))
    with pytest.raises(ConfigError):
        viz.manifold_latents(4, 3, (1, 1))


def test_manifold_latents_follow_a_learned_prior_from_its_draws() -> None:
    # a prior far from N(0, I): N(5, 2^2) on dim 1, N(-3, 0.5^2) on dim 3, N(1, 1) elsewhere
    g = torch.Generator().manual_seed(0)
    loc, scale = torch.tensor([1.0, 5.0, 1.0, -3.0]), torch.tensor([1.0, 2.0, 1.0, 0.5])
    draws = loc + scale * torch.randn(200_000, 4, generator=g)
    z = viz.manifold_latents(4, 4, (3, 1), draws).reshape(4, 4, 4)
    u = torch.tensor([0.125, 0.375, 0.625, 0.875])
    icdf = torch.distributions.Normal(0.0, 1.0).icdf(u)
    torch.testing.assert_close(z[0, :, 1], 5.0 + 2.0 * icdf, atol=0.03, rtol=0)
    torch.testing.assert_close(z[:, 0, 3], (-3.0 + 0.5 * icdf).flip(0), atol=0.01, rtol=0)
    torch.testing.assert_close(z[..., [0, 2]], torch.ones(4, 4, 2), atol=0.02, rtol=0)  # medians
    with pytest.raises(ConfigError, match="prior_samples"):
        viz.manifold_latents(4, 3, (0, 1), draws)


def test_top_dims_and_interpolation() -> None:
    assert viz.top_dims([0.1, 3.0, 0.0, 2.0]) == (1, 3)
    z = viz.interpolation_latents(torch.zeros(3), torch.ones(3), 5)
    assert z.shape == (5, 3)
    torch.testing.assert_close(z[:, 0], torch.linspace(0, 1, 5))
    with pytest.raises(ConfigError):
        viz.interpolation_latents(torch.zeros(3), torch.ones(3), 1)


def test_project_2d() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 4)) * np.array([5.0, 0.1, 2.0, 0.1])
    points, ratio = viz.project_2d(z)
    assert points.shape == (500, 2)
    assert ratio is not None and ratio[0] > ratio[1] > 0.1 and ratio.sum() <= 1
    assert abs(points[:, 0].std() - 5.0) < 0.5
    same, none = viz.project_2d(z[:, :2])
    np.testing.assert_array_equal(same, z[:, :2])
    assert none is None
    assert viz.project_2d(z[:, :1])[0].shape == (500, 2)
    one, ratio = viz.project_2d(z[:1])  # one example: a single (zero) point
    np.testing.assert_array_equal(one, np.zeros((1, 2)))
    assert ratio is not None and ratio.shape == (2,)


def test_scatter_and_curves_files(tmp_path: Path) -> None:
    z = torch.randn(100, 5)
    labels = torch.arange(100) % 4
    path = viz.save(viz.scatter(z, labels, names=["a", "b", "c", "d"]), tmp_path / "s.png")
    assert pixels(path).shape == (500, 600) and pixels(path).std() > 0
    viz.save(viz.scatter(z[:, :2]), tmp_path / "plain.png")
    viz.save(viz.scatter(z, torch.arange(100) % 20), tmp_path / "many.png")
    records = [
        {"examples_seen": 100 * i, "train_bound": -50.0 + i, "valid_elbo": -51.0 + i}
        for i in range(1, 6)
    ]
    path = viz.save(viz.curves(records), tmp_path / "c.png")
    assert pixels(path).shape == (400, 600) and pixels(path).std() > 0


def test_read_metrics(tmp_path: Path) -> None:
    f = tmp_path / "metrics.jsonl"
    with pytest.raises(DataError, match="does not exist"):
        viz.read_metrics(f)
    f.write_text("")
    with pytest.raises(DataError, match="no epochs"):
        viz.read_metrics(f)
    f.write_text('{"examples_seen": 10, "train_bound": -3.0}\n{"epoch": 2}\n')
    with pytest.raises(DataError, match="line 2"):
        viz.read_metrics(f)
    f.write_text('{"examples_seen": 10, "train_bound": -3.0}\n\n')
    assert viz.read_metrics(f) == [{"examples_seen": 10, "train_bound": -3.0}]


def test_save_is_atomic_and_reports_errors(tmp_path: Path) -> None:
    img = viz.example_grid(torch.rand(4, 16), (4, 4))
    path = viz.save(img, tmp_path / "sub" / "g.png")  # creates the folder
    assert pixels(path).std() > 0
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaekitError, match="cannot write"):
        viz.save(img, tmp_path / "file" / "g.png")
    assert list(tmp_path.glob("**/.*.tmp")) == []


def test_missing_plots_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(viz.PlotsMissing, match=r"pip install 'vaekit\[plots\]'"):
        viz.curves([{"examples_seen": 1, "train_bound": 0.0}])
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(viz.PlotsMissing, match="pillow"):
        viz.grid(np.zeros((1, 2, 2, 1), np.float32))

"""Data with known factors: ``shapes`` (generated), ``dsprites`` (the official file's layout, on a
small file written here) and a factors file beside a user's data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaekit.data import load, load_options, misplaced_options
from vaekit.data.dsprites import DSPRITES_FILE, read_dsprites
from vaekit.data.factors import read_factors
from vaekit.data.shapes import FACTOR_SIZES, POSITIONS, TOTAL, combinations, render
from vaekit.errors import DataError


def test_shapes_is_deterministic_and_seeded() -> None:
    a, b = load("shapes", seed=3, examples=300), load("shapes", seed=3, examples=300)
    assert torch.equal(a.train, b.train) and np.array_equal(a.test_factors, b.test_factors)
    c = load("shapes", seed=4, examples=300)
    assert not np.array_equal(a.train_factors, c.train_factors)


def test_shapes_shapes_dtypes_and_factors() -> None:
    ds = load("shapes", seed=0, examples=500)
    assert [len(x) for x in (ds.train, ds.valid, ds.test)] == [400, 50, 50]
    assert ds.train.shape[1:] == (1, 64, 64) and ds.train.dtype == torch.float32
    assert set(torch.unique(ds.train).tolist()) == {0.0, 1.0} and ds.binary
    assert ds.factor_names == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert ds.factor_sizes == [3, 6, 40, 32, 32]
    f = np.concatenate([ds.train_factors, ds.valid_factors, ds.test_factors])
    assert f.dtype == np.int64 and f.shape == (500, 5)
    assert len({tuple(r) for r in f}) == 500  # distinct combinations
    # every example is the rendering of its factors, and the labels are the shape
    assert torch.equal(ds.test, ds.render_factors(ds.test_factors))
    assert torch.equal(ds.test_labels, torch.from_numpy(ds.test_factors[:, 0]))
    # the subset covers every class of every factor (500 draws of 3..40 classes)
    for k, size in enumerate(FACTOR_SIZES[:3]):
        assert set(f[:, k]) == set(range(size))


def test_the_full_product_is_every_combination_once() -> None:
    classes = combinations(np.arange(TOTAL))
    assert classes.shape == (TOTAL, 5)
    assert (classes.max(axis=0) + 1).tolist() == list(FACTOR_SIZES)
    assert len(np.unique(classes @ np.array([1, 3, 18, 720, 23040]))) == TOTAL
    assert classes[1].tolist() == [0, 0, 0, 0, 1]  # pos_y varies fastest, as in dSprites


def test_a_square_by_hand() -> None:
    # scale 1 (class 5): half-size 10 pixels; pos 16 of 32 over 0.2..0.8: centre at
    # (0.2 + 0.6 * 16 / 31) * 64 = 32.619 pixels. Pixel centres j + 0.5 in [22.619, 42.619]:
    # columns (and rows) 23..42, 20 x 20 pixels.
    assert POSITIONS[16] * 64 == pytest.approx(32.619, abs=1e-3)
    (img,) = render(np.array([[0, 5, 0, 16, 16]]))
    assert img.dtype == np.uint8 and img.shape == (64, 64)
    assert img.sum() == 400 and img[23:43, 23:43].all()
    # turned by 45 degrees (class 5 of 40) it is a diamond: the centre row is wider
    (diamond,) = render(np.array([[0, 5, 5, 16, 16]]))
    assert diamond[32].sum() > 26 and diamond[23, 23] == 0


def test_the_ellipse_turns_and_the_shapes_differ() -> None:
    wide, tall = render(np.array([[1, 5, 0, 16, 16], [1, 5, 10, 16, 16]]))  # 0 and 90 degrees
    assert wide[32].sum() == 20 and wide[:, 32].sum() == 10
    assert tall[32].sum() == 10 and tall[:, 32].sum() == 20
    square, ellipse, heart = render(np.array([[s, 5, 0, 16, 16] for s in range(3)]))
    assert square.sum() > heart.sum() > ellipse.sum() > 0
    assert abs(int(heart[:, :33].sum()) - int(heart[:, 32:].sum())) <= 20  # nearly symmetric
    assert heart[20:32].sum() > heart[33:45].sum()  # round top, pointed bottom


def test_render_checks_its_classes() -> None:
    with pytest.raises(DataError, match="size-1"):
        render(np.array([[3, 0, 0, 0, 0]]))
    with pytest.raises(DataError, match=r"\(N, 5\)"):
        render(np.zeros((2, 4), int))


def test_examples_is_an_option_of_shapes_only() -> None:
    assert load_options("shapes") == ("examples",) and load_options("digits") == ()
    assert misplaced_options("digits", ["examples"]) == ["examples"]
    with pytest.raises(DataError, match="does not apply"):
        load("digits", examples=10)
    with pytest.raises(DataError, match="examples must be an integer"):
        load("shapes", examples=2)


def _dsprites_file(folder, n=40):  # the official layout, with its pickled metadata entry
    rng = np.random.default_rng(0)
    classes = np.zeros((n, 6), np.int64)
    classes[:, 1:] = rng.integers(0, FACTOR_SIZES, size=(n, 5))
    imgs = render(classes[:, 1:])
    metadata = np.array([{"description": "pickled"}], dtype=object)
    path = folder / DSPRITES_FILE
    np.savez(path, imgs=imgs, latents_classes=classes, latents_values=classes * 1.0,
             metadata=metadata)  # fmt: skip
    return path, imgs, classes


def test_dsprites_reads_the_arrays_and_never_the_pickle(tmp_path) -> None:
    path, imgs, classes = _dsprites_file(tmp_path)
    got_imgs, got = read_dsprites(path)
    assert np.array_equal(got_imgs, imgs) and np.array_equal(got, classes[:, 1:])
    ds = load("dsprites", root=tmp_path, seed=0)
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 40
    # each example is the image of its factors
    assert torch.equal(ds.valid, torch.from_numpy(render(ds.valid_factors)).float()[:, None])
    assert ds.factor_names[0] == "shape"
    sub = load("dsprites", root=tmp_path, seed=0, examples=10)
    assert len(sub.train) + len(sub.valid) + len(sub.test) == 10


def test_dsprites_missing_is_one_line(tmp_path) -> None:
    with pytest.raises(DataError) as err:
        load("dsprites", root=tmp_path)
    assert DSPRITES_FILE in str(err.value) and "\n" not in str(err.value)
    assert "github.com" in str(err.value)
    np.savez(tmp_path / DSPRITES_FILE, imgs=np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(DataError, match="latents_classes"):
        load("dsprites", root=tmp_path)


def test_a_factors_file_follows_the_split(tmp_path) -> None:
    x = np.arange(50 * 3, dtype=np.float32).reshape(50, 3) / 150
    np.save(tmp_path / "x.npy", x)
    factors = np.stack([np.arange(50) % 5, np.arange(50)], axis=1)
    np.save(tmp_path / "f.npy", factors)
    ds = load(tmp_path / "x.npy", factors=tmp_path / "f.npy", seed=2)
    for xs, fs in ((ds.train, ds.train_factors), (ds.test, ds.test_factors)):
        rows = np.round(xs.numpy()[:, 0] * 150 / 3).astype(int)  # the row each example came from
        assert np.array_equal(fs[:, 1], rows)
    assert ds.factor_sizes == [5, 50] and ds.train_factors.dtype == np.int64
    # a CSV with a header of names and real values
    (tmp_path / "f.csv").write_text("a,b\n" + "".join(f"{i % 5},{i / 7}\n" for i in range(50)))
    ds = load(tmp_path / "x.npy", factors=tmp_path / "f.csv")
    assert ds.factor_names == ["a", "b"] and ds.train_factors.dtype == np.float64
    assert ds.factor_sizes is None


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (np.zeros((49, 2)), "49 rows but the data has 50"),
        (np.array(["a"] * 50), "give numbers"),
        (np.full((50, 2), np.nan), "NaN"),
    ],
)
def test_a_bad_factors_file_is_one_line(tmp_path, content, match) -> None:
    np.save(tmp_path / "x.npy", np.zeros((50, 3), np.float32))
    np.save(tmp_path / "f.npy", content)
    with pytest.raises(DataError, match=match) as err:
        load(tmp_path / "x.npy", factors=tmp_path / "f.npy")
    assert "\n" not in str(err.value)


def test_factors_file_kinds(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_factors(tmp_path / "none.npy")
    (tmp_path / "f.txt").write_text("1\n")
    with pytest.raises(DataError, match=r"a \.npy"):
        read_factors(tmp_path / "f.txt")
    with pytest.raises(DataError, match="does not apply"):
        load("digits", factors=tmp_path / "f.txt")

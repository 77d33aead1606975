"""vaekit.data on real files written to tmp_path; no test touches the network.

Every test runs with VAEKIT_OFFLINE=1, VAEKIT_DATA pointing into tmp_path and urlopen refusing
anything but file:// URLs (which stand in for a server in the download tests).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from vaekit import data
from vaekit.data import DataError, frey, mnist
from vaekit.models import VAEConfig
from vaekit.train import TrainConfig

_SHARED = [Path(__file__).resolve().parents[3] / "shared" / "data"]
if os.environ.get("VAEKIT_DATA"):
    _SHARED.insert(0, Path(os.environ["VAEKIT_DATA"]))
_REAL_URLOPEN = urllib.request.urlopen


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_OFFLINE", "1")
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "cache"))

    def local_only(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise AssertionError(f"a test tried to reach {url}")
        return _REAL_URLOPEN(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


def cache() -> Path:
    return Path(os.environ["VAEKIT_DATA"])


def error(fn, *args, **kwargs) -> str:
    """The message of the DataError that ``fn`` raises; it must be one line."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# -- idx files -------------------------------------------------------------------------------


def write_idx(path: Path, a: np.ndarray, code: int = 0x08) -> Path:
    """An idx file: two zero bytes, a type code, the rank, big-endian sizes, then the data."""
    raw = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_idx_set(
    folder: Path, n_train: int = 12, n_test: int = 4, gz: bool = True, dotted: bool = False
) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in arrays.items():
        name = name.replace("-idx", ".idx") if dotted else name
        write_idx(folder / (name + (".gz" if gz else "")), a)
    return arrays


@pytest.mark.parametrize(("gz", "dotted"), [(True, False), (False, False), (False, True)])
def test_idx_folder_classic_split(tmp_path, gz, dotted):
    # dotted: named train-images.idx3-ubyte, as Kaggle's copy of MNIST names its files
    arrays = write_idx_set(tmp_path / "digits-idx", gz=gz, dotted=dotted)
    ds = data.load(tmp_path / "digits-idx")
    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    # 12 training images: the last sixth (2) is the validation set, in file order.
    assert ds.train.shape == (10, 784) and ds.valid.shape == (2, 784) and ds.test.shape == (4, 784)
    assert ds.train.dtype == torch.float32
    np.testing.assert_allclose(ds.valid.numpy(), images[-2:].reshape(2, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(ds.train_labels.numpy(), labels[:-2])
    np.testing.assert_array_equal(ds.valid_labels.numpy(), labels[-2:])
    assert ds.image_shape == (1, 28, 28)


def test_mnist_from_cache_subfolder_uncompressed():
    write_idx_set(cache() / "mnist", gz=False)
    ds = data.load("mnist")
    assert ds.name == "mnist" and ds.binary and ds.train.shape == (10, 784)
    assert ds.defaults["model"]["likelihood"] == "bernoulli"
    assert ds.label_names == list("0123456789")


def test_mnist_cache_checks_published_md5_of_gz_files():
    write_idx_set(cache(), gz=True)  # made-up files under the published names
    message = error(data.load, "mnist")
    assert "train-images-idx3-ubyte.gz" in message and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in message


def test_fashion_mnist_from_its_own_subfolder(monkeypatch):
    arrays = write_idx_set(cache() / "fashion-mnist", gz=True)
    md5s = {n: md5_of(cache() / "fashion-mnist" / n) for n in data.IDX_FILES}
    monkeypatch.setattr(mnist, "FASHION_IDX_MD5", md5s)
    ds = data.load("Fashion_MNIST")
    assert ds.name == "fashion-mnist" and ds.train.shape == (10, 784)
    assert ds.label_names[0] == "T-shirt/top"
    np.testing.assert_array_equal(ds.test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_idx_with_last_10000_as_valid(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10003, 2, 2), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(10003, dtype=np.uint8) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 2, 2), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    ds = data.load_idx_folder(tmp_path)
    assert ds.train.shape == (3, 4) and ds.valid.shape == (10000, 4)


def test_idx_wrong_magic_number(tmp_path):
    write_idx_set(tmp_path)
    # labels (rank 1) where images (rank 3) belong
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros(12, np.uint8))
    message = error(data.load, tmp_path)
    assert "magic number 0x00000801" in message and "expected 0x00000803" in message


def test_idx_not_an_idx_file(tmp_path):
    (tmp_path / "x-idx3-ubyte").write_bytes(b"PK\x03\x04 this is a zip")
    assert "magic number 0x504B0304" in error(data.read_idx, tmp_path / "x-idx3-ubyte", 3)


def test_idx_truncated_and_corrupt(tmp_path):
    path = write_idx(tmp_path / "a-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    assert "needs 2352" in error(data.read_idx, path, 3)
    bad_gz = tmp_path / "b-idx3-ubyte.gz"
    bad_gz.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    assert "cannot read" in error(data.read_idx, bad_gz, 3)


def test_idx_labels_do_not_match_images(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    assert "12 images but its labels 5" in error(data.load, tmp_path)


# -- the classic mnist.pkl.gz ----------------------------------------------------------------


def _real_mnist_folder() -> Path | None:
    return next((f for f in _SHARED if (f / "mnist.pkl.gz").is_file()), None)


@pytest.mark.skipif(_real_mnist_folder() is None, reason="mnist.pkl.gz is not on this machine")
def test_real_mnist_pickle():
    ds = data.load("mnist", root=_real_mnist_folder())
    assert (ds.train.shape, ds.valid.shape, ds.test.shape) == (
        (50000, 784),
        (10000, 784),
        (10000, 784),
    )
    assert ds.binary and float(ds.train.min()) >= 0 and float(ds.train.max()) <= 1
    assert ds.train_labels.shape == (50000,) and int(ds.train_labels[0]) == 5
    VAEConfig(data_shape=ds.data_shape, **ds.defaults["model"])


def test_unknown_pickle_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(Boom())))
    assert "sha256 mismatch" in error(data.load, path)
    assert not (tmp_path / "pwned").exists()


# -- CIFAR-10 --------------------------------------------------------------------------------


def cifar_batch(n: int, seed: int) -> tuple[bytes, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    raw = pickle.dumps({b"batch_label": b"fake", b"data": pixels, b"labels": labels}, protocol=4)
    return raw, pixels, labels


def write_cifar_folder(folder: Path, n: int = 3) -> dict[str, np.ndarray]:
    """A fake cifar-10-batches-py (n images per batch); returns each batch's pixels."""
    folder.mkdir(parents=True)
    pixels = {}
    for i, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        raw, pixels[name], _ = cifar_batch(n, i)
        (folder / name).write_bytes(raw)
    meta = {b"label_names": [c.encode() for c in data.CIFAR10_CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    return pixels


def md5_table(folder: Path) -> dict[str, str]:
    return {p.name: md5_of(p) for p in folder.iterdir()}


def test_cifar10_folder_with_matching_checksums(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    pixels = write_cifar_folder(folder)
    ds = data.load_cifar10_folder(folder, _md5=md5_table(folder))
    assert ds.train.shape == (12, 3, 32, 32) and ds.valid.shape == (3, 3, 32, 32)
    assert ds.test.shape == (3, 3, 32, 32) and not ds.binary
    # a row is 1024 red, 1024 green, 1024 blue values, each plane row by row
    row = pixels["data_batch_1"][0]
    assert float(ds.train[0, 1, 0, 2]) == pytest.approx(row[1024 + 2] / 255)
    assert float(ds.train[0, 2, 31, 31]) == pytest.approx(row[3071] / 255)
    assert ds.valid_labels.shape == (3,) and ds.label_names[0] == "airplane"
    assert ds.image_shape == (3, 32, 32)
    VAEConfig(data_shape=ds.data_shape, **ds.defaults["model"])


def test_cifar10_public_path_verifies_the_published_md5():
    write_cifar_folder(cache() / "cifar10" / "cifar-10-batches-py")
    message = error(data.load, "cifar10")
    assert "data_batch_1" in message and data.CIFAR10_BATCH_MD5["data_batch_1"] in message


def test_cifar10_folder_missing_a_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder)
    (folder / "data_batch_3").unlink()
    assert "lacks data_batch_3" in error(data.load_cifar10_folder, folder)


def test_cifar10_tarball(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder)
    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    got = hashlib.md5(tarball.read_bytes()).hexdigest()
    got_sha = hashlib.sha256(tarball.read_bytes()).hexdigest()
    ds = data.load_cifar10_tarball(tarball, _md5=got, _sha256=got_sha)
    assert ds.train.shape == (12, 3, 32, 32)
    message = error(data.load, tarball)  # the public path checks the published digests
    assert "c58f30108f718f92721af3b95e74349a" in message


def test_restricted_unpickler_refuses_code_even_with_matching_checksum(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder)
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Boom()}, protocol=4))
    message = error(data.load_cifar10_folder, folder, _md5=md5_table(folder))
    assert "system is not allowed" in message and "data_batch_2" in message
    assert not (tmp_path / "pwned").exists()


def test_cifar10_batch_of_wrong_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": [1, 2, 3]}, protocol=4))
    message = error(data.load_cifar10_folder, folder, _md5=md5_table(folder))
    assert "test_batch is not a CIFAR-10 batch" in message


# -- Frey Face -------------------------------------------------------------------------------


def write_frey(path: Path, n: int = 30, fmt: str = "5", var: str = "ff") -> np.ndarray:
    ff = np.random.default_rng(0).integers(0, 256, (560, n), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {var: ff if fmt == "5" else ff.astype(np.float64)}, format=fmt)
    return ff


@pytest.mark.parametrize(("place", "fmt"), [("frey-face", "5"), ("", "5"), ("", "4")])
def test_frey_face_from_cache(place, fmt):
    ff = write_frey(cache() / place / "frey_rawface.mat", fmt=fmt)
    ds = data.load("frey-face")
    assert ds.name == "frey-face" and not ds.binary
    assert ds.train.shape == (24, 560) and ds.valid.shape == (3, 560) and ds.test.shape == (3, 560)
    assert ds.image_shape == (1, 28, 20) and ds.train_labels is None
    every = torch.cat([ds.train, ds.valid, ds.test]).numpy()
    # each column of ff is one image; all of them come back, scaled by 1/255
    np.testing.assert_allclose(np.sort(every, axis=0), np.sort(ff.T / 255, axis=0), rtol=1e-6)
    assert ds.defaults["model"]["likelihood"] == "gaussian"
    assert ds.defaults["model"]["hidden"] == [200]


def test_frey_face_bad_files(tmp_path):
    write_frey(tmp_path / "other.mat", var="faces")
    assert "no variable 'ff'" in error(data.load, tmp_path / "other.mat")
    scipy.io.savemat(tmp_path / "wrong.mat", {"ff": np.zeros((28, 20), np.uint8)})
    assert "shape (28, 20)" in error(data.load, tmp_path / "wrong.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    assert "cannot read" in error(data.load, tmp_path / "junk.mat")


# -- offline, cache and download -------------------------------------------------------------


def test_data_dir_from_env_and_home(monkeypatch, tmp_path):
    assert data.data_dir() == cache()
    monkeypatch.delenv("VAEKIT_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.data_dir() == tmp_path / "home" / ".cache" / "vaekit"


@pytest.mark.parametrize(
    ("name", "file", "sub"),
    [
        ("mnist", "mnist.pkl.gz", "mnist"),
        ("fashion-mnist", "train-images-idx3-ubyte.gz", "fashion-mnist"),
        ("cifar10", "cifar-10-python.tar.gz", "cifar10"),
        ("frey-face", "frey_rawface.mat", "frey-face"),
    ],
)
def test_offline_message_says_which_file_goes_where(name, file, sub):
    message = error(data.load, name)
    assert file in message and repr(str(cache() / sub)) in message
    assert "VAEKIT_OFFLINE" in message


def test_download_checks_then_renames(tmp_path):
    src = tmp_path / "server" / "file.bin"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    dest = tmp_path / "cache" / "x" / "file.bin"
    good = hashlib.md5(b"payload").hexdigest()
    assert data.download([src.as_uri()], dest, md5=good)
    assert dest.read_bytes() == b"payload"
    dest.unlink()
    message = error(data.download, [src.as_uri()], dest, md5="0" * 32)
    assert "expected 00000000" in message and "discarded" in message
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial file left
    assert not data.download([(tmp_path / "missing").as_uri()], dest)


def test_download_is_used_when_online(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_OFFLINE", "0")
    server = tmp_path / "server"
    write_frey(server / "frey_rawface.mat", n=10)
    monkeypatch.setattr(frey, "FREY_URL", (server / "frey_rawface.mat").as_uri())
    ds = data.load("frey-face")
    assert ds.train.shape == (8, 560)
    assert (cache() / "frey-face" / "frey_rawface.mat").is_file()


def test_downloaded_mnist_idx_files_are_md5_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_OFFLINE", "0")
    server = tmp_path / "server"
    write_idx_set(server, gz=True)
    monkeypatch.setattr(mnist, "MNIST_URLS", (server.as_uri() + "/",))
    monkeypatch.setattr(mnist, "MNIST_IDX_MD5", {n: md5_of(server / n) for n in data.IDX_FILES})
    assert data.load("mnist").train.shape == (10, 784)
    assert sorted(p.name for p in (cache() / "mnist").iterdir()) == sorted(data.IDX_FILES)


def test_failed_download_message(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_OFFLINE", "0")
    monkeypatch.setattr(frey, "FREY_URL", (tmp_path / "nowhere.mat").as_uri())
    message = error(data.load, "frey-face")
    assert "download from" in message and "failed" in message and "frey_rawface.mat" in message


def test_download_of_bad_frey_file_is_discarded(monkeypatch, tmp_path):
    monkeypatch.setenv("VAEKIT_OFFLINE", "0")
    (tmp_path / "bad.mat").write_bytes(b"garbage" * 20)
    monkeypatch.setattr(frey, "FREY_URL", (tmp_path / "bad.mat").as_uri())
    assert "cannot read" in error(data.load, "frey-face")
    assert not (cache() / "frey-face" / "frey_rawface.mat").exists()


# -- the user's arrays -----------------------------------------------------------------------


def test_npy_float_in_unit_interval(tmp_path):
    x = np.random.default_rng(0).random((50, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ds = data.load(tmp_path / "x.npy", seed=3)
    assert ds.binary and ds.train.shape == (40, 6) and ds.valid.shape == (5, 6)
    again = data.load(tmp_path / "x.npy", seed=3)
    assert torch.equal(ds.valid, again.valid)
    assert not torch.equal(ds.valid, data.load(tmp_path / "x.npy", seed=4).valid)


def test_npy_uint8_is_scaled_and_not_binary(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(160, dtype=np.uint8).reshape(10, 1, 4, 4))
    ds = data.load(tmp_path / "x.npy")
    every = torch.cat([ds.train, ds.valid, ds.test])
    assert float(every.max()) == pytest.approx(159 / 255)
    assert not ds.binary and ds.image_shape == (1, 4, 4)


def test_npy_outside_unit_interval_is_not_binary(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(40, dtype=np.int64).reshape(10, 4))
    ds = data.load(tmp_path / "x.npy")
    assert not ds.binary and float(torch.cat([ds.train, ds.valid, ds.test]).max()) == 39


def test_npy_nan_names_the_example(tmp_path):
    x = np.zeros((10, 3), np.float32)
    x[7, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    assert "first in example 7" in error(data.load, tmp_path / "x.npy")


def test_npz_splits_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        train=rng.random((20, 3)),
        test=rng.random((5, 3)),
        train_labels=np.arange(20),
        test_labels=np.arange(5),
    )
    ds = data.load(tmp_path / "d.npz")
    assert ds.train.shape == (18, 3) and ds.valid.shape == (2, 3) and ds.test.shape == (5, 3)
    assert sorted(torch.cat([ds.train_labels, ds.valid_labels]).tolist()) == list(range(20))
    np.savez(tmp_path / "one.npz", x=rng.random((10, 2)), labels=np.arange(10))
    assert data.load(tmp_path / "one.npz").train_labels is not None


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"a": np.zeros((4, 2), np.complex64)}, "holds complex numbers"),
        ({"a": np.zeros(5)}, "has shape (5,)"),
        ({"a": np.zeros((0, 3))}, "has shape (0, 3)"),
        ({"a": np.zeros((4, 2)), "b": np.zeros((4, 2))}, "holds ['a', 'b']"),
        ({"train": np.zeros((4, 2)), "test": np.zeros((4, 3))}, "different example shapes"),
        ({"x": np.zeros((4, 2)), "labels": np.zeros(3)}, "4 examples but 3 labels"),
        ({"a": np.array([["a", "b"]] * 4)}, "not numbers"),
    ],
)
def test_bad_arrays(tmp_path, arrays, expected):
    np.savez(tmp_path / "bad.npz", **arrays)
    assert expected in error(data.load, tmp_path / "bad.npz")


def test_unreadable_array_files(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert "cannot read" in error(data.load, tmp_path / "junk.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object))
    assert "cannot read" in error(data.load, tmp_path / "obj.npy")
    assert "does not exist" in error(data.load, tmp_path / "absent.npy")


def test_too_few_examples_to_split(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    assert "2 examples cannot be split" in error(data.load, tmp_path / "x.npy")
    np.save(tmp_path / "x.npy", np.zeros((1, 3), np.float32))
    assert "1 example cannot be split" in error(data.load, tmp_path / "x.npy")


# -- CSV -------------------------------------------------------------------------------------


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("header", [True, False])
def test_csv_with_and_without_header(tmp_path, header):
    rows = "\n".join(f"{i / 20},{1 - i / 20},0.5" for i in range(20))
    text = ("a,b,c\n" if header else "") + rows + "\n\n"
    ds = data.load(write_csv(tmp_path / "x.csv", text))
    assert ds.train.shape == (16, 3) and ds.binary and ds.train_labels is None
    every = torch.cat([ds.train, ds.valid, ds.test])
    assert sorted(every[:, 0].tolist()) == pytest.approx([i / 20 for i in range(20)])


@pytest.mark.parametrize("column", [0, "label", -3])
def test_csv_label_column(tmp_path, column):
    rows = "\n".join(f"{i % 3},{i},{2 * i}" for i in range(10))
    ds = data.load(write_csv(tmp_path / "x.csv", "label,u,v\n" + rows), label_column=column)
    assert ds.data_shape == (2,) and not ds.binary
    labels = torch.cat([ds.train_labels, ds.valid_labels, ds.test_labels])
    x = torch.cat([ds.train, ds.valid, ds.test])
    assert torch.equal(labels, x[:, 0].long() % 3)


def test_csv_text_labels_are_numbered(tmp_path):
    rows = "\n".join(f"{i / 10},{'cat' if i % 2 else 'dog'}" for i in range(10))
    ds = data.load(write_csv(tmp_path / "x.csv", rows), label_column=-1)
    assert ds.label_names == ["cat", "dog"] and ds.data_shape == (1,)


def test_tsv_suffix_in_capitals_is_tab_separated(tmp_path):
    (tmp_path / "x.TSV").write_text("a\tb\tc\n1\t2\t3\n4\t5\t6\n7\t8\t9\n")
    ds = data.load(tmp_path / "x.TSV")
    assert ds.data_shape == (3,)


def test_a_large_binary_file_is_not_text(tmp_path):
    rng = np.random.default_rng(0)
    blob = rng.integers(1, 256, 200_000, dtype=np.uint8).tobytes()  # no NUL byte, not UTF-8
    (tmp_path / "blob").write_bytes(blob)
    (tmp_path / "words").write_text("a" + "é" * 40_000 + "\n")  # a character cut at 64 kB
    assert not data._is_text(tmp_path / "blob")
    assert data._is_text(tmp_path / "words")


def test_csv_tab_separated(tmp_path):
    ds = data.load(write_csv(tmp_path / "x.tsv", "\n".join(f"{i}\t1" for i in range(5))))
    assert ds.data_shape == (2,)


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("1,2,3\n4,5\n7,8,9\n", {}, "row 2 of"),
        ("x,y\n1,2\n3,oops\n5,6\n", {}, "row 3, column 2 ('y') of"),
        ("1,2\n3,4\nnan,6\n7,8\n", {}, "first in example 2"),
        ("", {}, "holds no rows"),
        ("a,b\n", {}, "header row and no data"),
        ("a,b\n1,2\n3,4\n5,6\n", {"label_column": "c"}, "label column 'c' is not in the header"),
        ("1,2\n3,4\n5,6\n", {"label_column": 5}, "label column 5 is outside the 2 columns"),
        ("1\n2\n3\n", {"label_column": 0}, "cannot be both data and labels"),
        ("a,b\n1,2\n3,4\n5,6\n", {"label_column": "--1"}, "label column '--1' is not in"),
        ("a,b\n1,2\n3,4\n5,6\n", {"label_column": "²"}, "label column '²' is not in"),
        ("a,b\n1,2,3\n4,5,6\n", {}, "2 header names but 3 values"),
    ],
)
def test_bad_csv(tmp_path, text, options, expected):
    path = write_csv(tmp_path / "bad.csv", text)
    message = error(data.load, path, **options)
    assert expected in message and "bad.csv" in message


def test_option_that_does_not_apply(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 2), np.float32))
    assert "label_column=1 does not apply" in error(data.load, tmp_path / "x.npy", label_column=1)
    assert "image_size=8 does not apply" in error(data.load, "digits", image_size=8)


# -- image folders ---------------------------------------------------------------------------


def write_png(path: Path, size: tuple[int, int], mode: str = "L", value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, colour).save(path)


def test_grey_images_resized_to_most_common_size(tmp_path):
    for i in range(4):
        write_png(tmp_path / "imgs" / f"{i}.png", (6, 5), value=10 * i)  # (W, H)
    write_png(tmp_path / "imgs" / "big.png", (12, 10), value=200)
    ds = data.load(tmp_path / "imgs")
    assert ds.data_shape == (1, 5, 6) and ds.image_shape == (1, 5, 6)
    assert not ds.binary and ds.train_labels is None
    every = torch.cat([ds.train, ds.valid, ds.test])
    assert sorted(round(float(v) * 255) for v in every[:, 0, 0, 0]) == [0, 10, 20, 30, 200]


def test_rgb_and_grey_images_in_class_subfolders(tmp_path):
    for i in range(3):
        write_png(tmp_path / "imgs" / "cats" / f"{i}.png", (8, 8), "RGB", value=i)
        write_png(tmp_path / "imgs" / "dogs" / f"{i}.png", (4, 4), "L", value=i)
    ds = data.load(tmp_path / "imgs", image_size=(3, 5))
    assert ds.data_shape == (3, 3, 5) and ds.label_names == ["cats", "dogs"]
    every = torch.cat([ds.train, ds.valid, ds.test])
    labels = torch.cat([ds.train_labels, ds.valid_labels, ds.test_labels])
    cats = every[labels == 0]
    assert torch.allclose(cats[:, 2], 1 - cats[:, 0])  # blue = 255 - red
    dogs = every[labels == 1]
    assert torch.equal(dogs[:, 0], dogs[:, 1])  # grey images repeat over R, G, B


def test_black_and_white_images_suit_bernoulli(tmp_path):
    for i in range(5):
        write_png(tmp_path / "bw" / f"{i}.png", (4, 4), value=255 * (i % 2))
    ds = data.load(tmp_path / "bw", image_size=4)
    assert ds.binary and ds.data_shape == (1, 4, 4)


def test_16_bit_and_float_grey_images_scale_to_8_bits(tmp_path):
    # Pillow's convert("L") clips 16-bit values at 255, which made such images almost white
    levels = np.array([[0, 257 * 10, 257 * 128], [257 * 200, 65535, 1000]], dtype=np.uint16)
    (tmp_path / "deep").mkdir()
    for i in range(3):
        Image.fromarray(levels).save(tmp_path / "deep" / f"{i}.png")
    Image.fromarray(np.full((2, 3), 0.5, np.float32), "F").save(tmp_path / "deep" / "f.tif")
    ds = data.load(tmp_path / "deep")
    every = torch.cat([ds.train, ds.valid, ds.test]) * 255
    want = np.round(levels / 257.0)
    assert ds.data_shape == (1, 2, 3)
    assert sum(np.array_equal(x[0].numpy().round(), want) for x in every) == 3
    assert sum(bool((x == 128).all()) for x in every.round()) == 1  # 0.5 of a float image
    # 8-bit levels stored as floats (ImageJ's float TIFFs) read as they did through Pillow
    Image.fromarray(np.full((2, 3), 77.0, np.float32), "F").save(tmp_path / "deep" / "f.tif")
    every = torch.cat([(ds := data.load(tmp_path / "deep")).train, ds.valid, ds.test]) * 255
    assert sum(bool((x == 77).all()) for x in every.round()) == 1
    Image.fromarray(np.full((2, 3), 300.0, np.float32), "F").save(tmp_path / "deep" / "f.tif")
    message = error(data.load, tmp_path / "deep")
    assert "f.tif" in message and "[300, 300]" in message and "convert it" in message


def test_bad_image_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert "holds no images" in error(data.load, tmp_path / "empty")
    write_png(tmp_path / "mixed" / "a.png", (4, 4))
    write_png(tmp_path / "mixed" / "cls" / "b.png", (4, 4))
    assert "both at its top and in sub-folders" in error(data.load, tmp_path / "mixed")
    write_png(tmp_path / "broken" / "a.png", (4, 4))
    (tmp_path / "broken" / "b.png").write_bytes(b"\x89PNG but not really")
    assert "b.png" in error(data.load, tmp_path / "broken")


# -- built-ins, preprocessing and the entry point --------------------------------------------


def test_digits_is_offline_and_labelled():
    ds = data.load("digits", seed=1)
    assert ds.train.shape == (1257, 64) and ds.binary and ds.image_shape == (1, 8, 8)
    assert ds.train_labels.shape == (1257,)


@pytest.mark.parametrize("name", sorted(data.DEFAULTS))
def test_defaults_are_valid_settings(name):
    shapes = {"cifar10": (3, 32, 32), "frey-face": (560,), "digits": (64,)}
    d = data.DEFAULTS[name]
    VAEConfig(data_shape=shapes.get(name, (784,)), **d["model"])
    TrainConfig(**d["train"])


def test_static_binarization(tmp_path):
    x = np.random.default_rng(0).random((40, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    a = data.load(tmp_path / "x.npy", binarize="static", seed=2)
    b = data.load(tmp_path / "x.npy", binarize="static", seed=2)
    c = data.load(tmp_path / "x.npy", binarize="static", seed=3)
    assert set(a.train.unique().tolist()) <= {0.0, 1.0} and a.binarization == "static"
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    np.save(tmp_path / "big.npy", x * 3)
    assert "needs values in [0, 1]" in error(data.load, tmp_path / "big.npy", binarize="static")
    assert "unknown binarize 'dynamic'" in error(data.load, "digits", binarize="dynamic")


def test_unknown_name_and_unsupported_file(tmp_path):
    message = error(data.load, "mnsit")
    assert "'mnsit'" in message and "fashion-mnist" in message
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    assert "cannot read" in error(data.load, tmp_path / "x.parquet")


def test_pickled_cifar_checksums_are_written_as_published():
    # the tables that guard unpickling are the published ones, not a test's
    assert data.CIFAR10_TARBALL_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert len(data.CIFAR10_TARBALL_SHA256) == 64 and len(data.CIFAR10_BATCH_MD5) == 7


# -- any file: a data set or a DataError, never anything else -----------------------------------

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

ANY_FILE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def loads_or_data_error(path: Path) -> data.Dataset | None:
    """data.load(path): a data set whose splits are finite float32 arrays of one example shape
    that together hold every example, or a one-line DataError (None)."""
    try:
        ds = data.load(path)
    except DataError as err:
        assert "\n" not in str(err)
        return None
    splits = [ds.train, ds.valid, ds.test]
    for x in splits:
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == tuple(ds.data_shape)
        assert torch.isfinite(x).all()
    assert len(ds.train) > 0
    return ds


@ANY_FILE
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".npy", ".npz", ".csv", ".tsv"]))
def test_random_bytes_are_a_data_set_or_a_data_error(tmp_path, raw, suffix):
    file = tmp_path / f"random{suffix}"
    file.write_bytes(raw)
    loads_or_data_error(file)


arrays = hnp.arrays(
    dtype=st.sampled_from(["float16", "float32", "float64", "uint8", "int8", "int64", "bool"]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
)


@ANY_FILE
@given(a=arrays, compressed=st.booleans())
def test_random_arrays_load_whole_or_are_a_data_error(tmp_path, a, compressed):
    file = tmp_path / "a.npy"
    np.save(file, a)
    ds = loads_or_data_error(file)
    if ds is not None:
        assert len(ds.train) + len(ds.valid) + len(ds.test) == a.shape[0]
        assert np.isfinite(a.astype(np.float64)).all()
    npz = tmp_path / "a.npz"
    (np.savez_compressed if compressed else np.savez)(npz, a)
    loads_or_data_error(npz)


@ANY_FILE
@given(a=arrays, cut=st.integers(0, 400), flip=st.integers(0, 400))
@example(a=np.array(0.0, dtype=np.float16), cut=128, flip=60)  # a header the tokenizer rejects
def test_damaged_npy_files_are_a_data_set_or_a_data_error(tmp_path, a, cut, flip):
    file = tmp_path / "a.npy"
    np.save(file, a)
    raw = bytearray(file.read_bytes())
    if flip < len(raw):
        raw[flip] ^= 0xFF
    file.write_bytes(bytes(raw[: max(cut, 1)]) if cut < len(raw) else bytes(raw))
    loads_or_data_error(file)


cells = st.sampled_from(["0", "1", "0.5", "-3", "1e3", "nan", "inf", "", " ", "a", "x y", '"1"',
                         "1,5", "\t", "0x10", "1_000", "é"])  # fmt: skip


@ANY_FILE
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=5), max_size=12), tsv=st.booleans())
def test_any_csv_is_a_data_set_or_a_data_error(tmp_path, rows, tsv):
    sep = "\t" if tsv else ","
    file = tmp_path / ("t.tsv" if tsv else "t.csv")
    file.write_text("\n".join(sep.join(r) for r in rows))
    loads_or_data_error(file)


# -- one module per source -------------------------------------------------------------------


def test_each_built_in_loader_keeps_its_defaults_beside_it():
    from vaekit.data import cifar, digits

    assert data.DEFAULTS["digits"] is digits.DEFAULTS and data.DEFAULTS["cifar10"] is cifar.DEFAULTS
    assert data.DEFAULTS["mnist"] is data.DEFAULTS["fashion-mnist"] is mnist.DEFAULTS
    assert data.DEFAULTS["frey-face"] is frey.DEFAULTS


@pytest.mark.parametrize(
    ("name", "hint"),
    [("frey-face", (28, 20)), ("frey_face", (28, 20)), ("freyface", (28, 20)), ("mnist", None),
     ("digits", None), ("my-table", None), (None, None)],
)  # fmt: skip
def test_image_shape_hint_comes_from_the_loader(name, hint):
    assert data.image_shape_hint(name) == hint


def test_one_validator_for_loaded_arrays_and_model_input():
    check = data.check_examples
    assert "expected (examples, ...)" in error(check, np.zeros(5), name="'a.npy'")
    assert "expected (examples, ...)" in error(check, np.zeros((0, 3)), name="'a.npy'")
    bad = np.zeros((4, 2), np.float32)
    bad[2, 1] = np.nan
    assert "first in example 2" in error(check, bad, name="'a.npy'")
    assert "first in example 2" in error(check, torch.from_numpy(bad), (2,))
    check(np.array([["a", "b"]]), name="'labels'")  # text is no float: nothing to check
    check(np.ones((3, 2)), (2,), support="unit", levels=256)
    assert "[0, 1]" in error(check, np.full((3, 2), 2.0), (2,), support="unit")

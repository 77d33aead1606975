"""A user's own data files through the ``vaekit`` command, as people bring them: arrays with
text labels, images stored channels-last, CSV files from spreadsheets, WAV files from other tools.

Each file either trains and serves the follow-up commands, or gives one line on stderr naming the
file and what to do, exit status 2 and no traceback.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import png, run_cli
from PIL import Image

import vaekit
from vaekit import data

TINY = ["--epochs", "1", "--set", "hidden=[8]", "--set", "latent_dim=2", "-k", "2", "-q"]


def _one_line(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaekit: error: ") and "Traceback" not in err
    return err


def test_text_labels_of_an_npz_number_the_classes_of_a_conditional_run(capsys, tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["setosa", "virginica", "versicolor"])
    np.savez(tmp_path / "d.npz", x=rng.random((30, 4)), labels=names[np.arange(30) % 3])
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "d.npz", "--out", out, *TINY,
                           "--set", "condition_dim=3")  # fmt: skip
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["condition_dim"] == 3
    ds = data.load(tmp_path / "d.npz")
    assert ds.label_names == ["setosa", "versicolor", "virginica"]
    code, _, err = run_cli(capsys, "encode", out, "--output", tmp_path / "z.npy")
    assert code == 0, err
    assert np.load(tmp_path / "z.npy").shape == (3, 2)
    # a label array of another shape, or of fractions, is one line naming it
    np.savez(tmp_path / "bad.npz", x=rng.random((30, 4)), labels=rng.random(30))
    err = _one_line(*run_cli(capsys, "train", "--data", tmp_path / "bad.npz", "--out",
                             tmp_path / "bad", *TINY))  # fmt: skip
    assert "'labels'" in err and "not whole numbers" in err
    np.savez(tmp_path / "bad.npz", x=rng.random((30, 4)), labels=np.eye(3)[np.arange(30) % 3])
    err = _one_line(*run_cli(capsys, "train", "--data", tmp_path / "bad.npz", "--out",
                             tmp_path / "bad", *TINY))  # fmt: skip
    assert "has shape (30, 3)" in err and "one-hot rows give labels.argmax(axis=1)" in err
    assert not (tmp_path / "bad").exists()


def test_csv_files_as_spreadsheets_write_them(capsys, tmp_path):
    rows = [[0.25 * (i % 4), 0.5, 1 - 0.25 * (i % 4)] for i in range(30)]
    # every row ends with the separator, the header too or not
    for name, head in (("trail.csv", "a,b,c,\n"), ("trail-header.csv", "a,b,c\n"),
                       ("trail.tsv", "")):  # fmt: skip
        sep = "\t" if name.endswith(".tsv") else ","
        text = head + "".join(sep.join(map(str, r)) + sep + "\n" for r in rows)
        (tmp_path / name).write_text(text)
        ds = data.load(tmp_path / name)
        assert ds.data_shape == (3,)
        every = np.concatenate([ds.train.numpy(), ds.valid.numpy(), ds.test.numpy()])
        assert sorted(map(tuple, every.tolist())) == sorted(map(tuple, rows))
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "trail.csv", "--out",
                           tmp_path / "run", *TINY)  # fmt: skip
    assert code == 0, err

    def refused(name: str, content: bytes) -> str:
        (tmp_path / name).write_bytes(content)
        return _one_line(*run_cli(capsys, "train", "--data", tmp_path / name, "--out",
                                  tmp_path / "no", *TINY))  # fmt: skip

    # the separator is read from the file: semicolons (with decimal commas, as spreadsheets in
    # many locales write them) in a .csv or a .tsv load as the same table
    semicolons = "a;b;c\n" + "".join(";".join(map(str, r)) + "\n" for r in rows)
    decimal = semicolons.replace(".", ",")  # 0,25;0,5;0,75
    for name, text in (("semi.csv", semicolons), ("semi.tsv", semicolons),
                       ("decimal.csv", decimal)):  # fmt: skip
        (tmp_path / name).write_text(text)
        ds = data.load(tmp_path / name)
        every = np.concatenate([ds.train.numpy(), ds.valid.numpy(), ds.test.numpy()])
        assert sorted(map(tuple, every.tolist())) == sorted(map(tuple, rows)), name
    err = refused("uneven.csv", b"a;b\n1;2\n3;4;5\n6;7\n")  # no separator splits it evenly
    assert "row 1 of" in err and "';'" in err and "one separator between values" in err
    err = refused("latin1.csv", "café,b\n1,2\n3,4\n5,6\n".encode("latin-1"))
    assert "latin1.csv" in err and "not UTF-8" in err and "save it as UTF-8" in err
    species = "x,y,species\n" + "".join(f"{i},{i},{'ab'[i % 2]}\n" for i in range(9))
    err = refused("species.csv", species.encode())
    assert "'a'" in err and "give --label-column species" in err
    err = refused("nohead.csv", "".join(f"{i},{'ab'[i % 2]}\n" for i in range(9)).encode())
    assert "give --label-column 1; columns count from 0" in err
    (tmp_path / "nohead.csv").rename(tmp_path / "labelled.csv")  # every row is an example
    assert data.load(tmp_path / "labelled.csv", label_column=1).train.shape[0] == 7
    err = refused("oops.csv", b"x,y\n1,2\n3,oops\n5,6\n")
    assert "oops" in err and "--label-column" not in err  # one bad cell is no label column
    assert not (tmp_path / "no").exists()


def test_images_stored_channels_last_train_and_draw(capsys, tmp_path):
    # Pillow, matplotlib and Keras keep images as (N, H, W, C)
    rng = np.random.default_rng(0)
    pixels = np.zeros((30, 4, 4, 3), np.uint8)
    pixels[..., 0] = 255  # red
    pixels[..., 2] = rng.integers(0, 256, (30, 1, 1))  # some blue, one level an image
    np.save(tmp_path / "hwc.npy", pixels)
    ds = data.load(tmp_path / "hwc.npy")
    assert ds.data_shape == (3, 4, 4) and ds.image_shape == (3, 4, 4)
    every = torch.cat([ds.train, ds.valid, ds.test])
    assert bool((every[:, 0] == 1).all() and (every[:, 1] == 0).all())
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "hwc.npy", "--out", out, *TINY)
    assert code == 0, err
    code, _, err = run_cli(capsys, "reconstruct", out, "-n", "2")
    assert code == 0, err
    png(out / "figures" / "reconstructions.png")
    with Image.open(out / "figures" / "reconstructions.png") as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    assert (rgb[:, 0] - rgb[:, 1] > 100).sum() >= 2 * 16  # the two inputs, red, not green
    code, _, err = run_cli(capsys, "encode", out, "--input", tmp_path / "hwc.npy", "--output",
                           tmp_path / "z.npy")  # fmt: skip
    assert code == 0, err
    model = vaekit.load(out)
    x = torch.from_numpy(pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    with torch.no_grad():
        want = model.encode(x).mean.numpy()
    assert np.allclose(np.load(tmp_path / "z.npy"), want, atol=1e-6)


def test_a_run_trained_on_channels_last_arrays_before_reads_them_as_it_did(capsys, tmp_path):
    """A run whose model took (H, W, C) examples (vaekit read such arrays as they were) gets its
    examples in that order from its own data and from --input, not the channels-first copy
    reshaped, which mixed up the pixels."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (30, 4, 5, 3)).astype(np.uint8)
    np.save(tmp_path / "hwc.npy", pixels)
    out = tmp_path / "old"
    torch.manual_seed(0)
    model = vaekit.VAE(data_shape=(4, 5, 3), latent_dim=2, hidden=(8,), likelihood="gaussian")
    source = {"name": "hwc", "source": str(tmp_path / "hwc.npy"), "split_seed": 0}
    vaekit.save(model, out, data=source)
    x = torch.from_numpy(pixels.astype(np.float32) / 255)
    test = data.load(tmp_path / "hwc.npy").test.permute(0, 2, 3, 1)  # the run's own test split
    for args, examples in (([], test), (["--input", tmp_path / "hwc.npy"], x)):
        code, _, err = run_cli(capsys, "encode", out, *args, "-o", tmp_path / "z.npy", "--force")
        assert code == 0, err
        with torch.no_grad():
            want = model.encode(examples).mean.numpy()
        assert np.allclose(np.load(tmp_path / "z.npy"), want, atol=1e-6)


def test_image_folders_as_cameras_and_other_machines_leave_them(capsys, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    pixels = np.zeros((4, 6, 3), np.uint8)  # 4 rows, 6 columns: red on the left half
    pixels[:, :3, 0] = 255
    for klass in ("cats", "dogs"):
        for i in range(3):
            im = Image.fromarray(pixels)
            exif = im.getexif()
            exif[0x0112] = 6  # a camera held upright: stored sideways, shown turned 90 degrees
            (photos / klass).mkdir(parents=True, exist_ok=True)
            im.save(photos / klass / f"{i}.png", exif=exif.tobytes())
        # macOS's companion file of a copy, and Jupyter's checkpoint folder, are no data
        (photos / klass / "._0.png").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        ")
    (photos / ".ipynb_checkpoints").mkdir()
    Image.fromarray(pixels).save(photos / ".ipynb_checkpoints" / "0.png")
    ds = data.load(photos)
    assert ds.label_names == ["cats", "dogs"] and ds.data_shape == (3, 6, 4)
    every = torch.cat([ds.train, ds.valid, ds.test])
    assert len(every) == 6 and bool((every[:, 0, :3] == 1).all())  # red at the top, turned
    assert bool((every[:, 0, 3:] == 0).all())
    code, _, err = run_cli(capsys, "train", "--data", photos, "--out", tmp_path / "run", *TINY)
    assert code == 0, err
    # an image beyond Pillow's guard against decompression bombs is one line naming it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    err = _one_line(*run_cli(capsys, "train", "--data", photos, "--out", tmp_path / "no", *TINY))
    assert "0.png" in err and "more than the 20 pixels" in err and "decompression bombs" in err
    assert "shrink it" in err  # Pillow refuses images of more than twice MAX_IMAGE_PIXELS
    assert not (tmp_path / "no").exists()


def test_wav_folders_skip_hidden_files(tmp_path):
    from vaekit.data import audio

    t = np.arange(4000) / 16000
    for i in range(3):
        wave = (0.5 * np.sin(2 * np.pi * (300 + 100 * i) * t)).astype(np.float32)
        (tmp_path / f"{i}.wav").write_bytes(audio.wav_bytes(wave, 16000))
    (tmp_path / "._0.wav").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        ")
    ds = data.load(tmp_path)
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 3


@pytest.mark.parametrize(
    ("labels", "expected"),
    [([-1, 0, 1], "has label -1; a conditional run needs classes numbered 0..2"),
     ([5, 10, 2000], "has label 2000 but condition_dim = 3 takes labels 0..2")],
)  # fmt: skip
def test_labels_a_conditional_run_cannot_take_are_the_only_line(capsys, tmp_path, labels, expected):
    rows = "".join(f"{i / 30},{1 - i / 30},{labels[i % 3]}\n" for i in range(30))
    (tmp_path / "t.csv").write_text(rows)
    args = ["--label-column", "2", "--out", tmp_path / "run", *TINY, "--set", "condition_dim=3"]
    code, out, err = run_cli(capsys, "train", "--data", tmp_path / "t.csv", *args)
    assert expected in _one_line(code, out, err) and "train split" in err
    assert out == "" and not (tmp_path / "run").exists()  # no settings printed before it


def test_a_grey_run_reads_a_folder_of_colour_images_and_back(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("grey", "colour", "colour-as-grey"):
        (tmp_path / folder).mkdir()
    for i in range(10):
        rgb = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        rgb.save(tmp_path / "colour" / f"{i}.png")
        rgb.convert("L").save(tmp_path / "colour-as-grey" / f"{i}.png")
        rgb.convert("L").save(tmp_path / "grey" / f"{i}.png")
    grey_run, colour_run = tmp_path / "grey-run", tmp_path / "colour-run"
    for folder, run in (("grey", grey_run), ("colour", colour_run)):
        code, _, err = run_cli(capsys, "train", "--data", tmp_path / folder, "--out", run, *TINY)
        assert code == 0, err
    # the grey run encodes colour images as Pillow turns them grey
    for folder in ("colour", "colour-as-grey"):
        code, _, err = run_cli(capsys, "encode", grey_run, "--data", tmp_path / folder,
                               "--output", tmp_path / f"{folder}.npy")  # fmt: skip
        assert code == 0, err
    assert np.array_equal(
        np.load(tmp_path / "colour.npy"), np.load(tmp_path / "colour-as-grey.npy")
    )
    code, _, err = run_cli(capsys, "evaluate", colour_run, "--data", tmp_path / "grey", "-k", "2")
    assert code == 0, err

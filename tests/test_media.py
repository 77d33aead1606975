"""vaekit.media: each kind of example (arrays and images, text, audio) written to real files and
read back, drawn, printed and chosen from a run's config, as the commands use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VAE, TextVAE
from vaekit.data import audio
from vaekit.errors import ConfigError, DataError
from vaekit.media import (
    SPECTROGRAM_SCALE,
    Arrays,
    Audio,
    Medium,
    Text,
    media_kind,
    media_of,
    media_type,
    numbered,
)
from vaekit.runs import DECODED_FILE, figure

RATE = 8000


def _images(n: int = 3) -> torch.Tensor:
    """``n`` 8-bit grey images (n, 1, 4, 6): values k / 255."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 4, 6), generator=g).float() / 255


@pytest.fixture
def arrays() -> Arrays:
    config = {"data": {"name": "mine", "image_shape": [1, 4, 6]}}
    return media_of(config, VAE(data_shape=(1, 4, 6), latent_dim=2, hidden=(4,)))


@pytest.fixture
def text() -> Text:
    model = TextVAE(vocab=tuple("abct"), data_shape=(5,), latent_dim=2, embed_dim=4, hidden=(8,))
    return media_of({"data": {"name": "words", "media": {"kind": "text"}}}, model)


def _tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tones: three low (300 Hz) and three high (1500 Hz), 0.3 s each."""
    folder = tmp_path_factory.mktemp("sounds")
    for k in range(3):
        for name, freq in (("low", 300.0), ("high", 1500.0)):
            path = folder / f"{name}-{k}.wav"
            path.write_bytes(audio.wav_bytes(_tone(freq + 10 * k, 0.3), RATE))
    return folder


@pytest.fixture(scope="module")
def sound(sounds: Path) -> Audio:
    settings = audio.AudioSettings(sample_rate=RATE, n_fft=256, hop=64, n_mels=24)
    dataset = audio.load_audio(sounds, settings=settings)
    config = {"data": {"name": "sounds", "media": dataset.media}}
    model = VAE(data_shape=dataset.data_shape, latent_dim=2, hidden=(4,), likelihood="gaussian")
    return media_of(config, model)


# -- choosing a medium -------------------------------------------------------------------------


def test_a_run_config_chooses_its_medium(arrays: Arrays, text: Text, sound: Audio) -> None:
    assert type(arrays) is Arrays and type(text) is Text and type(sound) is Audio
    assert all(isinstance(m, Medium) for m in (arrays, text, sound))
    assert media_kind({}) is None and media_kind({"data": "digits"}) is None
    assert media_type({"data": {"media": {"kind": "audio"}}}) is Audio
    with pytest.raises(ConfigError, match="'video' is unknown"):
        media_type({"data": {"media": {"kind": "video"}}})


def test_where_each_medium_writes_in_a_run_folder(tmp_path: Path) -> None:
    assert (
        Arrays.output("samples") == figure("samples") and Arrays.written("decoded") == DECODED_FILE
    )
    assert Text.output("samples") == "samples.txt" and Text.written("decoded") == "decoded.txt"
    assert Audio.output("samples") == "samples" and Audio.written("decoded") == "decoded"
    with pytest.raises(ValueError, match="not one of the run's sound folders"):
        Audio.output("latents")
    out = tmp_path / "x.npy"
    assert Arrays.picture_file(out, "decoded", beside=True) == tmp_path / "x.png"
    assert Arrays.picture_file(out, "decoded", beside=False) == tmp_path / figure("decoded")
    assert Text.picture_file(tmp_path / "d.txt", "decoded", beside=True) is None
    assert Audio.picture_file(tmp_path / "d", "decoded", beside=False) == tmp_path / "d" / (
        "spectrograms.png"
    )
    assert numbered("step", 3) == ["step-000", "step-001", "step-002"]


# -- arrays and images -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_arrays_round_trip_through_a_file(arrays: Arrays, tmp_path: Path, suffix: str) -> None:
    x = _images()
    [path] = arrays.write(x, tmp_path / f"x{suffix}")
    assert path == tmp_path / f"x{suffix}" and path.is_file()
    if suffix == ".csv":  # one flattened row per example under a header
        lines = path.read_text().splitlines()
        assert lines[0].split(",")[:2] == ["x0", "x1"] and len(lines) == 1 + len(x)
    back = arrays.read(path)
    assert back.shape == x.shape and torch.allclose(back, x, atol=1e-6)


def test_arrays_read_a_persons_files_as_data_files_are_read(arrays: Arrays, tmp_path: Path) -> None:
    pixels = np.arange(48, dtype=np.uint8).reshape(2, 4, 6, 1)  # 8-bit, channels last
    np.save(tmp_path / "mine.npy", pixels)
    x = arrays.read(tmp_path / "mine.npy")
    assert x.shape == (2, 1, 4, 6) and torch.allclose(x[0, 0, 0, 1], torch.tensor(1 / 255))
    np.save(tmp_path / "big.npy", np.full((1, 24), 2.0, dtype=np.float32))
    with pytest.raises(DataError, match=r"big\.npy"):  # outside a Bernoulli likelihood's [0, 1]
        arrays.read(tmp_path / "big.npy")
    np.save(tmp_path / "wide.npy", np.zeros((1, 25), dtype=np.float32))
    with pytest.raises(DataError, match=r"expects \(1, 4, 6\)"):
        arrays.read(tmp_path / "wide.npy")
    with pytest.raises(DataError, match=r"must be \.npy or \.csv"):
        arrays.read(tmp_path / "mine.txt")


def test_arrays_load_a_persons_data_file(arrays: Arrays, tmp_path: Path) -> None:
    x = _images(30)
    np.save(tmp_path / "mine.npy", x.numpy())
    dataset = arrays.load(str(tmp_path / "mine.npy"), seed=0)
    splits = torch.cat([dataset.train, dataset.valid, dataset.test])
    assert splits.shape == (30, 1, 4, 6)
    assert sorted(splits.flatten().tolist()) == sorted(x.flatten().tolist())


def test_arrays_are_drawn_and_shown_as_an_image_file(arrays: Arrays, tmp_path: Path) -> None:
    x = _images(4)
    shape = arrays.shape(None)
    assert shape == (1, 4, 6) and arrays.shape("4x6") == (4, 6)
    with pytest.raises(ConfigError, match="'4y6'"):
        arrays.shape("4y6")
    [path] = arrays.show(x, tmp_path / "grid.png", "sample", arrays.picture(x, shape, 2, 1))
    one_row = Image.open(
        arrays.show(x, tmp_path / "row.png", "s", arrays.picture(x, shape, 4, 1))[0]
    )
    two_rows = Image.open(path)
    assert two_rows.height > one_row.height and two_rows.width < one_row.width
    [pairs] = arrays.show_pairs(
        x, 1 - x, tmp_path / "pairs.png", arrays.pairs(x, 1 - x, shape, 4, 1)
    )
    assert Image.open(pairs).size == (one_row.width, two_rows.height)
    assert arrays.lines(x) == [] and arrays.pair_lines(x, x) == []


def test_arrays_summaries_levels_and_report_lines(arrays: Arrays) -> None:
    assert arrays.summary("samples", n=3, what="draws", of="", run="runs/a") == [
        "3 draws from runs/a"
    ]
    assert arrays.summary("decoded", n=2, latents="z.npy", shape=(2, 24)) == [
        "decoded 2 latents from z.npy: shape (2, 24)"
    ]
    assert arrays.bin_levels(_images()) == 256
    assert arrays.bin_levels(torch.full((2, 24), 0.5001)) is None
    assert arrays.importance_samples == 5000
    report = {"bits_per_dim": 1.23456, "reconstruction_mse": 0.012345}
    assert arrays.quality_lines(report) == [
        "  bits/dim                   1.2346",
        "  reconstruction MSE        0.01235 per dim",
    ]
    assert arrays.quality_lines({**report, "bits_per_dim_basis": "bins"})[0].endswith(
        "(8-bit bins)"
    )
    assert not arrays.takes_ends
    with pytest.raises(ConfigError, match="give two example indices"):
        arrays.ends("a", "b", "the ends")


# -- text --------------------------------------------------------------------------------------


def test_text_round_trip_through_a_file(text: Text, tmp_path: Path) -> None:
    x = text.model.ids(["cat", "a", "tact"])
    [path] = text.write(x, tmp_path / "words.txt")
    assert path.read_text() == "cat\na\ntact\n"
    assert torch.equal(text.read(path), x)
    assert text.lines(x) == ["cat", "a", "tact"]
    with pytest.raises(DataError, match=r"must be a \.txt file"):
        text.read(tmp_path / "words.csv")


def test_text_pairs_are_tab_separated_lines_and_never_drawn(text: Text, tmp_path: Path) -> None:
    x, y = text.model.ids(["cat", "tab"]), text.model.ids(["cab", "tab"])
    assert text.pair_lines(x, y) == ["cat\tcab", "tab\ttab"]
    [path] = text.show_pairs(x, y, tmp_path / "r.txt")
    assert path.read_text() == "cat\tcab\ntab\ttab\n"
    [path] = text.show(y, tmp_path / "s.txt", "sample")
    assert path.read_text() == "cab\ntab\n"
    assert text.shape("not a shape") is None  # no picture: the shape is never read
    assert text.picture(x, None, 2, None) is None and text.pairs(x, y, None, 2, None) is None


def test_text_load_ends_summaries_and_report_lines(text: Text, tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("cat\ntab\nact\n" * 4)
    dataset = text.load(str(tmp_path / "words.txt"), seed=0)
    splits = torch.cat([dataset.train, dataset.valid, dataset.test])
    assert sorted(text.lines(splits)) == sorted(["cat", "tab", "act"] * 4)
    ends, what = text.ends("cat", "tab", "the ends")
    assert torch.equal(ends, text.model.ids(["cat", "tab"])) and what == "'cat' and 'tab'"
    with pytest.raises(DataError, match="the ends"):
        text.ends("tacttact", "a", "the ends")  # longer than the model's 5 tokens
    assert text.summary("samples", n=3) == []
    assert text.summary("interpolation", steps=4, ends=what) == ["4 steps between 'cat' and 'tab'"]
    assert text.bin_levels(torch.zeros(2, 5)) is None and text.importance_samples == 100
    report = {"bits_per_char": 2.5, "tokens_per_string": 3.25, "exact_reconstruction": 0.5,
              "token_accuracy": 0.75}  # fmt: skip
    assert text.quality_lines(report) == [
        "  bits/char                  2.5000  (3.25 per string, end token included)",
        "  reconstruction              50.0% of strings, 75.0% of characters",
    ]


# -- audio -------------------------------------------------------------------------------------


def _band(sound: Audio, x: torch.Tensor) -> torch.Tensor:
    """The mel band of most energy of each example (N, 1, n_mels, frames), in log-mel values
    before the run's per-band scaling."""
    s = sound.settings()
    log_mel = x * torch.tensor(s.std).view(-1, 1) + torch.tensor(s.mean).view(-1, 1)
    return log_mel.mean(dim=(1, 3)).argmax(-1)


def test_audio_round_trip_through_wav_files(sound: Audio, sounds: Path, tmp_path: Path) -> None:
    x = sound.read(sounds)  # every clip of the folder's files, sorted by name
    assert x.shape[0] == 6 and tuple(x.shape[1:]) == sound.model.config.data_shape
    paths = sound.write(x, tmp_path / "out", [f"clip-{i}" for i in range(6)])
    assert [p.name for p in paths] == [f"clip-{i}.wav" for i in range(6)]
    samples, rate = audio.read_wav(paths[0])
    assert rate == RATE and np.abs(samples).max() > 0
    back = sound.read(tmp_path / "out")
    assert back.shape == x.shape
    # Griffin-Lim keeps each clip's pitch: the same loudest band (the files are sorted: three
    # high tones, then three low), and each clip read back is nearer a clip of its own pitch
    bands = _band(sound, x)
    assert torch.equal(_band(sound, back), bands)
    assert bands[:3].eq(bands[0]).all() and bands[3:].eq(bands[3]).all() and bands[0] > bands[3]
    nearest = torch.cdist(back.flatten(1), x.flatten(1)).argmin(-1)  # (6,)
    assert nearest[:3].lt(3).all() and nearest[3:].ge(3).all()


def test_audio_is_shown_as_sounds_and_spectrograms(
    sound: Audio, sounds: Path, tmp_path: Path
) -> None:
    x = sound.read(sounds)[:2]
    shape = sound.shape(None)
    assert shape == sound.model.config.data_shape
    picture = sound.picture(x, shape, 2, None)
    paths = sound.show(x, tmp_path / "samples", "sample", picture)
    assert [p.name for p in paths] == ["sample-000.wav", "sample-001.wav", "spectrograms.png"]
    n_mels, frames = shape[1:]
    grid = Image.open(paths[-1])  # enlarged (spectrograms are small), low pitches at the bottom
    assert (
        grid.width >= 2 * frames * SPECTROGRAM_SCALE and grid.height >= n_mels * SPECTROGRAM_SCALE
    )
    paths = sound.show_pairs(x, x, tmp_path / "rec", sound.pairs(x, x, shape, 2, None))
    assert [p.name for p in paths] == [
        "000-input.wav", "001-input.wav", "000-reconstruction.wav", "001-reconstruction.wav",
        "spectrograms.png",
    ]  # fmt: skip
    ends, what = sound.ends(str(sounds / "low-0.wav"), str(sounds / "high-0.wav"), "ends")
    assert ends.shape == (2, *shape) and what.endswith("(first clip of each)")
    assert _band(sound, ends)[0] < _band(sound, ends)[1]  # low, then high
    with pytest.raises(DataError, match=r"missing\.wav"):
        sound.ends(str(sounds / "low-0.wav"), str(tmp_path / "missing.wav"), "ends")


def test_audio_loads_its_runs_data_as_it_was_trained(sound: Audio, sounds: Path) -> None:
    dataset = sound.load(str(sounds), seed=0)
    assert dataset.data_shape == sound.model.config.data_shape
    assert dataset.media == sound.config["data"]["media"]  # the run's settings, not new ones
    assert sound.summary("decoded", n=2, latents="z.npy") == [
        "decoded 2 latents from z.npy as sound (Griffin-Lim)"
    ]

"""Audio: WAV files in and out, resampling, mel spectrograms and Griffin-Lim on generated tones,
folders of WAV files as data sets, and the vaekit commands on an audio run."""

from __future__ import annotations

import json
import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from vaekit import data
from vaekit.data import audio
from vaekit.data.audio import AudioSettings
from vaekit.errors import DataError

RATE = 8000


def tone(freq: float, seconds: float, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.4 * np.sin(phase)).astype(np.float32)


def write_pcm(path: Path, frames: np.ndarray, rate: int, width: int) -> None:
    """Integer PCM (frames (S, channels) in [-1, 1]) written with the wave module."""
    scale = 2 ** (8 * width - 1) - 1
    ints = np.round(frames * scale).astype(np.int64)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints.reshape(-1))
    with wave.open(str(path), "wb") as f:
        f.setnchannels(frames.shape[1])
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(raw)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(spectrum.argmax() * rate / len(samples))


# -- WAV files ---------------------------------------------------------------------------------


def test_wav_round_trip(tmp_path: Path) -> None:
    x = tone(440, 0.25)
    path = tmp_path / "a.wav"
    path.write_bytes(audio.wav_bytes(x, RATE))
    with wave.open(str(path)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, RATE)
    y, rate = audio.read_wav(path)
    assert rate == RATE and y.shape == x.shape
    assert np.abs(y - x).max() <= 1 / 32767
    # values beyond [-1, 1] are clipped, not wrapped
    path.write_bytes(audio.wav_bytes(np.array([2.0, -3.0, 0.5]), RATE))
    assert audio.read_wav(path)[0].tolist() == pytest.approx(
        [32767 / 32768, -32767 / 32768, 0.5], abs=1e-4
    )


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_stereo_pcm_of_each_width_is_mixed_to_mono(tmp_path: Path, width: int) -> None:
    left, right = tone(300, 0.1), tone(500, 0.1, amp=0.25)
    path = tmp_path / "s.wav"
    write_pcm(path, np.stack([left, right], 1), RATE, width)
    y, rate = audio.read_wav(path)
    assert rate == RATE
    assert np.abs(y - (left + right) / 2).max() < 2.0 / 2 ** (8 * width - 1) + 1e-6


def write_riff(path: Path, fmt: bytes, data: bytes) -> None:
    """A RIFF WAVE file of a fmt chunk and a data chunk, written byte by byte."""
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_float_and_extensible_wav_files_are_read(tmp_path: Path) -> None:
    # scipy.io.wavfile.write writes float32 arrays as IEEE float (format 3); ffmpeg and sox
    # write 24-bit PCM with the extensible header (0xFFFE), both refused by wave before 3.12
    import scipy.io.wavfile

    x = tone(300, 0.1)
    scipy.io.wavfile.write(tmp_path / "float.wav", RATE, np.stack([x, x / 2], 1))
    y, rate = audio.read_wav(tmp_path / "float.wav")
    assert rate == RATE and np.abs(y - 0.75 * x).max() < 1e-6
    ints = np.round(np.stack([x, -x], 1) * (2**23 - 1)).astype(np.int64).reshape(-1)
    pcm24 = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    pcm_guid = bytes.fromhex("0100000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 2, 22050, 22050 * 6, 6, 24, 22, 24, 3) + pcm_guid
    write_riff(tmp_path / "ext.wav", fmt, pcm24)
    y, rate = audio.read_wav(tmp_path / "ext.wav")
    assert rate == 22050 and np.abs(y).max() < 1e-6  # left and right cancel
    cut = (tmp_path / "ext.wav").read_bytes()[: -(6 * 10 + 2)]  # a copy cut short
    (tmp_path / "ext.wav").write_bytes(cut)
    assert audio.read_wav(tmp_path / "ext.wav")[0].shape == (len(x) - 11,)
    nan = np.full(4, np.nan, np.float32)
    scipy.io.wavfile.write(tmp_path / "nan.wav", RATE, nan)
    with pytest.raises(DataError, match="NaN or infinite samples"):
        audio.read_wav(tmp_path / "nan.wav")


def test_unreadable_wav_files(tmp_path: Path) -> None:
    adpcm = tmp_path / "adpcm.wav"  # compressed (format 2): neither PCM nor float
    write_riff(adpcm, struct.pack("<HHIIHH", 2, 1, RATE, RATE // 2, 256, 4), b"\0" * 256)
    with pytest.raises(DataError, match=r"adpcm.wav' as PCM or float WAV \(format 0x0002"):
        audio.read_wav(adpcm)
    guid = bytes.fromhex("0200000000001000800000aa00389b71")  # extensible, sub-format ADPCM
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, RATE, RATE * 2, 2, 16, 22, 16, 4) + guid
    write_riff(adpcm, fmt, b"\0" * 8)
    with pytest.raises(DataError, match="format 0x0002, not PCM or float"):
        audio.read_wav(adpcm)
    with pytest.raises(DataError, match="does not exist"):
        audio.read_wav(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(audio.wav_bytes(np.zeros(0), RATE))
    with pytest.raises(DataError, match="no samples"):
        audio.read_wav(empty)


def test_resampling_keeps_frequency_and_duration() -> None:
    x = tone(1000, 0.5, rate=22050)
    y = audio.resample(x, 22050, RATE)
    assert y.shape == (RATE // 2,)
    assert dominant_hz(y, RATE) == pytest.approx(1000, abs=4)
    assert np.abs(y).max() == pytest.approx(0.5, abs=0.02)
    # a tone above the new Nyquist frequency is removed, not folded down
    assert np.abs(audio.resample(tone(6000, 0.5, rate=22050), 22050, RATE)).max() < 0.01


# -- spectrograms ------------------------------------------------------------------------------


def test_mel_filterbank_shape_and_centres() -> None:
    bank = audio.mel_filterbank(RATE, 256, 32).numpy()
    assert bank.shape == (32, 129)
    assert (bank.max(1) > 0.5).all() and (bank <= 1).all() and (bank >= 0).all()
    # every FFT bin between the first and the last centre is covered
    centre_bins = bank.argmax(1)
    assert (bank[:, centre_bins[0] : centre_bins[-1]].sum(0) > 0).all()
    assert (np.diff(centre_bins) >= 0).all() and centre_bins[-1] > centre_bins[0]
    # mel bands are narrower at low frequencies
    widths = (bank > 0).sum(1)
    assert widths[-1] > widths[1]


@pytest.mark.parametrize("freq", [300.0, 1200.0])
def test_log_mel_and_griffin_lim_keep_a_tones_frequency(freq: float) -> None:
    s = AudioSettings(sample_rate=RATE, n_fft=512, hop=128, n_mels=64, frames=63)
    x = torch.from_numpy(tone(freq, s.samples / RATE))[None]
    logmel = audio.log_mel(x, s)  # (1, 64, frames)
    assert logmel.shape == (1, 64, 63)
    freqs = audio.mel_to_hz(
        np.linspace(0, audio.hz_to_mel(RATE / 2), s.n_mels + 2)[1:-1]
    )  # band centres
    band = int(logmel[0, :, 10:-10].mean(-1).argmax())
    assert abs(freqs[band] - freq) < 0.1 * freq + 40
    magnitude = audio.mel_to_magnitude(logmel, s)
    y = audio.griffin_lim(magnitude, s.n_fft, s.hop, s.samples, iters=32)[0].numpy()
    assert y.shape == (s.samples,)
    assert dominant_hz(y, RATE) == pytest.approx(freq, abs=0.1 * freq + 40)
    # Griffin-Lim finds a phase: the resynthesised magnitude is close to the one asked for
    rebuilt = audio.stft(torch.from_numpy(y)[None], s.n_fft, s.hop).abs()
    assert float((rebuilt - magnitude).norm() / magnitude.norm()) < 0.35


# -- data sets ---------------------------------------------------------------------------------


def write_sounds(folder: Path) -> None:
    """Two classes of short sounds, one of them recorded at another sample rate."""
    for k, f0 in enumerate([300, 450, 600, 750]):
        (folder / "low").mkdir(parents=True, exist_ok=True)
        (folder / "high").mkdir(parents=True, exist_ok=True)
        (folder / "low" / f"{k}.wav").write_bytes(audio.wav_bytes(tone(f0, 0.3), RATE))
        rate = 16000 if k == 0 else RATE
        high = chirp(1500 + 100 * k, 2500, 0.25, rate)
        (folder / "high" / f"{k}.wav").write_bytes(audio.wav_bytes(high, rate))


def test_folder_of_wav_files(tmp_path: Path) -> None:
    write_sounds(tmp_path / "sounds")
    s = AudioSettings(sample_rate=RATE, n_fft=256, hop=64, n_mels=24)
    ds = audio.load_audio(tmp_path / "sounds", settings=s)
    frames = 40  # the longest file: 1 + ceil(0.3 * RATE / 64) = 39 frames, rounded up to 8s
    assert ds.data_shape == (1, 24, frames) and ds.image_shape == (1, 24, frames)
    assert ds.label_names == ["high", "low"] and ds.media["kind"] == "audio"
    n = len(ds.train) + len(ds.valid) + len(ds.test)
    assert n == 8
    # normalised per mel band with the training split's statistics
    assert ds.train.mean(dim=(0, 1, 3)).abs().max() < 1e-4
    assert ds.train.std(dim=(0, 1, 3)).sub(1).abs().max() < 0.05
    # the same files read with the run's settings give the same examples
    again = audio.load_audio(tmp_path / "sounds", settings=AudioSettings.from_media(ds.media))
    assert torch.equal(again.train, ds.train)
    # data.load finds the folder by its WAV files
    assert data.load(tmp_path / "sounds").media["kind"] == "audio"


def test_long_file_is_cut_into_clips_and_too_few_is_an_error(tmp_path: Path) -> None:
    long = tmp_path / "long.wav"
    long.write_bytes(audio.wav_bytes(chirp(200, 3000, 5.0), RATE))
    ds = audio.load_audio(long, settings=AudioSettings(sample_rate=RATE, n_fft=256, hop=64))
    clip = audio.MAX_CLIP_SECONDS
    assert len(ds.train) + len(ds.valid) + len(ds.test) == math.ceil(5.0 / clip)
    short = tmp_path / "short.wav"
    short.write_bytes(audio.wav_bytes(tone(440, 0.2), RATE))
    with pytest.raises(DataError, match="needs at least 3"):
        audio.load_audio(short)


# -- the command line --------------------------------------------------------------------------


def check_wav(path: Path, rate: int, samples: int) -> np.ndarray:
    with wave.open(str(path)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, rate)
        assert f.getnframes() == samples
    y, _ = audio.read_wav(path)
    assert np.isfinite(y).all() and np.abs(y).max() > 0
    return y


def test_commands_on_a_folder_of_wav_files(tmp_path: Path, capsys) -> None:
    write_sounds(tmp_path / "sounds")
    run = tmp_path / "run"
    tiny = ["--epochs", "3", "--set", "hidden=[16]", "--set", "latent_dim=2", "-k", "3", "-q"]
    code, out, err = run_cli(capsys, "train", "--data", tmp_path / "sounds", "--out", run, *tiny)
    assert code == 0, err
    media = json.loads((run / "config.json").read_text())["data"]["media"]
    s = AudioSettings.from_media(media)
    assert media["kind"] == "audio" and len(s.mean) == s.n_mels == 64

    code, out, err = run_cli(capsys, "sample", run, "-n", "3")
    assert code == 0, err
    for i in range(3):
        check_wav(run / "samples" / f"sample-{i:03d}.wav", s.sample_rate, s.samples)
    assert (run / "samples" / "spectrograms.png").is_file()

    code, out, err = run_cli(capsys, "reconstruct", run, "-n", "1")
    assert code == 0, err
    for name in ("000-input", "000-reconstruction"):
        check_wav(run / "reconstructions" / f"{name}.wav", s.sample_rate, s.samples)

    a, b = tmp_path / "sounds" / "low" / "0.wav", tmp_path / "sounds" / "high" / "1.wav"
    out_dir = tmp_path / "walk"
    code, out, err = run_cli(
        capsys, "interpolate", run, "--from", a, "--to", b, "--steps", "3", "--output", out_dir
    )
    assert code == 0, err
    assert sorted(p.name for p in out_dir.glob("*.wav")) == [f"step-{i:03d}.wav" for i in range(3)]

    code, out, err = run_cli(capsys, "encode", run, "--input", a, "--output", tmp_path / "z.npy")
    assert code == 0, err
    assert np.load(tmp_path / "z.npy").shape == (1, 2)
    code, out, err = run_cli(capsys, "evaluate", run, "-k", "3")
    assert code == 0, err and "bits/dim" in out

    for args in (
        ("sample", run, "--output", tmp_path / "one.wav"),
        ("interpolate", run, "--from", a, "--to", tmp_path / "missing.wav"),
        ("encode", run, "--input", tmp_path / "z.npy"),
    ):
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)


def test_silence_is_trimmed_at_both_ends() -> None:
    x = tone(440, 0.1)
    padded = np.concatenate([np.zeros(300), 1e-4 * np.ones(50), x, np.zeros(500)])
    y = audio.trim(padded.astype(np.float32), 40.0)
    assert y.shape[0] <= x.shape[0] and y.shape[0] > x.shape[0] - RATE // 440
    assert np.abs(y).max() == pytest.approx(np.abs(x).max())
    assert audio.trim(padded, 0.0) is padded  # 0 dB: kept as it is


def test_conv_network_fits_audio_clips(tmp_path: Path, capsys) -> None:
    write_sounds(tmp_path / "sounds")
    run = tmp_path / "conv"
    args = ["--epochs", "1", "--set", "network=conv", "--set", "channels=[4, 8]", "-k", "2", "-q"]
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "sounds", "--out", run, *args)
    assert code == 0, err
    code, _, err = run_cli(capsys, "sample", run, "-n", "1")
    assert code == 0, err
    s = AudioSettings.from_media(json.loads((run / "config.json").read_text())["data"]["media"])
    assert s.frames % audio.FRAME_MULTIPLE == 0
    check_wav(run / "samples" / "sample-000.wav", s.sample_rate, s.samples)


@pytest.mark.parametrize(("n_fft", "hop"), [(1024, 256), (256, 64), (512, 100), (400, 399)])
def test_fewest_frames_is_what_the_centred_stft_needs(n_fft: int, hop: int) -> None:
    fewest = AudioSettings(n_fft=n_fft, hop=hop, n_mels=8, frames=0).min_frames
    s = AudioSettings(n_fft=n_fft, hop=hop, n_mels=8, frames=fewest)
    assert audio.log_mel(torch.zeros(1, s.samples), s).shape == (1, 8, fewest)
    # one frame fewer is refused by the settings, and the STFT itself cannot take it
    with pytest.raises(DataError, match=rf"frames={fewest - 1} .*frames={fewest} or more"):
        AudioSettings(n_fft=n_fft, hop=hop, n_mels=8, frames=fewest - 1)
    if fewest > 2:
        with pytest.raises(RuntimeError, match=r"[Pp]adding size"):
            audio.stft(torch.zeros(1, (fewest - 2) * hop), n_fft, hop)


def test_too_few_frames_on_the_command_line_is_one_line(tmp_path: Path, capsys) -> None:
    write_sounds(tmp_path / "sounds")
    tiny = ["--epochs", "1", "--set", "hidden=[8]", "--set", "latent_dim=2", "-q"]
    options = ["--audio", "n_fft=256", "--audio", "hop=64", "--audio", "n_mels=8"]  # fewest: 4
    for frames in (1, 2, 3):
        run = tmp_path / f"run{frames}"
        args = ["--audio", f"frames={frames}", *options, *tiny]
        code, _, err = run_cli(capsys, "train", "--data", tmp_path / "sounds", "--out", run, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"frames={frames}" in err and "--audio frames=4 or more" in err
        assert not run.exists()
    run = tmp_path / "run4"
    args = ["--audio", "frames=4", *options, *tiny]
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "sounds", "--out", run, *args)
    assert code == 0, err
    media = json.loads((run / "config.json").read_text())["data"]["media"]
    assert media["frames"] == 4


def test_hop_must_be_below_n_fft_for_the_sound_to_come_back() -> None:
    x = torch.from_numpy(tone(440, 1.0)[: 4 * 1023])[None]  # a clip: (frames - 1) * hop samples
    with pytest.raises(DataError, match=r"hop=1024 must be less than n_fft=1024.*hop=256"):
        AudioSettings(n_fft=1024, hop=1024)
    with pytest.raises(DataError, match=r"n_fft=1 .*n_fft=2 or more"):
        AudioSettings(n_fft=1, hop=1, n_mels=1)
    # the Hann windows of hop == n_fft leave gaps the inverse STFT refuses; one sample less
    # works (the windows' small overlap amplifies rounding, hence the tolerance)
    window = torch.hann_window(1024)
    with pytest.raises(RuntimeError, match="overlap"):
        torch.istft(audio.stft(x, 1024, 1024), 1024, 1024, window=window, length=x.shape[1])
    y = torch.istft(audio.stft(x, 1024, 1023), 1024, 1023, window=window, length=x.shape[1])
    assert x.shape[1] == 4 * 1023 and float((y - x).abs().max()) < 0.05
    s = AudioSettings(sample_rate=RATE, n_fft=1024, hop=1023, n_mels=8, frames=8,
                      mean=(0.0,) * 8, std=(1.0,) * 8, griffin_lim_iters=2)  # fmt: skip
    assert audio.to_waveforms(torch.zeros(1, 1, 8, 8), s).shape == (1, s.samples)

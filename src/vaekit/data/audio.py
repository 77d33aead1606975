"""Audio: WAV files in and out, log-mel spectrograms, Griffin-Lim, and folders of WAV files as
data sets.

An example is a fixed-length clip seen as its log-mel spectrogram, shape (1, n_mels, frames),
normalised per mel band with the training split's mean and standard deviation, so a Gaussian
likelihood and any image network fit it. The settings that made the spectrograms (sample rate,
STFT size and hop, mel bands, frames, the normalisation) are saved in the run's config.json, so
a run turns its samples and reconstructions back into sound: mel bands to a linear-frequency
magnitude (least squares, clipped at 0), then Griffin-Lim phase recovery with torch.stft/istft,
then 16-bit PCM WAV.

WAV files are read with the standard library's ``wave`` module, and by hand where it refuses
them (32 and 64-bit float, and the extensible header that ffmpeg and sox write for more than 16
bits): integer PCM of 8, 16, 24 or 32 bits, any number of channels (mixed down to mono),
resampled (band-limited, by FFT) to the run's sample rate when theirs differs.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .dataset import Dataset, class_folder, hidden, split

WAV_SUFFIXES = (".wav", ".wave")
#: Floor added to mel power before the log (about -100 dB below full scale).
POWER_FLOOR = 1e-10
#: Longest clip, in seconds, when the clip length comes from the data.
MAX_CLIP_SECONDS = 2.0
#: Frames per clip, when they come from the data, are rounded up to a multiple of this, so
#: convolutional networks that halve the spectrogram's size three times fit (64 mel bands do).
FRAME_MULTIPLE = 8


@dataclass(frozen=True)
class AudioSettings:
    """How waveforms become examples; saved in config.json's ``data.media`` table.

    sample_rate: Hz. n_fft: STFT window and FFT size, samples (at least 2). hop: samples
    between frames (less than n_fft, so that the Hann windows overlap and Griffin-Lim can invert).
    n_mels: mel bands (0 Hz to sample_rate / 2). frames: STFT frames per clip (0 = from the
    data: the longest file, at most ``MAX_CLIP_SECONDS``, rounded up to a multiple of
    ``FRAME_MULTIPLE``); at least :attr:`min_frames`). mean, std: per mel band, of the
    training split's log-mel values (empty = not yet measured). trim_db: leading and trailing
    samples more than this many dB below the file's peak are cut before clips are made (0 = keep
    them). griffin_lim_iters: iterations of phase recovery when writing sound.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    frames: int = 0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    trim_db: float = 40.0
    griffin_lim_iters: int = 64

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop", "n_mels", "frames", "griffin_lim_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError(f"audio {name} must be an integer, got {value!r}")
        if isinstance(self.trim_db, bool) or not isinstance(self.trim_db, int | float):
            raise DataError(f"audio trim_db must be a number of dB, got {self.trim_db!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        for name in ("sample_rate", "n_fft", "hop", "n_mels", "griffin_lim_iters"):
            if int(getattr(self, name)) < 1:
                raise DataError(
                    f"audio {name} must be a positive integer, got {getattr(self, name)}"
                )
        if not self.trim_db >= 0:
            raise DataError(f"audio trim_db must be zero or more, got {self.trim_db}")
        if self.frames < 0:
            raise DataError(f"audio frames must be >= 0 (0 = from the data), got {self.frames}")
        if self.n_fft < 2:
            raise DataError(f"audio n_fft={self.n_fft} is too small; use audio n_fft=2 or more")
        if self.hop >= self.n_fft:
            raise DataError(
                f"audio hop={self.hop} must be less than n_fft={self.n_fft} (Hann windows that "
                f"do not overlap cannot be turned back into sound); use audio "
                f"hop={max(1, self.n_fft // 4)}"
            )
        if self.n_mels > self.n_fft // 2 + 1:
            raise DataError(f"n_mels {self.n_mels} exceeds the {self.n_fft // 2 + 1} FFT bins")
        if self.frames and self.frames < self.min_frames:
            raise DataError(
                f"audio frames={self.frames} is too few for n_fft={self.n_fft} and "
                f"hop={self.hop}: a clip's (frames - 1) * hop samples must exceed n_fft // 2; "
                f"use audio frames={self.min_frames} or more (or frames=0 to fit the data)"
            )

    @property
    def min_frames(self) -> int:
        """The fewest frames a clip may have: its (frames - 1) * hop samples must exceed
        n_fft // 2, the padding the centred STFT reflects at each end."""
        return self.n_fft // 2 // self.hop + 2

    @property
    def samples(self) -> int:
        """Waveform samples per clip: (frames - 1) * hop."""
        return (self.frames - 1) * self.hop

    def media(self) -> dict[str, Any]:
        """The JSON table saved with a run."""
        table = asdict(self)
        table["mean"], table["std"] = list(self.mean), list(self.std)
        return {"kind": "audio", **table}

    @classmethod
    def from_options(cls, options: Any) -> AudioSettings | None:
        """Settings a user asked for: these settings, or a dict of their fields (not the
        normalisation, which comes from the training split); None stays None. DataError names
        an unknown or bad field."""
        if options is None or isinstance(options, AudioSettings):
            return options
        if not isinstance(options, dict):
            raise DataError(f"audio settings must be a table of settings, got {options!r}")
        known = sorted({f.name for f in fields(cls)} - {"mean", "std"})
        for key in options:
            if key not in known:
                raise DataError(f"unknown audio setting {key!r}; choose from {', '.join(known)}")
        try:
            return cls(**options)
        except (TypeError, ValueError) as err:
            raise DataError(f"bad audio settings {options!r}: {err}") from None

    @classmethod
    def from_media(cls, table: dict[str, Any]) -> AudioSettings:
        """Settings from a run's ``data.media`` table."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in table.items() if k in known})
        except (TypeError, ValueError) as err:
            raise DataError(f"the run's audio settings are unreadable: {err}") from None


# -- WAV files --------------------------------------------------------------------------------


#: WAV format tags: integer PCM, IEEE float, and the extensible header, whose sub-format GUID
#: starts with one of the other two (ffmpeg and sox write it for more than 16 bits a sample).
WAVE_PCM, WAVE_FLOAT, WAVE_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE


def _riff_wav(path: Path) -> tuple[int, int, int, int, bytes]:
    """(format tag, channels, bytes per sample, sample rate, sample bytes) of a RIFF WAVE file,
    the extensible header resolved to its sub-format. Raises ValueError on a file it cannot
    parse. For the formats Python's wave module refuses (float and extensible, before 3.12)."""
    raw = path.read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError("not a WAVE file")
    fmt, data, at = None, None, 12
    while at + 8 <= len(raw):
        name, size = raw[at : at + 4], int.from_bytes(raw[at + 4 : at + 8], "little")
        body = raw[at + 8 : at + 8 + size]  # a data chunk cut short keeps what is there
        if name == b"fmt ":
            fmt = body
        elif name == b"data":
            data = body
        at += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16 or data is None:
        raise ValueError("no fmt or data chunk")
    tag, channels, rate, _, block, _ = struct.unpack("<HHIIHH", fmt[:16])
    if tag == WAVE_EXTENSIBLE:
        if len(fmt) < 40:
            raise ValueError("extensible format without its sub-format")
        tag = int.from_bytes(fmt[24:26], "little")
    if channels < 1 or rate < 1 or block < channels or block % channels:
        raise ValueError(f"bad header ({channels} channels, {rate} Hz, {block}-byte frames)")
    if tag not in (WAVE_PCM, WAVE_FLOAT):
        raise ValueError(f"format {tag:#06x}, not PCM or float")
    return tag, channels, block // channels, rate, data


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples, sample rate) of a WAV file: float32 mono (channels averaged), in [-1, 1] for
    integer PCM (8 to 32 bits a sample); 32 and 64-bit float samples are kept as they are. The
    extensible header (more than 16 bits or 2 channels from ffmpeg and sox) is read too."""
    path = Path(path)
    where = repr(str(path))
    tag = WAVE_PCM
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except FileNotFoundError:
        raise DataError(f"WAV file {where} does not exist") from None
    except (wave.Error, EOFError, OSError) as err:
        try:  # float and extensible WAV files, which wave reads only from Python 3.12 on
            if "unknown format" not in str(err):
                raise ValueError(str(err)) from None
            tag, channels, width, rate, raw = _riff_wav(path)
        except (ValueError, OSError, struct.error) as why:
            raise DataError(
                f"cannot read {where} as PCM or float WAV ({why}); convert it, e.g. "
                "sox in.wav -b 16 out.wav"
            ) from None
    usable = len(raw) - len(raw) % (width * channels)
    raw = raw[:usable]
    if tag == WAVE_FLOAT:
        if width not in (4, 8):
            raise DataError(f"{where} has {8 * width}-bit float samples; use 32 or 64-bit float")
        a = np.frombuffer(raw, "<f4" if width == 4 else "<f8").astype(np.float32)
        if not np.isfinite(a).all():
            raise DataError(f"{where} holds NaN or infinite samples; clean or re-export it")
    elif width == 1:
        a = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        a = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        a = (np.where(ints >= 1 << 23, ints - (1 << 24), ints)).astype(np.float32) / (1 << 23)
    elif width == 4:
        a = np.frombuffer(raw, "<i4").astype(np.float64).astype(np.float32) / 2**31
    else:
        raise DataError(f"{where} has {8 * width}-bit samples; use 8, 16, 24 or 32-bit PCM")
    a = a.reshape(-1, channels).mean(axis=1) if channels > 1 else a
    if a.size == 0:
        raise DataError(f"WAV file {where} holds no samples")
    return np.ascontiguousarray(a, dtype=np.float32), rate


def wav_bytes(samples: np.ndarray | Tensor, sample_rate: int) -> bytes:
    """A mono 16-bit PCM WAV file of ``samples`` (S,) in [-1, 1] (clipped), as bytes."""
    if isinstance(samples, Tensor):
        samples = samples.detach().cpu().numpy()
    a = np.clip(np.asarray(samples, dtype=np.float64).reshape(-1), -1.0, 1.0)
    ints = np.round(a * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(ints.tobytes())
    return buffer.getvalue()


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of ``samples`` (S,) from ``rate`` to ``new_rate`` Hz by FFT
    (spectrum cut or zero-padded); float32."""
    if rate == new_rate:
        return samples.astype(np.float32)
    n = samples.shape[0]
    m = max(1, round(n * new_rate / rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    keep = min(spectrum.shape[0], m // 2 + 1)
    out = np.zeros(m // 2 + 1, dtype=np.complex128)
    out[:keep] = spectrum[:keep]
    return (np.fft.irfft(out, n=m) * (m / n)).astype(np.float32)


# -- spectrograms ---------------------------------------------------------------------------


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """Triangular filters (n_mels, n_fft // 2 + 1) evenly spaced on the mel scale from 0 Hz to
    sample_rate / 2: each rises from 0 at the previous band's centre to 1 at its own and falls
    to 0 at the next one's, sampled at the FFT bins' frequencies."""
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    bank = np.clip(np.minimum(up, down), 0.0, None)
    # a band narrower than one FFT bin still gets the bin nearest its centre
    empty = bank.sum(1) == 0
    bank[empty, np.abs(freqs[None] - mid[empty]).argmin(1)] = 1.0
    return torch.from_numpy(bank.astype(np.float32))


def _window(n_fft: int, device: torch.device | None = None) -> Tensor:
    return torch.hann_window(n_fft, device=device)


def stft(waves: Tensor, n_fft: int, hop: int) -> Tensor:
    """Complex STFT (N, n_fft // 2 + 1, frames) of waveforms (N, S), Hann window, centred."""
    return torch.stft(
        waves, n_fft, hop, window=_window(n_fft, waves.device), center=True, return_complex=True
    )


def log_mel(waves: Tensor, s: AudioSettings) -> Tensor:
    """Log mel power spectrograms (N, n_mels, frames) of waveforms (N, S) in [-1, 1]."""
    power = stft(waves.float(), s.n_fft, s.hop).abs() ** 2
    mel = mel_filterbank(s.sample_rate, s.n_fft, s.n_mels).to(waves.device) @ power
    return torch.log(mel + POWER_FLOOR)


def mel_to_magnitude(log_mel_power: Tensor, s: AudioSettings) -> Tensor:
    """Linear-frequency magnitudes (N, n_fft // 2 + 1, frames) whose mel power is closest (least
    squares through the filterbank's pseudo-inverse, negatives clipped) to exp(log_mel_power)."""
    bank = mel_filterbank(s.sample_rate, s.n_fft, s.n_mels).to(log_mel_power.device)
    power = torch.linalg.pinv(bank.double()).float() @ torch.exp(log_mel_power.float())
    return power.clamp(min=0).sqrt()


def griffin_lim(
    magnitude: Tensor, n_fft: int, hop: int, length: int, iters: int = 64, seed: int = 0
) -> Tensor:
    """Waveforms (N, length) whose STFT magnitude approaches ``magnitude`` (N, F, frames):
    Griffin & Lim's phase recovery with momentum 0.99 (Perraudin et al. 2013), random initial
    phase from ``seed``."""
    g = torch.Generator(device=magnitude.device).manual_seed(seed)
    window = _window(n_fft, magnitude.device)
    angles = torch.rand(magnitude.shape, generator=g, device=magnitude.device) * 2 * math.pi
    spec = magnitude * torch.exp(1j * angles)
    previous = torch.zeros_like(spec)
    waves = torch.zeros(magnitude.shape[0], length, device=magnitude.device)
    for _ in range(max(1, iters)):
        waves = torch.istft(spec, n_fft, hop, window=window, center=True, length=length)
        rebuilt = torch.stft(waves, n_fft, hop, window=window, center=True, return_complex=True)
        accelerated = rebuilt + 0.99 * (rebuilt - previous)
        previous = rebuilt
        spec = magnitude * torch.exp(1j * torch.angle(accelerated))
    return torch.istft(spec, n_fft, hop, window=window, center=True, length=length)


def normalise(logmel: Tensor, s: AudioSettings) -> Tensor:
    """(log-mel - mean) / std per band: examples (N, 1, n_mels, frames) from (N, n_mels, frames)."""
    mean = torch.tensor(s.mean, dtype=logmel.dtype)[:, None]
    std = torch.tensor(s.std, dtype=logmel.dtype)[:, None]
    return ((logmel - mean) / std)[:, None]


def to_waveforms(x: Tensor, s: AudioSettings, seed: int = 0) -> Tensor:
    """Sound (N, samples) of examples (N, 1, n_mels, frames): undo the normalisation, mel to
    magnitude, Griffin-Lim. Scaled down where a clip would clip (peak above 0.99)."""
    x = x.detach().float().cpu().reshape(-1, s.n_mels, s.frames)
    mean = torch.tensor(s.mean)[:, None]
    std = torch.tensor(s.std)[:, None]
    magnitude = mel_to_magnitude(x * std + mean, s)
    waves = griffin_lim(magnitude, s.n_fft, s.hop, s.samples, s.griffin_lim_iters, seed)
    peak = waves.abs().amax(-1, keepdim=True)
    return waves * torch.where(peak > 0.99, 0.99 / peak, torch.ones_like(peak))


def write_clips(
    x: Tensor, s: AudioSettings, folder: Path, names: Sequence[str], seed: int = 0
) -> list[Path]:
    """Write examples (N, 1, n_mels, frames) as ``folder/NAME.wav`` files (atomically)."""
    from ..files import write_file

    waves = to_waveforms(x, s, seed)
    return [
        write_file(folder / f"{name}.wav", wav_bytes(w, s.sample_rate))
        for name, w in zip(names, waves, strict=True)
    ]


# -- data sets ------------------------------------------------------------------------------


def _wav_files(folder: Path) -> list[Path]:
    """The WAV files of a folder, sorted, hidden ones (macOS's ``._NAME.wav``) left out."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in WAV_SUFFIXES and not hidden(p)
    )


def _sub_folders(folder: Path) -> list[Path]:
    """The sub-folders of a folder that are not hidden, sorted."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not hidden(d))


def is_audio(path: Path) -> bool:
    """Whether ``path`` is a WAV file, or a folder with WAV files at its top or one level down."""
    if path.is_file():
        return path.suffix.lower() in WAV_SUFFIXES
    if not path.is_dir():
        return False
    return bool(_wav_files(path)) or any(_wav_files(d) for d in _sub_folders(path))


def trim(samples: np.ndarray, db: float) -> np.ndarray:
    """``samples`` without the leading and trailing ones more than ``db`` dB below the peak."""
    peak = float(np.abs(samples).max(initial=0.0))
    if db <= 0 or peak == 0:
        return samples
    loud = np.flatnonzero(np.abs(samples) >= peak * 10 ** (-db / 20))
    return samples[loud[0] : loud[-1] + 1]


def read_sound(paths: Sequence[Path], s: AudioSettings) -> list[np.ndarray]:
    """Each file's samples at the settings' sample rate (resampled where the file's rate
    differs), silence trimmed as the settings say."""
    out = []
    for p in paths:
        a, rate = read_wav(p)
        out.append(trim(resample(a, rate, s.sample_rate), s.trim_db))
    return out


def clips(sounds: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-length clips (M, length) cut from sounds: a shorter sound is padded with silence,
    a longer one split into consecutive clips (a last part under a quarter clip is dropped).
    Also returns the index of the sound each clip came from (M,)."""
    out, owner = [], []
    for i, a in enumerate(sounds):
        starts = range(0, max(1, a.shape[0]), length)
        for j, start in enumerate(starts):
            piece = a[start : start + length]
            if j > 0 and piece.shape[0] < length // 4:
                break
            out.append(np.pad(piece, (0, length - piece.shape[0])))
            owner.append(i)
    return np.stack(out).astype(np.float32), np.array(owner, dtype=np.int64)


def load_audio(path: str | Path, seed: int = 0, *, settings: AudioSettings | None = None) -> Any:
    """A folder of WAV files (or one WAV file) as log-mel clips (N, 1, n_mels, frames), split
    80/10/10 under ``seed``.

    WAV files in sub-folders get the sub-folder's name as their label (``label_names``). With
    ``settings`` (a trained run's) the clips are made and normalised exactly as in its training;
    otherwise the clip length comes from the data and the normalisation from its training split.
    ``Dataset.media`` holds the settings used.
    """
    path = Path(path)
    where = repr(str(path))
    s = settings or AudioSettings()
    if path.is_file():
        files, labels, names = [path], None, None
    elif path.is_dir():
        files, labels, names = class_folder(path, _wav_files, "WAV files", "file")
    else:
        raise DataError(f"audio data {where} does not exist")
    if not files:
        raise DataError(f"{where} holds no WAV files ({', '.join(WAV_SUFFIXES)})")
    sounds = read_sound(files, s)
    if s.frames == 0:
        longest = max(a.shape[0] for a in sounds)
        length = min(longest, int(MAX_CLIP_SECONDS * s.sample_rate))
        frames = math.ceil(length / s.hop) + 1
        frames = max(frames, s.min_frames)
        s = replace(s, frames=FRAME_MULTIPLE * math.ceil(frames / FRAME_MULTIPLE))
    waves, owner = clips(sounds, s.samples)
    if waves.shape[0] < 3:
        raise DataError(
            f"{where} gives {waves.shape[0]} clips of {s.samples / s.sample_rate:.2f} s; a data "
            "set needs at least 3: add WAV files"
        )
    chunks = np.array_split(waves, 1 + len(waves) // 256)
    logmel = torch.cat([log_mel(torch.from_numpy(w), s) for w in chunks])  # (N, n_mels, frames)
    y = torch.from_numpy(np.asarray(labels)[owner]) if labels is not None else None
    parts, y_parts = split(torch.arange(len(waves)), y, (0.1, 0.1), seed)
    if not s.mean:
        train = logmel[parts[0]]
        mean = train.mean(dim=(0, 2))
        std = train.std(dim=(0, 2)).clamp(min=1e-3)
        s = replace(s, mean=tuple(mean.tolist()), std=tuple(std.tolist()))
    elif len(s.mean) != s.n_mels or len(s.std) != s.n_mels:
        raise DataError(f"the run's audio normalisation has the wrong size for {s.n_mels} bands")
    x = normalise(logmel, s)
    ds = Dataset(
        path.stem if path.is_file() else path.name,
        *(x[p] for p in parts),
        *y_parts,
        binary=False,
        defaults=audio_defaults(),
        image_shape=(1, s.n_mels, s.frames),
        label_names=names,
        source=str(path),
        media=s.media(),
    )
    return ds


def audio_defaults() -> dict[str, dict[str, Any]]:
    """Settings that suit log-mel clips: an MLP with a Gaussian decoder of one learned variance
    per value."""
    return {
        "model": {"hidden": [512], "latent_dim": 16, "activation": "relu",
                  "likelihood": "gaussian_per_dim"},
        "train": {"epochs": 100, "batch_size": 32, "lr": 1e-3, "grad_clip": 100.0},
    }  # fmt: skip


def examples_of(path: str | Path, settings: AudioSettings) -> Tensor:
    """Every clip of a WAV file, or of the WAV files of a folder (sorted, sub-folders included),
    as examples (M, 1, n_mels, frames) made and normalised with a run's ``settings``."""
    path = Path(path)
    if path.is_dir():
        files = _wav_files(path) + [p for d in _sub_folders(path) for p in _wav_files(d)]
        if not files:
            raise DataError(f"{str(path)!r} holds no WAV files ({', '.join(WAV_SUFFIXES)})")
    elif path.suffix.lower() in WAV_SUFFIXES:
        files = [path]
    else:
        raise DataError(f"{str(path)!r} is not a .wav file or a folder of them")
    waves, _ = clips(read_sound(files, settings), settings.samples)
    return normalise(log_mel(torch.from_numpy(waves), settings), settings)

"""Audio in and out: any common file -> 16 kHz mono float32; float audio -> 16-bit WAV.

Decoding goes through libsndfile (WAV, FLAC, OGG, AIFF, MP3, ...), resampling through soxr,
both well-kept libraries. A file whose header promises more audio than it holds (a copy cut short)
is read as far as it goes, with a warning that names both lengths. A float file whose samples go
beyond -1..1 is scaled down to peak 1, with a warning, rather than clipped flat; channels that
cancel when mixed to mono are refused. Files are written under a temporary name and renamed, so a
file under its final name is always complete.
"""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path

import numpy as np

from . import SoundspaceError, signals, warn
from .files import atomic_write

SAMPLE_RATE = 16000
# Peaks below -80 dBFS (a few 16-bit steps) count as silence: nothing for the encoder to hear.
SILENCE_PEAK = 1e-4


def load_audio(path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a sound file as mono float32 at `sample_rate`, refusing what cannot be used."""
    import soundfile
    import soxr

    path = check_sound_file(Path(path))
    try:
        open(path, "rb").close()  # libsndfile says only "System error" where Python says why
    except OSError as error:
        raise SoundspaceError(
            f"cannot read {path}: {error.strerror or error}; make it readable for this user"
        ) from None
    try:
        with soundfile.SoundFile(path) as f:
            data, rate = f.read(dtype="float32", always_2d=True), f.samplerate
            promised = _promised_frames(f.extra_info, f.channels)
    except Exception as error:  # libsndfile reports every unreadable file as its own error
        raise SoundspaceError(
            f"cannot read {path} as audio ({error}); use WAV, FLAC, OGG, AIFF or MP3"
        ) from None
    if promised is not None and promised > len(data):
        warn(
            f"{path}: its header promises {promised} samples but the file "
            f"holds {len(data)} (cut short?); using the {len(data)} it holds"
        )
    if data.size == 0:
        raise SoundspaceError(f"{path} holds no audio samples")
    if not np.isfinite(data).all():
        raise SoundspaceError(f"{path} holds NaN or infinite samples")
    peak = float(np.abs(data).max())
    if peak > 1.0:  # only a float file can hold these; clipping would square its waves off
        warn(f"{path}: its samples reach {peak:g}, beyond -1..1; scaled down by {peak:g} to peak 1")
        data /= peak
    mono = data.mean(axis=1)
    _not_cancelled(mono, data, path)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    return np.clip(mono, -1.0, 1.0)


# What a path that is there but holds no sound is, for the message that refuses it.
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def check_sound_file(path: Path) -> Path:
    """`path`, refused unless it is a regular file: a FIFO or a device would block the read (or
    never end), and a folder holds no sound."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SoundspaceError(f"no such sound file: {path}") from None
    except OSError as error:
        raise SoundspaceError(f"cannot read {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise SoundspaceError(
            f"{path} is {kind}, not a sound file; give a WAV, FLAC, OGG, AIFF or MP3 file"
        )
    return path


def _not_cancelled(mono: np.ndarray, channels: np.ndarray, path) -> None:
    """Refuse channels that are loud apart and silent together (one is the other inverted):
    the mono mix the encoder hears would be nothing."""
    mixed, loudest = float(np.abs(mono).max()), float(np.abs(channels).max())
    if channels.shape[1] > 1 and mixed < SILENCE_PEAK <= loudest:
        raise SoundspaceError(
            f"{path}: its {channels.shape[1]} channels cancel when mixed to mono (they peak "
            f"at {_dbfs(loudest)}, their mix at {_dbfs(mixed)}): one is the other inverted; "
            "save one channel as a mono file, or invert one back"
        )


def _dbfs(peak: float) -> str:
    return f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"


def _promised_frames(info: str, channels: int) -> int | None:
    """The frames a WAV or AIFF header announced, where libsndfile found fewer in the file (its
    report then says `data : PROMISED (should be FOUND)`)."""
    chunk = re.search(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be \d+\)", info, re.M)
    width = re.search(r"^\s*(?:Bit Width|Sample Size)\s*:\s*(\d+)", info, re.M)
    if not chunk or not width or int(width.group(1)) % 8:
        return None
    return int(chunk.group(1)) // (channels * int(width.group(1)) // 8)


def load_sound(path, samples: int) -> np.ndarray:
    """An input sound of a space: loaded as above, then fitted (below)."""
    return fit(load_audio(path), samples, path)


def fit(audio: np.ndarray, samples: int, path) -> np.ndarray:
    """`audio` (read from `path`) trimmed or zero-padded to `samples`, and refused when what is
    left is silent."""
    fitted = np.zeros(samples, np.float32)
    fitted[: min(samples, len(audio))] = audio[:samples]
    peak = float(np.abs(fitted).max())
    if peak < SILENCE_PEAK:
        where = (
            "is silent"
            if len(audio) <= samples or np.abs(audio).max() < SILENCE_PEAK
            else f"is silent in its first {samples / SAMPLE_RATE:g} s (the space's length)"
        )
        raise SoundspaceError(
            f"{path} {where} (peak {_dbfs(peak)}); give a sound that starts within the "
            "space's length"
        )
    return fitted


AUDIBLE_DB = -40.0  # below the sound's own peak: where its audible part ends (loop points)


def audible_samples(audio: np.ndarray) -> int:
    """How far into the sound it is audible: up to its last sample within AUDIBLE_DB of its peak
    (0 for silence). What follows is its release tail or the zeros it was padded with."""
    level = np.abs(np.asarray(audio, np.float64))
    peak = float(level.max()) if len(level) else 0.0
    if peak == 0:
        return 0
    return int(np.flatnonzero(level >= peak * 10 ** (AUDIBLE_DB / 20))[-1]) + 1


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Float audio in [-1, 1] as the bytes of a 16-bit PCM WAV file."""
    import soundfile

    buffer = io.BytesIO()
    with signals.held():  # libsndfile calls back into Python for a file in memory
        soundfile.write(
            buffer, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV"
        )
    return buffer.getvalue()


def write_wav(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float audio in [-1, 1] as a 16-bit PCM WAV, atomically."""
    atomic_write(Path(path), wav_bytes(audio, sample_rate))
    return Path(path)

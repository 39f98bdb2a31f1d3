"""Audio in and out: any common file -> 16 kHz mono float32; float audio -> 16-bit WAV.

Decoding goes through libsndfile (WAV, FLAC, OGG, AIFF, MP3, ...), resampling through soxr,
both well-kept libraries. A file whose header promises more audio than it holds (a copy cut short)
is read as far as it goes, with a warning that names both lengths. Files are written under a
temporary name and renamed, so a file under its final name is always complete.
"""

from __future__ import annotations

import io
import re
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

    path = Path(path)
    if not path.is_file():
        raise SoundspaceError(f"no such sound file: {path}")
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
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    return np.clip(mono, -1.0, 1.0)


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
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
        raise SoundspaceError(
            f"{path} {where} (peak {level}); give a sound that starts within the space's length"
        )
    return fitted


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

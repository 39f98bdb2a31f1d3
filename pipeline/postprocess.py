"""Post-processing: what happens to each decoded sound before it is written.

The decoder's sound is `frames * 512` samples long (a little shorter than the space's length,
because Magenta's framing drops the partial last frame), may carry a DC offset, and has whatever
level the model gives it. Every chain returns exactly `samples` samples in [-1, 1].

- `default`: subtract the mean, linear fades of `fade_ms` at both ends (no click at the start or
  at the cut), peak-normalise to `peak_dbfs` (at most 0 dBFS, so nothing clips), zero-padded.
- `open-nsynth-super`: the chain of Open NSynth Super's generator, for sounds meant for its
  hardware: declick (a sample whose first differences to both neighbours exceed 1.0 becomes their
  mean), peak to -12 dBFS, trim to 16 samples before the first sample above 10 % of the peak,
  crop or zero-pad to the length, 8-sample linear fades.
- `none`: the samples as decoded, zero-padded (or cut) to the length.
"""

from __future__ import annotations

import numpy as np

from .audio import SAMPLE_RATE


def _fit(audio: np.ndarray, samples: int) -> np.ndarray:
    out = np.zeros(samples, np.float32)
    out[: min(samples, len(audio))] = audio[:samples]
    return out


def _fade(audio: np.ndarray, length: int) -> np.ndarray:
    length = min(length, len(audio) // 2)
    if length > 0:
        ramp = np.arange(length, dtype=np.float32) / np.float32(length)
        audio[:length] *= ramp
        audio[len(audio) - length :] *= ramp[::-1]
    return audio


def _normalise(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0:
        audio *= np.float32(10 ** (peak_dbfs / 20) / peak)
    return audio


def declick(audio: np.ndarray) -> np.ndarray:
    diff = np.diff(audio)
    clicks = np.flatnonzero((np.abs(diff[:-1]) > 1.0) & (np.abs(diff[1:]) > 1.0)) + 1
    audio = audio.copy()
    audio[clicks] = (audio[clicks - 1] + audio[clicks + 1]) / 2
    return audio


def default_chain(audio: np.ndarray, samples: int, peak_dbfs: float, fade_ms: float) -> np.ndarray:
    audio = audio.astype(np.float32) - np.float32(audio.mean(dtype=np.float64))
    audio = _fade(audio, round(fade_ms * SAMPLE_RATE / 1000))
    return _fit(_normalise(audio, peak_dbfs), samples)


def open_nsynth_super_chain(audio: np.ndarray, samples: int) -> np.ndarray:
    audio = _normalise(declick(audio.astype(np.float32)), -12.0)
    loud = np.flatnonzero(np.abs(audio) > 0.1 * np.abs(audio).max()) if audio.any() else [0]
    audio = _fit(audio[max(0, int(loud[0]) - 16) :], samples)
    return _fade(audio, 8)


def process(audio: np.ndarray, samples: int, options) -> np.ndarray:
    """Apply the chain named by `options` (a config.PostProcess or its dict)."""
    options = options if isinstance(options, dict) else options.model_dump()
    if options["chain"] == "default":
        out = default_chain(audio, samples, options["peak_dbfs"], options["fade_ms"])
    elif options["chain"] == "open-nsynth-super":
        out = open_nsynth_super_chain(audio, samples)
    else:
        out = _fit(audio.astype(np.float32), samples)
    return np.clip(out, -1.0, 1.0)

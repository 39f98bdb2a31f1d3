"""Pictures of a space, drawn with matplotlib: a mel spectrogram thumbnail per cell and
`space.png`, every cell's spectrogram in its grid position with the input sounds named at their
places."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..files import atomic_write, real_folder
from ..output import PICTURE, THUMBS

N_FFT, HOP, N_MELS, FLOOR_DB = 512, 128, 64, -80.0


def mel_filters(n_fft: int = N_FFT, n_mels: int = N_MELS, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters `[n_mels, n_fft // 2 + 1]` evenly spaced on the mel scale (HTK's
    2595 log10(1 + f / 700)) from 0 Hz to Nyquist: where the harmonics that tell instruments
    apart lie, a linear axis gives most of the picture to the top octave."""

    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(0, mel(rate / 2), n_mels + 2) / 2595) - 1)
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    rising = (freqs[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - freqs[None]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0, np.minimum(rising, falling))


def spectrogram(audio: np.ndarray) -> np.ndarray:
    """dB mel power [mel bands, frames] of a Hann-windowed STFT, a full-scale sine near 0 dB,
    floored at -80."""
    padded = np.pad(audio.astype(np.float32), (N_FFT // 2, N_FFT // 2))
    frames = 1 + (len(padded) - N_FFT) // HOP
    index = np.arange(N_FFT)[None] + HOP * np.arange(max(frames, 1))[:, None]
    window = np.hanning(N_FFT).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(padded[np.minimum(index, len(padded) - 1)] * window, axis=1))
    power = (spectrum / (window.sum() / 2)) ** 2 @ mel_filters().T
    db = 10 * np.log10(np.maximum(power, 1e-12))
    return np.maximum(db, FLOOR_DB).T


def _draw(ax, audio: np.ndarray) -> None:
    ax.imshow(
        spectrogram(audio),
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=FLOOR_DB,
        vmax=0,
        extent=(0, len(audio) / SAMPLE_RATE, 0, N_MELS),
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _png(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def draw(folder: Path, title: str, weighting: str, corners: dict, cells, audio: dict) -> list[str]:
    """Write thumbs/<cell>.png and space.png in `folder` for `cells` (finished.Cell, one grid);
    `corners` names each label's sound, `audio` holds each cell's samples. Returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    real_folder(folder, THUMBS)
    written = []
    for cell in cells:
        figure = plt.figure(figsize=(1.6, 1.0), dpi=100)
        _draw(figure.add_axes((0, 0, 1, 1)), audio[cell.name])
        atomic_write(folder / THUMBS / f"{cell.name}.png", _png(figure))
        plt.close(figure)
        written.append(f"{THUMBS}/{cell.name}.png")

    columns = max(cell.column for cell in cells) + 1
    rows = max(cell.row for cell in cells) + 1
    figure, axes = plt.subplots(
        rows, columns, figsize=(1.6 * columns + 0.6, 1.1 * rows + 0.9), squeeze=False, dpi=100
    )
    for cell in cells:
        ax = axes[cell.row][cell.column]
        _draw(ax, audio[cell.name])
        corner = [label for label, w in cell.weights.items() if w == 1.0]
        if corner:
            # Labels are the user's text, never matplotlib's $math$ markup.
            ax.set_title(
                f"{corner[0]}: {corners[corner[0]]}", fontsize=7, color="#b00020", parse_math=False
            )
        ax.set_xlabel(cell.name, fontsize=6)
    title = f"{title}: {len(cells)} cells, {weighting} weights, mel spectrograms 0-8 kHz"
    # Wrapped to the figure's width (about 20 characters of 9-point text per column).
    figure.suptitle(textwrap.fill(title, 20 * columns + 8), fontsize=9, parse_math=False)
    figure.tight_layout()
    atomic_write(folder / PICTURE, _png(figure))
    plt.close(figure)
    return written + [PICTURE]

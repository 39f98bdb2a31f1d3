"""8-bit mu-law, exactly as Magenta's NSynth computes it.

Both networks see quantised audio `q / 128`, never raw samples, and the decoder's 256 softmax
bins are `q + 128`. The forward transform floors (rounding instead moves every log-probability
by ~2e-3, far outside the fidelity tolerance), and `forward(inverse(q)) == q` for every bin.
"""

import numpy as np


def mu_law(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> integer bins q in [-128, 128] (x = 1.0 gives 128)."""
    x = np.asarray(audio, dtype=np.float32)
    q = np.sign(x) * np.log1p(np.float32(255) * np.abs(x)) / np.log(np.float32(256))
    return np.floor(np.float32(128) * q).astype(np.int32)


def network_input(audio: np.ndarray) -> np.ndarray:
    """What both networks are fed: the mu-law bin divided by 128, as float32."""
    return mu_law(audio).astype(np.float32) / np.float32(128)


def inverse_mu_law(q: np.ndarray) -> np.ndarray:
    """Integer bins q -> float32 audio at the bin centres; exactly 0 where q == 0."""
    q = np.asarray(q)
    z = (q.astype(np.float32) + np.float32(0.5)) * np.float32(2 / 256)
    y = np.sign(z) / np.float32(255) * (np.float32(256) ** np.abs(z) - np.float32(1))
    return np.where(q == 0, np.float32(0), y).astype(np.float32)

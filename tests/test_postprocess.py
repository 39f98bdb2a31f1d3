"""The post-processing chains on synthetic sounds whose right answers are known."""
import numpy as np

from pipeline.postprocess import declick, process

DEFAULT = {"chain": "default", "peak_dbfs": -1.0, "fade_ms": 5.0}


def test_default_removes_dc_normalises_fades_and_pads():
    t = np.arange(15872) / 16000
    audio = (0.3 + 0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # DC 0.3
    out = process(audio, 16000, DEFAULT)
    assert out.shape == (16000,) and out.dtype == np.float32
    assert abs(out[:15872].mean()) < 1e-3
    assert np.isclose(np.abs(out).max(), 10 ** (-1 / 20), atol=1e-6)
    assert out[0] == 0 and out[15871] == 0 and not out[15872:].any()
    fade = 80  # 5 ms
    assert np.all(np.abs(out[:fade]) <= np.abs(out[fade:2 * fade]).max() + 1e-6)


def test_default_never_clips_and_leaves_silence_alone():
    loud = np.full(1024, 5.0, np.float32)
    loud[::2] = -5.0
    assert np.abs(process(loud, 1024, {**DEFAULT, "peak_dbfs": 0.0})).max() <= 1.0
    assert not process(np.zeros(1024, np.float32), 1024, DEFAULT).any()


def test_declick_replaces_only_isolated_jumps():
    audio = np.zeros(10, np.float32)
    audio[4] = 0.9
    audio[3], audio[5] = -0.3, -0.2  # both neighbouring differences exceed 1.0
    audio[8] = 0.5  # a step, not a click
    fixed = declick(audio)
    assert np.isclose(fixed[4], -0.25) and fixed[8] == 0.5
    assert np.array_equal(np.delete(fixed, 4), np.delete(audio, 4))


def test_open_nsynth_super_chain():
    audio = np.zeros(5000, np.float32)
    audio[1000:] = 0.5 * np.sin(np.arange(1, 4001) * 0.3)  # onset at sample 1000
    audio[500] = 0.02  # below 10 % of the peak: trimmed away with the silence
    out = process(audio, 3000, {"chain": "open-nsynth-super", "peak_dbfs": -1.0, "fade_ms": 5})
    assert out.shape == (3000,)
    assert np.isclose(np.abs(out).max(), 10 ** (-12 / 20), atol=1e-6)
    first = np.flatnonzero(np.abs(audio) > 0.05)[0]  # first sample above 10 % of the peak
    scale = 10 ** (-12 / 20) / np.abs(audio).max()
    assert not out[:16].any()  # trimmed to 16 samples before the onset
    assert np.allclose(out[16:100], audio[first:first + 84] * scale, atol=1e-6)
    tail = out[-8:] / audio[first - 16 + 2992:first - 16 + 3000] / scale
    assert np.allclose(tail, np.arange(7, -1, -1) / 8)  # an 8-sample linear fade-out to 0


def test_none_only_fits_the_length():
    audio = np.linspace(-0.5, 0.5, 1024, dtype=np.float32)
    assert np.array_equal(process(audio, 1000, {"chain": "none"}), audio[:1000])
    assert np.array_equal(process(audio, 1100, {"chain": "none"})[:1024], audio)

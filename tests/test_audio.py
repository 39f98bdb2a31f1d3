"""Audio in (pipeline/audio.py): what a sound file holds reaches the encoder as the user meant it,
or is refused in one line that says why."""
import os
import re

import numpy as np
import pytest
import soundfile

from pipeline import SoundspaceError
from pipeline.audio import load_audio

RATE = 16000


def sine(freq: float = 440.0, seconds: float = 0.25) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(round(seconds * RATE)) / RATE)


def test_a_float_file_beyond_full_scale_is_scaled_down_with_a_warning(tmp_path, capsys):
    """A float WAV peaking at 500 was clipped to a square wave and encoded without a word."""
    path = tmp_path / "loud.wav"
    soundfile.write(path, 500 * sine(), RATE, subtype="FLOAT")
    audio = load_audio(path)
    assert np.abs(audio - sine()).max() < 1e-6  # the same wave at peak 1, not clipped
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and warning.startswith("soundspace: warning: ")
    assert str(path) in warning and "500" in warning and "scaled down" in warning


def test_a_sound_within_full_scale_is_left_as_it_is(tmp_path, capsys):
    path = tmp_path / "full.wav"
    soundfile.write(path, sine(), RATE, subtype="FLOAT")
    assert np.abs(load_audio(path) - sine()).max() < 1e-6
    assert capsys.readouterr().err == ""


def test_stereo_channels_that_cancel_are_refused_by_name(tmp_path):
    """Each channel loud, their mono mix silent: the encoder would hear nothing (and a space
    said only "is silent")."""
    path = tmp_path / "inverted.wav"
    soundfile.write(path, np.stack([0.5 * sine(), -0.5 * sine()], 1), RATE, subtype="FLOAT")
    with pytest.raises(SoundspaceError) as refused:
        load_audio(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: its 2 channels cancel when mixed to mono")
    assert "-6 dBFS" in message and "mono file" in message and "\n" not in message


def test_stereo_channels_that_differ_are_mixed(tmp_path):
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([0.5 * sine(), 0.3 * sine()], 1), RATE, subtype="FLOAT")
    assert np.abs(load_audio(path) - 0.4 * sine()).max() < 1e-6


@pytest.mark.parametrize("make,kind", [(os.mkfifo, "a named pipe (FIFO)"), (os.mkdir, "a folder")])
def test_a_path_that_holds_no_sound_is_named_for_what_it_is(tmp_path, make, kind):
    """A FIFO was "no such sound file" (and opening one would block the read)."""
    make(tmp_path / "sound.wav")
    with pytest.raises(SoundspaceError, match=re.escape(f"sound.wav is {kind}, not a sound file")):
        load_audio(tmp_path / "sound.wav")

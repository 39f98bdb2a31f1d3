"""Open NSynth Super: one header-less int16 file per pad, and the app's settings for them.

The device's app (openFrameworks, `NSynth.cpp`) loads `<dataDirectory>/<pad>.bin` as a matrix of
`resolution * resolution * len(pitches)` rows of `length` little-endian int16 samples and plays
row `(yi * resolution + xi) * len(pitches) + pitch_index`, where (xi, yi) is the touched cell
from the top left and the pitch is the generated one nearest the played note. `<pad>` joins the
current instrument names of its four corners with `_` in the order top-left, top-right,
bottom-left, bottom-right: NW, NE, SW, SE, the order of a soundspace pad's name.

Every sound goes through Open NSynth Super's own post-processing to the device length; a space
already made with that chain at that length is copied sample for sample.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np

from .. import SoundspaceError, signals
from ..audio import audible_samples, wav_bytes
from ..files import megabytes
from ..finished import Finished, read_cell
from ..postprocess import open_nsynth_super_chain

DEVICE_LENGTH = 60000  # samples at 16 kHz, the app's default
DEVICE_DATA_DIRECTORY = "/home/pi/pads"  # where the app's own settings look for pads
DEVICE_LOOP = (0.2, 0.41)  # the app's own loop, fractions of the sound
MIN_LOOP = 160  # samples (10 ms): a shorter loop would buzz rather than sustain
PADS = "pads"
SETTINGS = "settings-fragment.json"


def check(source: Finished, where: Path, length: int) -> None:
    """Refuse what the device cannot play, and an export the disk has no room for."""
    if source.line:
        raise SoundspaceError(
            f"{source.folder} is a line of 2 sounds; Open NSynth Super plays a "
            "square of 4 corners: export it with --format sfz, or make a "
            "4-sound space"
        )
    need = len(source.pads) * source.resolution**2 * len(source.pitches) * length * 2
    free = shutil.disk_usage(where).free
    if need > free:
        raise SoundspaceError(
            f"not enough free space in {where}: the pad files take "
            f"{megabytes(need)} and {megabytes(free)} is free; free "
            f"{megabytes(need - free)} or choose another --out"
        )


def _int16(audio: np.ndarray) -> np.ndarray:
    """Float samples as the 16-bit values a WAV of them holds (the same rounding as every cell)."""
    import soundfile

    data = wav_bytes(audio)
    with signals.held():  # libsndfile calls back into Python for a file in memory
        return soundfile.read(io.BytesIO(data), dtype="int16")[0]


def device_samples(source: Finished, cell, length: int) -> np.ndarray:
    samples = read_cell(cell)[1]
    if source.chain == "open-nsynth-super" and len(samples) == length:
        return samples  # already the device's chain at the device's length
    return _int16(open_nsynth_super_chain(samples.astype(np.float32) / 32768, length))


def display(label: str) -> tuple[str, str]:
    """The device's 8-character display name and 2-character abbreviation of an instrument."""
    words = re.findall(r"[A-Za-z0-9]+", label.upper()) or ["?"]
    abbr = (words[0][0] + words[1][0]) if len(words) > 1 else words[0][:2]
    short = list(words)  # shorten the longest word first: "Fingered bass" -> "FIN BASS"
    while len(" ".join(short)) > 8 and max(map(len, short)) > 3:
        longest = max(range(len(short)), key=lambda i: (len(short[i]), i))
        short[longest] = short[longest][:-1]
    return " ".join(short)[:8].rstrip(), abbr


def write(
    source: Finished,
    out: Path,
    bar,
    length: int = DEVICE_LENGTH,
    data_directory: str = DEVICE_DATA_DIRECTORY,
) -> tuple[list[str], dict]:
    """Write every pad's `.bin` under `out/pads/` and the settings fragment; returns the files
    and the device's loop (`device_loop`)."""
    (out / PADS).mkdir()
    written = []
    audible = length  # the shortest audible part of any sound (`audio.audible_samples`)
    for pad in source.pads:
        # The app loads the file named by the corners' instrument names (a library's pad name).
        path = out / PADS / ("_".join(i.name for i in pad.corners) + ".bin")
        with open(path, "wb") as f:
            for row in range(source.resolution):
                for column in range(source.resolution):
                    for pitch in source.pitches:
                        sound = device_samples(source, pad.cells[(column, row, pitch)], length)
                        f.write(sound.astype("<i2").tobytes())
                        audible = min(audible, audible_samples(sound) or length)  # not silence
                        bar.update()
        written.append(f"{PADS}/{path.name}")
    loop = device_loop(audible, length)
    settings = {
        "nsynth": {
            "dataDirectory": data_directory,
            "resolution": source.resolution,
            "pitches": list(source.pitches),
            "length": length,
            "sampleRate": 16000,
            **{k: loop[k] for k in ("looping", "loopStart", "loopEnd")},
        },
        "corners": [
            {
                "instruments": [
                    dict(zip(("name", "display", "abbr"), (i.name, *display(i.label)), strict=True))
                    for i in source.instruments[label]
                ]
            }
            for label in source.labels
        ],
    }
    (out / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
    return written + [SETTINGS], loop


def device_loop(audible: int, length: int) -> dict:
    """The device's loop (`looping`, `loopStart`, `loopEnd`: fractions of `length`, one for all
    sounds): its own 20 % to 41 %, of the part every sound is audible in (`audible` samples), so
    that a held note never loops over the silence a short sound was padded with; no loop where
    that part would be under 10 ms (`why` says so)."""
    start, end = DEVICE_LOOP[0] * audible / length, DEVICE_LOOP[1] * audible / length
    if (end - start) * length < MIN_LOOP:
        return {
            "looping": False,
            "loopStart": DEVICE_LOOP[0],
            "loopEnd": DEVICE_LOOP[1],
            "audible": audible,
            "why": f"the shortest sound is audible for {audible} samples only: too short to loop, "
            "so held notes play it once",
        }
    return {
        "looping": True,
        "loopStart": round(start, 4),
        "loopEnd": round(end, 4),
        "audible": audible,
        "why": f"20 % to 41 % of the {audible} samples every sound is audible in",
    }

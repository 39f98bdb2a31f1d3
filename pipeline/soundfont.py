"""Input sounds from a soundfont: NSynth-style notes of any preset, rendered by FluidSynth.

NSynth's notes are one pitch at one velocity, held for 3/4 of their length and then released.
This renders such notes for a preset (bank, program) of any SoundFont 2 file (General MIDI or
custom), so a library can start from the soundfonts a user owns. FluidSynth renders with reverb
and chorus off at 16 kHz; the stereo render is mixed to mono, cut or zero-padded to the length,
peak-normalised to PEAK and written as 16-bit WAV named `{name}_{pitch}.wav`, the pattern a
library's `space.json` looks for by default. The same preset, note and length render
byte-identical files on every run (scripts/make-datasets relies on it).

The soundfont's preset table is read first, so that a preset it lacks is refused by name (with
the presets it has) instead of rendering silence, and a table that does not fit its file is
reported as damage. Bank 128 holds a SoundFont's percussion kits: FluidSynth plays them on MIDI
channel 10, its drum channel, where a program change alone picks the kit (a bank select there,
or bank 128 on another channel, would be ignored or fall back to a melodic preset).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import SoundspaceError
from .audio import SAMPLE_RATE, SILENCE_PEAK, write_wav
from .files import made_folder

PEAK = 0.7
VELOCITY = 100
TICKS = 480  # per quarter note; at MIDI's default 120 bpm one tick is 1/960 s
RENDER_TIMEOUT = 300  # seconds for one note: FluidSynth renders faster than real time
PERCUSSION_BANK = 128  # the SoundFont 2 bank of drum kits
PERCUSSION_CHANNEL = 9  # MIDI channel 10, counted from 0: FluidSynth's drum channel
PRESET_HEADER = 38  # bytes of one phdr record


def presets(soundfont) -> dict[tuple[int, int], str]:
    """`{(bank, program): name}` from the soundfont's `phdr` chunk (38-byte preset headers, the
    last one the end marker), refusing a file that is not a SoundFont 2."""
    path = Path(soundfont)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
                raise SoundspaceError(
                    f"{path} is not a SoundFont 2 file (.sf2); give an .sf2 "
                    "soundfont (e.g. /usr/share/sounds/sf2/FluidR3_GM.sf2)"
                )
            end = 8 + struct.unpack("<I", head[4:8])[0]
            while f.tell() + 12 <= end:
                kind, size = struct.unpack("<4sI", f.read(8))
                if kind == b"LIST":
                    if f.read(4) != b"pdta":
                        f.seek(size - 4, 1)
                    continue  # the pdta list's chunks follow
                if kind == b"phdr":
                    table = f.read(size)
                    _check_table(path, size, len(table), f.read(4))
                    found = {}
                    for at in range(0, size - PRESET_HEADER, PRESET_HEADER):  # not the end (EOP)
                        name, program, bank = struct.unpack_from("<20sHH", table, at)
                        found[(bank, program)] = name.split(b"\0")[0].decode("latin-1").strip()
                    return found
                f.seek(size + (size & 1), 1)
    except OSError as error:
        raise SoundspaceError(
            f"cannot read the soundfont {path} ({error.strerror or error})"
        ) from None
    except struct.error:
        pass
    raise SoundspaceError(
        f"{path} holds no preset table (phdr chunk): a damaged or truncated SoundFont 2 file"
    )


def _check_table(path: Path, size: int, read: int, following: bytes) -> None:
    """Refuse a preset table whose declared size does not fit its records or its file: the
    table would be read on into the chunk after it, whose bytes would pass for presets, or cut
    a preset short. The format puts the preset zones' chunk (pbag) right after it."""
    if read < size:
        why = f"says it is {size:,} bytes, more than the file holds after it"
    elif size % PRESET_HEADER or size < 2 * PRESET_HEADER:
        why = f"is {size:,} bytes, not {PRESET_HEADER}-byte presets and the end record"
    elif following != b"pbag":
        why = f"says it is {size:,} bytes, which ends it where no pbag chunk starts"
    else:
        return
    raise SoundspaceError(
        f"{path}: its preset table (phdr chunk) {why}: a damaged or truncated SoundFont 2 "
        "file; get the soundfont again"
    )


def midi_file(
    program: int, bank: int, note: int, seconds: float, velocity: int = VELOCITY
) -> bytes:
    """A format-0 Standard MIDI File: bank select, program change, the note held for 3/4 of
    `seconds`, released, and the end of the track at `seconds`; bank 128 (percussion) on the
    drum channel, with no bank select."""

    def var_len(value: int) -> bytes:
        out = [value & 0x7F]
        while value > 0x7F:
            value >>= 7
            out.insert(0, (value & 0x7F) | 0x80)
        return bytes(out)

    hold, total = round(seconds * 0.75 * 960), round(seconds * 960)
    channel = PERCUSSION_CHANNEL if bank == PERCUSSION_BANK else 0
    melodic_bank = 0 < bank < PERCUSSION_BANK
    bank_select = var_len(0) + bytes([0xB0, 0, bank]) if melodic_bank else b""
    events = (
        bank_select
        + var_len(0)
        + bytes([0xC0 | channel, program])
        + var_len(0)
        + bytes([0x90 | channel, note, velocity])
        + var_len(hold)
        + bytes([0x80 | channel, note, 0])
        + var_len(total - hold)
        + b"\xff\x2f\x00"
    )
    return (
        b"MThd"
        + struct.pack(">IHHH", 6, 0, 1, TICKS)
        + b"MTrk"
        + struct.pack(">I", len(events))
        + events
    )


def render_note(
    soundfont, program: int, bank: int, note: int, seconds: float, velocity: int = VELOCITY
) -> np.ndarray:
    """One note as float32 mono at 16 kHz, `seconds` long, peak-normalised to PEAK."""
    import soundfile

    if not shutil.which("fluidsynth"):
        raise SoundspaceError(
            "FluidSynth is not installed; install it with "
            "scripts/install-system-deps (Debian: apt install fluidsynth)"
        )
    with tempfile.TemporaryDirectory(prefix="soundspace-note-") as tmp:
        midi, wav = Path(tmp) / "note.mid", Path(tmp) / "note.wav"
        midi.write_bytes(midi_file(program, bank, note, seconds, velocity))
        try:
            subprocess.run(
                [
                    "fluidsynth",
                    "-ni",
                    "-q",
                    "-R",
                    "0",
                    "-C",
                    "0",
                    "-g",
                    "1.0",
                    "-r",
                    str(SAMPLE_RATE),
                    "-F",
                    str(wav),
                    "-T",
                    "wav",
                    "-O",
                    "s16",
                    str(soundfont),
                    str(midi),
                ],
                check=True,
                capture_output=True,
                timeout=RENDER_TIMEOUT,
            )
        except subprocess.CalledProcessError as error:
            why = (error.stderr or b"").decode(errors="replace").strip().splitlines()
            raise SoundspaceError(
                f"FluidSynth failed on {soundfont} (exit {error.returncode}"
                f"{': ' + why[-1] if why else ''})"
            ) from None
        except subprocess.TimeoutExpired:
            raise SoundspaceError(
                f"FluidSynth took over {RENDER_TIMEOUT} s for one note of "
                f"{soundfont}; it is stuck (a damaged soundfont?)"
            ) from None
        stereo, rate = soundfile.read(wav, dtype="float64", always_2d=True)
    if rate != SAMPLE_RATE or not len(stereo):
        raise SoundspaceError(f"FluidSynth rendered nothing usable from {soundfont}")
    mono = stereo.mean(axis=1)
    length = round(seconds * SAMPLE_RATE)
    mono = np.pad(mono, (0, max(0, length - len(mono))))[:length]
    peak = np.abs(mono).max()
    if peak < SILENCE_PEAK:
        raise SoundspaceError(
            f"bank {bank} program {program} of {soundfont} is silent at note "
            f"{note}: the preset has no sample for that key; choose other "
            "pitches or another preset"
        )
    return (mono * (PEAK / peak)).astype(np.float32)


def check_preset(soundfont, program: int, bank: int) -> str:
    """The preset's name, or an error listing the presets the soundfont has."""
    path = Path(soundfont)
    table = presets(path)
    if (bank, program) not in table:
        have = ", ".join(f"{b}:{p} {n}" for (b, p), n in sorted(table.items())[:12])
        raise SoundspaceError(
            f"{path} has no preset at bank {bank} program {program}; it has "
            f"{len(table)} preset(s) (bank:program name): {have}"
            f"{' ...' if len(table) > 12 else ''}"
        )
    return table[(bank, program)]


def choose(soundfont, wanted: list[str], bank: int) -> list[tuple[int, str]]:
    """Each of `wanted`, a program number or a preset's name (any case), as (program, preset
    name) in `bank`; whatever the soundfont lacks is refused with the presets it has."""
    path = Path(soundfont)
    in_bank = {p: n for (b, p), n in presets(path).items() if b == bank}
    chosen = []
    for item in wanted:
        if item.isascii() and item.isdigit():
            chosen.append((int(item), check_preset(path, int(item), bank)))
            continue
        named = [p for p, n in in_bank.items() if n.strip().lower() == item.strip().lower()]
        if len(named) > 1:
            raise SoundspaceError(
                f"{path} has {len(named)} presets named {item[:40]!r} in bank {bank} (programs "
                f"{', '.join(map(str, sorted(named)))}): give the program number"
            )
        if not named:
            near = [n for n in in_bank.values() if item.strip().lower() in n.lower()]
            raise SoundspaceError(
                f"{path} has no preset named {item[:40]!r} in bank {bank}"
                + (f"; presets with that in their name: {', '.join(near[:8])}" if near else "")
                + f" (`soundspace inputs --soundfont {path} --list` lists them all)"
            )
        chosen.append((named[0], in_bank[named[0]]))
    return chosen


def file_name(preset: str) -> str:
    """A preset's name as a sound's file-name part: `Nylon Guitar` -> `nylon-guitar`."""
    simple = re.sub(r"[^a-z0-9.-]+", "-", preset.lower()).strip("-.")[:40].rstrip("-.")
    return simple or "preset"


def render_notes(
    soundfont,
    bank: int,
    instruments: list[tuple[int, str]],
    pitches,
    seconds: float,
    out_dir,
    velocity: int = VELOCITY,
    progress=None,
) -> list[Path]:
    """`soundspace inputs --soundfont`: for each (program, name) of `instruments`, one
    `{name}_{pitch}.wav` per pitch in `out_dir`. Every note is rendered and checked before the
    first file is written."""
    path = Path(soundfont)
    for program, _ in instruments:
        check_preset(path, program, bank)
    notes = {}
    for program, name in instruments:
        for pitch in pitches:
            notes[f"{name}_{pitch}.wav"] = render_note(
                path, program, bank, pitch, seconds, velocity
            )
            if progress:
                progress(pitch)
    with made_folder(out_dir) as out:
        return [write_wav(out / file, audio) for file, audio in notes.items()]

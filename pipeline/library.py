"""Libraries: the plan of many pads at many pitches, made of distinct decodes.

A library's corners may each list several sounds; every combination (one sound per corner, in
corner order) is a *pad*, named by its sounds joined with `_` (Open NSynth Super's names), and
every pad is a grid at each of the library's pitches, whose cells mix the corners' embeddings
at that pitch. A cell's *mix* is its weight per sound: the corners' weights of the grid, summed
where one sound sits in two corners, rounded to WEIGHT_DECIMALS and without zeros. A *decode* is
one (pitch, mix): the unit of work, of naming and of resume. The same mix reached from two pads
(the edge NW-NE of every pad with the same NW and NE sounds) is one decode, so Open NSynth
Super's 256 pads x 16 pitches x 81 cells are 118,016 decodes, not 331,776.

A decode is named by a hash of its (pitch, mix), draws its sampling noise from the stream
`(seed, that hash)`, and so does not depend on which pads reach it or in what order: adding a pad
keeps every decode made so far. The plan is a pure function of the library definition and its
input sounds; it reads the sounds (their lengths matter) but needs no model, so `soundspace plan`
counts and prices a library before anything runs.

Input files: a sound's file at a pitch is `pattern` filled with the sound's name and the pitch
(default `{sound}_{pitch}.wav`; `{sound}.wav` without pitches), or given per sound. With
`missing_pitches: shift`, a missing pitch is made from the sound's nearest existing pitch (any
MIDI note, in or out of the library's list) by resampling with soxr (a speed change: one
semitone is a factor 2^(1/12)), at most `max_shift_semitones` away; the shift is recorded.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import SoundspaceError
from .audio import SAMPLE_RATE, check_sound_file, fit, load_audio
from .config import LibraryConfig, LibrarySound
from .cost import estimate
from .files import inside
from .space import cells

WEIGHT_DECIMALS = 6
# Past this many distinct decodes, `generate` asks for --yes: at the demo model's speed it is
# an hour or more on a CPU, and with Magenta's model weeks (the plan prints the cost).
MAX_DECODES = 16_641


@dataclass(frozen=True)
class Input:
    """One sound at one pitch: the file it comes from and how far it was shifted."""

    sound: str
    pitch: int | None
    file: str  # relative to the dataset folder
    source_pitch: int | None  # the file's pitch; differs from `pitch` when shifted

    @property
    def semitones(self) -> int:
        if self.pitch is None:
            return 0
        assert self.source_pitch is not None  # an input at a pitch has a file at some pitch
        return self.pitch - self.source_pitch


@dataclass(frozen=True)
class Pad:
    name: str
    sounds: tuple  # one sound name per corner, in the order of the library's labels


@dataclass
class Decode:
    name: str
    pitch: int | None
    mix: tuple  # ((sound, weight), ...), sorted by sound
    seed: list
    cells: list = field(default_factory=list)  # (pad index, cell index) that play it

    @property
    def file(self) -> str:
        return f"{self.name}.wav"


@dataclass
class LibraryPlan:
    config: LibraryConfig
    folder: Path
    pads: list[Pad]
    pitches: list  # MIDI notes, or [None] for a library without pitches
    grid: list  # space.Cell, the same for every pad and pitch
    inputs: dict  # (sound, pitch) -> Input
    audio: dict  # (sound, pitch) -> float32 audio, fitted
    samples: dict  # pitch -> samples of every sound at that pitch
    decodes: list[Decode]
    cell_decode: dict  # (pad index, pitch, cell index) -> index into decodes

    @property
    def cells_total(self) -> int:
        return len(self.pads) * len(self.pitches) * len(self.grid)

    def decodes_at(self, pitch) -> list[int]:
        return [i for i, d in enumerate(self.decodes) if d.pitch == pitch]

    def cost(self, config=None, model: str = "Magenta's full-size model") -> dict:
        """Counts and estimates for `soundspace plan` (and the refusal of a huge library), for
        a model of size `config` (None: Magenta's), named `model` (`cost.estimate`)."""
        samples = sum(self.samples[d.pitch] for d in self.decodes)
        return {
            "library": self.config.name,
            "pads": len(self.pads),
            "pitches": [p for p in self.pitches if p is not None],
            "cells": self.cells_total,
            "decodes": len(self.decodes),
            "shared_cells": self.cells_total - len(self.decodes),
            "grid": grid_size(self.config),
            "weighting": self.config.weighting,
            **estimate(samples, config, model),
            "shifted": [
                {
                    "sound": i.sound,
                    "pitch": i.pitch,
                    "from": i.source_pitch,
                    "semitones": i.semitones,
                }
                for i in self.inputs.values()
                if i.semitones
            ],
        }


def grid_size(config) -> str:
    """ "9 x 9" for a square, "9" for a line."""
    return f"{config.resolution}" + (
        "" if config.labels == ("LEFT", "RIGHT") else f" x {config.resolution}"
    )


def mix_of(sounds: tuple, weights) -> tuple:
    """A cell's weight per sound (`sounds`: a pad's, one per corner): corners holding the same
    sound add up; zeros are dropped."""
    totals: dict[str, float] = {}
    for sound, weight in zip(sounds, weights, strict=True):
        totals[sound] = totals.get(sound, 0.0) + weight
    return tuple(
        sorted(
            (s, round(w, WEIGHT_DECIMALS))
            for s, w in totals.items()
            if round(w, WEIGHT_DECIMALS) != 0
        )
    )


def decode_identity(pitch, mix) -> tuple[str, int]:
    """The decode's name and its random stream, from its pitch and mix alone."""
    digest = hashlib.sha256(json.dumps([pitch, mix]).encode()).hexdigest()
    name = f"d{pitch:03d}-{digest[:16]}" if pitch is not None else f"d-{digest[:16]}"  # DECODE_NAME
    return name, int(digest[16:31], 16)


def pads_of(config: LibraryConfig) -> list[Pad]:
    corners = [config.sounds[label] for label in config.labels]
    return [
        Pad("_".join(s.name for s in combo), tuple(s.name for s in combo))
        for combo in itertools.product(*corners)
    ]


def _pattern(config: LibraryConfig, path: Path) -> str:
    """The library's file pattern, holding `{sound}` and `{pitch}` as they are and nothing else
    in braces: a format spec (`{pitch:03d}`, `{sound:>1000000000}`), a conversion (`!r`), an
    index or attribute would make names no user means, or gigabytes of one name."""
    pattern = config.pattern or ("{sound}_{pitch}.wav" if config.pitches else "{sound}.wav")
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as error:
        raise SoundspaceError(
            f"{path}: field pattern {pattern!r} is not a usable file pattern "
            f'({error}); write it like "{{sound}}_{{pitch}}.wav"'
        ) from None
    fields = {name for _, name, _, _ in parts if name is not None}
    for _, name, spec, conversion in parts:
        if name is not None and (name not in ("sound", "pitch") or spec or conversion):
            extra = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            field = f"{{{name}{extra}}}"
            raise SoundspaceError(
                f"{path}: field pattern {pattern!r} holds {field[:40]}; write {{sound}} and "
                '{pitch} just so, with no format or conversion (e.g. "{sound}_{pitch}.wav")'
            )
    needed = {"sound", "pitch"} if config.pitches else {"sound"}
    if fields != needed:
        raise SoundspaceError(
            f"{path}: field pattern {pattern!r} must contain "
            f"{' and '.join('{' + f + '}' for f in sorted(needed))} and nothing "
            f"else in braces (it has {', '.join(sorted(fields)) or 'none'})"
        )
    return pattern


def find_inputs(config: LibraryConfig, folder: Path) -> dict:
    """`(sound, pitch) -> Input` for every sound and pitch of the library, shifting missing
    pitches where allowed; every refusal names the sound, the pitches and the fix."""
    where = folder / "space.json"
    pattern = _pattern(config, where)
    sounds: dict[str, LibrarySound] = {}
    for label in config.labels:
        for sound in config.sounds[label]:
            if sounds.setdefault(sound.name, sound) != sound:
                raise SoundspaceError(
                    f"{where}: sound {sound.name} is defined twice, differently "
                    "(corners may share a sound, with the same definition)"
                )

    def file_at(sound, pitch) -> str | None:
        if sound.files is not None:
            return sound.files.get(pitch)
        return (
            sound.file if sound.file is not None else pattern.format(sound=sound.name, pitch=pitch)
        )

    def exists(rel: str) -> bool:
        try:
            path = inside(folder, rel, "sound file")
        except SoundspaceError as error:
            raise SoundspaceError(
                f"{where}: {error}; name sound files relative to {folder}"
            ) from None
        if not path.exists():
            return False
        check_sound_file(path)  # there but holding no sound (a FIFO, a folder): refused by name
        return True

    def looked_for(sound, pitch) -> str:
        """The file a sound should have at `pitch`, or, where its `files` name none for it,
        the files they name."""
        rel = file_at(sound, pitch)
        if rel is not None:
            return rel
        named = ", ".join(sound.files.values()) or "none"
        return f"its `files`, which name no file for pitch {pitch} ({named[:80]})"

    inputs: dict[tuple[str, int | None], Input] = {}
    unmatched: list[str] = []
    for name, sound in sounds.items():
        if config.pitches is None:
            rel = file_at(sound, None)
            assert rel is not None  # without pitches: its `file` or the pattern's (config)
            if not exists(rel):
                unmatched.append(f"{name} ({rel})")
            inputs[(name, None)] = Input(name, None, rel, None)
            continue
        candidates = sound.files.keys() if sound.files is not None else range(128)
        have: dict[int, str] = {}
        for p in candidates:
            rel = file_at(sound, p)
            if rel is not None and exists(rel):
                have[p] = rel
        if not have:
            unmatched.append(f"{name} (e.g. {looked_for(sound, config.pitches[0])})")
            continue
        missing = [p for p in config.pitches if p not in have]
        if missing and config.missing_pitches == "error":
            raise SoundspaceError(
                f"{where}: sound {name} has no file for pitch {', '.join(map(str, missing))} "
                f"(looked for {looked_for(sound, missing[0])}; it has "
                f"{', '.join(map(str, sorted(have)))}); "
                'add the files, or set "missing_pitches": "shift" to make them from its '
                "nearest pitch"
            )
        for pitch in config.pitches:
            source = min(have, key=lambda p: (abs(p - pitch), p))
            if abs(source - pitch) > config.max_shift_semitones:
                raise SoundspaceError(
                    f"{where}: sound {name} has no file for pitch {pitch}, and its nearest pitch "
                    f"({source}) is {abs(source - pitch)} semitones away, more than "
                    f"max_shift_semitones ({config.max_shift_semitones}); add a file nearer "
                    "that pitch, or raise max_shift_semitones (up to 12)"
                )
            inputs[(name, pitch)] = Input(name, pitch, have[source], source)
    if unmatched:
        nothing = len(unmatched) == len(sounds)
        what = f"the pattern {pattern!r} matches no file" if nothing else "no file"
        raise SoundspaceError(
            f"{where}: {what} "
            f"for {', '.join(unmatched)} in {folder}; name the files by the pattern, change "
            "`pattern`, or give each sound its `files`"
        )
    return inputs


def shift(audio: np.ndarray, semitones: int) -> np.ndarray:
    """The sound `semitones` higher (lower when negative) by resampling, as a sampler does:
    its length changes by the same factor."""
    import soxr

    if semitones == 0:
        return audio
    return soxr.resample(
        audio, SAMPLE_RATE * 2 ** (semitones / 12), SAMPLE_RATE, quality="VHQ"
    ).astype(np.float32)


def load_inputs(config: LibraryConfig, folder: Path, inputs: dict) -> tuple[dict, dict]:
    """The fitted audio of every input and the samples per pitch. Each input is cut or padded
    to the library's length, or keeps its own (a shifted one its source's) when there is none."""
    sources, audio, lengths = {}, {}, {}
    for key, item in inputs.items():
        if item.file not in sources:
            sources[item.file] = load_audio(folder / item.file)
        raw = sources[item.file]
        samples = round(config.length * SAMPLE_RATE) if config.length else len(raw)
        audio[key] = fit(shift(raw, item.semitones), samples, folder / item.file)
        lengths[key] = samples
    return audio, lengths


def plan_library(config: LibraryConfig, folder) -> LibraryPlan:
    """Everything about the library that is known before a model is loaded (module docstring)."""
    folder = Path(folder)
    inputs = find_inputs(config, folder)
    audio, lengths = load_inputs(config, folder, inputs)
    pads = pads_of(config)
    pitches: list[int | None] = [*config.pitches] if config.pitches else [None]
    samples: dict[int | None, int] = {}
    for pitch in pitches:
        for pad in pads:
            found = {s: lengths[(s, pitch)] for s in pad.sounds}
            if len(set(found.values())) > 1:
                at = f" at pitch {pitch}" if pitch is not None else ""
                raise SoundspaceError(
                    f"{folder / 'space.json'}: the sounds of pad {pad.name} have different "
                    f"lengths{at} "
                    f"({', '.join(f'{s} {n / SAMPLE_RATE:g} s' for s, n in found.items())}); "
                    "set `length` (seconds) to cut or pad every sound to one length"
                )
            samples.setdefault(pitch, next(iter(found.values())))
    grid = cells(config.labels, config.resolution, config.weighting)
    mixes: dict[tuple, int] = {}  # mix -> its index, in order of first use
    cell_mix: dict[tuple[int, int], int] = {}  # (pad index, cell index) -> mix index
    for p, pad in enumerate(pads):
        for c, cell in enumerate(grid):
            cell_mix[(p, c)] = mixes.setdefault(mix_of(pad.sounds, cell.weights), len(mixes))
    decodes: list[Decode] = []
    cell_decode: dict[tuple[int, int | None, int], int] = {}
    for pitch in pitches:
        first = len(decodes)
        for mix in mixes:
            name, stream = decode_identity(pitch, mix)
            decodes.append(Decode(name, pitch, mix, [config.seed, stream]))
        for (p, c), m in cell_mix.items():
            cell_decode[(p, pitch, c)] = first + m
            decodes[first + m].cells.append((p, c))
    return LibraryPlan(
        config, folder, pads, pitches, grid, inputs, audio, samples, decodes, cell_decode
    )


def describe_cost(cost: dict) -> str:
    """The plan as `soundspace plan` prints it."""
    pitches = cost["pitches"]
    if "space" in cost:
        lines = [
            f"space {cost['space']}: {cost['grid']} grid ({cost['weighting']}) = "
            f"{cost['cells']:,} cells"
        ]
    else:
        lines = [
            f"library {cost['library']}: {cost['pads']:,} pad(s) x {len(pitches) or 1} "
            f"pitch(es) x {cost['grid']} grid ({cost['weighting']}) = {cost['cells']:,} cells",
            f"pitches: {' '.join(map(str, pitches)) or '(one, unnamed)'}",
        ]
    lines += [
        f"distinct decodes: {cost['decodes']:,} ({cost['shared_cells']:,} cells share a decode "
        "with another cell)",
        f"audio to decode: {_span(cost['audio_hours'])}",
        f"estimated: {_span(cost['cpu_hours'])} on 2 CPU cores, {_span(cost['gpu_hours'])} on "
        "8 K80 GPUs' worth of Magenta's generator",
        f"  ({cost['assumptions']})",
    ]
    lines += [
        f"shifted: {s['sound']} at pitch {s['pitch']} from {s['from']} "
        f"({s['semitones']:+d} semitones)"
        for s in cost["shifted"]
    ]
    return "\n".join(lines)


def _span(hours: float) -> str:
    """A duration as a person reads it: seconds, minutes or hours."""
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:,.1f} hours"

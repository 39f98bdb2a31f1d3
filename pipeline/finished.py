"""A finished space or library, read back from its folder: the one reader of what `generate`
wrote, for the explorer's pages and for every export.

A folder may come from anyone, so nothing in it is trusted, and it is all checked here, once:
the stored configuration is validated again (names and sizes obey the rules a run obeys), every
pad name must be the one its sounds make and every cell name one this program writes (through
`output.cell_wav`), every path goes through `files.inside`, and the grid must be whole (every
column, row and pitch once). A cell's place and weights come from the grid's geometry, never from
the manifest. A cell's WAV is used only through `read_cell`: with the sha256 its manifest
recorded, 16 kHz mono of the recorded length. A space is one pad; a library has one pad per
combination of corner sounds. Whatever is wrong ends in one `SoundspaceError` line that names
the problem and the fix. The weights a manifest records for each cell (what it was decoded from)
must be the grid's at its place: a stored configuration changed since the run (another
weighting) would otherwise show weights the sounds were not made with.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from . import SoundspaceError, signals
from .audio import SAMPLE_RATE
from .config import LibraryConfig, SpaceConfig
from .files import DuplicateKey, FolderLock, inside, parse_json
from .library import mix_of
from .output import FORMAT as SPACE_FORMAT
from .output import LOCK, MANIFEST, cell_wav
from .pads import DECODES, LIBRARY_MANIFEST, PAD_FORMAT, PAD_MANIFEST, cell_file
from .pads import FORMAT as LIBRARY_FORMAT
from .space import CELL_NAME, LINE
from .space import cells as grid_cells

__all__ = ["Cell", "Finished", "Instrument", "Pad", "read", "read_cell"]

# An instrument name as Open NSynth Super joins them into a pad's file name: no '_'.
_NOT_NAME = re.compile(r"[^a-z0-9.-]+")
# The fix for a manifest changed since its run: the run rewrites it from its cells' records.
_REWRITE = "run the same generate command again to rewrite it"


@dataclass(frozen=True)
class Instrument:
    name: str  # file-name part (a library's sound name; a space's input file, simplified)
    label: str  # what a musician reads (the sound's label, else its name or file stem)


@dataclass(frozen=True)
class Cell:
    name: str  # x00_y00
    column: int
    row: int
    pitch: int  # MIDI note
    x: float  # place and weights from the grid's geometry
    y: float
    weights: dict  # label -> weight of that corner's sound
    path: Path  # the WAV, inside the folder
    file: str  # its path relative to the pad folder, e.g. p48/x00_y00.wav
    sha256: str
    samples: int
    peak: float

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE


@dataclass(frozen=True)
class Pad:
    name: str
    folder: Path
    corners: tuple  # one Instrument per label, in the labels' order
    cells: dict  # (column, row, pitch) -> Cell, by pitch, then row by row from the north-west


@dataclass(frozen=True)
class Finished:
    kind: str  # "space" or "library"
    name: str
    folder: Path
    labels: tuple  # LINE or SQUARE
    resolution: int
    pitches: tuple  # MIDI notes, ascending
    pitched: bool  # whether the files are per pitch (a library with pitches: p48/x00_y00.wav)
    instruments: dict  # label -> every Instrument that corner can hold
    pads: tuple
    chain: str  # the post-processing the cells went through
    model: str  # the model's identity
    seed: int
    weighting: str
    assumed_pitch: bool = False  # the folder says no note for its sounds: MIDI 60 was assumed

    @property
    def line(self) -> bool:
        return self.labels == LINE

    @property
    def rows(self) -> int:
        return 1 if self.line else self.resolution


def read(folder, pitch: int | None = None, page_pending: bool = False) -> Finished:
    """The space or library in `folder`, checked; `pitch` is the MIDI note of a space's sounds
    (or of a library without pitches), where the folder's own (a space's `pitch`) is not wanted
    or not known (then 60 is assumed, and `assumed_pitch` says so).
    `page_pending`: also a run that lacks only its page (what the page writer reads)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SoundspaceError(
            f"{folder} is not a folder: give a space or library folder "
            "that soundspace generate wrote"
        )
    if (folder / LIBRARY_MANIFEST).is_file():
        return _library(folder, pitch, page_pending)
    if not (folder / MANIFEST).is_file():
        raise SoundspaceError(
            f"{folder} is not a space or library folder: it holds no readable "
            f"{MANIFEST} and no {LIBRARY_MANIFEST}; give a folder that "
            "soundspace generate wrote"
        )
    manifest = read_json(folder / MANIFEST)
    if manifest.get("format") == PAD_FORMAT:
        raise SoundspaceError(
            f"{folder} is one pad of the library {folder.parent}: give the "
            "library folder (its pads go together)"
        )
    if manifest.get("format") != SPACE_FORMAT:
        raise SoundspaceError(
            f"{folder} is not a space or library folder: its {MANIFEST} is not "
            f"of {SPACE_FORMAT}; give a folder that soundspace generate wrote"
        )
    return _space(folder, manifest, pitch, page_pending)


def read_cell(cell: Cell) -> tuple[bytes, np.ndarray]:
    """The cell's WAV bytes and int16 samples, once the file is shown to be the one the run
    wrote: the recorded sha256, 16 kHz mono of the recorded length."""
    import soundfile

    try:
        data = cell.path.read_bytes()
    except OSError as error:
        raise SoundspaceError(
            f"cannot read {cell.path}: {error.strerror or error}; run the "
            "same generate command again to restore it"
        ) from None
    if hashlib.sha256(data).hexdigest() != cell.sha256:
        raise SoundspaceError(
            f"{cell.path} is not the file the run wrote (its sha256 differs "
            "from the manifest's): run the same generate command again to "
            "restore it, and save edited sounds under other names"
        )
    try:
        with signals.held():  # libsndfile calls back into Python for a file in memory
            audio, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except RuntimeError as error:  # libsndfile's reason comes last, after an object's repr
        raise SoundspaceError(
            f"cannot read {cell.path} as audio ({str(error).rsplit(': ', 1)[-1]}); run the "
            "same generate command again to make it again"
        ) from None
    if rate != SAMPLE_RATE or audio.shape[1] != 1 or len(audio) != cell.samples:
        raise SoundspaceError(f"{cell.path} is not 16 kHz mono of {cell.samples} samples")
    return data, audio[:, 0]


def read_json(path: Path) -> dict:
    """A manifest's JSON object, or one line saying why it is not one."""
    try:
        data = parse_json(path.read_text())
    except OSError as error:
        raise SoundspaceError(f"cannot read {path}: {error.strerror or error}") from None
    except DuplicateKey as error:
        raise SoundspaceError(f"{path}: {error}; {_REWRITE}") from None
    except ValueError as error:
        raise SoundspaceError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SoundspaceError(f"{path} is not a manifest (not a JSON object)")
    return data


def _finished(manifest: dict, path: Path, page_pending: bool, lock: Path) -> None:
    """The run is complete or, for the page writer (`page_pending`), lacks only its page: the
    run writes the page from what this reads, just before it says complete. `running` is true
    only while a run holds the folder's `lock`; a run killed outright (`kill -9`, a power loss)
    leaves it said, and then the folder is incomplete."""
    if manifest.get("status") == "running":
        holder = FolderLock(lock, "").held_elsewhere()
        if holder is not None:
            raise SoundspaceError(
                f"{path.parent} is being written by {holder} now; wait for that run to end"
            )
        raise SoundspaceError(
            f"{path} says 'running', but no run holds the folder (its run was killed): it is "
            "incomplete; run the same generate command again to finish it"
        )
    missing = manifest.get("missing")
    only_page = (
        isinstance(missing, dict)
        and missing.get("explorer") is True
        and not any(v for k, v in missing.items() if k != "explorer")
    )
    if manifest.get("status") != "complete" and not (
        page_pending and manifest.get("status") == "incomplete" and only_page
    ):
        raise SoundspaceError(
            f"{path} says the run is {str(manifest.get('status'))[:20]!r}, not "
            "complete: run the same generate command again to finish it"
        )


def stored_config(cls, data, path: Path):
    """The space's or library's configuration a manifest stores, validated again."""
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SoundspaceError(
            f"{path}: its stored configuration is not valid ({where}: "
            f"{first['msg']}); give a folder that soundspace generate wrote"
        ) from None


def _identity(manifest: dict, path: Path) -> str:
    model = manifest.get("model")
    identity = model.get("identity") if isinstance(model, dict) else None
    if not isinstance(identity, str) or not re.fullmatch(r"[0-9a-f]{8,64}", identity):
        raise SoundspaceError(
            f"{path}: no model identity (the run that wrote it did not finish "
            "its manifest); run the same generate command again to finish it"
        )
    return identity


def _pitch(pitch: int | None) -> tuple:
    pitch = 60 if pitch is None else pitch
    if not 0 <= pitch <= 127:
        raise SoundspaceError(f"--pitch {pitch}: give the MIDI note of the sounds, 0 to 127")
    return (pitch,)


def _cells(
    entries,
    pad_dir: Path,
    path: Path,
    config,
    pitches: tuple,
    stored_pitches: tuple,
    sounds: tuple | None = None,
) -> dict:
    """Every cell of one pad from its manifest's list, checked, keyed (column, row, pitch);
    `sounds`: a library pad's sound per corner (its cells record weights per sound too)."""
    if not isinstance(entries, list):
        raise SoundspaceError(f"{path}: `cells` is not a list; {_REWRITE}")
    grid = {(c.xi, c.yi): c for c in grid_cells(config.labels, config.resolution, config.weighting)}
    found = {}
    for entry in entries:
        try:
            name, stored, file = entry["name"], entry.get("pitch"), entry.get("file")
            column, row, sha256 = entry["column"], entry["row"], entry["sha256"]
            samples, peak = entry["samples"], entry["peak"]
        except (TypeError, KeyError, AttributeError):
            raise SoundspaceError(
                f"{path}: a cell entry lacks name, column, row, sha256, samples or peak; {_REWRITE}"
            ) from None
        try:
            cell_wav(pad_dir, name)  # refuses any name that is not a cell's or a decode's
        except SoundspaceError as error:
            raise SoundspaceError(f"{path}: {error}; {_REWRITE}") from None
        place = grid.get(_place(name)) if CELL_NAME.fullmatch(name) else None
        if place is None or stored not in stored_pitches:
            at = "" if stored is None else f" at pitch {stored!r:.8}"
            raise SoundspaceError(
                f"{path}: refusing cell {name}{at}: not a cell of this grid; {_REWRITE}"
            )
        expected = cell_file(stored, name)
        if (
            file != expected
            or type(column) is not int
            or type(row) is not int
            or (column, row) != (place.xi, place.yi)
        ):
            raise SoundspaceError(
                f"{path}: cell {name} does not describe its own WAV file and "
                f"place (file {str(file)[:60]!r}, column {column!r:.8}, row "
                f"{row!r:.8}): it should be {expected} at column "
                f"{place.xi}, row {place.yi}; {_REWRITE}"
            )
        if (
            not isinstance(sha256, str)
            or not re.fullmatch(r"[0-9a-f]{64}", sha256)
            or type(samples) is not int
            or samples <= 0
            or type(peak) not in (int, float)
            or not math.isfinite(peak)
            or peak < 0
        ):
            raise SoundspaceError(
                f"{path}: cell {name} has no valid sha256, sample count or peak; {_REWRITE}"
            )
        _decoded_as_placed(entry, name, place, config, path, sounds)
        pitch = pitches[stored_pitches.index(stored)]
        if (column, row, pitch) in found:
            raise SoundspaceError(f"{path}: cell {expected} is listed twice; {_REWRITE}")
        found[(column, row, pitch)] = Cell(
            name,
            column,
            row,
            pitch,
            place.x,
            place.y,
            dict(zip(config.labels, place.weights, strict=True)),
            inside(pad_dir, expected, "cell file"),
            expected,
            sha256,
            samples,
            float(peak),
        )
    missing = len(grid) * len(pitches) - len(found)
    if missing:
        raise SoundspaceError(
            f"{path} lists {len(found)} cells, {missing} fewer than the grid "
            "has: run the same generate command again to finish it"
        )
    return {(c.xi, c.yi, p): found[(c.xi, c.yi, p)] for p in pitches for c in grid.values()}


def _decoded_as_placed(entry: dict, name: str, place, config, path: Path, sounds) -> None:
    """Refuse a cell whose recorded weights (what it was decoded from) are not the grid's at its
    place: the page and the exports would show one mix and play another."""
    corners = dict(zip(config.labels, place.weights, strict=True))
    expected = {"weights": corners}
    if sounds is not None:  # a library pad: per corner, and per sound as the decode mixed them
        expected = {"corner_weights": corners, "weights": dict(mix_of(sounds, place.weights))}
    for key, want in expected.items():
        got = entry.get(key)
        if not (
            isinstance(got, dict)
            and set(got) == set(want)
            and all(
                type(got[k]) in (int, float) and math.isclose(got[k], w, abs_tol=1e-9)
                for k, w in want.items()
            )
        ):
            raise SoundspaceError(
                f"{path}: cell {name} records {key} {json.dumps(got)[:120]}, but the "
                f"{config.weighting} grid of {config.resolution} per side gives "
                f"{json.dumps({k: round(w, 6) for k, w in want.items()})[:200]} there; {_REWRITE}"
            )


def _instrument(name: str, label: str | None) -> Instrument:
    simple = _NOT_NAME.sub("-", name.lower()).strip("-.") or "sound"
    return Instrument(simple[:40], label or name)


def _space(folder: Path, manifest: dict, pitch: int | None, page_pending: bool) -> Finished:
    path = folder / MANIFEST
    _finished(manifest, path, page_pending, folder / LOCK)
    space = stored_config(SpaceConfig, manifest.get("space"), path)
    pitch = space.pitch if pitch is None else pitch
    pitches = _pitch(pitch)
    corners = tuple(
        _instrument(Path(space.sounds[k].file).stem, space.sounds[k].label) for k in space.labels
    )
    cells = _cells(manifest.get("cells"), folder, path, space, pitches, (None,))
    return Finished(
        "space",
        space.name,
        folder,
        space.labels,
        space.resolution,
        pitches,
        False,
        {k: (c,) for k, c in zip(space.labels, corners, strict=True)},
        (Pad(space.name, folder, corners, cells),),
        space.postprocess.chain,
        _identity(manifest, path),
        space.seed,
        space.weighting,
        assumed_pitch=pitch is None,
    )


def _library(folder: Path, pitch: int | None, page_pending: bool) -> Finished:
    path = folder / LIBRARY_MANIFEST
    manifest = read_json(path)
    if manifest.get("format") != LIBRARY_FORMAT:
        raise SoundspaceError(
            f"{path} is not a library manifest ({LIBRARY_FORMAT}); give a "
            "folder that soundspace generate wrote"
        )
    _finished(manifest, path, page_pending, folder / DECODES / LOCK)
    library = stored_config(LibraryConfig, manifest.get("library"), path)
    if library.pitches is not None and pitch is not None:
        raise SoundspaceError(
            f"--pitch is for a space, whose files do not say their note; the "
            f"library {library.name} has its pitches "
            f"({' '.join(map(str, library.pitches))}): drop --pitch"
        )
    stored = tuple(sorted(library.pitches)) if library.pitches is not None else (None,)
    pitches = stored if library.pitches is not None else _pitch(pitch)
    instruments = {
        k: tuple(Instrument(s.name, s.label or s.name) for s in library.sounds[k])
        for k in library.labels
    }
    entries = manifest.get("pads")
    if not isinstance(entries, list) or not entries:
        raise SoundspaceError(f"{path}: `pads` is not a list of pads; {_REWRITE}")
    pads, names = [], set()
    for entry in entries:
        sounds = entry.get("sounds") if isinstance(entry, dict) else None
        if not isinstance(sounds, dict) or set(sounds) != set(library.labels):
            raise SoundspaceError(f"{path}: a pad does not name one sound per corner; {_REWRITE}")
        corners = []
        for label in library.labels:
            found = [i for i in instruments[label] if i.name == sounds[label]]
            if not found:  # the validated configuration's names are plain file-name parts
                raise SoundspaceError(
                    f"{path}: a pad's {label} sound {str(sounds[label])[:40]!r} "
                    f"is not one of that corner's sounds; {_REWRITE}"
                )
            corners.append(found[0])
        name = "_".join(i.name for i in corners)
        if entry.get("name") != name or name in names:
            raise SoundspaceError(
                f"{path}: pad {str(entry.get('name'))[:80]!r} should be named "
                f"{name}, once; {_REWRITE}"
            )
        names.add(name)
        pad_dir = inside(folder, name, "pad folder")
        if not (pad_dir / PAD_MANIFEST).is_file():
            lost = (
                f"{pad_dir / PAD_MANIFEST} is" if pad_dir.is_dir() else f"its folder {pad_dir} is"
            )
            raise SoundspaceError(
                f"{path} lists pad {name}, but {lost} missing (deleted?): run the same generate "
                "command again to restore it"
            )
        pad_manifest = read_json(pad_dir / PAD_MANIFEST)
        if pad_manifest.get("format") != PAD_FORMAT or pad_manifest.get("pad") != name:
            raise SoundspaceError(
                f"{pad_dir / PAD_MANIFEST} is not the manifest of pad {name}; {_REWRITE}"
            )
        cells = _cells(
            pad_manifest.get("cells"),
            pad_dir,
            pad_dir / PAD_MANIFEST,
            library,
            pitches,
            stored,
            tuple(i.name for i in corners),
        )
        pads.append(Pad(name, pad_dir, tuple(corners), cells))
    every = math.prod(len(instruments[label]) for label in library.labels)
    if len(pads) != every:
        raise SoundspaceError(
            f"{path} lists {len(pads)} pads where its corners make {every}; {_REWRITE}"
        )
    return Finished(
        "library",
        library.name,
        folder,
        library.labels,
        library.resolution,
        pitches,
        library.pitches is not None,
        instruments,
        tuple(pads),
        library.postprocess.chain,
        _identity(manifest, path),
        library.seed,
        library.weighting,
        assumed_pitch=library.pitches is None and pitch is None,
    )


def _place(name: str) -> tuple[int, int]:
    """A cell's (column, row) from its name, `x03_y07`."""
    column, row = name.split("_")
    return int(column[1:]), int(row[1:])

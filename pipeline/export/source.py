"""What an export reads: a finished space or library folder, as pads of cells at pitches.

Both folders come from disk, maybe from someone else, so nothing in them is trusted: the stored
configuration is validated again, every pad and cell name must be one this program writes, every
path goes through `files.inside`, the grid must be whole (every column, row and pitch once), and a
cell's WAV is used only when it is 16-bit 16 kHz mono with the sha256 its manifest recorded. A
space is one pad; a library has one pad per combination of corner sounds.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from .. import SoundspaceError
from ..config import SOUND_NAME, LibraryConfig, SpaceConfig
from ..files import inside
from ..output import FORMAT as SPACE_FORMAT, MANIFEST
from ..pads import FORMAT as LIBRARY_FORMAT, LIBRARY_MANIFEST, PAD_FORMAT, PAD_MANIFEST, cell_file
from ..space import CELL_NAME, LINE

# An instrument name as Open NSynth Super joins them into a pad's file name: no '_'.
_NOT_NAME = re.compile(r"[^a-z0-9.-]+")


@dataclass(frozen=True)
class Instrument:
    name: str   # file-name part (a library's sound name; a space's input file, simplified)
    label: str  # what a musician reads


@dataclass(frozen=True)
class Cell:
    column: int
    row: int
    pitch: int
    path: Path    # the WAV, inside the source folder
    file: str     # its path relative to the pad folder, e.g. p48/x00_y00.wav
    sha256: str
    samples: int


@dataclass(frozen=True)
class Pad:
    name: str
    folder: Path
    corners: tuple  # one Instrument per label, in the labels' order
    cells: dict     # (column, row, pitch) -> Cell


@dataclass(frozen=True)
class Source:
    kind: str         # "space" or "library"
    name: str
    folder: Path
    labels: tuple     # LINE or SQUARE
    resolution: int
    pitches: tuple    # MIDI notes, ascending
    instruments: dict  # label -> every Instrument that corner can hold
    pads: tuple
    chain: str        # the post-processing the cells went through
    model: str        # the model's identity
    seed: int
    weighting: str

    @property
    def line(self) -> bool:
        return self.labels == LINE

    @property
    def rows(self) -> int:
        return 1 if self.line else self.resolution


def read_cell(cell: Cell) -> np.ndarray:
    """The cell's samples as int16, after checking that the file is the one the run wrote."""
    return checked_cell(cell)[1]


def checked_cell(cell: Cell) -> tuple[bytes, np.ndarray]:
    """The cell's file bytes and its int16 samples, once the file is shown to be the one the run
    wrote: the recorded sha256, 16 kHz mono of the recorded length."""
    import soundfile

    try:
        data = cell.path.read_bytes()
    except OSError as error:
        raise SoundspaceError(f"cannot read {cell.path}: {error.strerror or error}; run the "
                              "same generate command again to restore it") from None
    if hashlib.sha256(data).hexdigest() != cell.sha256:
        raise SoundspaceError(f"{cell.path} is not the file the run wrote (its sha256 differs "
                              "from the manifest's): run the same generate command again to "
                              "restore it, and save edited sounds under other names")
    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except RuntimeError as error:
        raise SoundspaceError(f"cannot read {cell.path} as audio ({error})") from None
    if rate != 16000 or audio.shape[1] != 1 or len(audio) != cell.samples:
        raise SoundspaceError(f"{cell.path} is not 16 kHz mono of {cell.samples} samples")
    return data, audio[:, 0]


def load_source(folder, pitch: int | None = None, page_pending: bool = False) -> Source:
    """Read the space or library in `folder`; `pitch` is the MIDI note of a space's sounds (or of
    a library without pitches), which their files do not say. `page_pending`: a library whose
    run lacks only its page is read too (by the page writer)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SoundspaceError(f"{folder} is not a folder: give a space or library folder "
                              "that soundspace generate wrote")
    if (folder / LIBRARY_MANIFEST).is_file():
        return _library(folder, pitch, page_pending)
    manifest = _json(folder / MANIFEST) if (folder / MANIFEST).is_file() else None
    if manifest is not None and manifest.get("format") == PAD_FORMAT:
        raise SoundspaceError(f"{folder} is one pad of the library {folder.parent}: export the "
                              "library folder (every pad is exported)")
    if manifest is None or manifest.get("format") != SPACE_FORMAT:
        raise SoundspaceError(f"{folder} is not a space or library folder (no {MANIFEST} of "
                              f"{SPACE_FORMAT} and no {LIBRARY_MANIFEST}): give a folder that "
                              "soundspace generate wrote")
    return _space(folder, manifest, pitch)


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise SoundspaceError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise SoundspaceError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SoundspaceError(f"{path} is not a manifest (not a JSON object)")
    return data


def _complete(manifest: dict, path: Path, page_pending: bool = False) -> None:
    """Only a finished run is read; `page_pending`: also one that lacks only its page (the page
    writer reads the library it is about to complete)."""
    if page_pending and manifest.get("status") == "incomplete" and \
            manifest.get("missing") == {"explorer": True}:
        return
    if manifest.get("status") != "complete":
        raise SoundspaceError(f"{path} says the run is {str(manifest.get('status'))[:20]!r}, not "
                              "complete: run the same generate command again to finish it, "
                              "then export")


def _config(cls, data, path: Path):
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SoundspaceError(f"{path}: its stored configuration is not valid ({where}: "
                              f"{first['msg']})") from None


def _pitch(pitch: int | None) -> tuple:
    pitch = 60 if pitch is None else pitch
    if not 0 <= pitch <= 127:
        raise SoundspaceError(f"--pitch {pitch}: give the MIDI note of the sounds, 0 to 127")
    return (pitch,)


def _cells(entries, pad_dir: Path, path: Path, resolution: int, rows: int, pitches: tuple,
           stored_pitches: tuple) -> dict:
    """Every cell of one pad from its manifest's list, checked, keyed (column, row, pitch)."""
    if not isinstance(entries, list):
        raise SoundspaceError(f"{path}: `cells` is not a list")
    cells = {}
    for entry in entries:
        try:
            name, stored = entry["name"], entry.get("pitch")
            column, row, sha256, samples = entry["column"], entry["row"], entry["sha256"], entry["samples"]
        except (TypeError, KeyError, AttributeError):
            raise SoundspaceError(f"{path}: a cell entry lacks name, column, row, sha256 or "
                                  "samples") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (column, row)):
            raise SoundspaceError(f"{path}: a cell's column or row is not a whole number")
        if not isinstance(name, str) or not CELL_NAME.fullmatch(name) or stored not in stored_pitches:
            raise SoundspaceError(f"{path}: refusing cell {str(name)[:40]!r} at pitch "
                                  f"{str(stored)[:8]}: not a cell of this grid")
        file = cell_file(stored, name)
        if entry.get("file") != file or name != f"x{column:02d}_y{row:02d}" \
                or not (0 <= column < resolution and 0 <= row < rows):
            raise SoundspaceError(f"{path}: cell {name} names file {str(entry.get('file'))[:60]!r} "
                                  f"at column {column}, row {row}: it should be {file}")
        if not isinstance(sha256, str) or not isinstance(samples, int) or samples <= 0:
            raise SoundspaceError(f"{path}: cell {name} has no valid sha256 or sample count")
        pitch = pitches[stored_pitches.index(stored)]
        if (column, row, pitch) in cells:
            raise SoundspaceError(f"{path}: cell {file} is listed twice")
        cells[(column, row, pitch)] = Cell(column, row, pitch, inside(pad_dir, file, "cell file"),
                                           file, sha256, samples)
    missing = resolution * rows * len(pitches) - len(cells)
    if missing:
        raise SoundspaceError(f"{path} lists {len(cells)} cells, {missing} fewer than the grid "
                              "has: run the same generate command again to finish it")
    return cells


def _space(folder: Path, manifest: dict, pitch: int | None) -> Source:
    path = folder / MANIFEST
    _complete(manifest, path)
    space = _config(SpaceConfig, manifest.get("space"), path)
    pitches = _pitch(pitch)
    corners = tuple(_instrument(Path(space.sounds[k].file).stem, space.sounds[k].label)
                    for k in space.labels)
    cells = _cells(manifest.get("cells"), folder, path, space.resolution,
                   1 if space.labels == LINE else space.resolution, pitches, (None,))
    pad = Pad(space.name, folder, corners, cells)
    return Source("space", space.name, folder, space.labels, space.resolution, pitches,
                  {k: (c,) for k, c in zip(space.labels, corners)}, (pad,),
                  space.postprocess.chain, _identity(manifest, path), space.seed, space.weighting)


def _instrument(name: str, label: str | None) -> Instrument:
    simple = _NOT_NAME.sub("-", name.lower()).strip("-.") or "sound"
    return Instrument(simple[:40], label or name)


def _identity(manifest: dict, path: Path) -> str:
    model = manifest.get("model")
    identity = model.get("identity") if isinstance(model, dict) else None
    if not isinstance(identity, str) or not re.fullmatch(r"[0-9a-f]{8,64}", identity):
        raise SoundspaceError(f"{path}: no model identity (the run that wrote it did not finish "
                              "its manifest)")
    return identity


def _library(folder: Path, pitch: int | None, page_pending: bool) -> Source:
    path = folder / LIBRARY_MANIFEST
    manifest = _json(path)
    if manifest.get("format") != LIBRARY_FORMAT:
        raise SoundspaceError(f"{path} is not a library manifest ({LIBRARY_FORMAT})")
    _complete(manifest, path, page_pending)
    library = _config(LibraryConfig, manifest.get("library"), path)
    if library.pitches is not None and pitch is not None:
        raise SoundspaceError(f"--pitch is for a space, whose files do not say their note; the "
                              f"library {library.name} has its pitches "
                              f"({' '.join(map(str, library.pitches))}): drop --pitch")
    stored = tuple(sorted(library.pitches)) if library.pitches is not None else (None,)
    pitches = stored if library.pitches is not None else _pitch(pitch)
    instruments = {k: tuple(Instrument(s.name, s.label or s.name) for s in library.sounds[k])
                   for k in library.labels}
    entries = manifest.get("pads")
    if not isinstance(entries, list) or not entries:
        raise SoundspaceError(f"{path}: `pads` is not a list of pads")
    pads, names = [], set()
    for entry in entries:
        sounds = entry.get("sounds") if isinstance(entry, dict) else None
        if not isinstance(sounds, dict) or set(sounds) != set(library.labels):
            raise SoundspaceError(f"{path}: a pad does not name one sound per corner")
        corners = []
        for label in library.labels:
            found = [i for i in instruments[label] if i.name == sounds[label]]
            if not found or not re.fullmatch(SOUND_NAME, found[0].name):
                raise SoundspaceError(f"{path}: a pad's {label} sound {str(sounds[label])[:40]!r} "
                                      "is not one of that corner's sounds")
            corners.append(found[0])
        name = "_".join(i.name for i in corners)
        if entry.get("name") != name or name in names:
            raise SoundspaceError(f"{path}: pad {str(entry.get('name'))[:80]!r} should be named "
                                  f"{name}, once")
        names.add(name)
        pad_dir = inside(folder, name, "pad folder")
        pad_manifest = _json(pad_dir / PAD_MANIFEST)
        if pad_manifest.get("format") != PAD_FORMAT or pad_manifest.get("pad") != name:
            raise SoundspaceError(f"{pad_dir / PAD_MANIFEST} is not the manifest of pad {name}")
        cells = _cells(pad_manifest.get("cells"), pad_dir, pad_dir / PAD_MANIFEST,
                       library.resolution, 1 if library.labels == LINE else library.resolution,
                       pitches, stored)
        pads.append(Pad(name, pad_dir, tuple(corners), cells))
    every = 1
    for label in library.labels:
        every *= len(instruments[label])
    if len(pads) != every:
        raise SoundspaceError(f"{path} lists {len(pads)} pads where its corners make {every}")
    return Source("library", library.name, folder, library.labels, library.resolution, pitches,
                  instruments, tuple(pads), library.postprocess.chain, _identity(manifest, path),
                  library.seed, library.weighting)

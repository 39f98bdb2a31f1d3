"""The library's explorer: one `index.html` at the library's top that plays like Open NSynth
Super: four corner selectors choose the pad, the XY pad the cell, and notes (on-screen keys,
the computer keyboard, Web MIDI) play it at the nearest generated pitch, transposed.

A library is easily thousands of sounds and gigabytes, so the page holds only what it plays:
`explorer-data.js` carries the library's shape (corners, pitches, grid) and the page fetches a
cell's WAV when a note needs it (`soundspace serve`). A small library also has its sounds
embedded, each distinct file once, so that it plays from file:// with no server; above
`embed_bytes` nothing is embedded and, opened from disk, the page says to use `soundspace serve`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from .. import finished
from ..files import atomic_write
from ..output import INPUTS
from ..pads import pitch_folder
from . import DATA, EMBED_BYTES, INDEX, library_data, page, pictures, read_inputs


def write(library_dir, embed_bytes: int = EMBED_BYTES, pictures_too: bool = True) -> list[str]:
    """(Re)write the library's page and data, and (`pictures_too`) each pad's `space.png` and
    thumbnails at its middle pitch; returns the files written."""
    library_dir = Path(library_dir)
    source = finished.read(library_dir, page_pending=True)
    shown = source.pitches[len(source.pitches) // 2]
    folders = {p: pitch_folder(p if source.pitched else None) for p in source.pitches}
    written = [
        f"{pad.name}/{file}"
        for pad in source.pads
        if pictures_too
        for file in _pictures(source, pad, shown)
    ]
    data = library_data(
        source.name,
        source.resolution,
        source.weighting,
        list(source.pitches),
        {
            label: [{"name": i.name, "label": i.label} for i in instruments]
            for label, instruments in source.instruments.items()
        },
        [pad.name for pad in source.pads],
        folders,
        picture_pitch=shown,
        pictures_too=pictures_too,
        embed_bytes=embed_bytes,
    )
    sounds = sorted({i.name for instruments in source.instruments.values() for i in instruments})
    names = {
        (sound, pitch): f"{sound}_{pitch}" if source.pitched else sound
        for sound in sounds
        for pitch in source.pitches
    }
    inputs = read_inputs(library_dir, list(names.values()))
    data["inputs"] = {  # sound -> pitch -> its input's file, where the run wrote it
        sound: {pitch: f"{INPUTS}/{names[(sound, pitch)]}.wav" for pitch in source.pitches}
        for sound in sounds
        if all(names[(sound, pitch)] in inputs for pitch in source.pitches)
    }
    distinct, files, size = {}, {}, 0
    input_audio = {}
    for name, content in inputs.items():
        sha = hashlib.sha256(content).hexdigest()
        files[f"{INPUTS}/{name}.wav"] = sha
        input_audio[sha] = content
        size += (len(content) + 2) // 3 * 4
    for pad in source.pads:
        for cell in pad.cells.values():
            files[f"{pad.name}/{cell.file}"] = cell.sha256
            if cell.sha256 not in distinct:
                distinct[cell.sha256] = cell
                size += (cell.path.stat().st_size + 2) // 3 * 4
    data["soundBytes"] = size
    if size + len(json.dumps(files)) <= embed_bytes:
        data["files"] = files  # each file checked (the one the run wrote), read once
        data["audio"] = {
            sha: base64.b64encode(finished.read_cell(cell)[0]).decode()
            for sha, cell in distinct.items()
        } | {sha: base64.b64encode(content).decode() for sha, content in input_audio.items()}
    atomic_write(
        library_dir / DATA, ("window.SOUNDSPACE_LIBRARY = " + json.dumps(data) + ";\n").encode()
    )
    atomic_write(library_dir / INDEX, page("library.html", source.name))
    return written + [DATA, INDEX]


def _pictures(source, pad, pitch: int) -> list[str]:
    """A pad's pictures at one pitch, drawn as a space's are (corners named by their weights);
    the title names the pitch only where the library has pitches (else it is export's guess)."""
    cells = [cell for cell in pad.cells.values() if cell.pitch == pitch]
    title = f"{source.name} {pad.name}" + (f" at MIDI {pitch}" if source.pitched else "")
    corners = {label: i.label for label, i in zip(source.labels, pad.corners, strict=True)}
    audio = {cell.name: finished.read_cell(cell)[1] / 32768 for cell in cells}
    return pictures.draw(pad.folder, title, source.weighting, corners, cells, audio)

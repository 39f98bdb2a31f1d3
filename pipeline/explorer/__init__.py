"""The explorer: `index.html` in every space folder, to see and play the space in a browser.

It works opened straight from disk (file://): the manifest and every cell's WAV are embedded in
`explorer-data.js`, loaded by a plain <script> tag (browsers refuse fetch() of local files, not
scripts or images), and the thumbnails are ordinary <img> files. `soundspace serve SPACE` serves
the folder on 127.0.0.1 for stricter browsers (`serve.py`), and the page while the space is being
made (`live.py`). A space whose sounds exceed `EMBED_BYTES` gets
no sounds in the page: it fetches each cell's WAV when it plays it, over `serve` (from disk it
says so). A library's page is `library.py`. Nothing is fetched from the internet.
"""

from __future__ import annotations

import base64
import html
import json
import os
import stat
from importlib import resources
from pathlib import Path
from typing import Any

from .. import SoundspaceError, finished
from ..files import atomic_write, inside
from ..output import EXPLORER_FILES, INPUTS, THUMBS
from . import pictures

INDEX, DATA = EXPLORER_FILES
# explorer-data.js never grows beyond this: sounds are embedded (for file://, where a page may
# not fetch) only while all of them fit; above it the page fetches them over `soundspace serve`.
EMBED_BYTES = 8_000_000
MAX_INPUT_BYTES = 4_000_000  # an input sound the run wrote: at most 60 s of 16-bit 16 kHz


def page(template: str, title: str) -> bytes:
    """An explorer page: its template with what both pages share put in, the head (document
    head, colours, base layout) and the player (`player.js`: audio, embedded and fetched
    sounds), written into the page so that it works from disk; the space's or library's name is
    the title."""
    files = resources.files(__package__)
    text = files.joinpath(template).read_text()
    for mark, shared in (("{{HEAD}}\n", "head.html"), ("{{PLAYER}}\n", "player.js")):
        text = text.replace(mark, files.joinpath(shared).read_text())
    return text.replace("{{TITLE}}", html.escape(title)).encode()


def write(space_dir, pictures_too: bool = True, embed_bytes: int = EMBED_BYTES) -> list[str]:
    """(Re)write the explorer of a space folder; returns the files written."""
    space_dir = Path(space_dir)
    space = finished.read(space_dir, page_pending=True)
    if space.kind != "space":
        raise SoundspaceError(f"{space_dir} is a library: its page is explorer.library's")
    pad = space.pads[0]
    cells = list(pad.cells.values())
    wav = {cell.name: finished.read_cell(cell) for cell in cells}  # (bytes, samples), checked
    corners = {label: i.label for label, i in zip(space.labels, pad.corners, strict=True)}
    written = []
    if pictures_too:
        written += pictures.draw(
            space_dir,
            space.name,
            space.weighting,
            corners,
            cells,
            {name: samples / 32768 for name, (_, samples) in wav.items()},
        )
    thumbs = {
        name: f"{THUMBS}/{name}.png"
        for name in wav
        if inside(space_dir, f"{THUMBS}/{name}.png").is_file()
    }
    inputs = read_inputs(space_dir, list(space.labels))
    sound_bytes = sum(
        (len(d) + 2) // 3 * 4 for d in [*(d for d, _ in wav.values()), *inputs.values()]
    )
    embedded = {name: content for name, (content, _) in wav.items()} | {
        f"{INPUTS}/{label}": content for label, content in inputs.items()
    }
    data = space_data(
        space.name,
        space.resolution,
        space.weighting,
        corners,
        None if space.assumed_pitch else space.pitches[0],
        [(c.name, c.column, c.row, c.x, c.y, c.weights) for c in cells],
        thumbs=thumbs,
        inputs=list(inputs),
        audio=(
            {}
            if sound_bytes > embed_bytes
            else {name: base64.b64encode(content).decode() for name, content in embedded.items()}
        ),
        sound_bytes=sound_bytes,
        embed_bytes=embed_bytes,
    )
    atomic_write(space_dir / DATA, ("window.SOUNDSPACE = " + json.dumps(data) + ";\n").encode())
    atomic_write(space_dir / INDEX, page("index.html", data["name"]))
    return written + [DATA, INDEX]


def read_inputs(folder: Path, names: list[str]) -> dict[str, bytes]:
    """The input sounds the run wrote (`output.write_inputs`) that are there: name -> WAV bytes
    (a regular file inside the folder, of at most MAX_INPUT_BYTES; the page only plays them)."""
    found = {}
    for name in names:
        try:
            path = inside(folder, f"{INPUTS}/{name}.wav", "input sound")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (OSError, SoundspaceError):
            continue
        with os.fdopen(fd, "rb") as f:  # what is checked is what is read: no link, no FIFO
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_INPUT_BYTES:
                found[name] = f.read(MAX_INPUT_BYTES)
    return found


def space_data(
    name: str,
    resolution: int,
    weighting: str,
    labels: dict,
    pitch: int | None,
    cells: list[tuple],
    thumbs: dict | None = None,
    inputs: list | None = None,
    audio: dict | None = None,
    sound_bytes: int = 0,
    embed_bytes: int = EMBED_BYTES,
    live: bool = False,
) -> dict[str, Any]:
    """What a space's page reads (`explorer-data.js`), finished or in the making (`live.py`):
    `labels` each corner's name, `pitch` the note of its sounds (None: not known), `cells` (name,
    column, row, x, y, weights), `inputs` the corners whose input sound is there to play beside
    them (`inputs/<label>.wav`), `audio` the sounds embedded (none: fetched)."""
    return {
        "name": name,
        "resolution": resolution,
        "weighting": weighting,
        "labels": labels,
        "line": len(labels) == 2,
        "pitch": pitch,
        "cells": [
            {
                "name": cell,
                "column": column,
                "row": row,
                "x": x,
                "y": y,
                "weights": weights,
                "file": f"{cell}.wav",
            }
            for cell, column, row, x, y, weights in cells
        ],
        "thumbs": thumbs or {},
        "inputs": {label: f"{INPUTS}/{label}.wav" for label in inputs or []},
        "audio": audio or {},
        "soundBytes": sound_bytes,
        "embedLimit": embed_bytes,
        "live": live,
    }


def library_data(
    name: str,
    resolution: int,
    weighting: str,
    pitches: list,
    corners: dict,
    pads: list[str],
    folders: dict,
    picture_pitch: int | None = None,
    pictures_too: bool = False,
    embed_bytes: int = EMBED_BYTES,
    live: bool = False,
) -> dict[str, Any]:
    """What a library's page reads, finished or in the making: its shape (`corners`: each
    label's sounds, `pads` their names, `folders` each pitch's folder in a pad); the sounds are
    added by `library.write` where they fit the page."""
    return {
        "name": name,
        "resolution": resolution,
        "weighting": weighting,
        "pitches": pitches,
        "labels": list(corners),
        "corners": corners,
        "pads": pads,
        "files": None,
        "audio": None,
        "folders": folders,
        "soundBytes": 0,
        "embedLimit": embed_bytes,
        "picturePitch": pitches[len(pitches) // 2] if picture_pitch is None else picture_pitch,
        "pictures": pictures_too,
        "live": live,
    }

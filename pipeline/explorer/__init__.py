"""The explorer: `index.html` in every space folder, to see and play the space in a browser.

It works opened straight from disk (file://): the manifest and every cell's WAV are embedded in
`explorer-data.js`, loaded by a plain <script> tag (browsers refuse fetch() of local files, not
scripts or images), and the thumbnails are ordinary <img> files. `soundspace serve SPACE` serves
the folder on 127.0.0.1 for stricter browsers. A space whose sounds exceed `EMBED_BYTES` gets
no sounds in the page: it fetches each cell's WAV when it plays it, over `serve` (from disk it
says so). A library's page is `library.py`. Nothing is fetched from the internet.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .. import SoundspaceError, finished
from ..config import SOUND_NAME
from ..files import atomic_write, inside
from ..output import EXPLORER_FILES, PICTURE, THUMBS
from ..pads import LIBRARY_MANIFEST
from ..space import CELL_NAME
from . import pictures

INDEX, DATA = EXPLORER_FILES
# explorer-data.js never grows beyond this: sounds are embedded (for file://, where a page may
# not fetch) only while all of them fit; above it the page fetches them over `soundspace serve`.
EMBED_BYTES = 8_000_000
# What `serve` answers: the explorer's own files and nothing else of the folder.
SERVED = re.compile(
    rf"/(?:{re.escape(INDEX)}|{re.escape(DATA)}|{re.escape(PICTURE)}|"
    rf"{THUMBS}/{CELL_NAME.pattern}\.png|{CELL_NAME.pattern}\.wav)?"
)
# ... and in a library folder: the page, its data, and the pads' cells, fetched as notes need them.
SERVED_LIBRARY = re.compile(
    rf"/(?:{re.escape(INDEX)}|{re.escape(DATA)}|{SOUND_NAME}(?:_{SOUND_NAME})+"
    rf"/(?:(?:p[0-9]{{1,3}}/)?{CELL_NAME.pattern}\.wav|{re.escape(PICTURE)}|"
    rf"{THUMBS}/{CELL_NAME.pattern}\.png))?"
)


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
    data: dict[str, Any] = {
        "name": space.name,
        "resolution": space.resolution,
        "weighting": space.weighting,
        "labels": corners,
        "line": space.line,
        "cells": [
            {
                "name": c.name,
                "column": c.column,
                "row": c.row,
                "x": c.x,
                "y": c.y,
                "weights": c.weights,
                "file": c.file,
                "seconds": c.seconds,
                "peak": c.peak,
            }
            for c in cells
        ],
        "thumbs": thumbs,
        "soundBytes": sum((len(d) + 2) // 3 * 4 for d, _ in wav.values()),
        "embedLimit": embed_bytes,
    }
    data["audio"] = (
        {}
        if data["soundBytes"] > embed_bytes
        else {name: base64.b64encode(content).decode() for name, (content, _) in wav.items()}
    )
    atomic_write(space_dir / DATA, ("window.SOUNDSPACE = " + json.dumps(data) + ";\n").encode())
    atomic_write(space_dir / INDEX, page("index.html", data["name"]))
    return written + [DATA, INDEX]


def serve(space_dir, port: int = 8765) -> None:
    """Serve a space's explorer on 127.0.0.1 until Ctrl-C: only the explorer's files (never the
    WAVs' records, the manifest or anything a link points to), and only to requests addressed
    to 127.0.0.1 or localhost (a web page elsewhere cannot reach it through DNS rebinding)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    space_dir = Path(space_dir)
    if not (space_dir / INDEX).is_file():
        raise SoundspaceError(f"{space_dir} has no {INDEX}; run `soundspace explore {space_dir}`")
    served = SERVED_LIBRARY if (space_dir / LIBRARY_MANIFEST).is_file() else SERVED

    class ExplorerOnly(SimpleHTTPRequestHandler):
        def send_head(self):
            host = (self.headers.get("Host") or "").rsplit(":", 1)
            assert isinstance(self.server, ThreadingHTTPServer)  # the server made below
            if host[0] not in ("127.0.0.1", "localhost") or (
                len(host) == 2 and host[1] != str(self.server.server_port)
            ):
                self.send_error(421, "Misdirected Request: this server answers 127.0.0.1 only")
                return None
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if not served.fullmatch(path):
                self.send_error(404, "Not an explorer file")
                return None
            try:
                file = inside(space_dir, path.lstrip("/") or INDEX)
            except SoundspaceError:
                file = None
            if file is None or file.is_symlink() or not file.is_file():
                self.send_error(404, "Not an explorer file")
                return None
            return super().send_head()

        def list_directory(self, path):
            self.send_error(404, "Not an explorer file")
            return None

    handler = functools.partial(ExplorerOnly, directory=str(space_dir))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as error:
        raise SoundspaceError(f"cannot listen on 127.0.0.1:{port} ({error}); try --port") from None
    print(
        f"serving {space_dir} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", flush=True
    )
    with server:
        server.serve_forever()

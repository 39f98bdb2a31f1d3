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

from .. import SoundspaceError
from ..files import atomic_write, inside
from ..config import SOUND_NAME
from ..output import EXPLORER_FILES, MANIFEST, PICTURE, THUMBS, cell_wav
from ..pads import LIBRARY_MANIFEST
from ..space import CELL_NAME, LINE, SQUARE
from . import pictures

INDEX, DATA = EXPLORER_FILES
# explorer-data.js never grows beyond this: sounds are embedded (for file://, where a page may
# not fetch) only while all of them fit; above it the page fetches them over `soundspace serve`.
EMBED_BYTES = 8_000_000
# What `serve` answers: the explorer's own files and nothing else of the folder.
SERVED = re.compile(rf"/(?:{re.escape(INDEX)}|{re.escape(DATA)}|{re.escape(PICTURE)}|"
                    rf"{THUMBS}/{CELL_NAME.pattern}\.png|{CELL_NAME.pattern}\.wav)?")
# ... and in a library folder: the page, its data, and the pads' cells, fetched as notes need them.
SERVED_LIBRARY = re.compile(rf"/(?:{re.escape(INDEX)}|{re.escape(DATA)}|{SOUND_NAME}(?:_{SOUND_NAME})+"
                            rf"/(?:(?:p[0-9]{{1,3}}/)?{CELL_NAME.pattern}\.wav|{re.escape(PICTURE)}|"
                            rf"{THUMBS}/{CELL_NAME.pattern}\.png))?")


def page(template: str, title: str) -> bytes:
    """An explorer page: its template with the head both pages share (document head, colours,
    base layout) put in, and the space's or library's name as the title."""
    files = resources.files(__package__)
    text = files.joinpath(template).read_text().replace("{{HEAD}}\n", files.joinpath("head.html").read_text())
    return text.replace("{{TITLE}}", html.escape(title)).encode()


def _read_manifest(space_dir: Path) -> dict:
    """The space's manifest, checked as hostile: a folder may come from anywhere, and every name
    in it becomes a path or lands in the page."""
    try:
        manifest = json.loads((space_dir / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise SoundspaceError(f"{space_dir} holds no readable {MANIFEST} ({error}); give the folder "
                              "of a space made by `soundspace generate`") from None
    bad = f"{space_dir / MANIFEST} is not a soundspace manifest"
    try:
        inputs, space, cells = manifest["inputs"], manifest["space"], manifest["cells"]
        if set(inputs) not in (set(LINE), set(SQUARE)) or not isinstance(cells, list):
            raise SoundspaceError(f"{bad}: its inputs must be LEFT/RIGHT or NW/NE/SW/SE")
        for cell in cells:
            cell_wav(space_dir, cell["name"])
            if cell["file"] != f"{cell['name']}.wav" or set(cell["weights"]) != set(inputs) \
                    or not all(isinstance(cell[k], int) and 0 <= cell[k] < 1000
                               for k in ("column", "row")):
                raise SoundspaceError(f"{bad}: cell {cell['name']} does not describe its own WAV "
                                      "file, weights and place")
        str(space["name"]), int(space["resolution"]), str(space["weighting"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise SoundspaceError(f"{bad} ({type(error).__name__}: {error}); give the folder of a space "
                              "made by `soundspace generate`") from None
    if not cells:
        raise SoundspaceError(f"{space_dir}/{MANIFEST} lists no finished cells yet; run "
                              "`soundspace generate` to make them")
    return manifest


def write(space_dir, pictures_too: bool = True, embed_bytes: int = EMBED_BYTES) -> list[str]:
    """(Re)write the explorer of a space folder; returns the files written."""
    import soundfile

    space_dir = Path(space_dir)
    manifest = _read_manifest(space_dir)
    wav = {}
    for cell in manifest["cells"]:
        path = cell_wav(space_dir, cell["name"])
        if not path.is_file():
            raise SoundspaceError(f"{path} is missing; run `soundspace generate` again to remake it")
        wav[cell["name"]] = path.read_bytes()
    written = []
    if pictures_too:
        audio = {name: soundfile.read(cell_wav(space_dir, name), dtype="float32")[0] for name in wav}
        written += pictures.draw(space_dir, manifest, audio)
    thumbs = {name: f"{THUMBS}/{name}.png" for name in wav
              if inside(space_dir, f"{THUMBS}/{name}.png").is_file()}
    labels = {label: str(sound.get("label") or Path(str(sound["file"])).stem)
              for label, sound in manifest["inputs"].items()}
    data = {"name": str(manifest["space"]["name"]), "resolution": manifest["space"]["resolution"],
            "weighting": manifest["space"]["weighting"], "labels": labels,
            "line": set(labels) == set(LINE),
            "cells": [{k: cell[k] for k in ("name", "column", "row", "x", "y", "weights", "file",
                                            "seconds", "peak")} for cell in manifest["cells"]],
            "thumbs": thumbs, "soundBytes": sum((len(d) + 2) // 3 * 4 for d in wav.values()),
            "embedLimit": embed_bytes}
    data["audio"] = {} if data["soundBytes"] > embed_bytes else \
        {name: base64.b64encode(content).decode() for name, content in wav.items()}
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
            if host[0] not in ("127.0.0.1", "localhost") or \
                    (len(host) == 2 and host[1] != str(self.server.server_port)):
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
    print(f"serving {space_dir} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", flush=True)
    with server:
        server.serve_forever()

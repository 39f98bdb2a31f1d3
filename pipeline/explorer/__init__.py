"""The explorer: `index.html` in every space folder, to see and play the space in a browser.

It works opened straight from disk (file://): the manifest and every cell's WAV are embedded in
`explorer-data.js`, loaded by a plain <script> tag (browsers refuse fetch() of local files, not
scripts or images), and the thumbnails are ordinary <img> files. `soundspace serve SPACE` serves
the folder on 127.0.0.1 for stricter browsers. Nothing is fetched from the internet.
"""
from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path

from .. import SoundspaceError
from ..output import MANIFEST, atomic_write
from . import pictures

DATA = "explorer-data.js"


def write(space_dir, pictures_too: bool = True) -> list[str]:
    """(Re)write the explorer of a space folder; returns the files written."""
    import soundfile

    space_dir = Path(space_dir)
    try:
        manifest = json.loads((space_dir / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise SoundspaceError(f"{space_dir} holds no readable {MANIFEST} ({error}); give the folder "
                              "of a space made by `soundspace generate`") from None
    if not manifest.get("cells"):
        raise SoundspaceError(f"{space_dir}/{MANIFEST} lists no finished cells yet; run "
                              "`soundspace generate` to make them")
    wav = {}
    for cell in manifest["cells"]:
        path = space_dir / cell["file"]
        if not path.is_file():
            raise SoundspaceError(f"{path} is missing; run `soundspace generate` again to remake it")
        wav[cell["name"]] = path.read_bytes()
    written = []
    if pictures_too:
        audio = {name: soundfile.read(space_dir / f"{name}.wav", dtype="float32")[0] for name in wav}
        written += pictures.draw(space_dir, manifest, audio)
    thumbs = {name: f"{pictures.THUMBS}/{name}.png" for name in wav
              if (space_dir / pictures.THUMBS / f"{name}.png").is_file()}
    labels = {label: (sound.get("label") or Path(sound["file"]).stem)
              for label, sound in manifest["inputs"].items()}
    data = {"name": manifest["space"]["name"], "resolution": manifest["space"]["resolution"],
            "weighting": manifest["space"]["weighting"], "labels": labels,
            "line": set(labels) == {"LEFT", "RIGHT"},
            "cells": [{k: cell[k] for k in ("name", "column", "row", "x", "y", "weights", "file",
                                            "seconds", "peak")} for cell in manifest["cells"]],
            "audio": {name: base64.b64encode(data).decode() for name, data in wav.items()},
            "thumbs": thumbs}
    atomic_write(space_dir / DATA, ("window.SOUNDSPACE = " + json.dumps(data) + ";\n").encode())
    page = resources.files(__package__).joinpath("index.html").read_text()
    atomic_write(space_dir / "index.html", page.replace("{{TITLE}}", data["name"]).encode())
    return written + [DATA, "index.html"]


def serve(space_dir, port: int = 8765) -> None:
    """Serve a space folder on 127.0.0.1 until Ctrl-C."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    space_dir = Path(space_dir)
    if not (space_dir / "index.html").is_file():
        raise SoundspaceError(f"{space_dir} has no index.html; run `soundspace explore {space_dir}`")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(space_dir))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as error:
        raise SoundspaceError(f"cannot listen on 127.0.0.1:{port} ({error}); try --port") from None
    print(f"serving {space_dir} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", flush=True)
    with server:
        server.serve_forever()


"""`soundspace serve`: a space's or library's page on 127.0.0.1, finished or in the making.

Only the page's own files are answered, never the manifest, the records or anything a link
points to, and only to requests addressed to 127.0.0.1 or localhost (a web page elsewhere cannot
reach it through DNS rebinding). Until the run says `complete` the page is the live one
(`live.py`): made here at each request, with `live.json` and the finished and partial sounds
of the decodes; from then on the files the run wrote.
"""

from __future__ import annotations

import functools
import io
import json
import re
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from .. import SoundspaceError
from ..config import SOUND_NAME
from ..files import inside
from ..output import INPUTS, PICTURE, THUMBS
from ..pads import DECODES
from ..snapshots import PARTIAL
from ..space import CELL_NAME, DECODE_NAME
from . import DATA, INDEX, live, page

# The finished page's files: the explorer's own and nothing else of the folder.
SERVED = re.compile(
    rf"/(?:{re.escape(INDEX)}|{re.escape(DATA)}|{re.escape(PICTURE)}|"
    rf"{THUMBS}/{CELL_NAME.pattern}\.png|{CELL_NAME.pattern}\.wav|"
    rf"{INPUTS}/(?:LEFT|RIGHT|NW|NE|SW|SE)\.wav)?"
)
# ... and in a library folder: the page, its data, and the pads' cells, fetched as notes need them.
SERVED_LIBRARY = re.compile(
    rf"/(?:{re.escape(INDEX)}|{re.escape(DATA)}|{INPUTS}/{SOUND_NAME}(?:_[0-9]{{1,3}})?\.wav|"
    rf"{SOUND_NAME}(?:_{SOUND_NAME})+"
    rf"/(?:(?:p[0-9]{{1,3}}/)?{CELL_NAME.pattern}\.wav|{re.escape(PICTURE)}|"
    rf"{THUMBS}/{CELL_NAME.pattern}\.png))?"
)
# While it is made: the cells (a library's decodes) finished or in flight.
LIVE_SOUNDS = re.compile(
    rf"/(?:{CELL_NAME.pattern}|{re.escape(PARTIAL.as_posix())}/{CELL_NAME.pattern})\.wav"
)
LIVE_LIBRARY_SOUNDS = re.compile(
    rf"/{DECODES}/(?:{DECODE_NAME.pattern}|{re.escape(PARTIAL.as_posix())}/"
    rf"{DECODE_NAME.pattern})\.wav"
)
PROGRESS = "/live.json"


def serve(folder, port: int = 8765) -> None:
    """Serve the folder's page until Ctrl-C (see the module's docstring)."""
    folder = Path(folder)
    library = live.manifest_of(folder)[1]
    if live.is_live(folder):
        live.Folder(folder)  # a folder with no readable manifest is refused now, not per request
    elif not (folder / INDEX).is_file():
        raise SoundspaceError(f"{folder} has no {INDEX}; run `soundspace explore {folder}`")
    served = SERVED_LIBRARY if library else SERVED
    live_sounds = LIVE_LIBRARY_SOUNDS if library else LIVE_SOUNDS
    template = "library.html" if library else "index.html"

    class PageOnly(SimpleHTTPRequestHandler):
        def send_head(self):
            host = (self.headers.get("Host") or "").rsplit(":", 1)
            assert isinstance(self.server, ThreadingHTTPServer)  # the server made below
            if host[0] not in ("127.0.0.1", "localhost") or (
                len(host) == 2 and host[1] != str(self.server.server_port)
            ):
                self.send_error(421, "Misdirected Request: this server answers 127.0.0.1 only")
                return None
            path, _, query = self.path.split("#", 1)[0].partition("?")
            making = live.is_live(folder)
            if path == PROGRESS or (making and path in ("/", f"/{INDEX}", f"/{DATA}")):
                return self._live(path, query)
            if not (live_sounds if making else served).fullmatch(path):
                return self._missing()
            try:
                target = inside(folder, path.lstrip("/") or INDEX)
            except SoundspaceError:
                return self._missing()
            if target.is_symlink() or not target.is_file():
                return self._missing()
            return super().send_head()

        def _live(self, path: str, query: str):
            try:
                state = live.Folder(folder)
                if path == PROGRESS:
                    pad = parse_qs(query).get("pad", [None])[0]
                    body, kind = json.dumps(state.progress(pad)).encode(), "application/json"
                elif path == f"/{DATA}":
                    name = "SOUNDSPACE_LIBRARY" if library else "SOUNDSPACE"
                    body = f"window.{name} = {json.dumps(state.page_data())};\n".encode()
                    kind = "text/javascript"
                else:
                    body, kind = page(template, state.config.name), "text/html; charset=utf-8"
            except SoundspaceError as error:
                self.send_error(409, "Not readable now", str(error))
                return None
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            return io.BytesIO(body)

        def _missing(self):
            self.send_error(404, "Not an explorer file")

        def list_directory(self, path):
            self._missing()

    handler = functools.partial(PageOnly, directory=str(folder))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as error:
        raise SoundspaceError(f"cannot listen on 127.0.0.1:{port} ({error}); try --port") from None
    print(f"serving {folder} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", flush=True)
    with server:
        server.serve_forever()

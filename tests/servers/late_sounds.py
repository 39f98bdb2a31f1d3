"""A proxy in front of `soundspace serve` that holds every WAV answer back until the test lets
sounds through: a page's sounds arrive exactly as late as a test wants (a slow connection),
everything else at once."""
from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LateSounds:
    """Serves `upstream`'s files at `url`; WAVs wait while `arrive` is clear. `asked` lists the
    WAV paths requested, in order."""

    def __init__(self, upstream: str):
        self.arrive = threading.Event()
        self.asked: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.endswith(".wav"):
                    proxy.asked.append(self.path.lstrip("/"))
                    proxy.arrive.wait()
                try:
                    with urllib.request.urlopen(upstream + self.path.lstrip("/")) as answer:
                        status, headers, body = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as error:
                    status, headers, body = error.code, error.headers, error.read()
                self.send_response(status)
                self.send_header("Content-Type", headers["Content-Type"])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.arrive.set()  # no request left waiting
        self.server.shutdown()
        self.server.server_close()

"""scripts/download-checkpoint against a real HTTP server on 127.0.0.1 serving a tar of the tiny
TensorFlow checkpoint: download, a broken-off download resumed with a Range request, a damaged
archive refused, an unreachable server explained, conversion and loading."""
import io
import os
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipeline.nsynth import NSynth

from .conftest import FIXTURES

if os.environ.get("SOUNDSPACE_REQUIRE_TF"):
    import tensorflow  # noqa: F401
else:
    pytest.importorskip("tensorflow")

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "download-checkpoint"


def tiny_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted((FIXTURES / "tiny_tf_checkpoint").iterdir()):
            tar.add(path, arcname=f"wavenet-ckpt/{path.name}")
    return buffer.getvalue()


class Server:
    """Serves `body` at /wavenet-ckpt.tar with Range support; `cut_after` bytes, when set, ends
    the next full response early (a broken connection)."""

    def __init__(self, body: bytes):
        self.body, self.cut_after, self.requests = body, None, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.headers.get("Range"))
                if self.path != "/wavenet-ckpt.tar":
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(server.body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(server.body) - start))
                self.end_headers()
                payload = server.body[start:]
                if server.cut_after is not None:
                    payload, server.cut_after = payload[:server.cut_after], None
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/wavenet-ckpt.tar"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server(tiny_tar())
    yield s
    s.close()


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), "--quiet", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_download_convert_and_load(server, tmp_path):
    out, work = tmp_path / "wavenet", tmp_path / "work"
    result = run("--url", server.url, "--out", out, "--work", work)
    assert result.returncode == 0, result.stderr
    assert "model ready" in result.stdout
    model = NSynth.load(out)
    expected = np.load(FIXTURES / "tiny_expected.npz")
    state = {n: p.detach().numpy() for n, p in model.net.magenta_state().items()}
    assert set(state) == set(expected.files)
    assert all(np.array_equal(state[n], expected[n]) for n in expected.files)
    assert not work.exists()  # archive and unpacked files removed


def test_broken_download_resumes_with_a_range_request(server, tmp_path):
    out, work = tmp_path / "wavenet", tmp_path / "work"
    server.cut_after = 5000
    first = run("--url", server.url, "--out", out, "--work", work)
    assert first.returncode == 2
    assert "broke off after 5,000" in first.stderr and "run the same command again" in first.stderr
    assert (work / "wavenet-ckpt.tar.part").stat().st_size == 5000 and not out.exists()
    second = run("--url", server.url, "--out", out, "--work", work)
    assert second.returncode == 0, second.stderr
    assert server.requests == [None, "bytes=5000-"]
    NSynth.load(out)


def test_damaged_archive_is_refused_and_deleted(tmp_path):
    body = bytearray(tiny_tar())
    body[:512] = b"\x00" * 100 + b"garbage" * 58 + b"\x00" * 6  # a broken first header
    s = Server(bytes(body))
    try:
        result = run("--url", s.url, "--out", tmp_path / "wavenet", "--work", tmp_path / "work")
    finally:
        s.close()
    assert result.returncode == 2
    assert "damaged or not a tar archive" in result.stderr and "deleted" in result.stderr
    assert not (tmp_path / "work" / "wavenet-ckpt.tar").exists()
    assert not (tmp_path / "wavenet").exists()


def test_archive_without_a_checkpoint_is_refused(tmp_path):
    archive = tmp_path / "other.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(FIXTURES / "README.md", arcname="README.md")
    result = run("--tar", archive, "--out", tmp_path / "wavenet", "--work", tmp_path / "work")
    assert result.returncode == 2 and "should hold one TensorFlow checkpoint" in result.stderr


def test_unreachable_server_is_explained(tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run("--url", f"http://127.0.0.1:{port}/wavenet-ckpt.tar", "--out", tmp_path / "w",
                 "--work", tmp_path / "work")
    assert result.returncode == 2
    assert f"cannot reach 127.0.0.1:{port}" in result.stderr and "--tar FILE" in result.stderr


def test_missing_file_on_the_server(server, tmp_path):
    result = run("--url", server.url.replace("wavenet-ckpt", "nothing"), "--out", tmp_path / "w",
                 "--work", tmp_path / "work")
    assert result.returncode == 2 and "answered 404" in result.stderr

"""A space folder, a shard spec or a request may come from anyone: names in them must never
lead out of the folder (item 15). `explore` and `export` read a crafted manifest through the one
reader (pipeline/finished.py), `render-shard` a crafted shard.json, `serve` answers crafted
requests; each is refused or answered 404/421, and nothing outside the folder is read or
written."""
import hashlib
import http.client
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import SoundspaceError, explorer, finished
from pipeline.cli import main
from pipeline.files import inside
from .pipeline_helpers import generate_space

from .pipeline_helpers import dataset, workflow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def made_space(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    data = dataset(folder / "d", length=0.07)
    return generate_space(data, workflow(folder), progress=False, log=lambda _: None).space_dir


@pytest.fixture
def space(made_space, tmp_path):
    copy = tmp_path / "space"
    shutil.copytree(made_space, copy, symlinks=True)
    return copy


@pytest.mark.parametrize("name", ["x00_y00.wav", "thumbs/x00_y00.png", "a/b/c"])
def test_inside_accepts_plain_relative_names(tmp_path, name):
    assert inside(tmp_path, name) == tmp_path / name


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a/./b", "", "a\\b", "a//b",
                                  "a/", "x\0y", None, 7])
def test_inside_refuses_what_leads_out(tmp_path, name):
    with pytest.raises(SoundspaceError, match="refusing"):
        inside(tmp_path, name)


@pytest.mark.parametrize("name", ["out/secret", "sub/out/secret", "sub/file.wav", "file.wav"])
def test_inside_refuses_a_link_that_leads_out(tmp_path, name):
    """A link anywhere among the name's parts (a folder on the way, or the file itself) that
    leads out of the root is refused, however deep it sits."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere.wav").write_bytes(b"x")
    (root / "out").symlink_to(tmp_path)
    (root / "sub" / "out").symlink_to(tmp_path)
    (root / "sub" / "file.wav").symlink_to(tmp_path / "elsewhere.wav")
    (root / "file.wav").symlink_to(tmp_path / "elsewhere.wav")
    with pytest.raises(SoundspaceError, match="leads out"):
        inside(root, name)


def test_inside_accepts_a_link_that_stays_inside(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert inside(tmp_path, "alias/x.wav") == tmp_path / "alias" / "x.wav"


def crafted(space: Path, change) -> None:
    manifest = json.loads((space / "manifest.json").read_text())
    change(manifest)
    (space / "manifest.json").write_text(json.dumps(manifest))


def test_explore_refuses_a_cell_file_outside_the_folder(space, capsys):
    def to_passwd(m):
        m["cells"][0]["file"] = "/etc/passwd"
    crafted(space, to_passwd)
    before = (space / "explorer-data.js").read_bytes()
    assert main(["explore", str(space)]) == 2
    assert "does not describe its own WAV" in capsys.readouterr().err
    assert (space / "explorer-data.js").read_bytes() == before
    assert b"root:" not in (space / "explorer-data.js").read_bytes()


@pytest.mark.parametrize("name", ["/tmp/soundspace-escape", "../escape", "thumbs/../../escape"])
def test_explore_refuses_a_cell_name_that_is_a_path(space, capsys, tmp_path, name):
    def rename(m):
        m["cells"][0]["name"] = name
        m["cells"][0]["file"] = name + ".wav"
    crafted(space, rename)
    assert main(["explore", str(space)]) == 2
    assert "refusing cell name" in capsys.readouterr().err
    assert not Path("/tmp/soundspace-escape.png").exists()
    assert not list(tmp_path.glob("escape*")) and not list(space.parent.glob("escape*"))


def test_a_name_that_is_markup_is_refused_and_titles_are_escaped(space, capsys):
    def script_name(m):
        m["space"]["name"] = "</title><script>alert(1)</script>"
    crafted(space, script_name)
    before = (space / "index.html").read_bytes()
    assert main(["explore", str(space), "--no-pictures"]) == 2
    assert "its stored configuration is not valid (name: " in capsys.readouterr().err
    assert (space / "index.html").read_bytes() == before
    page = explorer.page("index.html", "</title><script>alert(1)</script>").decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def cell(index: int, **fields):
    def change(m):
        m["cells"][index].update(fields)
    return change


# Manifests a space folder may come with, and what the one reader says of each.
BAD_MANIFESTS = {
    "cell file out": (cell(0, file="/etc/passwd"), "does not describe its own WAV file"),
    "cell name a path": (cell(0, name="../escape", file="../escape.wav"), "refusing cell name"),
    "cell at another place": (cell(4, column=0), "it should be x01_y01.wav at column 1, row 1"),
    "cell outside the grid": (cell(0, name="x07_y00", file="x07_y00.wav"), "not a cell of this grid"),
    "cell twice": (lambda m: m["cells"].__setitem__(1, m["cells"][0]), "is listed twice"),
    "cell missing": (lambda m: m["cells"].pop(), "lists 8 cells, 1 fewer than the grid has"),
    "cell not hashed": (cell(0, sha256="../x"), "no valid sha256"),
    "run unfinished": (lambda m: m.update(status="incomplete"), "not complete"),
    "not a space": (lambda m: m.update(format="soundspace-space-0"), "not a space or library folder"),
    "sounds not 2 or 4": (lambda m: m["space"]["sounds"].pop("SE"), "configuration is not valid"),
    "cell weights not its place's": (cell(4, weights={"NW": 1.0, "NE": 0.0, "SW": 0.0, "SE": 0.0}),
                                     'cell x01_y01 records weights {"NW": 1.0'),
    "cell weights missing": (cell(4, weights=None), "cell x01_y01 records weights null"),
}


@pytest.mark.parametrize("bad", BAD_MANIFESTS)
def test_a_bad_manifest_is_refused_once_by_the_reader_for_explore_and_export(space, tmp_path, capsys, bad):
    change, needle = BAD_MANIFESTS[bad]
    crafted(space, change)
    with pytest.raises(SoundspaceError) as refused:
        finished.read(space)
    assert needle in str(refused.value) and "\n" not in str(refused.value)
    before = {p: p.read_bytes() for p in space.rglob("*") if p.is_file()}
    assert main(["explore", str(space)]) == 2
    assert capsys.readouterr().err == f"soundspace explore: error: {refused.value}\n"
    assert main(["export", str(space), "--format", "sfz", "--out", str(tmp_path / "sfz")]) == 2
    assert capsys.readouterr().err == f"soundspace export: error: {refused.value}\n"
    assert {p: p.read_bytes() for p in space.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "sfz").exists()


def test_a_manifest_giving_a_key_twice_is_refused(space, capsys):
    """Issue 34, item 6: json.loads kept the last of two values without a word."""
    text = (space / "manifest.json").read_text()
    (space / "manifest.json").write_text(text.replace('"status": "complete"',
                                                      '"status": "running", "status": "complete"'))
    assert main(["explore", str(space)]) == 2
    assert capsys.readouterr().err == (
        f'soundspace explore: error: {space / "manifest.json"}: key "status" is given twice in one '
        'object ("running" and "complete"); run the same generate command again to rewrite it\n')


def test_a_space_whose_stored_weighting_is_not_the_one_decoded_is_refused(tmp_path, capsys):
    """Issue 34, item 6: a 4 x 4 space decoded with radial weights whose manifest was changed to
    say bilinear: the page showed bilinear weights for sounds decoded from radial ones. At
    (1/3, 1/3) radial gives NW 1 - sqrt(2)/3, NE and SW 1 - sqrt(5)/3, SE 1 - sqrt(8)/3,
    normalised; bilinear gives 4/9, 2/9, 2/9, 1/9."""
    data = dataset(tmp_path / "d", length=0.07, resolution=4, weighting="radial")
    space = generate_space(data, workflow(tmp_path), progress=False, pictures=False,
                           log=lambda _: None).space_dir
    manifest = json.loads((space / "manifest.json").read_text())
    raw = [1 - np.sqrt(2) / 3, 1 - np.sqrt(5) / 3, 1 - np.sqrt(5) / 3, 1 - np.sqrt(8) / 3]
    recorded = next(c for c in manifest["cells"] if c["name"] == "x01_y01")["weights"]
    assert np.allclose(list(recorded.values()), np.array(raw) / sum(raw))
    manifest["space"]["weighting"] = "bilinear"
    (space / "manifest.json").write_text(json.dumps(manifest))
    assert main(["explore", str(space), "--no-pictures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cell x01_y01 records weights" in err
    assert "the bilinear grid of 4 per side gives" in err and '"SE": 0.111' in err


def test_render_shard_refuses_cell_names_that_lead_out(tmp_path, capsys):
    from .conftest import DEMO_MODEL

    from pipeline.nsynth import NSynth
    from pipeline.shards import ShardSpec

    model = NSynth.load(DEMO_MODEL)
    for name in ["../../escaped", "/tmp/soundspace-escaped"]:
        spec = ShardSpec(space="s", index=0, count=1,
                         model={"path": str(DEMO_MODEL), "identity": model.identity, "hop": 512},
                         device="cpu", math="auto", decode_batch=1, samples=1024,
                         postprocess={"chain": "none", "peak_dbfs": -1.0, "fade_ms": 5.0},
                         points=[{"seed": [0, 0], "cells": [name], "key": "0" * 64}],
                         embeddings=np.zeros((1, 2, 16), np.float32))
        folder = spec.save(tmp_path / "shard")
        assert main(["render-shard", str(folder), "--out", str(tmp_path / "out" / "a")]) == 2
        assert "refusing point" in capsys.readouterr().err
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/soundspace-escaped.wav").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(space):
    (space / "thumbs" / "x01_y01.png").unlink()
    (space / "thumbs" / "x01_y01.png").symlink_to("/etc/passwd")
    (space / "x02_y02.wav").unlink()
    (space / "x02_y02.wav").symlink_to("/etc/passwd")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(space),
                               "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
            time.sleep(0.1)
    yield port
    server.terminate()
    server.wait(10)


def get(port: int, path: str, host: str | None = None) -> tuple:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", path, skip_host=True)
    connection.putheader("Host", host or f"127.0.0.1:{port}")
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def test_serve_answers_the_explorer_files_and_nothing_else(served):
    port = served
    for path in ["/", "/index.html", "/explorer-data.js", "/space.png", "/thumbs/x00_y00.png",
                 "/x00_y00.wav"]:  # a cell's WAV: a page above the embedding bound fetches it
        assert get(port, path)[0] == 200, path
    assert get(port, "/", host=f"localhost:{port}")[0] == 200
    for path in ["/manifest.json", "/.soundspace/cells/x00_y00.json", "/.soundspace/lock",
                 "/embeddings.npz", "/x02_y02.wav", "/thumbs/", "/thumbs/x01_y01.png",
                 "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/thumbs/../manifest.json"]:
        status, body = get(port, path)
        assert status == 404 and b"root:" not in body, path
    assert get(port, "/", host="attacker.example")[0] == 421
    assert get(port, "/", host=f"attacker.example:{port}")[0] == 421


def outside_files(tmp_path: Path, names) -> tuple[Path, dict]:
    """A folder outside the run's, holding files under the names the run would write there:
    what they hold must not change, and no file may appear."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in names:
        (outside / name).write_text(f"precious {name}")
    return outside, digests(outside)


def digests(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def link_in(place: Path, target: Path) -> None:
    if place.is_dir() and not place.is_symlink():
        shutil.rmtree(place)
    else:
        place.unlink(missing_ok=True)
    place.symlink_to(target)


def one_line_refusal(capsys, place: Path) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{place} is a symbolic link" in err[0] and "remove" in err[0], err


@pytest.mark.parametrize("place,target,command", [
    (".soundspace/lock", "precious.txt", "explore"),  # a link to a file
    (".soundspace/lock", "not-there-yet.txt", "generate"),  # a dangling one
    (".soundspace", ".", "generate"),
    (".soundspace/cells", ".", "generate --force"),
    ("thumbs", ".", "explore"),
    ("thumbs", ".", "generate"),  # its writability probe went through the link too
])
def test_a_link_where_a_space_run_writes_is_refused_and_nothing_outside_changes(
        made_space, space, tmp_path, capsys, place, target, command):
    """Issue 34: the lock, `.soundspace/`, its `cells/` and `thumbs/` linked elsewhere were
    written through (a file overwritten or created at the link's target, PNGs and records
    written there, exit 0)."""
    outside, before = outside_files(tmp_path, ["precious.txt", "lock", "x00_y00.json",
                                               "x00_y00.png"])
    link_in(space / place, outside / target)
    touched = outside.stat().st_mtime_ns  # a file made and removed there changes it
    if command == "explore":
        code = main(["explore", str(space)])
    else:
        data = made_space.parent.parent / "d"
        code = main(["generate", "--workflow", str(workflow(tmp_path / "wf")), "--dataset",
                     str(data), "--output", str(tmp_path), *command.split()[1:]])
    assert code == 2
    one_line_refusal(capsys, space / place)
    assert digests(outside) == before and outside.stat().st_mtime_ns == touched


@pytest.fixture(scope="module")
def made_library(tmp_path_factory):
    from .test_library import small_library

    folder = tmp_path_factory.mktemp("hostile-library")
    data = small_library(folder / "d")
    generate_space(data, workflow(folder), progress=False, log=lambda _: None)
    return data, folder / "out" / "lib"


@pytest.mark.parametrize("place", [".decodes", "bass_guitar_keyboard_organ",
                                   "bass_guitar_keyboard_organ/p48",
                                   "bass_guitar_keyboard_organ/thumbs"])
def test_a_link_where_a_library_run_writes_is_refused_and_nothing_outside_changes(
        made_library, tmp_path, capsys, place):
    """Issue 34: a pad's `thumbs/` and `p48/` linked elsewhere got their files (PNGs, WAVs)
    before the refusal or with exit 0; the pad folder and `.decodes/` likewise."""
    data, library = made_library
    copy = tmp_path / "out" / "lib"
    shutil.copytree(library, copy, symlinks=True)
    outside, before = outside_files(tmp_path, ["x00_y00.wav", "x00_y00.png", "manifest.json"])
    link_in(copy / place, outside)
    (copy / "library.json").write_text(  # a run that left its page unwritten: the rerun writes it
        (copy / "library.json").read_text().replace('"complete"', '"incomplete"'))
    code = main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data)])
    assert code == 2
    one_line_refusal(capsys, copy / place)
    assert digests(outside) == before

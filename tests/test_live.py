"""The page while a space is being made (pipeline/explorer/live.py, served by explorer/serve.py):
what `live.json` says of each cell during a real run, what the manifest says meanwhile, and what
`serve` answers (issue 30, item 5). The page itself is driven in tests/test_explorer.py."""
import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from pipeline import snapshots
from pipeline.explorer import live, page

from .pipeline_helpers import dataset, generate_space, workflow
from .test_explorer import Served
from .test_run_failures import wait_for
from .test_snapshots import start


def manifest(space):
    try:
        return json.loads((space / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}  # being replaced this moment


def test_a_rerun_of_another_seed_shows_its_cells_in_progress_then_stopped(tmp_path):
    data = dataset(tmp_path / "d", length=1.0, resolution=2)
    flow = workflow(tmp_path, math="numpy", snapshot_seconds=0.05)
    space = generate_space(data, flow, progress=False, log=lambda _: None).space_dir
    assert live.Folder(space).progress() == {"status": "complete"}
    config = json.loads((data / "space.json").read_text())
    (data / "space.json").write_text(json.dumps({**config, "seed": 1}))  # every cell made again

    run = start(data, flow)
    wait_for(lambda: any((space / snapshots.PARTIAL).glob("*.wav")), what="a snapshot")
    progress = live.Folder(space).progress()
    # the records of the seed-0 cells went as the run planned: nothing is finished yet
    assert progress["status"] == "running"
    assert {c["state"] for c in progress["cells"].values()} <= {"making", "waiting"}, progress
    # the manifest says how far each cell in flight is, as the decode goes
    wait_for(lambda: manifest(space).get("missing", {}).get("in_progress"), what="the manifest", seconds=15)
    assert manifest(space)["status"] == "running"
    in_progress = manifest(space)["missing"]["in_progress"]
    assert set(in_progress) <= {"x00_y00", "x01_y00", "x00_y01", "x01_y01"}
    assert all(0 < seconds < 1.0 for seconds in in_progress.values()), in_progress
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()

    stopped = live.Folder(space).progress()
    assert stopped["status"] == "stopped"  # says running, but no run holds it
    cell, state = next((k, c) for k, c in stopped["cells"].items() if c["state"] == "making")
    size = (space / snapshots.PARTIAL / f"{cell}.wav").stat().st_size
    assert state["seconds"] == round((size - 44) / 32000, 3) and state["of"] == 1.0
    assert state["file"] == f".soundspace/partial/{cell}.wav?at={state['seconds']}"

    server = Served(space)
    try:
        def get(path):
            with urllib.request.urlopen(server.url + path) as reply:
                return reply.read()

        assert json.loads(get("live.json")) == stopped
        assert get("") == get("index.html") == page("index.html", "space")  # its template
        data_js = get("explorer-data.js").decode()
        assert data_js.startswith("window.SOUNDSPACE = ") and '"live": true' in data_js
        assert get(state["file"]) == (space / snapshots.PARTIAL / f"{cell}.wav").read_bytes()
        key = next((space / snapshots.FOLDER).glob("*" + snapshots.SUFFIX)).name
        (space / snapshots.PARTIAL / "x01_y01.wav").unlink(missing_ok=True)
        (space / snapshots.PARTIAL / "x01_y01.wav").symlink_to(space / "manifest.json")
        for private in ("manifest.json", f".soundspace/snapshots/{key}", ".soundspace/lock",
                        ".soundspace/partial/x01_y01.wav", ".soundspace/partial/../../manifest.json",
                        "embeddings.npz", "thumbs/x00_y00.png"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                get(private)
    finally:
        server.close()


def test_serve_refuses_a_folder_before_its_run_has_planned(tmp_path, capsys):
    from pipeline.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path / "empty"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no manifest.json or library.json yet" in err, err


def test_a_plan_forgets_the_earlier_runs_progress_only_once_it_is_accepted(tmp_path, monkeypatch):
    """A run with another seed must not show the old run's partial audio as its own, nor the old
    records as finished; but a run refused by its last check (here the disk check) changes
    nothing; and a batch that resumes can be heard again at once, from its snapshot."""
    from pipeline import SoundspaceError, run

    data = dataset(tmp_path / "d", length=0.5, resolution=2)
    flow = workflow(tmp_path, math="numpy", snapshot_seconds=0)
    space = generate_space(data, flow, progress=False, log=lambda _: None).space_dir
    records = sorted(p.name for p in (space / ".soundspace" / "cells").iterdir())
    partial = space / snapshots.PARTIAL
    partial.mkdir(exist_ok=True)
    (partial / "x00_y00.wav").write_bytes((space / "x00_y00.wav").read_bytes()[:10044])  # 0.31 s
    config = json.loads((data / "space.json").read_text())
    (data / "space.json").write_text(json.dumps({**config, "seed": 1}))

    def refuse(plan, needed):
        raise SoundspaceError("not enough room (the test's)")

    monkeypatch.setattr(run, "check_writable", refuse)
    with pytest.raises(SoundspaceError, match="the test's"):
        generate_space(data, flow, progress=False, log=lambda _: None)
    assert sorted(p.name for p in (space / ".soundspace" / "cells").iterdir()) == records
    assert list(partial.iterdir()) == [partial / "x00_y00.wav"]
    monkeypatch.undo()

    seen = {}

    def look(runs, progress):  # the plan is accepted; nothing is decoded yet: look, and stop
        seen.update(live.Folder(space).progress())
        raise SoundspaceError("looked (the test's)")

    monkeypatch.setattr(run, "_decode", look)
    with pytest.raises(SoundspaceError, match="looked"):
        generate_space(data, flow, progress=False, log=lambda _: None)
    assert {c["state"] for c in seen["cells"].values()} == {"waiting"}, seen
    assert seen["status"] == "running"  # this process holds the folder


def test_a_resumed_batch_is_heard_at_once_from_its_snapshot(tmp_path, monkeypatch):
    from pipeline import shards

    data = dataset(tmp_path / "d", length=1.0, resolution=2)
    flow = workflow(tmp_path, math="numpy", snapshot_seconds=0.05)
    space = tmp_path / "out" / "space"
    run = start(data, flow)
    wait_for(lambda: any((space / snapshots.PARTIAL).glob("*.wav")), what="a snapshot")
    time.sleep(0.3)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    sizes = {p.name: p.stat().st_size for p in (space / snapshots.PARTIAL).glob("*.wav")}
    heard = {}
    real_keep = shards._keep

    def first_keep(*args):  # what a listener finds before the resumed batch keeps anything new
        heard.setdefault("sizes", {p.name: p.stat().st_size
                                   for p in (space / snapshots.PARTIAL).glob("*.wav")})
        return real_keep(*args)

    monkeypatch.setattr(shards, "_keep", first_keep)
    result = generate_space(data, flow, progress=False, log=lambda _: None)
    assert result.steps < 31 * 512  # it resumed
    assert heard["sizes"] == sizes, (heard, sizes)  # its partial WAVs were back, as long


def test_serve_and_the_live_state_stand_hostile_folders(tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.files import FolderLock

    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "manifest.json")
    assert main(["serve", str(fifo), "--port", "0"]) == 2  # not a hang
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a manifest (not a file of at most 64 MB)" in err, err

    data = dataset(tmp_path / "d", length=0.05, resolution=2)
    space = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None).space_dir
    manifest = json.loads((space / "manifest.json").read_text())
    (space / "manifest.json").write_text(json.dumps({**manifest, "status": "incomplete"}))
    assert live.Folder(space).status == "incomplete"
    held = FolderLock(space / ".soundspace" / "lock", "a run").acquire()
    try:
        assert live.Folder(space).status == "running"  # a run writing its page says incomplete
    finally:
        held.release()
    (space / ".soundspace" / "lock").unlink()
    os.mkfifo(space / ".soundspace" / "lock")
    assert live.Folder(space).status == "incomplete"  # not a hang either

    huge = tmp_path / "huge"
    huge.mkdir()
    sounds = {label: [f"s{label.lower()}{i}" for i in range(60)] for label in ("NW", "NE", "SW", "SE")}
    (huge / "library.json").write_text(json.dumps({
        "format": "soundspace-library-1", "status": "running",
        "library": {"name": "huge", "sounds": sounds, "pitches": [48], "resolution": 3}}))
    assert main(["serve", str(huge), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "12,960,000 pads" in err and "too large to follow" in err, err

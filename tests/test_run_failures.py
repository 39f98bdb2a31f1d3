"""Runs that end badly must still end well: one line and exit 2 (130 for Ctrl-C, 143 for SIGTERM),
every finished cell kept, no process left behind, nothing half-written taken as done.

Real failures, not imitations: read-only and full file systems are small tmpfs mounts, a folder
that is not writable is met by a run as the unprivileged user `nobody`, a killed worker is
killed with SIGKILL. Those need root (CI and the development machines run as root); elsewhere
they skip loudly, and fail under SOUNDSPACE_REQUIRE_ROOT (scripts/test sets it).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.cli import main
from .pipeline_helpers import generate_space

from .conftest import needs
from .pipeline_helpers import dataset, workflow

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def needs_root(why: str) -> None:
    if os.geteuid() != 0 or not shutil.which("mount") or not shutil.which("setpriv"):
        if os.environ.get("SOUNDSPACE_REQUIRE_ROOT"):
            pytest.fail(f"this test needs root with mount and setpriv: {why}")
        pytest.skip(f"needs root with mount and setpriv: {why}")


@contextmanager
def tmpfs(path: Path, options: str):
    """A real small file system at `path` (unmounted afterwards)."""
    needs_root("it mounts a tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        if os.environ.get("SOUNDSPACE_REQUIRE_ROOT"):
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def command(flow, data, *extra) -> list:
    return [sys.executable, "-m", "pipeline.cli", "generate", "--workflow", str(flow),
            "--dataset", str(data), *extra]


def one_line_error(err: str, *needles) -> None:
    lines = [line for line in err.splitlines()  # the progress bar's lines aside
             if line.strip() and "%|" not in line and not line.startswith("soundspace: warning")]
    assert len(lines) == 1 and lines[0].startswith("soundspace generate: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def records(space_dir: Path) -> set:
    return {p.stem for p in (space_dir / ".soundspace" / "cells").glob("*.json")}


def wait_for(predicate, seconds: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def session_processes(sid: int) -> list:
    """Live processes of a session (a run started with start_new_session has sid = its pid)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def children(pid: int, marker: str) -> list:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and marker in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def slow_space(tmp_path, **fields):
    """9 cells of 0.3 s, one per shard, one at a time: a few seconds of decoding."""
    return dataset(tmp_path / "data", length=0.3, **fields)


# --- item 8: two runs on one space ---------------------------------------------------------------

def test_two_runs_started_together_one_refuses_with_the_lock_message(tmp_path):
    data, flow = slow_space(tmp_path), workflow(tmp_path, shard_size=1, decode_batch=1)
    runs = [subprocess.Popen(command(flow, data), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((run.wait(300), run.stderr.read(), run.pid) for run in runs)
    (ok, _, winner), (refused, err, _) = outcomes
    assert (ok, refused) == (0, 2), outcomes
    one_line_error(err, "is being written by process", f"process {winner} ", "--wait")
    space_dir = tmp_path / "out" / "space"
    manifest = json.loads((space_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["cells"]) == 9
    assert records(space_dir) == {c["name"] for c in manifest["cells"]}
    assert not [p for p in space_dir.rglob(".*.tmp")]


@pytest.mark.parametrize("left_behind", ["", "a killed run's line"])
def test_a_run_that_took_the_lock_a_moment_ago_is_named(tmp_path, left_behind):
    """Two runs started together: the loser may look before the winner has written its name,
    into a lock file that is empty or still names a run killed earlier (a dead process)."""
    import fcntl
    import socket
    import threading

    from pipeline import SoundspaceError
    from pipeline.files import FolderLock

    path = tmp_path / "lock"
    dead = subprocess.Popen(["true"])
    dead.wait()
    path.write_text(f"process {dead.pid} on {socket.gethostname()} (since 2026-01-01 00:00:00)\n"
                    if left_behind else "")
    winner = open(path, "a+")
    fcntl.flock(winner, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, its name not yet written

    def write_name():
        time.sleep(0.3)
        winner.seek(0)
        winner.truncate()
        winner.write(f"process {os.getpid()} on {socket.gethostname()} (since now)\n")
        winner.flush()

    writer = threading.Thread(target=write_name)
    writer.start()
    try:
        with pytest.raises(SoundspaceError, match=f"being written by process {os.getpid()} on"):
            FolderLock(path, "the space").acquire()
    finally:
        writer.join()
        winner.close()


def test_a_finished_run_leaves_no_name_in_its_lock(tmp_path):
    from pipeline.files import FolderLock

    lock = FolderLock(tmp_path / "lock", "the space").acquire()
    assert f"process {os.getpid()} " in (tmp_path / "lock").read_text()
    lock.release()
    assert (tmp_path / "lock").read_text() == ""


def test_a_second_run_with_wait_waits_then_finds_everything_done(tmp_path):
    data, flow = slow_space(tmp_path), workflow(tmp_path, shard_size=1, decode_batch=1)
    first = subprocess.Popen(command(flow, data), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    space_dir = tmp_path / "out" / "space"
    wait_for(lambda: len(records(space_dir)) >= 1, what="the first run's first cell")
    second = subprocess.run(command(flow, data, "--wait"), cwd=ROOT, capture_output=True, text=True)
    assert first.wait(300) == 0
    assert second.returncode == 0, second.stderr
    assert "waiting for process" in second.stdout
    assert "decoded 0 distinct sound(s) now, 9 were already done" in second.stdout


def test_temporary_names_are_unique_to_their_writer(tmp_path):
    from pipeline.files import temp_path

    names = {temp_path(tmp_path / "manifest.json").name for _ in range(50)}
    assert len(names) == 50 and all(f".manifest.json.{os.getpid()}-" in n for n in names)


# --- items 9 and 18: worker processes ----------------------------------------------------------

def test_kill_minus_nine_of_the_parent_leaves_no_process_of_the_run(tmp_path, capsys):
    data = slow_space(tmp_path)
    flow = workflow(tmp_path, shard_size=1, decode_batch=1, parallel_shards=2)
    run = subprocess.Popen(command(flow, data), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    space_dir = tmp_path / "out" / "space"
    wait_for(lambda: len(records(space_dir)) >= 1, what="a first cell")
    assert len(children(run.pid, "spawn_main")) == 2
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 5
    while session_processes(run.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_processes(run.pid) == [], "processes of the killed run are still alive"
    done = records(space_dir)
    time.sleep(1)
    assert records(space_dir) == done  # nobody writes into the space any more
    # Issue 34: the manifest still says `running`, but its holder is gone: the space is read
    # as incomplete, with what to do
    assert json.loads((space_dir / "manifest.json").read_text())["status"] == "running"
    assert main(["explore", str(space_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run holds the folder" in err and "incomplete" in err, err
    assert "run the same generate command again" in err


def test_sigterm_stops_the_run_like_ctrl_c(tmp_path):
    data = slow_space(tmp_path)
    flow = workflow(tmp_path, shard_size=1, decode_batch=1, parallel_shards=2)
    run = subprocess.Popen(command(flow, data), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    space_dir = tmp_path / "out" / "space"
    wait_for(lambda: len(records(space_dir)) >= 1, what="a first cell")
    run.terminate()
    assert run.wait(30) == 143
    one_line_error(run.stderr.read(), "soundspace generate: stopped by SIGTERM; finished cells are "
                   "kept: run the same command again to continue")
    wait_for(lambda: not session_processes(run.pid), 5, "the workers to end")
    kept = records(space_dir)
    assert 1 <= len(kept) < 9
    manifest = json.loads((space_dir / "manifest.json").read_text())  # issue 34: the truth
    assert manifest["status"] == "incomplete"
    assert set(manifest["missing"]["cells"]) == {f"x{x:02d}_y{y:02d}" for x in range(3)
                                                 for y in range(3)} - kept
    again = generate_space(data, flow, progress=False, log=lambda _: None)
    assert again.decoded == 9 - len(kept)


def test_a_killed_worker_fails_the_run_at_once_and_a_rerun_finishes(tmp_path):
    """SIGKILL of one worker (what the out-of-memory killer does). Its shard is named; by the
    failure policy all backends share (backends.run_tasks) the other worker is stopped too and
    no new shard starts; the finished cells are kept and a rerun completes."""
    data = dataset(tmp_path / "data", length=0.3)
    flow = workflow(tmp_path, shard_size=3, decode_batch=1, parallel_shards=2)  # a row a shard
    run = subprocess.Popen(command(flow, data), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    space_dir = tmp_path / "out" / "space"
    wait_for(lambda: len(records(space_dir)) >= 1, what="a first cell")
    workers = children(run.pid, "spawn_main")
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    assert run.wait(120) == 2
    err = run.stderr.read()
    one_line_error(err, f"its worker process (pid {workers[0]}) was killed by SIGKILL",
                   "out-of-memory", "run the same command again")
    failed = int(err.split("shard ")[1].split("/")[0])  # shard k of 3 is row k - 1
    assert failed in (1, 2)
    other_row = 2 - failed  # 0-based row of the shard the other worker had in flight
    done = records(space_dir)
    # Stopped with the failure, about a cell in: not left to finish its row.
    assert not {f"x{x:02d}_y{other_row:02d}" for x in range(3)} <= done
    assert not any(name.endswith("_y02") for name in done)  # shard 3 never started
    again = generate_space(data, flow, progress=False, log=lambda _: None)
    assert again.decoded == 9 - len(done)


# --- items 10 and 11: file-system errors, and checks before the decode ---------------------------

@pytest.mark.root
def test_output_on_a_read_only_file_system(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        data = dataset(tmp_path / "d", length=0.07)
        assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data),
                     "--output", str(ro / "out")]) == 2
    one_line_error(capsys.readouterr().err, str(ro / "out"), "Read-only file system",
                   "choose a writable --output")


def test_output_under_a_file_and_the_space_folder_taken_by_a_file(tmp_path, capsys):
    data, flow = dataset(tmp_path / "d", length=0.07), workflow(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data),
                 "--output", str(tmp_path / "afile" / "out")]) == 2
    one_line_error(capsys.readouterr().err, str(tmp_path / "afile"), "move that file away")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "space").write_text("a file where the space's folder goes")
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
    one_line_error(capsys.readouterr().err, str(tmp_path / "out" / "space"), "is a file")


def test_a_folder_where_the_run_writes_a_file_is_found_before_the_decode(tmp_path, capsys):
    data, flow = dataset(tmp_path / "d", length=0.07), workflow(tmp_path)
    space_dir = tmp_path / "out" / "space"
    for name in ("manifest.json", "index.html", "x01_y01.wav"):
        (space_dir / name).mkdir(parents=True)
        assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
        one_line_error(capsys.readouterr().err, str(space_dir / name), "is a folder")
        assert records(space_dir) == set()  # refused before anything was decoded
        (space_dir / name).rmdir()


def run_as_nobody(args, base: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLCONFIGDIR": str(base / "mpl"), "HOME": str(base)}
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           "--", *args], cwd=ROOT, capture_output=True, text=True, env=env)


@pytest.fixture
@needs("root")
def shared_base():
    """A folder the user `nobody` can reach (pytest's own temp folders are root's alone)."""
    needs_root("it runs soundspace as the user nobody")
    base = Path(tempfile.mkdtemp(prefix="soundspace-nobody-"))
    base.chmod(0o755)
    (base / "mpl").mkdir()
    os.chown(base / "mpl", NOBODY, NOBODY)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_output_folder_not_writable(shared_base):
    data, flow = dataset(shared_base / "d", length=0.07), workflow(shared_base)
    (shared_base / "out").mkdir()  # root's, 0755: nobody may not write in it
    result = run_as_nobody(command(flow, data), shared_base)
    assert result.returncode == 2
    one_line_error(result.stderr, str(shared_base / "out" / "space"), "Permission denied",
                   "make it writable")


def test_a_records_folder_that_is_not_writable_is_found_before_the_decode(shared_base):
    """Item 11: discovered after the whole decode before; now before a single cell is decoded."""
    data, flow = dataset(shared_base / "d", length=0.07), workflow(shared_base)
    space_dir = shared_base / "out" / "space"
    (space_dir / ".soundspace" / "cells").mkdir(parents=True)
    for folder in (shared_base / "out", space_dir, space_dir / ".soundspace"):
        os.chown(folder, NOBODY, NOBODY)  # everything nobody's but the records folder
    result = run_as_nobody(command(flow, data), shared_base)
    assert result.returncode == 2
    one_line_error(result.stderr, str(space_dir / ".soundspace" / "cells"), "Permission denied")
    assert "decoding" not in result.stderr and not list(space_dir.glob("*.wav"))


@pytest.mark.root
def test_not_enough_free_space_is_refused_before_the_decode(tmp_path, capsys):
    with tmpfs(tmp_path / "small", "size=256k") as small:
        data = dataset(tmp_path / "d", length=1.0)  # 9 cells of 32 kB, plus the explorer
        assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data),
                     "--output", str(small)]) == 2
        err = capsys.readouterr().err
        one_line_error(err, "not enough free space", str(small / "space"), "MB is free")
        assert list(small.iterdir()) == []  # issue 34: the folder it made is gone again
        # A space folder that was there already is kept, and says what it lacks (never
        # `running`, which only a run holding its lock may say)
        (small / "space").mkdir()
        assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data),
                     "--output", str(small)]) == 2
        one_line_error(capsys.readouterr().err, "not enough free space")
        manifest = json.loads((small / "space" / "manifest.json").read_text())
        assert manifest["status"] == "incomplete"
        assert len(manifest["missing"]["cells"]) == 9
        assert not list((small / "space").glob("*.wav"))


def test_a_model_whose_embeddings_hold_nan_is_named_and_nothing_is_made(tmp_path, capsys):
    """Issue 34: refused after the encode, before a folder is made, naming the model."""
    from safetensors.numpy import load_file, save_file

    from .conftest import DEMO_MODEL

    model = tmp_path / "damaged-model"
    shutil.copytree(DEMO_MODEL, model)
    weights = load_file(model / "weights.safetensors")
    weights["ae_bottleneck/W"] = np.full_like(weights["ae_bottleneck/W"], np.nan)
    save_file(weights, model / "weights.safetensors")
    meta = json.loads((model / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((model / "weights.safetensors").read_bytes()).hexdigest()
    (model / "model.json").write_text(json.dumps(meta))
    data = dataset(tmp_path / "d", length=0.1)
    flow = workflow(tmp_path, models={"real": str(model), "test": str(model)})
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
    one_line_error(capsys.readouterr().err, f"the model {model} gives NaN or infinite embeddings")
    assert not (tmp_path / "out").exists()


def test_a_refused_second_dataset_leaves_the_first_neither_made_nor_running(tmp_path, capsys):
    """Issue 34: two datasets planned together; the second is refused by a check made after the
    first was planned. The first's new folder goes too (nothing is left `running`)."""
    first = dataset(tmp_path / "a", length=0.1)
    second = dataset(tmp_path / "b", length=0.1, name="other")
    (tmp_path / "out" / "other" / "manifest.json").mkdir(parents=True)  # a folder where a file goes
    assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(first),
                 str(second)]) == 2
    one_line_error(capsys.readouterr().err, "manifest.json is a folder")
    assert not (tmp_path / "out" / "space").exists()


@pytest.mark.root
def test_disk_full_during_the_run_keeps_finished_cells_and_says_how_much_is_missing(tmp_path):
    with tmpfs(tmp_path / "disk", "size=4m") as disk:
        data = slow_space(tmp_path)
        flow = workflow(tmp_path, shard_size=1, decode_batch=1, output=str(disk))
        run = subprocess.Popen(command(flow, data, "--no-pictures"), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        space_dir = disk / "space"
        wait_for(lambda: len(records(space_dir)) >= 2, what="two cells")
        filler = disk / "filler"
        with open(filler, "wb") as f:  # someone else fills the disk
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        assert run.wait(120) == 2
        err = run.stderr.read()
        one_line_error(err, "No space left on device", "the disk filled up",
                       "finished cell(s) are kept", "MB is free", "run the same command again")
        kept = records(space_dir)
        assert 2 <= len(kept) < 9
        filler.unlink()
        again = generate_space(data, flow, progress=False, log=lambda _: None, pictures=False)
        assert again.decoded == 9 - len(kept)


def test_a_label_with_dollar_signs_is_drawn_as_text(tmp_path):
    """Item 10: matplotlib read `$` in a label as math markup and failed after the decode."""
    data = dataset(tmp_path / "d", length=0.07)
    space = json.loads((data / "space.json").read_text())
    space["sounds"]["NW"]["label"] = "Bass $x^$ at $5$"
    (data / "space.json").write_text(json.dumps(space))
    result = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None)
    assert (result.space_dir / "space.png").is_file()


# --- item 12: the explorer stage ---------------------------------------------------------------

def test_a_failed_explorer_leaves_the_status_incomplete_and_a_rerun_completes(tmp_path, capsys,
                                                                               monkeypatch):
    """The explorer fails as a full disk would make it fail (OSError ENOSPC in a picture)."""
    import errno

    from pipeline.explorer import pictures

    data, flow = dataset(tmp_path / "d", length=0.07), workflow(tmp_path)
    space_dir = tmp_path / "out" / "space"

    def disk_full(figure):
        raise OSError(errno.ENOSPC, "No space left on device", str(space_dir / "thumbs" / "x.png"))

    monkeypatch.setattr(pictures, "_png", disk_full)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
    one_line_error(capsys.readouterr().err, "every cell of", "writing its explorer failed",
                   "No space left on device", "soundspace explore")
    manifest = json.loads((space_dir / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"
    assert manifest["missing"] == {"cells": [], "explorer": True} and len(manifest["cells"]) == 9
    (space_dir / "thumbs" / ".x00_y00.png.4242-0badcafe.tmp").write_bytes(b"left by a killed run")
    monkeypatch.undo()
    assert generate_space(data, flow, progress=False, log=lambda _: None).decoded == 0
    manifest = json.loads((space_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["missing"] == {}
    assert (space_dir / "index.html").is_file() and len(list((space_dir / "thumbs").glob("*.png"))) == 9
    assert not list(space_dir.rglob("*.tmp"))


# --- item 14: inputs that say more than they hold; decode --batch -----------------------------------

def test_a_wav_cut_short_is_read_with_a_warning_naming_both_lengths(tmp_path, capsys):
    from pipeline.audio import load_audio

    soundfile.write(tmp_path / "full.wav", np.full(16000, 0.25, np.float32), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:44 + 2 * 6000])  # the header still says 16000
    assert len(load_audio(tmp_path / "cut.wav")) == 6000
    err = capsys.readouterr().err
    assert f"{tmp_path / 'cut.wav'}: its header promises 16000 samples but the file holds 6000" in err
    assert len(load_audio(tmp_path / "full.wav")) == 16000
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("batch", ["-1", "-5", "two"])
def test_decode_refuses_a_negative_batch(tmp_path, capsys, batch):
    np.save(tmp_path / "z.npy", np.zeros((2, 16), np.float32))
    with pytest.raises(SystemExit) as exit_:
        main(["decode", str(tmp_path / "z.npy"), "--model", "m", "--out", str(tmp_path / "o"),
              "--batch", batch])
    assert exit_.value.code == 2
    assert "1 or more" in capsys.readouterr().err and not (tmp_path / "o").exists()


# --- item 17: the model's configuration is part of its identity -----------------------------------

def test_another_hop_in_model_json_makes_every_cell_again(tmp_path):
    from .conftest import DEMO_MODEL

    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, model)
    flow = workflow(tmp_path, models={"real": str(model), "test": str(model)})
    data = dataset(tmp_path / "d", length=0.07)
    assert generate_space(data, flow, progress=False, log=lambda _: None).decoded == 9
    meta = json.loads((model / "model.json").read_text())
    meta["config"]["hop"] = 256
    (model / "model.json").write_text(json.dumps(meta))
    assert generate_space(data, flow, progress=False, log=lambda _: None).decoded == 9


# --- issue 34, item 6: a sound this user may not read -----------------------------------------

def test_a_sound_this_user_may_not_read_is_named_with_permission_denied(shared_base):
    """libsndfile reports "System error", and the message said to use WAV, FLAC, ... of a WAV."""
    from .conftest import DEMO_MODEL

    locked = shared_base / "locked.wav"
    soundfile.write(locked, np.zeros(1024), 16000)
    locked.chmod(0o600)  # root's: nobody may not read it
    result = run_as_nobody([sys.executable, "-m", "pipeline.cli", "encode", str(locked),
                            "--model", str(DEMO_MODEL), "--out", str(shared_base / "o")],
                           shared_base)
    assert result.returncode == 2
    assert result.stderr == (f"soundspace encode: error: cannot read {locked}: Permission denied; "
                             "make it readable for this user\n")

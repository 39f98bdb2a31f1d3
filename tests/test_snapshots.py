"""Decoder snapshots (issue 30): a decode stopped in any way resumes inside its sounds, and the
finished WAVs are byte-identical to a run that never stopped.

The oracle is always an uninterrupted run of the same space (snapshots off); the runs that are
stopped are real processes stopped by real signals (SIGKILL of the run or of one worker, SIGTERM).
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile

from pipeline import snapshots

from .pipeline_helpers import dataset, generate_space, workflow
from .test_run_failures import children, wait_for

ROOT = Path(__file__).resolve().parent.parent
HOP = 512


def quiet_run(data, flow):
    return generate_space(data, flow, progress=False, log=lambda _: None)


def wavs(space: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(space.glob("*.wav"))}


def kept_frames(space: Path) -> int:
    """The most frames any snapshot of the space says it holds (0: none yet)."""
    found = 0
    for path in (space / snapshots.FOLDER).glob("*" + snapshots.SUFFIX):
        try:
            with open(path, "rb") as f:
                found = max(found, json.loads(f.readline())["frames"])
        except (OSError, ValueError, KeyError):
            pass  # being replaced this moment
    return found


def start(data, flow) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "generate", "--workflow",
                             str(flow), "--dataset", str(data)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.fixture(scope="module")
def two_seconds(tmp_path_factory):
    """A 2 s test space (4 sounds, 2 x 2: one batch of 62 frames) made without a stop."""
    base = tmp_path_factory.mktemp("snapshots-reference")
    data = dataset(base / "d", length=2.0, resolution=2)

    class Made(dict):  # each math library's run, made when a test first asks for it
        def __missing__(self, math):
            result = quiet_run(data, workflow(base / math, math=math, snapshot_seconds=0))
            self[math] = (result.steps, wavs(result.space_dir))
            return self[math]

    return data, Made()


@pytest.mark.parametrize("math", ["numpy", "torch"])
def test_kill_minus_nine_late_in_the_decode_then_the_rerun_resumes(two_seconds, tmp_path, math):
    data, made = two_seconds
    full_steps, reference = made[math]
    assert full_steps == 62 * HOP
    flow = workflow(tmp_path, math=math, snapshot_seconds=0.05)
    space = tmp_path / "out" / "space"
    at = random.Random().uniform(0.6, 0.9)  # a random moment 60 to 90 % into the decode
    run = start(data, flow)
    wait_for(lambda: kept_frames(space) >= at * 62, what=f"a snapshot {at:.0%} into the decode")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    orphan = space / snapshots.FOLDER / ("f" * 64 + snapshots.SUFFIX)  # an older plan's
    orphan.write_bytes(b"left by a run of another resolution")
    rerun = quiet_run(data, flow)
    print(f"{math}: killed at {at:.0%}; the rerun ran {rerun.steps} of {full_steps} steps")
    assert rerun.steps <= 0.45 * full_steps
    assert wavs(space) == reference
    assert list((space / snapshots.FOLDER).iterdir()) == []  # gone with their batch


def test_sigterm_keeps_a_snapshot_at_once_and_the_rerun_resumes_at_that_step(two_seconds,
                                                                             tmp_path):
    data, made = two_seconds
    flow = workflow(tmp_path, math="numpy", snapshot_seconds=0)  # only the one SIGTERM asks for
    space = tmp_path / "out" / "space"
    run = start(data, flow)
    wait_for(lambda: (space / "manifest.json").is_file(), what="the decode to start")
    time.sleep(3)
    run.terminate()
    assert run.wait(30) == 143, run.stderr.read()
    kept = kept_frames(space)
    assert 0 < kept < 62
    # each cell's audio so far, to listen to, and how far it got in the manifest
    cells = {f"x{x:02d}_y{y:02d}" for x in range(2) for y in range(2)}
    partial = space / snapshots.PARTIAL
    assert {p.stem for p in partial.iterdir()} == cells
    for cell in cells:
        audio, rate = soundfile.read(partial / f"{cell}.wav", dtype="int16")
        assert rate == 16000 and len(audio) == kept * HOP and audio[-1] == 0  # faded at the cut
    manifest = json.loads((space / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"
    assert manifest["missing"]["in_progress"] == {c: round(kept * HOP / 16000, 3) for c in cells}
    rerun = quiet_run(data, flow)
    assert list(partial.iterdir()) == []  # gone with their finished cells
    # the demo model's reach (250 samples) is replayed from one frame back, then the rest
    assert rerun.steps == (1 + 62 - kept) * HOP
    assert wavs(space) == made["numpy"][1]


def test_a_worker_killed_mid_shard_is_resumed_by_the_rerun(two_seconds, tmp_path):
    data, made = two_seconds
    flow = workflow(tmp_path, math="numpy", snapshot_seconds=0.05, shard_size=2,
                    parallel_shards=2, decode_batch=2)  # two shards of 2, one per worker
    space = tmp_path / "out" / "space"
    run = start(data, flow)
    wait_for(lambda: kept_frames(space) >= 30, what="a snapshot half-way")
    workers = children(run.pid, "spawn_main")
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    assert run.wait(60) == 2
    assert "was killed by SIGKILL" in run.stderr.read()
    rerun = quiet_run(data, flow)
    assert rerun.steps < 2 * 62 * HOP * 0.6  # two batches of 62 frames, both resumed
    # batches of 2 draw other bits than the reference's one batch of 4: compare with an
    # uninterrupted run of the same workflow
    again = quiet_run(data, workflow(tmp_path / "whole", math="numpy", snapshot_seconds=0,
                                     shard_size=2, parallel_shards=2, decode_batch=2))
    assert wavs(space) == wavs(again.space_dir)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A 0.5 s space (15 frames) made whole, and stopped by SIGTERM part-way: the reference's
    WAVs, and the stopped one's folder, which holds one snapshot."""
    base = tmp_path_factory.mktemp("snapshots-stopped")
    data = dataset(base / "d", length=0.5, resolution=2)
    reference = wavs(quiet_run(data, workflow(base / "whole", snapshot_seconds=0)).space_dir)
    flow = workflow(base, math="numpy", snapshot_seconds=0)
    space = base / "out" / "space"
    run = start(data, flow)
    wait_for(lambda: (space / "manifest.json").is_file(), what="the decode to start")
    time.sleep(0.8)
    run.terminate()
    assert run.wait(30) == 143
    assert 0 < kept_frames(space) < 15
    return data, space, reference


def damage(path: Path, how: str) -> None:
    body = path.read_bytes()
    header, _, samples = body.partition(b"\n")
    fields = json.loads(header)
    if how == "truncated":
        path.write_bytes(body[: len(body) // 2])
    elif how == "foreign":  # another batch's (a key that is not this batch's)
        fields["key"] = "0" * 64
        path.write_bytes(json.dumps(fields).encode() + b"\n" + samples)
    elif how == "other version":
        fields["format"] = "soundspace-snapshot-0"
        path.write_bytes(json.dumps(fields).encode() + b"\n" + samples)
    elif how == "flipped bit":
        path.write_bytes(header + b"\n" + bytes([samples[0] ^ 1]) + samples[1:])
    elif how == "garbage":
        path.write_bytes(os.urandom(len(body)))
    elif how == "a link":
        path.unlink()
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("how", ["truncated", "foreign", "other version", "flipped bit",
                                 "garbage", "a link"])
def test_a_bad_snapshot_is_set_aside_with_a_warning_and_the_batch_restarts(
        stopped, tmp_path, capsys, how):
    data, space, reference = stopped
    copy = tmp_path / "out" / "space"
    shutil.copytree(space, copy, symlinks=True)
    [snapshot] = (copy / snapshots.FOLDER).glob("*" + snapshots.SUFFIX)
    damage(snapshot, how)
    rerun = quiet_run(data, workflow(tmp_path, math="numpy", snapshot_seconds=0))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"soundspace: warning: {snapshot}: ")
    assert "set aside" in warnings[0] and "decodes from its beginning" in warnings[0]
    assert rerun.steps == 15 * HOP  # from the beginning
    assert wavs(copy) == reference
    assert list((copy / snapshots.FOLDER).iterdir()) == []  # and the set-aside one is gone too

"""The Ray backend on a real one-node Ray cluster started as separate processes (`ray start
--head`, whose raylet starts the worker processes), everything bound to 127.0.0.1: a worker
killed mid-shard is retried and redoes only its unfinished cells, a failing task is not retried
and stops the others, `device: auto` asks for the cluster's GPU, several spaces are scheduled in
one run. The node declares one (logical) GPU, so that GPU scheduling is exercised on a CPU
machine. The loopback setting below is this fixture's only: it turns Ray's multi-node mode off
(tests/test_ray_cluster.py runs two nodes without it). scripts/test installs the `ray` extra and
sets SOUNDSPACE_REQUIRE_RAY."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pipeline.run import generate_spaces

from .pipeline_helpers import generate_space

from .conftest import needs
from .pipeline_helpers import dataset, workflow
from .test_pipeline import wavs

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
os.environ.update(LOOPBACK)  # before Ray is imported: it reads them at import

if os.environ.get("SOUNDSPACE_REQUIRE_RAY"):
    import ray  # noqa: F401
else:
    pytest.importorskip("ray")

RAY = str(Path(sys.executable).parent / "ray")


def quiet(_):
    pass


def processes_using(folder: str) -> list[int]:
    """Ids of the processes whose command line names `folder` (this cluster's temp dir): its
    own processes only, never another Ray on the machine (as `ray stop` would)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and folder in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
@needs("ray")
def cluster():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **LOOPBACK}
    temp = tempfile.mkdtemp(prefix="ss-ray1-")  # short: Ray's socket paths live here
    # One node: a second `ray start --address` node is refused with the loopback setting
    # ("Multi-node Ray clusters are not supported"); tests/test_ray_cluster.py has two nodes.
    subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                    "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=1",
                    "--disable-usage-stats", f"--temp-dir={temp}"],
                   # Its daemons inherit stdout: a pipe would never reach EOF.
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=120)
    os.environ.update(LOOPBACK)
    yield f"127.0.0.1:{port}"
    import ray

    ray.shutdown()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_using(temp):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while processes_using(temp) and time.monotonic() < deadline:
            time.sleep(0.1)
    shutil.rmtree(temp, ignore_errors=True)


def ray_workflow(folder, address, **fields):
    return workflow(folder, backend="ray", ray={"address": address, "retries": 3,
                                                "scratch": str(folder / "scratch")}, **fields)


def test_a_killed_worker_is_retried_and_redoes_only_unfinished_cells(tmp_path, cluster):
    data = dataset(tmp_path / "d", length=0.15)
    flow = ray_workflow(tmp_path, cluster, shard_size=9, decode_batch=1)
    scratch = tmp_path / "scratch"
    killed = []

    def kill_worker_after_first_cell():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for folder in scratch.glob("node-*/*"):  # a node's shard folders
                if list((folder / ".soundspace" / "cells").glob("*.json")):
                    pid = int((folder / "worker.pid").read_text())
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_worker_after_first_cell)
    killer.start()
    result = generate_space(data, flow, progress=False, log=quiet)
    killer.join()
    assert killed, "no worker was killed"
    assert len(wavs(result.space_dir)) == 9
    assert 0 < result.decoded < 9  # the retry found the first attempt's cells and made the rest
    import soundfile

    for path in result.space_dir.glob("*.wav"):
        assert soundfile.info(path).frames == 2400


def test_several_spaces_in_one_run(tmp_path, cluster):
    root = tmp_path / "datasets"
    dataset(root / "a", name="space-a", length=0.1)
    dataset(root / "b", name="space-b", length=0.1, labels=("LEFT", "RIGHT"), resolution=4)
    results = generate_spaces([root], ray_workflow(tmp_path, cluster, shard_size=4),
                              progress=False, log=quiet)
    assert [r.space_dir.name for r in results] == ["space-a", "space-b"]
    assert [len(wavs(r.space_dir)) for r in results] == [9, 4]


def test_a_failing_task_is_not_retried_and_stops_the_others(tmp_path, cluster):
    """One shard raises inside its task (its spec names another model's identity); the run ends
    at once with that error, and the other shard, long and in progress, is cancelled. The test
    holds the Ray connection (as a program using the backend would), so that the end of the
    driver's job does not cancel the tasks in the backend's place."""
    import numpy as np
    import ray

    from pipeline import SoundspaceError
    from pipeline.backends.ray import RayBackend
    from pipeline.config import load_workflow
    from pipeline.nsynth import NSynth
    from pipeline.shards import ShardSpec

    from .conftest import DEMO_MODEL

    model = NSynth.load(DEMO_MODEL)
    embeddings = np.repeat(model.encode(np.zeros((1, 32000), np.float32)), 6, axis=0)
    points = [{"seed": [0, i], "cells": [f"x0{i}_y00"], "key": f"k{i}"} for i in range(6)]

    def spec(index, identity):
        return ShardSpec(space="s", index=index, count=2, device="cpu", math="auto",
                         model={"path": str(DEMO_MODEL), "identity": identity,
                                "hop": model.config.hop, "role": "test"},
                         decode_batch=1, samples=32000, postprocess={"chain": "none"}, points=points,
                         embeddings=embeddings)

    flow, _ = load_workflow(ray_workflow(tmp_path, cluster))
    space = tmp_path / "space"
    (space / ".soundspace").mkdir(parents=True)
    started = time.monotonic()
    ray.init(address=cluster, log_to_driver=False)
    try:
        with pytest.raises(SoundspaceError, match="failed on a Ray worker: the model at .* the "
                                                  "shard was planned for 000000000000"):
            list(RayBackend(flow).run([(spec(0, model.identity), space),
                                       (spec(1, "0" * 64), space)], quiet))
        assert time.monotonic() - started < 60  # not after the long shard
        time.sleep(5)  # the long shard, if it started at all, ran in a worker that is now gone
        for pid_file in (tmp_path / "scratch").glob("node-*/s-1of2-*/worker.pid"):
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid_file.read_text()), 0)
    finally:
        ray.shutdown()
    assert not list(space.glob("*.wav"))


def test_device_auto_asks_for_the_clusters_gpu(tmp_path, cluster):
    """The node declares a GPU, so `auto` becomes `cuda` and each task asks Ray for it; this
    machine has no CUDA, so the task that Ray scheduled on the GPU says so."""
    from pipeline import SoundspaceError

    flow = ray_workflow(tmp_path, cluster, device="auto")
    with pytest.raises(SoundspaceError, match="failed on a Ray worker: device 'cuda' asked for, but "
                                              "this torch has no usable CUDA GPU"):
        generate_space(dataset(tmp_path / "d", length=0.1), flow, progress=False, log=quiet)


def test_a_library_on_ray_is_identical_to_the_local_one(tmp_path, cluster):
    """The test library (16 pads x 3 pitches x 9 cells, 120 decodes), its notes cut to 0.1 s."""
    library = ROOT / "models" / "n-synth" / "library-test"
    data = tmp_path / "data"
    shutil.copytree(library, data)
    space = json.loads((data / "space.json").read_text())
    (data / "space.json").write_text(json.dumps({**space, "length": 0.1}))
    # A Ray task does its math on one thread; so does each local worker when there are as many
    # as cores. Matrix products can round differently on another number of BLAS threads (and
    # one flipped sample changes the rest of a sound), so that is the local run to compare with.
    cores = min(len(os.sched_getaffinity(0)), 64)
    local = generate_space(data, workflow(tmp_path / "local", shard_size=20, parallel_shards=cores),
                           progress=False, log=quiet)
    remote = generate_space(data, ray_workflow(tmp_path / "ray", cluster, shard_size=20),
                            progress=False, log=quiet)
    assert remote.decoded == local.decoded == 120 and remote.shards == local.shards == 6

    def pad_files(library_dir):
        return {str(p.relative_to(library_dir)): p.read_bytes()
                for p in sorted(library_dir.glob("*/p*/*.wav"))}

    assert len(pad_files(local.space_dir)) == 16 * 3 * 9
    assert pad_files(remote.space_dir) == pad_files(local.space_dir)


def test_the_cells_of_a_ray_task_are_heard_while_they_are_made(tmp_path, cluster):
    """Issue 30, item 5, on Ray: the driver writes the audio so far of each cell in flight from
    the snapshots the task streams home (the node's scratch is not the store), and removes it
    when the cells are merged."""
    import soundfile

    from pipeline import snapshots

    data = dataset(tmp_path / "d", length=1.0, resolution=2)
    flow = ray_workflow(tmp_path, cluster, snapshot_seconds=0.05, math="numpy")
    partial = tmp_path / "out" / "space" / snapshots.PARTIAL
    heard, done = {}, threading.Event()

    def listen():
        while not done.is_set():
            for path in partial.glob("*.wav"):
                try:
                    audio, rate = soundfile.read(path, dtype="int16")
                except (OSError, RuntimeError):
                    continue  # replaced this moment
                heard[path.stem] = max(heard.get(path.stem, 0), len(audio))
                assert rate == 16000 and audio[-1] == 0  # faded at the cut
            time.sleep(0.02)

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        result = generate_space(data, flow, progress=False, log=quiet)
    finally:
        done.set()
        listener.join()
    assert set(heard) == {"x00_y00", "x01_y00", "x00_y01", "x01_y01"}, heard
    assert all(0 < n < 16000 for n in heard.values()), heard
    assert list(partial.glob("*")) == [] and len(wavs(result.space_dir)) == 4

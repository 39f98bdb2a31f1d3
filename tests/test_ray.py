"""The Ray backend on a real Ray cluster started as separate processes (`ray start --head`, whose
raylet starts the worker processes), everything bound to 127.0.0.1: the space equals the local backend's cell for cell,
a worker killed mid-shard is retried and redoes only its unfinished cells, several spaces are
scheduled in one run. scripts/test installs the `ray` extra and sets SOUNDSPACE_REQUIRE_RAY."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.run import generate_space, generate_spaces

from .pipeline_helpers import TEST_DATASET, dataset, workflow
from .test_pipeline import wavs

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
os.environ.update(LOOPBACK)  # before Ray is imported: it reads them at import

if os.environ.get("SOUNDSPACE_REQUIRE_RAY"):
    import ray  # noqa: F401
else:
    pytest.importorskip("ray")

RAY = str(Path(sys.executable).parent / "ray")


def quiet(_):
    pass


@pytest.fixture(scope="module")
def cluster():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **LOOPBACK}
    # One node: a second `ray start --address` node is refused with the loopback setting
    # ("Multi-node Ray clusters are not supported") and hangs without it (ray 2.60).
    subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                    "--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"],
                   # Its daemons inherit stdout: a pipe would never reach EOF.
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=120)
    os.environ.update(LOOPBACK)
    yield f"127.0.0.1:{port}"
    import ray

    ray.shutdown()
    subprocess.run([RAY, "stop", "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, timeout=120)


def ray_workflow(folder, address, **fields):
    return workflow(folder, backend="ray", ray={"address": address, "retries": 3,
                                                "scratch": str(folder / "scratch")}, **fields)


def test_ray_space_equals_the_local_space(tmp_path, cluster):
    start = time.perf_counter()
    local = generate_space(TEST_DATASET, workflow(tmp_path / "local", shard_size=3), progress=False,
                           log=quiet)
    local_seconds = time.perf_counter() - start
    start = time.perf_counter()
    on_ray = generate_space(TEST_DATASET, ray_workflow(tmp_path / "ray", cluster, shard_size=3),
                            progress=False, log=quiet)
    ray_seconds = time.perf_counter() - start
    assert on_ray.shards == 3 and on_ray.decoded == 9
    assert wavs(on_ray.space_dir) == wavs(local.space_dir)
    assert json.loads((on_ray.space_dir / "manifest.json").read_text())["status"] == "complete"
    print(f"\ntest space, 3 shards: local {local_seconds:.1f} s, ray {ray_seconds:.1f} s")


def test_a_killed_worker_is_retried_and_redoes_only_unfinished_cells(tmp_path, cluster):
    data = dataset(tmp_path / "d", length=0.3)
    flow = ray_workflow(tmp_path, cluster, shard_size=9, decode_batch=1)
    scratch = tmp_path / "scratch"
    killed = []

    def kill_worker_after_first_cell():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for folder in scratch.glob("*"):
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
        assert soundfile.info(path).frames == 4800


def test_several_spaces_in_one_run(tmp_path, cluster):
    root = tmp_path / "datasets"
    dataset(root / "a", name="space-a", length=0.1)
    dataset(root / "b", name="space-b", length=0.1, labels=("LEFT", "RIGHT"), resolution=4)
    results = generate_spaces([root], ray_workflow(tmp_path, cluster, shard_size=4),
                              progress=False, log=quiet)
    assert [r.space_dir.name for r in results] == ["space-a", "space-b"]
    assert [len(wavs(r.space_dir)) for r in results] == [9, 4]

"""The Ray backend on a real two-node cluster: two network namespaces joined by a veth pair (the
test's own hosts, on addresses that exist only inside them), `ray start --head` in one and
`ray start --address` in the other, `soundspace generate` run as a command in the head's
namespace. No loopback setting anywhere: the variable the single-node tests use (which turns
Ray's multi-node mode off) is removed from every process started here, so this is the code path
of a real cluster. Shards run on both nodes, the space equals the local backend's, and a run
survives losing the second node mid-run. Needs root (namespaces); scripts/test sets
SOUNDSPACE_REQUIRE_NETNS so that it runs there, never skips."""
import json
import os
import random
import subprocess
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .pipeline_helpers import generate_space

from .conftest import needs
from .pipeline_helpers import dataset, workflow
from .test_pipeline import wavs

if os.environ.get("SOUNDSPACE_REQUIRE_RAY"):
    import ray  # noqa: F401
else:
    pytest.importorskip("ray")

RAY = str(Path(sys.executable).parent / "ray")
# Ray's own environment for the nodes and the driver: usage statistics off, and without the
# single-node tests' loopback variable (it would refuse the second node).
# The head checks its nodes every second and calls one dead after 3 missed checks (Ray's default
# is about 30 s), so that the lost-node test does not wait long.
ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"},
       "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_period_ms": "1000",
       "RAY_health_check_failure_threshold": "3"}


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


class TwoNodes:
    """Two namespaces `head` and `worker` joined by a veth pair, one Ray node in each."""

    def __init__(self, tmp: Path):
        tag = f"{os.getpid() % 10000}{random.randrange(1000)}"
        self.head, self.worker = f"ssh{tag}", f"ssw{tag}"
        net = f"10.{random.randrange(64, 250)}.{random.randrange(1, 250)}"
        self.head_ip, self.worker_ip = f"{net}.1", f"{net}.2"
        self.address = f"{self.head_ip}:6379"
        self.tmp = tmp
        self.ray_tmp = tempfile.mkdtemp(prefix="ss-ray-")  # short: Ray's socket paths live here
        self.made = []

    def __enter__(self):
        try:
            for name in (self.head, self.worker):
                ip("netns", "add", name)
                self.made.append(name)
        except (subprocess.CalledProcessError, FileNotFoundError) as error:
            self.__exit__()
            reason = f"cannot make network namespaces here ({error}); run as root with iproute2"
            if os.environ.get("SOUNDSPACE_REQUIRE_NETNS"):
                pytest.fail(reason)
            pytest.skip(reason)
        try:
            ip("link", "add", f"v{self.head}", "type", "veth", "peer", "name", f"v{self.worker}")
            for name, address in ((self.head, self.head_ip), (self.worker, self.worker_ip)):
                ip("link", "set", f"v{name}", "netns", name)
                ip("-n", name, "addr", "add", f"{address}/24", "dev", f"v{name}")
                ip("-n", name, "link", "set", "lo", "up")
                ip("-n", name, "link", "set", f"v{name}", "up")
            self.run(self.head, RAY, "start", "--head", f"--node-ip-address={self.head_ip}",
                     "--port=6379", "--num-cpus=1", "--include-dashboard=false",
                     "--disable-usage-stats", f"--temp-dir={self.ray_tmp}/head")
            self.run(self.worker, RAY, "start", f"--address={self.address}",
                     f"--node-ip-address={self.worker_ip}", "--num-cpus=1", "--disable-usage-stats",
                     f"--temp-dir={self.ray_tmp}/worker")
        except BaseException:
            self.__exit__()
            raise
        return self

    def run(self, namespace, *command, timeout=180):
        # Ray's daemons inherit stdout: a pipe would never reach EOF, so output goes to a file.
        log = self.tmp / f"{namespace}.log"
        with open(log, "a") as out:
            done = subprocess.run(["ip", "netns", "exec", namespace, *command], env=ENV,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        if done.returncode:
            raise AssertionError(f"{' '.join(command[:3])} in {namespace} exited with "
                                 f"{done.returncode}:\n{log.read_text()[-3000:]}")

    def kill(self, namespace):
        """End every process of the namespace: the node is lost (as a machine would be)."""
        for sig, grace in (("-TERM", 1), ("-KILL", 2)):
            deadline = time.monotonic() + grace
            pids = ip("netns", "pids", namespace, check=False).stdout.split()
            if pids:
                subprocess.run(["kill", sig, *pids], capture_output=True)
            while pids and time.monotonic() < deadline:
                time.sleep(0.1)
                pids = ip("netns", "pids", namespace, check=False).stdout.split()

    def __exit__(self, *_):
        for name in self.made:
            self.kill(name)
            ip("netns", "del", name, check=False)
        ip("link", "del", f"v{self.head}", check=False)  # only if it never left this namespace
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


@pytest.fixture
@needs("ray", "root")
def cluster(tmp_path):
    with TwoNodes(tmp_path) as nodes:
        yield nodes


def generate_on(nodes, data, folder, **fields):
    """`soundspace generate` in the head's namespace, as a user would run it there."""
    flow = workflow(folder, backend="ray", shard_size=1, decode_batch=1,
                    ray={"address": nodes.address, "retries": 3, "scratch": str(folder / "scratch")},
                    **fields)
    nodes.run(nodes.head, sys.executable, "-m", "pipeline.cli", "generate", "--workflow", str(flow),
              "--dataset", str(data), "--no-pictures", timeout=600)
    return folder / "out" / "space"


def made_on(space):
    return {json.loads(p.read_text()).get("made_on") for p in (space / ".soundspace" / "cells").glob("*.json")}


def _read(path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the task finished and removed its scratch folder meanwhile
        return None


def _outcome(function, *args):
    try:
        return function(*args)
    except BaseException as error:  # reported by the test thread
        return error


def local_space(data, folder):
    return generate_space(data, workflow(folder, shard_size=1, decode_batch=1), progress=False,
                          log=lambda _: None).space_dir


def test_shards_run_on_both_nodes_and_the_space_equals_the_local_one(tmp_path, cluster):
    data = dataset(tmp_path / "d", length=0.1)
    space = generate_on(cluster, data, tmp_path / "ray")
    assert made_on(space) == {f"ray node {cluster.head_ip}", f"ray node {cluster.worker_ip}"}
    assert json.loads((space / "manifest.json").read_text())["status"] == "complete"
    assert wavs(space) == wavs(local_space(data, tmp_path / "local"))
    # The workers took the model from the object store, not from the driver's path.
    identity = json.loads((space / "manifest.json").read_text())["model"]["identity"]
    assert (tmp_path / "ray" / "scratch" / "models" / identity / "model.json").is_file()
    # Every task's scratch folder (in its node's) was removed once its cells were in the reply.
    scratch = tmp_path / "ray" / "scratch"
    assert sorted(p.name for p in scratch.iterdir() if not p.name.startswith("node-")) == ["models"]
    assert [list(p.iterdir()) for p in scratch.glob("node-*")] == [[], []]


def _frames(path) -> int:
    try:
        with open(path, "rb") as f:
            return json.loads(f.readline())["frames"]
    except (OSError, ValueError, KeyError):
        return 0  # being written, or gone with its finished shard


def test_losing_the_worker_node_mid_run_still_completes_the_space(tmp_path, cluster):
    """Issue 30: the worker node is lost about 70 % into a shard; the task is rerun on the head
    from the last snapshot it streamed home (no disk is shared between the nodes' scratch
    folders), which the rerun's cell records say (their first step is not 0)."""
    data = dataset(tmp_path / "d", length=1.0)  # 31 frames a shard
    scratch = tmp_path / "ray" / "scratch" / f"node-{cluster.worker_ip}"
    outcome = []
    driver = threading.Thread(target=lambda: outcome.append(
        _outcome(lambda: generate_on(cluster, data, tmp_path / "ray", snapshot_seconds=0.05))))
    driver.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.is_alive():  # a shard 70 % done on the worker
        if any(_frames(p) >= 22 for p in scratch.glob("space-*/.soundspace/snapshots/*")):
            break
        time.sleep(0.02)
    assert driver.is_alive(), f"the run ended before a shard ran on the worker node: {outcome}"
    cluster.kill(cluster.worker)
    driver.join(600)
    assert outcome and not isinstance(outcome[0], BaseException), outcome
    space = tmp_path / "ray" / "out" / "space"
    assert json.loads((space / "manifest.json").read_text())["status"] == "complete"
    assert len(wavs(space)) == 9
    assert f"ray node {cluster.head_ip}" in made_on(space)
    assert wavs(space) == wavs(local_space(data, tmp_path / "local"))
    records = [json.loads(p.read_text()) for p in (space / ".soundspace" / "cells").glob("*.json")]
    resumed = [r for r in records if r["first_step"] > 0]
    assert resumed and all(r["made_on"] == f"ray node {cluster.head_ip}" for r in resumed)
    assert all(r["first_step"] >= 21 * 512 for r in resumed)  # from its last snapshot

"""The Ray backend: every shard is a Ray task running the one shard runner, on a cluster users
already run (any cloud, Kubernetes) or on a local one.

Each task renders its shard into a scratch folder on its node, keyed by the shard's cells, and
returns the finished WAVs and records to the driver, which checks each cell and merges it into
the space exactly as other backends' results are merged. When a worker dies mid-shard, Ray runs
the task again (`ray.retries` times); on the same node the retry finds the cells the first
attempt finished in the scratch folder and makes only the rest. A shard that still fails ends
the run with its error; cells merged before stay for a rerun. Tasks ask for one GPU when the
device is `cuda`. Ray is an optional extra: `scripts/install ray` (pip install '.[ray]').
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .. import SoundspaceError, output
from ..files import inside
from ..shards import ShardSpec, merge_finished, render_shard

# Keep every Ray connection on loopback on machines where that matters: Ray otherwise looks up
# the machine's network address even for a local cluster (see docs). Harmless on a real cluster.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _scratch(spec: ShardSpec, root: str) -> Path:
    keys = hashlib.sha256("".join(p["key"] for p in spec.points).encode()).hexdigest()[:16]
    return Path(root) / f"{spec.space}-{spec.index + 1}of{spec.count}-{keys}"


def render_on_worker(spec: ShardSpec, scratch_root: str) -> dict:
    """The Ray task: render into this node's scratch folder, return the files and the result."""
    scratch = _scratch(spec, scratch_root)
    scratch.mkdir(parents=True, exist_ok=True)
    output.atomic_write(scratch / "worker.pid", str(os.getpid()).encode())
    result = render_shard(spec, scratch)
    files = {}
    for point in spec.points:
        for name in point["cells"]:
            files[f"{name}.wav"] = (scratch / f"{name}.wav").read_bytes()
            files[f"{output.RECORDS.as_posix()}/{name}.json"] = \
                (scratch / output.RECORDS / f"{name}.json").read_bytes()
    return {"result": result, "files": files, "scratch": str(scratch)}


class RayBackend:
    def __init__(self, workflow):
        self.settings, self.device = workflow.ray, workflow.device

    def _connect(self):
        for name, value in LOOPBACK.items():  # read by Ray when it is imported
            os.environ.setdefault(name, value)
        try:
            import ray
        except ImportError:
            raise SoundspaceError("backend ray needs Ray: scripts/install ray (or pip install "
                                  "'soundspace[ray]')") from None
        if not ray.is_initialized():
            address = os.environ.get("SOUNDSPACE_RAY_ADDRESS") or self.settings.address
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": LOOPBACK})
                else:  # a local cluster for this run
                    ray.init(include_dashboard=False, log_to_driver=False,
                             _node_ip_address="127.0.0.1", runtime_env={"env_vars": LOOPBACK})
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise SoundspaceError(f"cannot join the Ray cluster at {address or 'a new local one'} "
                                      f"({error}); check ray.address ('auto', 'HOST:PORT', "
                                      "'ray://HOST:10001' or null for a local cluster)") from None
        return ray

    def run(self, tasks, progress):
        ray = self._connect()
        remote = ray.remote(render_on_worker).options(
            max_retries=self.settings.retries, retry_exceptions=False, num_cpus=1,
            num_gpus=1 if self.device.startswith("cuda") else 0)
        scratch_root = self.settings.scratch or str(Path(tempfile.gettempdir()) / "soundspace-ray")
        refs = {remote.remote(spec, scratch_root): i for i, (spec, _) in enumerate(tasks)}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                for ref in done:
                    i = refs.pop(ref)
                    spec, space_dir = tasks[i]
                    try:
                        reply = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        raise SoundspaceError(
                            f"shard {spec.index + 1}/{spec.count} of {spec.space} failed after "
                            f"{self.settings.retries} retries: {str(error).splitlines()[0]}. "
                            "Finished cells are kept: run the same command again") from None
                    merged = self._merge(reply, spec, Path(space_dir))
                    progress(merged * spec.decoded_samples)
                    yield i, reply["result"]
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise

    @staticmethod
    def _merge(reply: dict, spec: ShardSpec, space_dir: Path) -> int:
        incoming = Path(tempfile.mkdtemp(prefix=output.INCOMING, dir=space_dir / output.STATE))
        try:
            for name, data in reply["files"].items():
                target = inside(incoming, name, "file name from a Ray worker")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            merged, missing = merge_finished(incoming, spec, space_dir)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        if missing:
            raise SoundspaceError(f"shard {spec.index + 1}/{spec.count} of {spec.space}: the worker's "
                                  f"cells failed the check: {', '.join(missing[:5])}")
        shutil.rmtree(reply["scratch"], ignore_errors=True)  # same machine as the driver, or not there
        return merged

"""The Ray backend: every shard is a Ray task running the one shard runner, on a cluster users
already run (any cloud, Kubernetes, several machines) or on a local one.

Nothing but the Ray connection is shared with the workers. The model folder travels through
Ray's object store, put once per run; a node makes its copy once (`shards.model_on_node`, as a
Paperspace job unpacks its zip) in its scratch folder under the model's identity
(`<scratch>/models/<identity>`), and the shard runner checks that identity
before it decodes. Each task renders its shard into a scratch folder on its node, keyed by the
shard's cells, and returns the finished WAVs and records (each record names the node that made
it, `made_on`); the driver checks each cell and merges it into the store with the function every
remote backend uses (`backends.remote.receive`), and the task's scratch folder is removed
by the task once its files are in the reply.

`device: auto` becomes `cuda` when the cluster has GPUs, and then every task asks Ray for one
(Ray gives each task its own); `cuda` on a cluster without GPUs is refused before any task
starts. A task is a Ray generator: while it decodes it yields each snapshot its decode keeps
(`snapshots.py`), and the driver holds the last one of each batch. A task whose worker or node
dies is rerun by the driver up to `ray.retries` times, on any node, with those snapshots: it
resumes inside its sounds wherever it lands, no disk shared between nodes (each node keeps its
scratch files in its own folder); on the same node the rerun also finds the cells the first
attempt finished and makes only the rest. An exception inside a task is not rerun (it would fail
the same way). Either failure cancels
every other task of the run and ends it with one line; the cells merged before stay for a rerun
(a failed task's scratch folder stays too: a rerun on that node resumes from it).
Ray is an optional extra: `scripts/install ray` (pip install '.[ray]').
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import SoundspaceError, output, snapshots
from ..files import inside
from ..nsynth.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from ..shards import ShardSpec, model_on_node, render_shard
from .remote import receive
from .tasks import run_tasks


def _scratch_root(configured: str | None) -> Path:
    return Path(configured or Path(tempfile.gettempdir()) / "soundspace-ray")


def _scratch(spec: ShardSpec, root: Path) -> Path:
    keys = hashlib.sha256("".join(p["key"] for p in spec.points).encode()).hexdigest()[:16]
    return root / f"{spec.space}-{spec.index + 1}of{spec.count}-{keys}"


def render_on_worker(spec: ShardSpec, scratch_root: str | None, model_ref: list, resume: dict):
    """The Ray task, a generator: render into this node's scratch folder; yield each snapshot its
    decode keeps (`{"snapshot": key, "data": bytes}`), then the files and the result. `resume`:
    the last snapshot of each batch the driver received from an attempt that was lost. `model_ref`
    is a list so that Ray does not fetch the model for a node that has it."""
    import ray

    root = _scratch_root(scratch_root)

    def fetch(tmp: Path) -> None:  # only for a node without the model yet
        for name, data in ray.get(model_ref[0]).items():
            inside(tmp, name, "model file").write_bytes(data)

    folder = model_on_node(root / "models" / spec.model["identity"], fetch)
    spec.model = {**spec.model, "path": str(folder)}
    node = ray.util.get_node_ip_address()
    scratch = _scratch(spec, root / f"node-{node}")  # one node's files, whatever disks they share
    scratch.mkdir(parents=True, exist_ok=True)
    for key, data in resume.items():
        snapshots.restore(scratch, key, data)
    output.atomic_write(scratch / "worker.pid", str(os.getpid()).encode())
    found: queue.Queue = queue.Queue()

    def work() -> None:  # in a thread, so that this generator can yield while it decodes
        try:
            result = render_shard(
                spec,
                scratch,
                made_on=f"ray node {node}",
                kept=lambda key, batch: found.put(("snapshot", key, batch)),
            )
            found.put(("done", result, None))
        except BaseException as error:  # raised here in the task, as Ray reports it
            found.put(("error", error, None))

    threading.Thread(target=work, daemon=True).start()
    while True:
        kind, value, batch = found.get()
        if kind == "snapshot":
            data = snapshots.path(scratch, value).read_bytes()
            yield {"snapshot": value, "data": data, "batch": batch}
            continue
        if kind == "error":
            raise value
        result = value
        break
    del result["records"]  # the driver takes records only from the files it checks
    files = {}
    for point in spec.points:
        for name in point["cells"]:
            files[f"{name}.wav"] = (scratch / f"{name}.wav").read_bytes()
            files[f"{output.RECORDS.as_posix()}/{name}.json"] = (
                scratch / output.RECORDS / f"{name}.json"
            ).read_bytes()
    shutil.rmtree(scratch, ignore_errors=True)
    yield {"result": result, "files": files, "node": node}


def _model_files(folder) -> dict[str, bytes]:
    return {name: (Path(folder) / name).read_bytes() for name in (CONFIG_FILE, WEIGHTS_FILE)}


class RayBackend:
    def __init__(self, workflow):
        self.settings, self.device = workflow.ray, workflow.device

    def _connect(self):
        """Ray, joined to the configured cluster; True as second value when this call joined."""
        try:
            import ray
        except ImportError:
            raise SoundspaceError(
                "backend ray needs Ray: scripts/install ray (or pip install 'soundspace[ray]')"
            ) from None
        if ray.is_initialized():
            return ray, False
        address = os.environ.get("SOUNDSPACE_RAY_ADDRESS") or self.settings.address
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:  # a local cluster for this run
                ray.init(include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise SoundspaceError(
                f"cannot join the Ray cluster at {address or 'a new local one'} "
                f"({error}); check ray.address ('auto', 'HOST:PORT', "
                "'ray://HOST:10001' or null for a local cluster)"
            ) from None
        return ray, True

    def _device(self, ray) -> tuple[str, int]:
        """The device every task uses and the GPUs it asks Ray for."""
        gpus = ray.cluster_resources().get("GPU", 0)
        if self.device.startswith("cuda"):
            if not gpus:
                raise SoundspaceError(
                    f"device {self.device} asked for, but the Ray cluster has no "
                    "GPU; use device cpu or auto, or add GPU nodes"
                )
            return "cuda", 1  # the GPU Ray assigns to the task is its cuda:0
        if self.device == "auto" and gpus:
            return "cuda", 1
        return "cpu", 0

    def run(self, tasks, progress):
        ray, joined = self._connect()
        try:
            yield from self._run(ray, tasks, progress)
        finally:
            if joined:
                ray.shutdown()

    def _run(self, ray, tasks, progress):
        device, gpus = self._device(ray)
        models = {}  # identity -> [object ref of the model's files], put once per run
        for spec, _ in tasks:
            if spec.model["identity"] not in models:
                models[spec.model["identity"]] = [ray.put(_model_files(spec.model["path"]))]
        # The driver reruns a lost task itself (Ray would rerun it from its first step): the
        # rerun gets the last snapshot of each batch the lost attempt sent.
        remote = ray.remote(render_on_worker).options(
            num_returns="streaming",
            max_retries=0,
            retry_exceptions=False,
            num_cpus=1,
            num_gpus=gpus,
        )

        def submit(attempt: _Attempt) -> None:
            spec = tasks[attempt.task][0]
            attempt.stream = remote.remote(
                replace(spec, device=device),
                self.settings.scratch,
                models[spec.model["identity"]],
                dict(attempt.kept),
            )

        def start(i):
            attempt = _Attempt(i)
            submit(attempt)
            return attempt

        def wait(attempts):
            ready, _ = ray.wait([a.stream for a in attempts], num_returns=1, timeout=0.5)
            ended = []
            for attempt in attempts:
                if attempt.stream not in ready:
                    continue
                item = self._next(ray, attempt, tasks[attempt.task][0])
                if item is None:  # lost: submitted again from its snapshots
                    submit(attempt)
                elif "snapshot" in item:
                    attempt.kept[item["snapshot"]] = item["data"]
                    heard(tasks[attempt.task], item)
                    progress(0)  # nothing finished, but the manifest may be due to say how far
                else:
                    ended.append(
                        (attempt, lambda attempt=attempt, item=item: finish(attempt, item))
                    )
            return ended

        def finish(attempt, reply):
            spec, store = tasks[attempt.task]
            merged, records, missing = receive(
                reply["files"], spec, Path(store), f"Ray node {reply.get('node')}"
            )
            snapshots.remove_partial(Path(store), [n for n in records])  # now finished
            if missing:
                raise SoundspaceError(
                    f"shard {spec.index + 1}/{spec.count} of {spec.space}: the "
                    f"cells from Ray node {reply.get('node')} failed the check: "
                    f"{', '.join(missing[:5])}"
                )
            progress(merged * spec.decoded_samples)
            return {**reply["result"], "records": records}

        def cancel(attempts):
            for attempt in attempts:
                ray.cancel(attempt.stream, force=True)

        # Ray queues what its cluster cannot run yet: every task is started at once.
        yield from run_tasks(len(tasks), len(tasks), start, wait, cancel)

    def _next(self, ray, attempt: _Attempt, spec: ShardSpec) -> dict | None:
        """The task's next item, or None when its worker or node was lost and it may run again
        (at most `ray.retries` times); a failure inside the task is never rerun."""
        shard = f"shard {spec.index + 1}/{spec.count} of {spec.space}"
        keep = "Finished cells are kept: run the same command again"
        try:
            return ray.get(next(attempt.stream))
        except ray.exceptions.RayTaskError as error:  # raised inside the task
            cause = getattr(error, "cause", None) or str(error).splitlines()[0]
            raise SoundspaceError(f"{shard} failed on a Ray worker: {cause}. {keep}") from None
        except (ray.exceptions.RayError, StopIteration) as error:  # its worker or node was lost
            if attempt.reruns < self.settings.retries:
                attempt.reruns += 1
                return None
            raise SoundspaceError(
                f"{shard}: its Ray worker or node was lost, and the reruns (ray.retries = "
                f"{self.settings.retries}) did not complete it: "
                f"{(str(error) or type(error).__name__).splitlines()[0]}. {keep}"
            ) from None


def heard(task, item: dict) -> None:
    """A snapshot a task sent: its cells' audio so far into the store, to listen to while they
    are made (`snapshots.save_partial`). It comes from a worker: its batch must be points of the
    shard and its bytes the snapshot it says; otherwise only its audio is left out (the snapshot
    itself is checked again if a rerun uses it)."""
    spec, store = task
    batch = item.get("batch")
    if not (
        isinstance(item.get("snapshot"), str)
        and isinstance(item.get("data"), bytes)
        and isinstance(batch, list)
        and batch
        and all(type(i) is int and 0 <= i < len(spec.points) for i in batch)
        and len(set(batch)) == len(batch)
    ):
        return
    frames, hop = spec.embeddings.shape[1], spec.model["hop"]
    found = snapshots.parse(item["data"], item["snapshot"], len(batch), frames, hop)
    if not isinstance(found, str):
        snapshots.save_partial(Path(store), [spec.points[i]["cells"] for i in batch], found[1])


@dataclass(eq=False)  # a handle of the task loop: hashed by identity
class _Attempt:
    """A shard's Ray task: its current stream, the reruns it took, the last snapshot of each of
    its batches received so far (key -> bytes, what a rerun starts from)."""

    task: int
    stream: Any = None
    reruns: int = 0
    kept: dict = field(default_factory=dict)

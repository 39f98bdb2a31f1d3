"""The Paperspace backend: every shard becomes a Paperspace job running `soundspace render-shard`.

Paperspace retired this Jobs API on 15 July 2024 (its successor has no batch jobs), so the client
speaks the documented contract to whatever server `paperspace.api_url` (or
SOUNDSPACE_PAPERSPACE_URL) names: a compatible service, or the repository's stand-in
(`tests/servers/paperspace_standin.py`).

Per shard: zip a workspace (the shard spec of the points still missing), create a job (query
string parameters, the zip as multipart `file`, key in `x-api-key`), poll it with backoff, copy
its log into ours, then list, download, verify (every expected cell, the WAV's sha256, readable
audio of the right length) and merge its artifacts into the space. A job that ends Failed, Error
or Preempted is resubmitted up to `retries` times for the cells it did not finish; a job that
has not ended after `job_timeout_minutes` is stopped and fails its shard. The key comes only
from PAPERSPACE_API_KEY; what the client retries and how is in `client.py`. Every job is
named uniquely (space, shard, attempt, a random tag), which is how a job whose createJob answer
was lost is found again.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from ... import SoundspaceError, snapshots
from ...files import inside, parse_json
from ...shards import SHARD_MANIFEST, ShardSpec
from ...space import WORK_NAME
from ..remote import receive
from ..tasks import run_tasks
from .client import JobsClient

RETRIED = {"failed", "error", "preempted"}
TERMINAL = RETRIED | {"stopped", "cancelled"}
# The files of a job that belong to the space: cells (or a library's decodes) and their records.
CELL_FILE = re.compile(rf"^({WORK_NAME.pattern})\.wav$")
RECORD_FILE = re.compile(rf"^\.soundspace/cells/({WORK_NAME.pattern})\.json$")
SNAPSHOT_FILE = re.compile(r"^\.soundspace/snapshots/([0-9a-f]{64})\.snapshot$")
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a job id becomes part of URLs and log lines


class PaperspaceBackend:
    def __init__(self, workflow, log=None):
        settings = workflow.paperspace
        self.settings, self.parallel = settings, workflow.parallel_shards
        self.api_url = os.environ.get("SOUNDSPACE_PAPERSPACE_URL") or settings.api_url
        self.logs_url = os.environ.get("SOUNDSPACE_PAPERSPACE_LOGS_URL") or settings.logs_url
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.active: set = set()
        self.stopping = threading.Event()  # start no more jobs, and stop the jobs that run
        self.client: JobsClient | None = None

    @property
    def jobs(self) -> JobsClient:
        """The client, connected by `run`."""
        if self.client is None:
            raise SoundspaceError("the Paperspace backend is not connected (run connects it)")
        return self.client

    def _connect(self) -> JobsClient:
        key = os.environ.get("PAPERSPACE_API_KEY", "")
        if not key:
            raise SoundspaceError(
                "PAPERSPACE_API_KEY is not set: export your Paperspace API key "
                "(it is read from the environment only, never from a file)"
            )
        return JobsClient(
            self.api_url,
            self.logs_url,
            key,
            backoff=self.settings.backoff_seconds,
            max_wait=self.settings.max_wait_seconds,
        )

    def run(self, tasks, progress):
        self.client = self.client or self._connect()
        pool = ThreadPoolExecutor(max_workers=self.parallel)

        def start(i):
            spec, space_dir = tasks[i]
            return pool.submit(self._run_shard, spec, Path(space_dir), progress)

        def wait_any(futures):
            done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
            return [(future, future.result) for future in done]

        def cancel(_):  # the shards' threads see this, their jobs end Cancelled
            self.stopping.set()
            self._stop_all()

        try:
            yield from run_tasks(len(tasks), self.parallel, start, wait_any, cancel)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # their cells merged, as they end

    def _stop_all(self) -> None:
        for job_id in list(self.active):
            self._stop(job_id)

    def _stop(self, job_id: str) -> None:
        try:
            self.jobs.stop(job_id)
        except SoundspaceError as error:
            self.log(
                f"could not stop job {job_id}: {error}; stop it in the Paperspace console, "
                "it may still be running (and billed)"
            )
            return
        self.log(f"stopped job {job_id}")

    def _workspace(self, spec: ShardSpec, kept: dict) -> bytes:
        """The job's workspace: the shard spec, and the snapshots an earlier job of it left."""
        with tempfile.TemporaryDirectory() as tmp:
            spec.save(Path(tmp) / "shard")
            for key, data in kept.items():
                snapshots.restore(Path(tmp) / "shard", key, data)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted((Path(tmp) / "shard").rglob("*")):
                    if path.is_file():
                        archive.write(path, f"shard/{path.relative_to(Path(tmp) / 'shard')}")
        return buffer.getvalue()

    def _run_shard(self, spec: ShardSpec, space_dir: Path, progress) -> dict:
        label = f"shard {spec.index + 1}/{spec.count}"
        storage_model = getattr(self.settings.storage_models, spec.model.get("role", "real"))
        attempts, decoded = 0, 0
        spent: dict[str, float] = {}
        records: dict[str, dict] = {}
        kept: dict[str, bytes] = {}  # the last snapshot of each batch: a resubmission resumes it
        while True:
            if self.stopping.is_set():
                raise SoundspaceError(f"{label}: not started, the run is stopping")
            todo = spec.only(
                [
                    i
                    for i, point in enumerate(spec.points)
                    if any(name not in records for name in point["cells"])
                ]
            )
            if not todo.points:
                return {"seconds": spent, "decoded": decoded, "records": records}
            job = self.jobs.create_job(
                {
                    "name": f"soundspace-{spec.space}-{spec.index + 1}of{spec.count}-"
                    f"{attempts + 1}-{secrets.token_hex(4)}",
                    "container": self.settings.container,
                    "machineType": self.settings.machine_type,
                    "projectId": self.settings.project_id,
                    "command": (
                        f"soundspace render-shard shard --out /artifacts "
                        f"--model {storage_model} --device {spec.device}"
                    ),
                    "envVars": json.dumps({"SOUNDSPACE_SHARD": f"{spec.index + 1}/{spec.count}"}),
                    "isPreemptible": str(self.settings.preemptible).lower(),
                },
                self._workspace(todo, kept),
                "shard.zip",
            )
            job_id = job.get("id")
            if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
                raise SoundspaceError(
                    f"{label}: the server answered createJob with job id "
                    f"{str(job_id)[:40]!r}, which is not a job id; refusing it"
                )
            self.active.add(job_id)
            self.log(
                f"{label}: job {job_id} created ({len(todo.points)} point(s), "
                f"{self.settings.machine_type})"
            )
            try:
                job, tail = self._follow(job_id, label)
            finally:
                self.active.discard(job_id)
            state = str(job.get("state", "")).lower()
            merged, seconds = self._collect(
                job_id, todo, space_dir, records, kept, complete=state == "stopped"
            )
            decoded += merged
            for stage, value in seconds.items():
                spent[stage] = spent.get(stage, 0.0) + value
            progress(merged * spec.decoded_samples)
            if state == "stopped":
                continue  # the loop ends when nothing is pending (or resubmits what is missing)
            detail = f"exit code {job.get('exitCode')}" + (
                f", {job['jobError']}" if job.get("jobError") else ""
            )
            if state in RETRIED and attempts < self.settings.retries:
                attempts += 1
                self.log(
                    f"{label}: job {job_id} ended {job.get('state')} ({detail}); "
                    f"resubmitting ({attempts}/{self.settings.retries})"
                )
                continue
            excerpt = " | ".join(tail[-5:]) or "(no log)"
            raise SoundspaceError(
                self.jobs.scrub(
                    f"{label}: job {job_id} ended {job.get('state')} ({detail}) after "
                    f"{attempts + 1} attempt(s); last log lines: {excerpt}. Finished cells are "
                    "kept: run the same command again to make the rest"
                )
            )

    def _follow(self, job_id: str, label: str) -> tuple[dict, list]:
        """Poll the job (with backoff while it waits) and copy its log into ours until it ends,
        or stop it once `job_timeout_minutes` have passed."""
        line, tail, interval, stop_sent = 0, [], self.settings.poll_seconds, False
        ended = False  # the log's end marker, once seen, stays seen (it comes only once)
        deadline = time.monotonic() + 60 * self.settings.job_timeout_minutes
        while True:
            late = time.monotonic() > deadline
            if (self.stopping.is_set() or late) and not stop_sent:
                stop_sent = True  # Ctrl-C as the job was created, or the job took too long
                self._stop(job_id)
            if late and time.monotonic() > deadline + 60 * self.settings.job_timeout_minutes:
                # stopped (or asked to) as long ago as it was given, and it still runs
                raise SoundspaceError(
                    f"{label}: job {job_id} did not end within "
                    f"{self.settings.job_timeout_minutes:g} minutes "
                    "(paperspace.job_timeout_minutes), nor after it was stopped"
                )
            job = self.jobs.get_job(job_id)
            state = str(job.get("state", "")).lower()
            for row in self.jobs.logs(job_id, line):
                if isinstance(row.get("line"), int):
                    line = max(line, row["line"])
                message = str(row.get("message", ""))
                if message == "PSEOF":
                    ended = True
                    continue
                tail.append(message)
                self.log(self.jobs.scrub(f"[{label} {job_id}] {message}"))
            if state in TERMINAL and (ended or state != "stopped" or stop_sent):
                if late and not self.stopping.is_set():
                    tail.append(
                        f"(stopped by soundspace: not ended within "
                        f"{self.settings.job_timeout_minutes:g} minutes, "
                        "paperspace.job_timeout_minutes)"
                    )
                return job, tail[-20:]
            time.sleep(interval)
            interval = (
                min(interval * 1.5, 6 * self.settings.poll_seconds)
                if state == "pending"
                else self.settings.poll_seconds
            )

    def _collect(
        self,
        job_id: str,
        spec: ShardSpec,
        space_dir: Path,
        records: dict,
        kept: dict,
        complete: bool,
    ) -> tuple:
        """Download the job's artifacts, verify every cell and merge the good ones into the space,
        adding their records to `records`, and its snapshots to `kept` (checked where they are
        used). Returns the points merged and the job's seconds per stage (from its shard
        manifest); with `complete`, every cell of `spec` must be there."""
        found = {}
        for item in self.jobs.artifacts(job_id):
            name = str(item.get("file", ""))
            inside(space_dir, name, f"artifact of job {job_id}")
            snapshot = SNAPSHOT_FILE.match(name)
            if not (
                CELL_FILE.match(name)
                or name == SHARD_MANIFEST
                or RECORD_FILE.match(name)
                or snapshot
            ):
                continue  # something else the job wrote: not part of the space
            url = item.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise SoundspaceError(
                    f"artifact {name} of job {job_id} has no download link ({str(url)[:60]!r})"
                )
            found[name] = self.jobs.download(url)
            if snapshot:
                kept[snapshot.group(1)] = found.pop(name)
        try:
            seconds = parse_json(found.pop(SHARD_MANIFEST, b"{}")).get("seconds", {})
        except (ValueError, AttributeError):
            seconds = {}
        merged, got, missing = receive(found, spec, space_dir, f"job {job_id}")
        records.update(got)
        if complete and missing:
            raise SoundspaceError(
                f"job {job_id} ended Stopped but its artifacts lack or fail the check "
                f"for {len(missing)} cell(s): {', '.join(missing[:5])}"
            )
        return merged, seconds if isinstance(seconds, dict) else {}

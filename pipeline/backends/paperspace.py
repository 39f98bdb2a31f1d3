"""The Paperspace backend: every shard becomes a Paperspace job running `soundspace render-shard`.

Paperspace retired this Jobs API on 15 July 2024 (its successor has no batch jobs), so the client
speaks the documented contract to whatever server `paperspace.api_url` (or
SOUNDSPACE_PAPERSPACE_URL) names: a compatible service, or `soundspace paperspace-standin`.

Per shard: zip a workspace (the shard spec of the points still missing), create a job (query
string parameters, the zip as multipart `file`, key in `x-api-key`), poll it with backoff, copy
its log into ours, then list, download, verify (every expected cell, the WAV's sha256, readable
audio of the right length) and merge its artifacts into the space. A job that ends Failed, Error
or Preempted is resubmitted up to `retries` times for the cells it did not finish; 429 and 5xx
answers and dropped connections are retried with backoff; any other answer fails at once with
the server's message. The key comes only from PAPERSPACE_API_KEY and is scrubbed from every
message; artifact links are fetched without it (they are pre-signed and may live elsewhere).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import urlparse

from .. import SoundspaceError, output
from ..files import inside
from ..shards import SHARD_MANIFEST, ShardSpec, pending

OFFICIAL_API, OFFICIAL_LOGS = "https://api.paperspace.io", "https://logs.paperspace.io"
RETRIED = {"failed", "error", "preempted"}
TERMINAL = RETRIED | {"stopped", "cancelled"}
RETIRED = ("Paperspace retired its Jobs API on 15 July 2024 ({url} answered 404 Not Found). "
           "soundspace speaks that contract only to servers that still do: run `soundspace "
           "paperspace-standin` (or a compatible service) and point paperspace.api_url or "
           "SOUNDSPACE_PAPERSPACE_URL at it, or decode with backend local on a GPU machine")
CELL_FILE = re.compile(r"^x\d+_y\d+\.wav$")
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a job id becomes part of URLs and log lines


class JobsClient:
    """The Jobs API calls a pipeline needs, with retries for 429, 5xx and broken connections."""

    def __init__(self, api_url: str, logs_url: str | None, key: str, attempts: int = 6,
                 backoff: float = 1.0, sleep=time.sleep):
        import requests

        self.api_url = api_url.rstrip("/")
        official = self.api_url == OFFICIAL_API
        self.logs_url = (logs_url or (OFFICIAL_LOGS if official else self.api_url)).rstrip("/")
        self.key, self.attempts, self.backoff, self.sleep = key, attempts, backoff, sleep
        self.session = requests.Session()
        self.session.headers["x-api-key"] = key
        self.plain = requests.Session()  # artifact links: never sent the key

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    def _message(self, response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text.strip()[:300] or response.reason
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                return str(error.get("message") or error.get("name") or error)
            if error:
                return str(error)
            return str(body.get("message") or body)
        return str(body)[:300]

    def call(self, method: str, url: str, session=None, **kwargs):
        import requests

        session = session or self.session
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                response = session.request(method, url, timeout=120, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as error:
                if last:
                    raise SoundspaceError(self.scrub(f"cannot reach {urlparse(url).netloc} "
                                                     f"({type(error).__name__}) after {self.attempts} "
                                                     "tries")) from None
                self.sleep(min(30.0, self.backoff * 2 ** attempt))
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if last:
                    raise SoundspaceError(self.scrub(
                        f"{method} {urlparse(url).path}: the server answered {response.status_code} "
                        f"{self._message(response)} {self.attempts} times; try again later"))
                retry_after = response.headers.get("Retry-After", "")
                self.sleep(float(retry_after) if retry_after.isdigit()
                           else min(30.0, self.backoff * 2 ** attempt))
                continue
            if response.status_code == 404 and url.startswith((OFFICIAL_API, OFFICIAL_LOGS)):
                raise SoundspaceError(RETIRED.format(url=urlparse(url).netloc))
            if response.status_code >= 400:
                raise SoundspaceError(self.scrub(f"{method} {urlparse(url).path}: the server answered "
                                                 f"{response.status_code}: {self._message(response)}"))
            return response
        raise AssertionError("unreachable")

    def create_job(self, params: dict, workspace: bytes, workspace_name: str) -> dict:
        return self.call("POST", f"{self.api_url}/jobs/createJob",
                         params={**params, "workspaceFileName": workspace_name},
                         files={"file": (workspace_name, workspace, "application/zip")}).json()

    def get_job(self, job_id: str) -> dict:
        return self.call("GET", f"{self.api_url}/jobs/getJob", params={"jobId": job_id}).json()

    def logs(self, job_id: str, line: int) -> list:
        response = self.call("GET", f"{self.logs_url}/jobs/logs",
                             params={"jobId": job_id, "line": line, "limit": 1000})
        return [] if response.status_code == 204 or not response.content else response.json()

    def stop(self, job_id: str) -> None:
        self.call("POST", f"{self.api_url}/jobs/{job_id}/stop")

    def artifacts(self, job_id: str) -> list:
        return self.call("GET", f"{self.api_url}/jobs/artifactsList",
                         params={"jobId": job_id, "links": "true"}).json()

    def download(self, url: str) -> bytes:
        return self.call("GET", url, session=self.plain).content


class PaperspaceBackend:
    def __init__(self, workflow, log=None):
        settings = workflow.paperspace
        self.settings, self.parallel = settings, workflow.parallel_shards
        self.api_url = os.environ.get("SOUNDSPACE_PAPERSPACE_URL") or settings.api_url
        self.logs_url = os.environ.get("SOUNDSPACE_PAPERSPACE_LOGS_URL") or settings.logs_url
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.active: set = set()
        self.stopping = threading.Event()  # start no more jobs (a shard failed, or Ctrl-C)
        self.interrupted = threading.Event()  # Ctrl-C: stop the jobs that run, too
        self.client = None

    def _connect(self) -> JobsClient:
        key = os.environ.get("PAPERSPACE_API_KEY", "")
        if not key:
            raise SoundspaceError("PAPERSPACE_API_KEY is not set: export your Paperspace API key "
                                  "(it is read from the environment only, never from a file)")
        return JobsClient(self.api_url, self.logs_url, key, backoff=self.settings.backoff_seconds)

    def run(self, tasks, progress):
        self.client = self.client or self._connect()
        pool = ThreadPoolExecutor(max_workers=self.parallel)
        futures = {pool.submit(self._run_shard, spec, Path(space_dir), progress): i
                   for i, (spec, space_dir) in enumerate(tasks)}
        failure = None
        try:
            while futures:
                done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures.pop(future)
                    try:
                        result = future.result()
                    except SoundspaceError as error:
                        # Let running jobs finish (their cells are kept); start no more.
                        failure = failure or error
                        self.stopping.set()
                        continue
                    if failure is None:
                        yield index, result
        except BaseException:  # Ctrl-C, SIGTERM, or anything else: stop the jobs that run
            self.interrupted.set()
            self.stopping.set()
            self._stop_all()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            raise failure

    def _stop_all(self) -> None:
        for job_id in list(self.active):
            try:
                self.client.stop(job_id)
                self.log(f"stopped job {job_id}")
            except SoundspaceError as error:
                self.log(f"could not stop job {job_id}: {error}")

    def _workspace(self, spec: ShardSpec) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            spec.save(Path(tmp) / "shard")
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted((Path(tmp) / "shard").iterdir()):
                    archive.write(path, f"shard/{path.name}")
        return buffer.getvalue()

    def _run_shard(self, spec: ShardSpec, space_dir: Path, progress) -> dict:
        label = f"shard {spec.index + 1}/{spec.count}"
        storage_model = getattr(self.settings.storage_models, spec.model.get("role", "real"))
        attempts, decoded, spent = 0, 0, {}
        while True:
            if self.stopping.is_set():
                raise SoundspaceError(f"{label}: not started, the run is stopping")
            todo = spec.only(pending(spec, space_dir))
            if not todo.points:
                return {"seconds": spent, "decoded": decoded}
            job = self.client.create_job({
                "name": f"soundspace-{spec.space}-{spec.index + 1}of{spec.count}",
                "container": self.settings.container,
                "machineType": self.settings.machine_type,
                "projectId": self.settings.project_id,
                "command": (f"soundspace render-shard shard --out /artifacts "
                            f"--model {storage_model} --device {spec.device}"),
                "envVars": json.dumps({"SOUNDSPACE_SHARD": f"{spec.index + 1}/{spec.count}"}),
                "isPreemptible": str(self.settings.preemptible).lower(),
            }, self._workspace(todo), "shard.zip")
            job_id = job.get("id") if isinstance(job, dict) else None
            if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
                raise SoundspaceError(f"{label}: the server answered createJob with job id "
                                      f"{str(job_id)[:40]!r}, which is not a job id; refusing it")
            self.active.add(job_id)
            self.log(f"{label}: job {job_id} created ({len(todo.points)} point(s), "
                     f"{self.settings.machine_type})")
            try:
                job, tail = self._follow(job_id, label)
            finally:
                self.active.discard(job_id)
            state = str(job.get("state", "")).lower()
            merged, seconds = self._collect(job_id, todo, space_dir, complete=state == "stopped")
            decoded += merged
            for stage, value in seconds.items():
                spent[stage] = spent.get(stage, 0.0) + value
            progress(merged * spec.decoded_samples)
            if state == "stopped":
                continue  # the loop ends when nothing is pending (or resubmits what is missing)
            detail = f"exit code {job.get('exitCode')}" + (f", {job['jobError']}" if job.get("jobError") else "")
            if state in RETRIED and attempts < self.settings.retries:
                attempts += 1
                self.log(f"{label}: job {job_id} ended {job.get('state')} ({detail}); "
                         f"resubmitting ({attempts}/{self.settings.retries})")
                continue
            excerpt = " | ".join(tail[-5:]) or "(no log)"
            raise SoundspaceError(self.client.scrub(
                f"{label}: job {job_id} ended {job.get('state')} ({detail}) after {attempts + 1} "
                f"attempt(s); last log lines: {excerpt}. Finished cells are kept: run the same "
                "command again to make the rest"))

    def _follow(self, job_id: str, label: str) -> tuple[dict, list]:
        """Poll the job (with backoff while it waits) and copy its log into ours until it ends."""
        line, tail, interval, stop_sent = 0, [], self.settings.poll_seconds, False
        ended = False  # the log's end marker, once seen, stays seen (it comes only once)
        while True:
            if self.interrupted.is_set() and not stop_sent:  # created just as Ctrl-C came
                stop_sent = True
                try:
                    self.client.stop(job_id)
                except SoundspaceError:
                    pass
            job = self.client.get_job(job_id)
            state = str(job.get("state", "")).lower()
            for row in self.client.logs(job_id, line):
                line = max(line, int(row.get("line", line)))
                message = str(row.get("message", ""))
                if message == "PSEOF":
                    ended = True
                    continue
                tail.append(message)
                self.log(self.client.scrub(f"[{label} {job_id}] {message}"))
            if state in TERMINAL and (ended or state != "stopped" or stop_sent):
                return job, tail[-20:]
            time.sleep(interval)
            interval = min(interval * 1.5, 6 * self.settings.poll_seconds) if state == "pending" \
                else self.settings.poll_seconds

    def _collect(self, job_id: str, spec: ShardSpec, space_dir: Path, complete: bool) -> tuple:
        """Download the job's artifacts, verify every cell and merge the good ones into the space.
        Returns the points merged and the job's seconds per stage (from its shard manifest);
        with `complete`, every cell of `spec` must be there."""
        listing = self.client.artifacts(job_id)
        incoming = Path(tempfile.mkdtemp(prefix=output.INCOMING, dir=space_dir / output.STATE))
        try:
            for item in listing:
                name = str(item.get("file", ""))
                target = inside(incoming, name, f"artifact of job {job_id}")
                if not (CELL_FILE.match(name) or name == SHARD_MANIFEST
                        or re.match(r"^\.soundspace/cells/x\d+_y\d+\.json$", name)):
                    continue  # something else the job wrote: not part of the space
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.client.download(item["url"]))
            merged, missing = output.merge_finished(incoming, spec, space_dir)
            try:
                seconds = json.loads((incoming / SHARD_MANIFEST).read_text()).get("seconds", {})
            except (OSError, ValueError, AttributeError):
                seconds = {}
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        if complete and missing:
            raise SoundspaceError(f"job {job_id} ended Stopped but its artifacts lack or fail the check "
                                  f"for {len(missing)} cell(s): {', '.join(missing[:5])}")
        return merged, seconds if isinstance(seconds, dict) else {}

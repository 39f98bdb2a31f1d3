#!/usr/bin/env python3
"""A stand-in for Paperspace's retired Jobs API, on 127.0.0.1: a test server for the suite, and
for anyone who wants the Paperspace workflow on their own machines. As a program:

    python tests/servers/paperspace_standin.py --storage DIR [--port 8889] [--workdir DIR]
        [--docker auto|always|never] [--faults JSON] [--request-log FILE]

(docker-compose's `paperspace-standin` service, profile `standin`, runs it this way.)

It speaks the contract the client uses (createJob with query parameters and a multipart zip,
getJob, getJobs, logs with `line`/`limit` and a final PSEOF row, stop, destroy, artifactsList with
links, machine types) and runs each job's command in the job's container when Docker has that
image, else as a local process, with `/paperspace` (the unpacked workspace, the working
directory), `/artifacts` and `/storage` mapped to folders. Because it runs commands, it
answers only requests with its key (given, or made at start-up and printed) and runs only
`soundspace render-shard` commands; a job in Docker runs in a container named after the job,
which stopping the job kills. Faults can be injected: answers 429 or
500, jobs that fail, are preempted or start slowly, an artifact named `../x`, a hostile job id,
a createJob whose answer is lost after the job was created, stops that fail. Every request is
logged (method, path, query, multipart upload, whether a key was sent: never the key itself).
"""
from __future__ import annotations

import argparse
import email.parser
import email.policy
import io
import itertools
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

if __name__ == "__main__":  # run as a program from a checkout: its own package first
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline import SoundspaceError  # noqa: E402
from pipeline.files import inside  # noqa: E402

MACHINE_TYPES = [{"region": "local", "cluster": "standin", "machineType": m, "isBusy": False}
                 for m in ("C5", "P4000", "A4000")]


@dataclass
class Faults:
    http_429: int = 0  # the next N API requests answer 429
    http_500: int = 0  # then the next N answer 500
    fail: int = 0  # N jobs exit 1 without running their command ...
    fail_after_jobs: int = 0  # ... once this many jobs have started normally
    preempt: int = 0  # the next N jobs are preempted once they have finished one cell
    preempt_mid_sound: int = 0  # the next N jobs are preempted once a decode kept a snapshot
    slow_seconds: float = 0.0  # every job waits this long in Pending
    bad_artifact: bool = False  # artifact lists also name a file "../x"
    bad_job_id: bool = False  # createJob answers the job id "../.." (a hostile server)
    lost_create: int = 0  # the next N createJob requests create the job, then answer 502
    stop_fails: int = 0  # the next N stop requests answer 500 and stop nothing


@dataclass
class Job:
    id: str
    params: dict
    folder: Path
    state: str = "Pending"
    exit_code: int | None = None
    error: str | None = None
    created: str = field(default_factory=lambda: _now())
    started: str | None = None
    finished: str | None = None
    logs: list = field(default_factory=list)
    process: subprocess.Popen | None = None
    container_name: str | None = None  # set when the job runs in a Docker container
    stop_requested: bool = False

    def kill(self) -> None:
        """End the job's command: its container (killing `docker run` alone would leave the
        container running), then the process that runs it."""
        if self.container_name:
            subprocess.run(["docker", "kill", self.container_name], capture_output=True, timeout=60)
        if self.process and self.process.poll() is None:
            self.process.kill()

    def view(self) -> dict:
        """Every field of the documented job object (clients read any of them: the official
        `paperspace` 0.1.1 prints `cluster` and `codeCommit` as soon as a job is created)."""
        params = self.params
        return {"id": self.id, "name": params.get("name"), "state": self.state,
                "workspaceUrl": params.get("workspaceFileName"), "workingDirectory": "/paperspace",
                "artifactsDirectory": "/artifacts", "entrypoint": params.get("command"),
                "projectId": params.get("projectId") or params.get("project"),
                "project": params.get("project") or params.get("projectId"),
                "container": params.get("container"), "machineType": params.get("machineType"),
                "cluster": "standin", "usageRate": f"{params.get('machineType')} hourly",
                "startedByUserId": "ustandin", "parentJobId": None, "jobError": self.error,
                "dtCreated": self.created, "dtModified": self.finished or self.started or self.created,
                "dtProvisioningStarted": self.started, "dtProvisioningFinished": self.started,
                "dtStarted": self.started, "dtFinished": self.finished,
                "dtTeardownStarted": self.finished, "dtTeardownFinished": self.finished,
                "dtDeleted": None, "exitCode": self.exit_code, "codeCommit": params.get("codeCommit"),
                "isPreemptible": params.get("isPreemptible") == "true"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StandIn:
    def __init__(self, storage, workdir, port: int = 0, docker: str = "auto",
                 faults: Faults | None = None, key: str | None = None, request_log=None):
        self.storage, self.workdir = Path(storage).resolve(), Path(workdir).resolve()
        # Every API request must carry this key (a fresh one unless given): the server runs
        # commands, so nobody else on the machine may submit jobs to it.
        self.docker, self.faults = docker, faults or Faults()
        self.key = key or secrets.token_urlsafe(24)
        self.request_log_path = Path(request_log) if request_log else None
        self.requests: list = []
        self.jobs: dict = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.started_jobs = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def start(self) -> "StandIn":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        for job in list(self.jobs.values()):
            job.kill()
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- jobs ------------------------------------------------------------------------------
    def create(self, params: dict, workspace: bytes | None) -> Job:
        with self.lock:
            job_id = f"js{next(self.ids):06d}"
        folder = self.workdir / "jobs" / job_id
        (folder / "paperspace").mkdir(parents=True)
        (folder / "artifacts").mkdir()
        if workspace:
            with zipfile.ZipFile(io.BytesIO(workspace)) as archive:
                root = folder / "paperspace"
                for name in archive.namelist():
                    try:  # a folder entry ends with "/"
                        inside(root, name.removesuffix("/"), "workspace entry")
                    except SoundspaceError as error:
                        raise ValueError(str(error)) from None
                archive.extractall(root)
        job = Job(job_id, params, folder)
        self.jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return job

    def _log(self, job: Job, message: str) -> None:
        with self.lock:
            job.logs.append({"line": len(job.logs) + 1, "message": message})

    def _command(self, job: Job) -> list:
        """The job's command as this machine runs it: in its container, or as a local process
        with the container paths mapped to the job's folders."""
        mapping = {"/paperspace": job.folder / "paperspace", "/artifacts": job.folder / "artifacts",
                   "/storage": self.storage}
        command = job.params.get("command", "")
        image = job.params.get("container", "")
        use_docker = self.docker == "always" or (self.docker == "auto" and shutil.which("docker")
                                                 and subprocess.run(["docker", "image", "inspect", image],
                                                                    capture_output=True).returncode == 0)
        envs = json.loads(job.params.get("envVars") or "{}")
        if use_docker:
            job.container_name = f"soundspace-standin-{job.id}-{secrets.token_hex(4)}"
            volumes = [x for path, host in mapping.items() for x in ("-v", f"{host}:{path}")]
            env = [x for k, v in {**envs, "PS_JOB_RUNNER": "true"}.items() for x in ("-e", f"{k}={v}")]
            return ["docker", "run", "--rm", "--name", job.container_name, "--network", "none", "--user", f"{os.getuid()}:{os.getgid()}",
                    *volumes, *env, "-w", "/paperspace", "--entrypoint", "sh", image, "-c", command]
        tokens = []
        for token in shlex.split(command):
            for path, host in mapping.items():
                if token == path or token.startswith(path + "/"):
                    token = str(host) + token[len(path):]
            tokens.append(token)
        if tokens and tokens[0] == "soundspace":
            tokens = [sys.executable, "-m", "pipeline.cli", *tokens[1:]]
        return tokens

    def _run(self, job: Job) -> None:
        time.sleep(self.faults.slow_seconds)
        if job.stop_requested:
            return
        job.state, job.started = "Running", _now()
        with self.lock:
            self.started_jobs += 1
            fail = self.faults.fail > 0 and self.started_jobs > self.faults.fail_after_jobs
            preempt = not fail and self.faults.preempt > 0
            mid_sound = not fail and not preempt and self.faults.preempt_mid_sound > 0
            self.faults.fail -= fail
            self.faults.preempt -= preempt
            self.faults.preempt_mid_sound -= mid_sound
        if fail:
            self._log(job, "injected failure: the job's machine could not run the command")
            job.state, job.exit_code, job.finished = "Failed", 1, _now()
            self._log(job, "PSEOF")
            return
        envs = json.loads(job.params.get("envVars") or "{}")
        env = {**os.environ, **{k: str(v) for k, v in envs.items()}, "PS_JOB_RUNNER": "true"}
        try:
            job.process = subprocess.Popen(self._command(job), cwd=job.folder / "paperspace", env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as error:
            job.state, job.error, job.finished = "Error", f"cannot start the command: {error}", _now()
            self._log(job, "PSEOF")
            return
        if preempt or mid_sound:
            made = ".soundspace/cells/*.json" if preempt else ".soundspace/snapshots/*.snapshot"
            threading.Thread(target=self._preempt_once, args=(job, made), daemon=True).start()
        for line in job.process.stdout:
            self._log(job, line.rstrip("\n"))
        code = job.process.wait()
        job.finished = _now()
        if job.state == "Preempted" or job.stop_requested:
            job.state = "Preempted" if job.state == "Preempted" else "Cancelled"
        elif code == 0:
            job.state, job.exit_code = "Stopped", 0
        else:
            job.state, job.exit_code = "Failed", code
        self._log(job, "PSEOF")

    def _preempt_once(self, job: Job, made: str) -> None:
        """Reclaim the job's machine once its artifacts hold a file matching `made`."""
        artifacts = job.folder / "artifacts"
        while job.process.poll() is None and not list(artifacts.glob(made)):
            time.sleep(0.01)
        if job.process.poll() is None:
            job.state = "Preempted"
            self._log(job, "injected preemption: the machine was reclaimed")
            job.kill()

    def artifacts(self, job: Job, base: str) -> list:
        root = job.folder / "artifacts"
        files = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".tmp")]
        listing = [{"file": p.relative_to(root).as_posix(), "size": p.stat().st_size,
                    "url": f"{base}/artifacts/{job.id}/{p.relative_to(root).as_posix()}"} for p in files]
        if self.faults.bad_artifact:
            listing.append({"file": "../x", "size": 1, "url": f"{base}/artifacts/{job.id}/x"})
        return listing

    # --- HTTP --------------------------------------------------------------------------------
    def _record(self, handler, query: dict, upload: dict | None) -> None:
        key = handler.headers.get("x-api-key")
        entry = {"method": handler.command, "path": urlparse(handler.path).path, "query": query,
                 "x-api-key": f"sent ({len(key)} characters)" if key else "missing",
                 "multipart": upload}
        self.requests.append(entry)
        if self.request_log_path:
            with open(self.request_log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body=None):
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str):
                self._send(status, {"error": {"name": "Error", "status": status, "message": message}})

            def _multipart(self, body: bytes) -> dict:
                header = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
                parts = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    parts[name] = (part.get_filename(), part.get_payload(decode=True))
                return parts

            def do_GET(self):
                self._dispatch()

            def do_POST(self):
                self._dispatch()

            def _dispatch(self):
                url = urlparse(self.path)
                path = url.path.rstrip("/") or "/"
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upload, parts = None, {}
                if self.command == "POST" and "multipart/form-data" in (self.headers.get("Content-Type") or ""):
                    parts = self._multipart(body)
                    if "file" in parts:
                        upload = {"field": "file", "filename": parts["file"][0], "bytes": len(parts["file"][1])}
                standin._record(self, query, upload)
                if path.startswith("/artifacts/"):  # a pre-signed link: no key needed
                    return self._artifact(path)
                key = self.headers.get("x-api-key") or ""
                if not secrets.compare_digest(key.encode(), standin.key.encode()):
                    return self._send(400, {"status": 400, "message": "Invalid API token"})
                with standin.lock:
                    if standin.faults.http_429 > 0:
                        standin.faults.http_429 -= 1
                        return self._error(429, "Too many requests")
                    if standin.faults.http_500 > 0:
                        standin.faults.http_500 -= 1
                        return self._error(500, "Internal server error")
                if path == "/jobs/createJob" and self.command == "POST":
                    return self._create(query, parts)
                if path == "/jobs/getJobs":
                    jobs = [j.view() for j in standin.jobs.values()]
                    jobs = [j for j in jobs if all(str(j.get(k)) == v for k, v in query.items()
                                                   if k in ("projectId", "name", "state"))]
                    return self._send(200, jobs)
                if path == "/jobs/getClusterAvailableMachineTypes":
                    return self._send(200, MACHINE_TYPES)
                parts = path.split("/")
                job_id = query.get("jobId") or (parts[2] if len(parts) == 4 else None)
                job = standin.jobs.get(job_id or "")
                if job is None:
                    return self._error(404, f"Job not found: {job_id}")
                if path == "/jobs/getJob":
                    return self._send(200, job.view())
                if path == "/jobs/logs":
                    line, limit = int(query.get("line", 0)), int(query.get("limit", 1000))
                    rows = [r for r in job.logs if r["line"] > line][:limit]
                    return self._send(200, rows) if rows else self._send(204)
                if path == "/jobs/artifactsList":
                    return self._send(200, standin.artifacts(job, standin.url))
                if path == f"/jobs/{job.id}/stop" and self.command == "POST":
                    with standin.lock:
                        if standin.faults.stop_fails > 0:
                            standin.faults.stop_fails -= 1
                            return self._error(500, "Internal server error")
                    job.stop_requested = True
                    if job.process and job.process.poll() is None:
                        job.kill()
                    elif job.process is None and job.state == "Pending":
                        job.state, job.finished = "Cancelled", _now()
                        standin._log(job, "PSEOF")
                    return self._send(204)
                if path == f"/jobs/{job.id}/destroy" and self.command == "POST":
                    standin.jobs.pop(job.id, None)
                    shutil.rmtree(job.folder, ignore_errors=True)
                    return self._send(204)
                return self._error(404, f"no such endpoint: {self.command} {path}")

            def _create(self, query: dict, parts: dict):
                missing = [k for k in ("container", "machineType", "command") if not query.get(k)]
                if missing:
                    return self._error(422, f"missing required parameter(s): {', '.join(missing)}")
                try:
                    command = shlex.split(query["command"])
                except ValueError as error:
                    return self._error(422, f"command: {error}")
                if command[:2] != ["soundspace", "render-shard"]:
                    return self._error(422, "this stand-in runs only `soundspace render-shard ...` "
                                            f"commands, not {query['command'][:60]!r}")
                if query.get("project") and query.get("projectId"):
                    return self._error(422, "give project or projectId, not both")
                if not (query.get("project") or query.get("projectId")):
                    return self._error(404, "Project not found")
                filename, workspace = parts.get("file", (None, None))
                if workspace is not None and len(workspace) > 512 * 2**20:
                    return self._error(422, "workspace larger than 512 MiB")
                try:
                    job = standin.create(query, workspace)
                except (ValueError, zipfile.BadZipFile) as error:
                    return self._error(422, f"bad workspace {filename}: {error}")
                with standin.lock:
                    if standin.faults.lost_create > 0:  # created, but the answer is lost
                        standin.faults.lost_create -= 1
                        return self._error(502, "Bad gateway")
                return self._send(200, {**job.view(), **({"id": "../.."} if standin.faults.bad_job_id
                                                         else {})})

            def _artifact(self, path: str):
                _, _, job_id, *rest = path.split("/")
                job = standin.jobs.get(job_id)
                try:
                    target = inside(job.folder / "artifacts", "/".join(rest), "artifact") if job else None
                except SoundspaceError:
                    target = None
                if target is None or not target.is_file():
                    return self._error(404, "no such artifact")
                data = target.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paperspace_standin.py",
        description="serve Paperspace's (retired) Jobs API on 127.0.0.1, running jobs here")
    parser.add_argument("--port", type=int, default=8889)
    parser.add_argument("--storage", required=True, help="folder that jobs see as /storage")
    parser.add_argument("--workdir", help="where jobs' workspaces and artifacts live (default: a temp folder)")
    parser.add_argument("--docker", default="auto", choices=("auto", "always", "never"),
                        help="run jobs in their container (auto: when Docker has the image)")
    parser.add_argument("--faults", help='JSON, e.g. {"preempt": 1, "fail": 0, "http_429": 2, '
                                         '"http_500": 0, "slow_seconds": 0, "bad_artifact": false}')
    parser.add_argument("--request-log", help="append every request (never the key) to this file as JSON lines")
    return parser


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated


def serve(args) -> None:
    storage = Path(args.storage)
    if not storage.is_dir():
        raise SoundspaceError(f"--storage {storage} is not a folder (it plays the team's /storage)")
    try:
        faults = Faults(**json.loads(args.faults)) if args.faults else Faults()
    except (ValueError, TypeError) as error:
        raise SoundspaceError(f"--faults: {error}; e.g. '{{\"preempt\": 1, \"http_429\": 2}}'") from None
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="standin-"))
    try:
        server = StandIn(storage, workdir, port=args.port, docker=args.docker, faults=faults,
                         key=os.environ.get("PAPERSPACE_API_KEY") or None,
                         request_log=args.request_log)
    except OSError as error:
        raise SoundspaceError(f"cannot listen on 127.0.0.1:{args.port} ({error})") from None
    key = ("the one in PAPERSPACE_API_KEY" if os.environ.get("PAPERSPACE_API_KEY")
           else f"{server.key} (export PAPERSPACE_API_KEY={server.key} for the client)")
    print(f"Paperspace Jobs API stand-in on {server.url} (storage {storage}, jobs in {workdir}); "
          f"API key: {key}; Ctrl-C stops it", flush=True)
    try:
        server.httpd.serve_forever()
    finally:
        server.close()


def main(argv=None) -> int:
    """Serve until Ctrl-C or SIGTERM (`docker-compose down`: it runs as the container's first
    process, which gets no default signal handling), stopping the running jobs first."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        serve(args)
    except SoundspaceError as error:
        print(f"paperspace-standin: error: {error}", file=sys.stderr)
        return 2
    except _Terminated:
        print("paperspace-standin: stopped by SIGTERM", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("paperspace-standin: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

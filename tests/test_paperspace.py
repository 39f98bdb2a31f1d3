"""The Paperspace backend against the stand-in server (a real HTTP server on 127.0.0.1 running
each job's `soundspace render-shard` as a local process): the space equals the local backend's,
faults are absorbed or reported, artifacts are checked, and the key never leaks."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipeline import SoundspaceError
from pipeline.backends.paperspace import client as jobs_api
from pipeline.cli import main
from pipeline.nsynth import NSynth
from .pipeline_helpers import generate_space
from pipeline.output import cell_key
from pipeline.shards import SHARD_MANIFEST, ShardSpec, locate_model, render_shard_folder

from .conftest import DEMO_MODEL
from .pipeline_helpers import TEST_DATASET, dataset, workflow
from .servers.paperspace_standin import StandIn
from .test_pipeline import wavs

KEY = "ps-test-key-0123456789abcdef"


@pytest.fixture
def standin(tmp_path, monkeypatch):
    storage = tmp_path / "storage"
    shutil.copytree(DEMO_MODEL, storage / "soundspace" / "demo")
    server = StandIn(storage, tmp_path / "jobs", docker="never", key=KEY).start()
    monkeypatch.setenv("PAPERSPACE_API_KEY", KEY)
    monkeypatch.delenv("SOUNDSPACE_PAPERSPACE_URL", raising=False)
    yield server
    server.close()


def paperspace_workflow(folder, server, **fields):
    settings = {"api_url": server.url, "project_id": "prtest", "machine_type": "C5",
                "container": "soundspace:cpu", "poll_seconds": 0.05, "backoff_seconds": 0.01,
                "storage_models": {"real": "/storage/soundspace/demo", "test": "/storage/soundspace/demo"},
                **fields.pop("paperspace", {})}
    return workflow(folder, backend="paperspace", device="cpu", paperspace=settings, **fields)


def quiet(_):
    pass


def test_test_space_on_the_standin_equals_the_local_one(tmp_path, standin, capsys, local_test_space):
    local = local_test_space  # made once per session (conftest.py)
    flow = paperspace_workflow(tmp_path / "ps", standin)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(TEST_DATASET)]) == 0
    printed = capsys.readouterr()
    space_dir = tmp_path / "ps" / "out" / "demo-test-space"
    assert wavs(space_dir) == wavs(local.space_dir)  # cell for cell, byte for byte
    manifest = (space_dir / "manifest.json").read_text()
    assert json.loads(manifest)["status"] == "complete"

    creates = [r for r in standin.requests if r["path"] == "/jobs/createJob"]
    assert len(creates) == 1
    query = creates[0]["query"]
    assert query["container"] == "soundspace:cpu" and query["machineType"] == "C5"
    assert query["projectId"] == "prtest" and query["workspaceFileName"] == "shard.zip"
    assert query["command"].startswith("soundspace render-shard shard --out /artifacts --model "
                                       "/storage/soundspace/demo")
    assert json.loads(query["envVars"]) == {"SOUNDSPACE_SHARD": "1/1"}
    assert creates[0]["multipart"]["field"] == "file" and creates[0]["multipart"]["bytes"] > 1000
    assert all(r["x-api-key"] == f"sent ({len(KEY)} characters)" for r in standin.requests
               if not r["path"].startswith("/artifacts/"))
    assert any(r["path"] == "/jobs/logs" for r in standin.requests)
    assert all(r["x-api-key"] == "missing" for r in standin.requests if r["path"].startswith("/artifacts/"))
    assert "render-shard" not in printed.out and "shard 1/1" in printed.err  # the job's log, copied
    everything = printed.out + printed.err + manifest + json.dumps(standin.requests)
    everything += "".join(p.read_text() for p in space_dir.rglob("*.json"))
    assert KEY not in everything


def test_a_library_on_the_standin_equals_the_local_one(tmp_path, standin, local_small_library):
    """A library's decodes travel in jobs like a space's cells (one job per pitch here)."""
    from .test_library import small_library

    data = small_library(tmp_path / "data")
    local = local_small_library  # the same library made once per session (conftest.py)
    remote = generate_space(data, paperspace_workflow(tmp_path / "ps", standin), progress=False,
                            log=quiet)
    assert remote.decoded == local.decoded == 26 and remote.shards == 2
    assert len([r for r in standin.requests if r["path"] == "/jobs/createJob"]) == 2

    def pad_files(library_dir):
        return {str(p.relative_to(library_dir)): p.read_bytes()
                for p in sorted(library_dir.glob("*/p*/*.wav"))}

    assert len(pad_files(local.space_dir)) == 36
    assert pad_files(remote.space_dir) == pad_files(local.space_dir)


def test_several_jobs_and_a_preempted_one_resubmitted(tmp_path, standin):
    standin.faults.preempt = 1
    flow = paperspace_workflow(tmp_path, standin, shard_size=3, parallel_shards=3, decode_batch=1)
    result = generate_space(dataset(tmp_path / "d", length=0.3), flow, progress=False, log=quiet)
    assert result.decoded == 9 and len(wavs(result.space_dir)) == 9
    states = [j.state for j in standin.jobs.values()]
    assert states.count("Preempted") == 1 and states.count("Stopped") == 3
    sizes = sorted(r["multipart"]["bytes"] for r in standin.requests if r["path"] == "/jobs/createJob")
    assert len(sizes) == 4 and sizes[0] < sizes[-1]  # the resubmission carries only what was missing


def test_a_job_preempted_mid_sound_is_resubmitted_with_its_snapshot(tmp_path, standin):
    """Issue 30: the machine is reclaimed (the job's process killed) once its decode has kept a
    snapshot in /artifacts; the backend downloads it with the job's artifacts, sends it in the
    resubmitted job's workspace, and that job resumes inside the sounds: its cells' records
    say the step they began at, and every WAV equals a local run's."""
    standin.faults.preempt_mid_sound = 1
    data = dataset(tmp_path / "d", length=1.0, resolution=2)
    flow = paperspace_workflow(tmp_path / "ps", standin, decode_batch=4, snapshot_seconds=0.05)
    result = generate_space(data, flow, progress=False, log=quiet)
    states = [j.state for j in standin.jobs.values()]
    assert states == ["Preempted", "Stopped"]
    records = [json.loads(p.read_text())
               for p in (result.space_dir / ".soundspace" / "cells").glob("*.json")]
    assert len(records) == 4 and all(r["first_step"] > 0 for r in records)
    local = generate_space(data, workflow(tmp_path / "local", decode_batch=4), progress=False,
                           log=quiet)
    assert wavs(result.space_dir) == wavs(local.space_dir)


def test_429_and_500_bursts_are_absorbed(tmp_path, standin):
    standin.faults.http_429, standin.faults.http_500 = 3, 2
    flow = paperspace_workflow(tmp_path, standin)
    result = generate_space(dataset(tmp_path / "d", length=0.1), flow, progress=False, log=quiet)
    assert result.decoded == 9
    assert standin.faults.http_429 == 0 and standin.faults.http_500 == 0


def test_a_job_that_keeps_failing_ends_the_run_and_keeps_finished_cells(tmp_path, standin, capsys):
    standin.faults.fail, standin.faults.fail_after_jobs = 100, 1
    flow = paperspace_workflow(tmp_path, standin, shard_size=3, paperspace={"retries": 1})
    data = dataset(tmp_path / "d", length=0.1)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
    err = capsys.readouterr().err
    assert "shard 2/3: job" in err and "ended Failed (exit code 1) after 2 attempt(s)" in err
    assert "injected failure" in err and "run the same command again" in err
    space_dir = tmp_path / "out" / "space"
    assert len(wavs(space_dir)) == 3  # shard 1's cells stay
    standin.faults.fail = 0
    assert generate_space(data, flow, progress=False, log=quiet).decoded == 6


def test_an_artifact_named_dotdot_is_refused(tmp_path, standin):
    standin.faults.bad_artifact = True
    flow = paperspace_workflow(tmp_path, standin)
    with pytest.raises(SoundspaceError, match=r"refusing artifact of job \w+ '\.\./x': it must stay inside"):
        generate_space(dataset(tmp_path / "d", length=0.1), flow, progress=False, log=quiet)
    assert not (tmp_path / "out" / "x").exists() and not (tmp_path / "x").exists()


def test_a_job_id_that_is_a_path_is_refused(tmp_path, standin):
    """Issue 13 item 1: a job id from the server names folders and URLs; `../..` must not."""
    standin.faults.bad_job_id = True
    flow = paperspace_workflow(tmp_path, standin)
    with pytest.raises(SoundspaceError, match=r"job id '\.\./\.\.', which is not a job id"):
        generate_space(dataset(tmp_path / "d", length=0.1), flow, progress=False, log=quiet)
    assert (tmp_path / "out" / "space" / ".soundspace" / "lock").is_file()  # nothing deleted


def test_no_key_no_run(tmp_path, standin, monkeypatch, capsys):
    monkeypatch.delenv("PAPERSPACE_API_KEY")
    flow = paperspace_workflow(tmp_path, standin)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(dataset(tmp_path / "d"))]) == 2
    assert "PAPERSPACE_API_KEY is not set" in capsys.readouterr().err
    assert not standin.requests


def test_server_messages_and_the_retired_endpoint(standin, monkeypatch):
    client = jobs_api.JobsClient(standin.url, None, KEY, backoff=0.01)
    with pytest.raises(SoundspaceError, match="answered 404: Job not found: nope"):
        client.get_job("nope")
    wrong = jobs_api.JobsClient(standin.url, None, "", backoff=0.01)
    with pytest.raises(SoundspaceError, match="answered 400: Invalid API token"):
        wrong.get_job("nope")
    with pytest.raises(SoundspaceError, match="answered 422: give project or projectId, not both"):
        client.create_job({"container": "c", "machineType": "m", "command": "soundspace render-shard s",
                           "project": "a", "projectId": "b"}, b"", "shard.zip")
    # It runs commands: only its own key, and only the shard runner.
    stranger = jobs_api.JobsClient(standin.url, None, KEY + "x", backoff=0.01)
    with pytest.raises(SoundspaceError, match="answered 400: Invalid API token"):
        stranger.get_job("nope")
    with pytest.raises(SoundspaceError, match="answered 422: this stand-in runs only `soundspace "
                                              "render-shard ...` commands, not 'rm -rf /'"):
        client.create_job({"container": "c", "machineType": "m", "command": "rm -rf /",
                           "projectId": "p", "name": "n"}, b"", "shard.zip")
    assert not standin.jobs
    # The retired official host answers 404: pretend the stand-in is it.
    monkeypatch.setattr(jobs_api, "OFFICIAL_API", standin.url)
    retired = jobs_api.JobsClient(standin.url, None, KEY, backoff=0.01)
    with pytest.raises(SoundspaceError, match="retired its Jobs API on 15 July 2024"):
        retired.get_job("nope")



STANDIN_PROGRAM = Path(__file__).resolve().parent / "servers" / "paperspace_standin.py"


def test_the_standin_runs_as_a_program_and_ends_on_sigterm(tmp_path):
    """The stand-in as docker-compose's `paperspace-standin` service starts it (the program with
    the service's options, the key in PAPERSPACE_API_KEY), from another folder: it serves the
    Jobs API with that key only, never prints it, and SIGTERM (`docker-compose down`; it is the
    container's first process) ends it at once with 143."""
    storage = tmp_path / "storage"
    storage.mkdir()
    process = subprocess.Popen([sys.executable, str(STANDIN_PROGRAM), "--port", "0", "--storage",
                                str(storage), "--docker", "never", "--workdir", str(tmp_path / "jobs")],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PAPERSPACE_API_KEY": KEY})
    try:
        line = process.stdout.readline()
        assert line.startswith("Paperspace Jobs API stand-in on http://127.0.0.1:"), \
            line + process.stderr.read()
        assert "API key: the one in PAPERSPACE_API_KEY" in line and KEY not in line
        url = line.split(" on ", 1)[1].split()[0]
        with pytest.raises(SoundspaceError, match="answered 404: Job not found: nope"):
            jobs_api.JobsClient(url, None, KEY, backoff=0.01).get_job("nope")
        with pytest.raises(SoundspaceError, match="answered 400: Invalid API token"):
            jobs_api.JobsClient(url, None, KEY + "x", backoff=0.01).get_job("nope")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
        assert "stopped by SIGTERM" in process.stderr.read()
    finally:
        process.kill()
        process.wait()
    bad = subprocess.run([sys.executable, str(STANDIN_PROGRAM), "--storage", str(tmp_path / "none")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (f"paperspace-standin: error: --storage {tmp_path / 'none'} is not "
                                  "a folder (it plays the team's /storage)")

def test_model_in_storage_folder_or_zip_unpacked_once(tmp_path):
    archive = shutil.make_archive(str(tmp_path / "demo"), "zip", DEMO_MODEL.parent, "demo")
    found = []
    threads = [threading.Thread(target=lambda: found.append(locate_model(archive))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(found)) == 1 and (found[0] / "model.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.zip", "demo.zip.unpacked", "demo.zip.unpacked.lock"]
    assert locate_model(DEMO_MODEL) == DEMO_MODEL
    with pytest.raises(SoundspaceError, match="no model at .*upload it to your team's /storage"):
        locate_model(tmp_path / "missing")


def test_render_shard_is_idempotent(tmp_path):
    """What a retried job does: the same shard run twice into the same folder decodes nothing
    the second time and reports the same cells."""
    spec = ShardSpec(space="s", index=0, count=1, model={"path": str(DEMO_MODEL), "identity":
                     NSynth.load(DEMO_MODEL).identity, "hop": 512},
                     device="cpu", math="auto", decode_batch=8, samples=1024,
                     postprocess={"chain": "none"}, points=[
                         {"seed": [0, i], "cells": [f"x{i:02d}_y00"], "key": cell_key({"i": i})}
                         for i in range(2)],
                     embeddings=np.zeros((2, 2, 16), np.float32))
    spec.save(tmp_path / "spec")
    out = tmp_path / "artifacts"
    first = render_shard_folder(tmp_path / "spec", out, log=quiet)
    assert first["decoded"] == 2 and set(first["cells"]) == {"x00_y00", "x01_y00"}
    (out / "x01_y00.wav").unlink()  # a cell lost: only it is made again
    again = render_shard_folder(tmp_path / "spec", out, log=quiet)
    assert again["decoded"] == 1 and set(again["cells"]) == set(first["cells"])
    assert json.loads((out / SHARD_MANIFEST).read_text())["cells"]["x00_y00"] == first["cells"]["x00_y00"]
    assert main(["render-shard", str(tmp_path / "spec"), "--out", str(out)]) == 0


def test_ctrl_c_stops_the_running_jobs(tmp_path, standin):
    import signal

    standin.faults.slow_seconds = 60  # jobs stay Pending until stopped
    flow = paperspace_workflow(tmp_path, standin, shard_size=3, parallel_shards=2)
    data = dataset(tmp_path / "d", length=0.1)
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "generate", "--workflow",
                                str(flow), "--dataset", str(data)], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PAPERSPACE_API_KEY": KEY},
                               # A suite started in the background inherits SIGINT ignored; a
                               # user's terminal delivers it: restore the default.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(standin.jobs) < 2:
        time.sleep(0.05)
    assert len(standin.jobs) == 2
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err
    stops = {r["path"] for r in standin.requests if r["path"].endswith("/stop")}
    assert stops == {f"/jobs/{job_id}/stop" for job_id in standin.jobs}
    assert {job.state for job in standin.jobs.values()} == {"Cancelled"}
    assert len(standin.jobs) == 2  # the third shard was never submitted


def test_a_lost_create_answer_does_not_start_a_second_job(tmp_path, standin):
    """The server creates the job and its answer is lost (502): the client finds the job by its
    name instead of posting createJob again (which would start a second, billed job)."""
    standin.faults.lost_create = 1
    result = generate_space(TEST_DATASET, paperspace_workflow(tmp_path, standin), progress=False,
                            log=quiet)
    assert len(wavs(result.space_dir)) == 9
    creates = [r for r in standin.requests if r["path"] == "/jobs/createJob"]
    assert len(creates) == 1 and len(standin.jobs) == 1
    assert any(r["path"] == "/jobs/getJobs" and r["query"].get("name") for r in standin.requests)


def test_a_job_that_never_ends_is_stopped_at_its_deadline(tmp_path, standin, capsys):
    standin.faults.slow_seconds = 120  # Pending until stopped
    flow = paperspace_workflow(tmp_path, standin, paperspace={"job_timeout_minutes": 0.02})
    started = time.monotonic()
    with pytest.raises(SoundspaceError, match=r"ended Cancelled .*not ended within 0\.02 minutes"):
        generate_space(TEST_DATASET, flow, progress=False, log=quiet)
    assert time.monotonic() - started < 30
    assert [job.state for job in standin.jobs.values()] == ["Cancelled"]


def test_a_failed_stop_is_reported_and_following_still_ends(tmp_path, standin, capsys):
    standin.faults.slow_seconds = 120
    standin.faults.stop_fails = 100
    flow = paperspace_workflow(tmp_path, standin, paperspace={"job_timeout_minutes": 0.02})
    with pytest.raises(SoundspaceError, match="did not end within 0.02 minutes .* nor after it "
                                              "was stopped"):
        generate_space(TEST_DATASET, flow, progress=False)
    assert "could not stop job js000001: POST /jobs/js000001/stop: the server answered 500" \
        in capsys.readouterr().err


class _Server(ThreadingHTTPServer):
    """A loopback HTTP server answering every request with `answer(handler)`, recording the
    headers it was sent."""

    def __init__(self, answer):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(dict(self.headers))
                answer(self)

            do_POST = do_GET

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_port}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _reply(handler, status, body=b"{}", **headers):
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def test_retry_after_is_capped():
    """A server that asks for an hour's wait (Retry-After: 3600) delays the call by max_wait."""
    answers = iter([429, 200])
    server = _Server(lambda h: _reply(h, next(answers), Retry_After="3600"))
    done = []
    call = threading.Thread(daemon=True, target=lambda: done.append(
        jobs_api.JobsClient(server.url, None, KEY, backoff=0.01, max_wait=0.5).get_job("js1")))
    started = time.monotonic()
    call.start()
    call.join(20)
    server.shutdown()
    assert done == [{}] and time.monotonic() - started < 20 and len(server.seen) == 2


def test_the_key_does_not_follow_a_redirect():
    elsewhere = _Server(lambda h: _reply(h, 200))
    api = _Server(lambda h: _reply(h, 302, Location=f"{elsewhere.url}/jobs/getJob"))
    with pytest.raises(SoundspaceError, match="answered 302 redirecting to http://127.0.0.1:.*; "
                                              "refusing to send the API key there"):
        jobs_api.JobsClient(api.url, None, KEY, backoff=0.01).get_job("js1")
    assert api.seen[0]["x-api-key"] == KEY and not elsewhere.seen
    api.shutdown(), elsewhere.shutdown()


def test_following_ends_when_the_log_end_came_before_the_final_state(tmp_path):
    """A job that ends between `getJob` (still Running) and `logs` (whose last row is PSEOF):
    the next polls see Stopped and no new log rows; following must end, not poll forever."""
    from pipeline.config import load_workflow
    from pipeline.backends.paperspace.backend import PaperspaceBackend

    states = iter(["Running"])
    rows = iter([[{"line": 1, "message": "done"}, {"line": 2, "message": "PSEOF"}]])

    def answer(handler):
        if handler.path.startswith("/jobs/getJob"):
            return _reply(handler, 200, json.dumps({"id": "js1", "state": next(states, "Stopped"),
                                                    "exitCode": 0}).encode())
        batch = next(rows, None)
        return _reply(handler, 200, json.dumps(batch).encode()) if batch else _reply(handler, 204, b"")

    server = _Server(answer)
    backend = PaperspaceBackend(load_workflow(paperspace_workflow(tmp_path, server))[0], log=quiet)
    backend.client = jobs_api.JobsClient(server.url, None, KEY, backoff=0.01)
    followed = []
    follow = threading.Thread(daemon=True, target=lambda: followed.append(
        backend._follow("js1", "shard 1/1")))
    follow.start()
    follow.join(20)
    server.shutdown()
    assert followed and followed[0][0]["state"] == "Stopped" and followed[0][1] == ["done"]


def _small_shard(folder: Path, cells: int = 2, samples: int = 1024) -> Path:
    spec = ShardSpec(space="s", index=0, count=1, model={"path": str(DEMO_MODEL), "identity":
                     NSynth.load(DEMO_MODEL).identity, "hop": 512},
                     device="cpu", math="auto", decode_batch=8, samples=samples,
                     postprocess={"chain": "none"}, points=[
                         {"seed": [0, i], "cells": [f"x{i:02d}_y00"], "key": cell_key({"i": i})}
                         for i in range(cells)],
                     embeddings=np.zeros((cells, -(-samples // 512), 16), np.float32))
    return spec.save(folder)


OFFICIAL_CLIENT = """
import json, paperspace
job = paperspace.jobs.create({"name": "official-client", "projectId": "prtest",
                              "machineType": "C5", "container": "soundspace:cpu",
                              "command": "soundspace render-shard shard --out /artifacts "
                                         "--model /storage/soundspace/demo --device cpu",
                              "workspace": %r})
listing = paperspace.jobs.artifactsList({"jobId": job["id"], "links": True})
print("RESULT " + json.dumps({"job": job, "artifacts": listing}))
"""


def test_the_historical_official_client_runs_a_job_on_the_standin(tmp_path, standin):
    """paperspace==0.1.1, Paperspace's own Python client (it reads `cluster` and `codeCommit`
    from createJob's answer), creates a job, follows its log to the end, lists its artifacts."""
    pytest.importorskip("paperspace", reason="the test extra installs paperspace==0.1.1")
    workspace = tmp_path / "workspace"
    _small_shard(workspace / "shard")
    env = {**os.environ, "PAPERSPACE_CONFIG_HOST": standin.url, "PAPERSPACE_CONFIG_LOG_HOST": standin.url,
           "PAPERSPACE_API_KEY": KEY, "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", OFFICIAL_CLIENT % str(workspace)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    result = json.loads(out.split("RESULT ", 1)[1])
    assert result["job"]["state"] == "Stopped" and result["job"]["exitCode"] == 0
    assert "Cluster: standin" in out and "Awaiting logs..." in out
    assert "shard 1/1: 2 cell(s) finished in" in out  # the job's log, followed to its end
    assert "Job Stopped, exitCode 0" in out
    files = {item["file"] for item in result["artifacts"]}
    assert {"x00_y00.wav", "x01_y00.wav", SHARD_MANIFEST} <= files
    upload = [r for r in standin.requests if r["path"] == "/jobs/createJob"][0]
    assert upload["multipart"]["field"] == "file" and upload["query"]["workspaceFileName"] == "workspace.zip"


def test_a_garbage_answer_ends_in_one_line(tmp_path, capsys):
    """A server answering HTML where JSON belongs: the run ends with one line naming the call,
    not a traceback."""
    server = _Server(lambda h: _reply(h, 200, b"<html>maintenance</html>"))
    try:
        with pytest.raises(SoundspaceError, match=r"GET /jobs/getJob: the server's answer is not a "
                                                  r"JSON object: '<html>maintenance</html>'"):
            jobs_api.JobsClient(server.url, None, KEY, backoff=0.01).get_job("js1")
        flow = paperspace_workflow(tmp_path, server)
        os.environ["PAPERSPACE_API_KEY"] = KEY
        try:
            assert main(["generate", "--workflow", str(flow), "--dataset",
                         str(dataset(tmp_path / "d", length=0.1))]) == 2
        finally:
            del os.environ["PAPERSPACE_API_KEY"]
        err = capsys.readouterr().err
        assert "POST /jobs/createJob: the server's answer is not a JSON object" in err
        assert "Traceback" not in err and "internal error" not in err
    finally:
        server.shutdown()

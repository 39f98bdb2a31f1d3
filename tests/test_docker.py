"""The Docker side: hadolint on the Dockerfile, `docker-compose config`, the deploy script's dry
run, and a smoke test that starts an engine (scripts/docker-engine), builds the image offline
(a debootstrap stand-in for the base image, torch from wheels/) and runs `docker-compose up
--build generate-test-local`, then checks the space it wrote on the host.

Where no engine can start the smoke test says so loudly and skips, unless
SOUNDSPACE_REQUIRE_DOCKER is set (scripts/test sets it, so CI fails instead).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import soundfile

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = bool(os.environ.get("SOUNDSPACE_REQUIRE_DOCKER"))
pytestmark = pytest.mark.timeout(1800)  # cold image builds
STARTED_ENGINES: list[int] = []  # dockerd processes this module started, stopped when it ends


@pytest.fixture(autouse=True, scope="module")
def _stop_the_engines_this_module_started():
    """An engine started for the smoke tests (and the containerd it runs) ends with them: no
    process outlives the run that started it. One that was already running is left alone."""
    yield
    for pid in STARTED_ENGINES:
        if not _alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(60):
            if not _alive(pid):
                break
            time.sleep(0.5)
        else:
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        if REQUIRE:
            pytest.fail(f"{name} is not installed (scripts/install-system-deps, scripts/install test)")
        pytest.skip(f"{name} is not installed")
    return found


def test_hadolint_passes():
    if not (ROOT / "Dockerfile").is_file():
        pytest.skip("no Dockerfile in this tree (the image's test stage holds only the package)")
    result = subprocess.run([tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.docker
def test_compose_file_is_valid_and_declares_the_services():
    result = subprocess.run([tool("docker-compose"), "config"], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "PAPERSPACE_API_KEY": "not-a-real-key"})
    assert result.returncode == 0, result.stderr
    services = set(subprocess.run([tool("docker-compose"), "config", "--services"], cwd=ROOT,
                                  capture_output=True, text=True).stdout.split())
    assert services == {"generate-test-local", "generate-local", "generate-local-gpu",
                        "generate-test-paperspace", "generate-paperspace", "paperspace-standin",
                        "generate-ray",
                        "test"}
    assert "not-a-real-key" in result.stdout  # the key comes from the environment only ...
    for line in (ROOT / "docker-compose.yml").read_text().splitlines():
        if "PAPERSPACE_API_KEY" in line and not line.lstrip().startswith("#"):
            assert line.strip() == "- PAPERSPACE_API_KEY"  # ... and is never written in the file
    # The stand-in is a test server, not in the image: its service mounts tests/servers and runs
    # the program there (tests/test_paperspace.py runs it with the service's options).
    assert "/app/tests/servers/paperspace_standin.py" in result.stdout
    assert str(ROOT / "tests" / "servers") in result.stdout
    assert (ROOT / "tests" / "servers" / "paperspace_standin.py").is_file()


def test_deploy_script_dry_run():
    script = ROOT / "models" / "n-synth" / "deploy-docker.sh"
    result = subprocess.run([str(script), "--dry-run"], capture_output=True, text=True,
                            env={**os.environ, "SOUNDSPACE_REGISTRY": "registry.example/team"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith("+ docker ") for line in lines)
    assert "--build-arg TORCH=cpu" in lines[0] and "registry.example/team/soundspace:0.1.0-cpu" in lines[0]
    assert "--build-arg TORCH=cuda" in lines[3] and lines[5].endswith("registry.example/team/soundspace:gpu")
    env = {k: v for k, v in os.environ.items() if k != "SOUNDSPACE_REGISTRY"}
    missing = subprocess.run([str(script), "--dry-run"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "set SOUNDSPACE_REGISTRY" in missing.stderr


def _step(name: str, command: list, timings: dict, **kwargs) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, **kwargs)
    timings[name] = time.perf_counter() - start
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _engine_and_offline_inputs(timings: dict) -> None:
    """A running engine, the base image stand-in and torch's wheel, or a loud skip/failure."""
    tool("docker")
    start = time.perf_counter()
    engine = subprocess.run([str(ROOT / "scripts" / "docker-engine")], capture_output=True, text=True)
    timings["engine (started when none answers)"] = time.perf_counter() - start
    STARTED_ENGINES.extend(int(pid) for pid in re.findall(r"started dockerd \(pid (\d+)\)", engine.stdout))
    if engine.returncode != 0:
        message = f"NO DOCKER ENGINE: the Docker smoke test did not run. {engine.stderr.strip()}"
        if REQUIRE:
            pytest.fail(message)
        warnings.warn(message)
        pytest.skip(message)
    _step("base image stand-in (debootstrap, skipped when present)",
          [str(ROOT / "scripts" / "docker-base-standin")], timings)
    _step("torch wheel into wheels/", [str(ROOT / "scripts" / "docker-wheels")], timings)


def _report(title: str, timings: dict, capsys, extra: str = "") -> None:
    with capsys.disabled():
        print(f"\n{title}, seconds per step:")
        for name, seconds in timings.items():
            print(f"  {seconds:7.1f}  {name}")
        if extra:
            print(f"  {extra}")


def _fresh_clone(tmp_path, owner: int) -> Path:
    """The committed project as a user gets it (`git clone`), owned by `owner`, with no ./output;
    only the offline build input torch's wheel is added (scripts/docker-wheels)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    for wheel in (ROOT / "wheels").glob("*.whl"):
        shutil.copy(wheel, clone / "wheels" / wheel.name)
    if owner != os.getuid():
        subprocess.run(["chown", "-R", f"{owner}:{owner}", str(clone)], check=True)
    assert not (clone / "output").exists()
    return clone


def _compose_up(tmp_path, service: str, timings: dict, owner: int = 0, profile: str | None = None,
                extra_env: dict | None = None, also: tuple = ()):
    """`docker-compose up --build SERVICE` (and `also`) typed in a fresh clone owned by `owner`,
    with no ./output and none of soundspace's variables set. Returns its ./output and the run."""
    tool("docker-compose")
    _engine_and_offline_inputs(timings)
    clone = _fresh_clone(tmp_path, owner)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSPACE_")}
    env.update({"TORCH_CPU_INDEX": "",  # PyTorch's index is out of reach here: torch from wheels/
                **(extra_env or {})})
    compose = [tool("docker-compose")] + (["--profile", profile] if profile else [])
    title = f"docker-compose {'--profile ' + profile + ' ' if profile else ''}up --build {service}"
    try:
        start = time.perf_counter()
        run = subprocess.run(compose + ["up", "--build", "--abort-on-container-exit",
                                        "--exit-code-from", service, *also, service],
                             cwd=clone, capture_output=True, text=True, env=env)
        timings[f"{title} (clone owned by uid {owner})"] = time.perf_counter() - start
        assert run.returncode == 0, f"{title} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    finally:
        subprocess.run(compose + ["down"], cwd=clone, capture_output=True, env=env)
    return clone / "output", run


@pytest.mark.docker
@pytest.mark.root  # chowns the clone to another user
@pytest.mark.parametrize("owner", [0, 4321], ids=["root", "ordinary-user"])
def test_docker_compose_as_typed_in_a_fresh_clone_makes_the_test_space(tmp_path, capsys, owner):
    """Item 19: the README's command, typed in a fresh clone with no ./output and no variables,
    for root and for an ordinary user (uid 4321 owns the clone): the space is written and
    belongs to the clone's owner."""
    timings = {}
    out, _ = _compose_up(tmp_path, "generate-test-local", timings, owner=owner)

    assert out.stat().st_uid == owner
    space = out / "demo-test-space"
    wavs = sorted(space.glob("*.wav"))
    assert len(wavs) == 9
    for path in [*wavs, space / "manifest.json", space / "index.html"]:
        assert (path.stat().st_uid, path.stat().st_gid) == (owner, owner), path
    for path in wavs:
        audio, rate = soundfile.read(path)
        assert rate == 16000 and len(audio) == 16000
    manifest = json.loads((space / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["cells"]) == 9
    assert (space / "embeddings.npz").is_file()

    image = _step("inspect the image", ["docker", "image", "inspect", "soundspace:cpu"], timings)
    size = json.loads(image.stdout)[0]["Size"]
    no_tf = _step("runtime image holds no TensorFlow",
                  ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python",
                   "soundspace:cpu", "-c",
                   "import importlib.util; print(importlib.util.find_spec('tensorflow'))"], timings)
    assert no_tf.stdout.strip() == "None"
    _report("Docker smoke test", timings, capsys, f"image soundspace:cpu: {size / 1e9:.2f} GB")


@pytest.mark.full
@pytest.mark.docker
def test_image_bakes_a_converted_checkpoint_without_tensorflow(capsys):
    """CHECKPOINT=official, pointed at a loopback server holding the tiny checkpoint's tar: the
    build stage downloads and converts it; the runtime image loads it and has no TensorFlow."""
    from .test_download_checkpoint import Server, tiny_tar

    timings = {}
    _engine_and_offline_inputs(timings)
    server = Server(tiny_tar())
    tag = "soundspace:baked-checkpoint-test"
    try:
        _step("docker build --build-arg CHECKPOINT=official",
              ["docker", "build", "--network", "host", "--target", "runtime", "--build-arg",
               "TORCH_CPU_INDEX=", "--build-arg", "CHECKPOINT=official", "--build-arg",
               f"CHECKPOINT_URL={server.url}", "-t", tag, "."], timings)
        check = _step("the baked model loads; no TensorFlow",
                      ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", tag,
                       "-c", "import importlib.util; from pipeline.nsynth import NSynth; "
                       "m = NSynth.load('/app/models/n-synth/checkpoints/wavenet'); "
                       "print(m.config.width, importlib.util.find_spec('tensorflow'))"], timings)
    finally:
        server.close()
        subprocess.run(["docker", "rmi", tag], capture_output=True)
    assert check.stdout.split()[-2:] == ["8", "None"]  # the tiny checkpoint's decoder width
    _report("Checkpoint baked into the image", timings, capsys)


@pytest.mark.full
@pytest.mark.docker
def test_compose_paperspace_run_against_the_standin_equals_the_local_space(tmp_path, capsys,
                                                                          local_test_space):
    """`generate-test-paperspace` with the stand-in (profile standin) in containers: the space it
    writes on the host is byte for byte the one the local backend makes here."""
    timings = {}
    out, run = _compose_up(tmp_path, "generate-test-paperspace", timings, profile="standin",
                           extra_env={"PAPERSPACE_API_KEY": "local-standin-key",
                                      "SOUNDSPACE_PAPERSPACE_URL": "http://127.0.0.1:8889"},
                           also=("paperspace-standin",))
    assert "local-standin-key" not in run.stdout + run.stderr
    # The stand-in started from the mounted tests/servers with the image's Python, key from the
    # environment.
    assert "Paperspace Jobs API stand-in on http://127.0.0.1:8889" in run.stdout + run.stderr
    assert "API key: the one in PAPERSPACE_API_KEY" in run.stdout + run.stderr
    local = local_test_space  # made once per session (conftest.py)
    space = out / "demo-test-space"
    made = {p.name: p.read_bytes() for p in space.glob("*.wav")}
    assert len(made) == 9
    assert made == {p.name: p.read_bytes() for p in local.space_dir.glob("*.wav")}
    _report("Paperspace run against the stand-in (compose)", timings, capsys)


@pytest.mark.docker
def test_standin_in_docker_mode_stopping_a_job_kills_its_container(tmp_path, capsys):
    """The stand-in runs a job in its container (docker mode); stopping the job must end the
    container, not only the `docker run` client (which would leave the container running)."""
    import io
    import zipfile

    import numpy as np

    from pipeline.nsynth import NSynth
    from pipeline.backends.paperspace.client import JobsClient
    from pipeline.shards import ShardSpec

    from .conftest import DEMO_MODEL
    from .servers.paperspace_standin import StandIn

    timings = {}
    _engine_and_offline_inputs(timings)
    docker = tool("docker")
    if subprocess.run([docker, "image", "inspect", "soundspace:cpu"], capture_output=True).returncode:
        _compose_up(tmp_path, "generate-test-local", timings)  # builds soundspace:cpu
    storage = tmp_path / "storage"
    shutil.copytree(DEMO_MODEL, storage / "soundspace" / "demo")
    spec = ShardSpec(space="s", index=0, count=1, device="cpu", math="auto", decode_batch=1,
                     model={"path": "unused", "identity": NSynth.load(DEMO_MODEL).identity, "hop": 512},
                     samples=48000, postprocess={"chain": "none"},
                     points=[{"seed": [0, i], "cells": [f"x{i:02d}_y00"], "key": f"k{i}"} for i in range(4)],
                     embeddings=np.zeros((4, 94, 16), np.float32))
    folder = spec.save(tmp_path / "workspace" / "shard")
    workspace = io.BytesIO()
    with zipfile.ZipFile(workspace, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"shard/{path.name}")
    server = StandIn(storage, tmp_path / "jobs", docker="always", key="docker-mode-key").start()
    try:
        client = JobsClient(server.url, None, "docker-mode-key", backoff=0.01)
        job = client.create_job({"name": "docker-mode", "projectId": "p", "machineType": "C5",
                                 "container": "soundspace:cpu",
                                 "command": "soundspace render-shard shard --out /artifacts "
                                            "--model /storage/soundspace/demo --device cpu"},
                                workspace.getvalue(), "shard.zip")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("point(s)" in row["message"]
                                                      for row in server.jobs[job["id"]].logs):
            time.sleep(0.2)  # until the shard runner inside the container has started
        name = server.jobs[job["id"]].container_name
        running = subprocess.run([docker, "ps", "-q", "--filter", f"name={name}"],
                                 capture_output=True, text=True).stdout.split()
        assert name and running, [row["message"] for row in server.jobs[job["id"]].logs]
        client.stop(job["id"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and subprocess.run(
                [docker, "ps", "-q", "--filter", f"name={name}"], capture_output=True, text=True).stdout:
            time.sleep(0.5)
        assert not subprocess.run([docker, "ps", "-q", "--filter", f"name={name}"],
                                  capture_output=True, text=True).stdout.strip()
        assert client.get_job(job["id"])["state"] == "Cancelled"
    finally:
        server.close()

"""Ctrl-C and SIGTERM in every command (issue 34, item 4): exit 130 / 143 with one line, never an
internal error, and no staging folder, temporary file or empty --out left behind.

The hard case is a signal that lands while libsndfile writes or reads a WAV in memory: it calls
back into Python for every block, and an exception raised there was lost in the library and came
out as soundfile's AssertionError (about one SIGTERM in three during an Open NSynth Super export).
The first test puts signals there on purpose; the others stop real commands while they work.
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import signals
from pipeline.audio import wav_bytes

from .conftest import DEMO_MODEL
from .pipeline_helpers import TEST_DATASET

ROOT = Path(__file__).resolve().parent.parent
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def test_a_signal_inside_libsndfile_is_raised_when_it_returns(capfd):
    """SIGTERM sent from another thread while soundfile writes a long WAV in memory (thousands
    of callbacks), at offsets spread over the write: always `Terminated`, raised after the
    write, and nothing printed by cffi about an exception it could not pass on."""
    audio = np.zeros(4_000_000, np.float32)
    start = time.perf_counter()
    wav_bytes(audio)
    seconds = time.perf_counter() - start
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
        timer = threading.Timer(seconds * fraction, os.kill, (os.getpid(), signal.SIGTERM))
        with signals.as_exceptions(), pytest.raises(signals.Terminated):
            timer.start()
            try:
                wav_bytes(audio)
            finally:
                timer.join()
            time.sleep(1)  # a signal that arrived after the write is raised here
    assert "cffi" not in capfd.readouterr().err


def test_held_raises_a_signal_of_its_block_once_when_the_block_ends():
    with signals.as_exceptions():
        with pytest.raises(KeyboardInterrupt) as stopped:
            with signals.held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler runs here, and keeps the signal for later
                reached = True
        assert reached and not isinstance(stopped.value, signals.Terminated)
        time.sleep(0.05)  # and it is not raised a second time


def start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True,
                            # a suite started in the background inherits SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_output(process: subprocess.Popen, marker: bytes, seconds: float = 60) -> bytes:
    """stderr up to `marker` (a progress bar's first line says the command is at work)."""
    seen, deadline = b"", time.monotonic() + seconds
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} on stderr: {seen[-500:]!r}"
        if select.select([process.stderr], [], [], 0.1)[0]:
            chunk = os.read(process.stderr.fileno(), 4096)
            assert chunk or marker in seen, f"ended before {marker!r}: {seen[-2000:]!r}"
            seen += chunk
    return seen


def stop(process: subprocess.Popen, sig: int, seen: bytes, after: float) -> tuple[int, list]:
    time.sleep(after)
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass  # it finished first
    err = (seen + process.stderr.read()).decode()
    process.wait(60)
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and "%|" not in line]
    assert "Traceback" not in err and "internal error" not in err, err
    return process.returncode, lines


def leftovers(folder: Path) -> list:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


# The longest Open NSynth Super sounds make its export last long enough to be stopped often; an
# SFZ export of the small library is over in a tenth of a second.
@pytest.mark.parametrize("fmt, options, landed", [("onss", ["--length", "960000"], 3),
                                                  ("sfz", [], 1)])
def test_export_stopped_by_sigterm_at_any_moment(local_small_library, tmp_path, fmt, options,
                                                  landed):
    stopped = 0
    for n, after in enumerate((0.0, 0.02, 0.05, 0.1, 0.2, 0.3)):
        out = tmp_path / f"export{n}"
        process = start(["export", "--format", fmt, str(local_small_library.space_dir),
                         "--out", str(out), *options], ROOT)
        code, lines = stop(process, signal.SIGTERM, wait_for_output(process, b"export"), after)
        assert leftovers(tmp_path) == [], (code, lines)
        if code in (0, -signal.SIGTERM) and (out / "export.json").is_file():
            continue  # it finished before the signal (or as it exited, after its work)
        assert not out.exists(), (code, lines)
        assert code == 143 and lines == [f"soundspace export: stopped by SIGTERM"], lines
        stopped += 1
    assert stopped >= landed  # tries landed while it worked


def test_explore_stopped_by_ctrl_c_and_sigterm(local_test_space, tmp_path):
    space = tmp_path / "space"
    shutil.copytree(local_test_space.space_dir, space)
    for sig, code, said in ((signal.SIGINT, 130, "interrupted"),
                            (signal.SIGTERM, 143, "stopped by SIGTERM")):
        process = start(["explore", str(space)], ROOT)
        time.sleep(0.7)  # it imports, reads the space, draws its pictures (over a second)
        ended, lines = stop(process, sig, b"", 0)
        assert ended == code and lines == [f"soundspace explore: {said}"], lines
        assert leftovers(space) == []
    process = start(["explore", str(space)], ROOT)
    assert process.wait(60) == 0, process.stderr.read()  # and explore works after both


@pytest.mark.skipif(not SOUNDFONT.is_file(), reason="needs FluidSynth's GM soundfont")
def test_inputs_stopped_while_rendering_leaves_no_out_folder(tmp_path):
    out = tmp_path / "new" / "notes"
    process = start(["inputs", "--soundfont", str(SOUNDFONT), "--program", "0", "--pitches",
                     *map(str, range(40, 60)), "--name", "piano", "--out", str(out)], ROOT)
    code, lines = stop(process, signal.SIGTERM, wait_for_output(process, b"rendering"), 0.3)
    assert code == 143 and lines == ["soundspace inputs: stopped by SIGTERM"], lines
    assert list(tmp_path.iterdir()) == []


def test_train_stopped_before_its_first_checkpoint_leaves_no_out_folder(tmp_path):
    out = tmp_path / "model"
    process = start(["train", "--data", str(TEST_DATASET), "--out", str(out), "--steps", "500",
                     "--checkpoint-every", "1000"], ROOT)
    code, lines = stop(process, signal.SIGINT, wait_for_output(process, b"training"), 0.5)
    assert code == 130 and lines == ["soundspace train: interrupted"], lines
    assert not out.exists()


def test_decode_stopped_leaves_no_out_folder(tmp_path):
    embedding = tmp_path / "z.npy"
    np.save(embedding, np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32))
    out = tmp_path / "wavs"
    process = start(["decode", str(embedding), "--model", str(DEMO_MODEL), "--out", str(out)],
                    ROOT)
    time.sleep(3)  # 200 frames take far longer to decode
    code, lines = stop(process, signal.SIGTERM, b"", 0)
    assert code == 143 and lines == ["soundspace decode: stopped by SIGTERM"], lines
    assert not out.exists()

"""Libraries (several sounds per corner, several pitches): the plan's counts against Open NSynth
Super's published figures and counts worked out by hand, the library folder (pads linked to
decodes made once), resume after SIGKILL, shifted pitches, and every refusal before anything
is written."""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline import SoundspaceError, finished
from pipeline.cli import main
from pipeline.config import load_space
from pipeline.library import plan_library

from .pipeline_helpers import generate_space, workflow

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_TEST = ROOT / "models" / "n-synth" / "library-test"
ONS_PITCHES = list(range(24, 85, 4))  # Open NSynth Super's 16 pitches


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_library(folder: Path, **fields) -> Path:
    """Two sounds in NW (two pads), one in every other corner, two pitches, a 3 x 3 bilinear
    grid of 0.1 s sounds, from the test library's notes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bass", "trumpet", "guitar", "keyboard", "organ"):
        for pitch in (48, 55):
            (folder / f"{name}_{pitch}.wav").write_bytes((LIBRARY_TEST / f"{name}_{pitch}.wav").read_bytes())
    library = {"name": "lib", "sounds": {"NW": ["bass", {"name": "trumpet", "label": "Trumpet"}],
                                         "NE": "guitar", "SW": "keyboard", "SE": "organ"},
               "pitches": [48, 55], "resolution": 3, "length": 0.1, "seed": 0, **fields}
    (folder / "space.json").write_text(json.dumps(library))
    return folder


def tones(folder: Path, names, pitches, seconds: float = 0.05) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        for pitch in pitches:
            freq = 440 * 2 ** ((pitch - 69) / 12)
            audio = 0.5 * np.sin(2 * np.pi * freq * np.arange(round(seconds * 16000)) / 16000)
            soundfile.write(folder / f"{name}_{pitch}.wav", audio, 16000, subtype="PCM_16")


def ons_library(folder: Path, per_corner: int) -> Path:
    """Open NSynth Super's reference settings with short tones: `per_corner` sounds in each of
    the four corners, its 16 pitches, a 9 x 9 radial grid."""
    names = [f"inst{i:02d}" for i in range(16)]
    tones(folder, names[:4 * per_corner], ONS_PITCHES)
    corners = {c: names[i * per_corner:(i + 1) * per_corner]
               for i, c in enumerate(["NW", "NE", "SW", "SE"])}
    (folder / "space.json").write_text(json.dumps({
        "name": f"ons{per_corner}", "sounds": corners, "pitches": ONS_PITCHES,
        "resolution": 9, "weighting": "radial", "length": 4.0}))
    return folder


@pytest.mark.parametrize("per_corner, decodes", [(1, 1_232), (2, 10_368), (4, 118_016)])
def test_plan_reports_open_nsynth_supers_counts(tmp_path, per_corner, decodes):
    data = ons_library(tmp_path / "data", per_corner)
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "plan", "--dataset", str(data),
                             "--json"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["pads"] == per_corner ** 4 and plan["pitches"] == ONS_PITCHES
    assert plan["cells"] == per_corner ** 4 * 16 * 81
    assert plan["decodes"] == decodes
    # 4 s sounds: hours of audio follow from the count. The estimates follow from the measured
    # rates the plan states it assumes, worked out here per 4 s sound: Magenta's full-size model
    # on this engine, 53 ms per step at batch 81 on 2 cores (the README's `soundspace bench`
    # table), i.e. 64,000 steps / 81 sounds; Open NSynth Super's 36 hours on 8 K80s for about
    # 120,000 sounds.
    assert plan["audio_hours"] == pytest.approx(decodes * 4 / 3600)
    assert plan["cpu_hours"] == pytest.approx(decodes * 64_000 / 81 * 0.053 / 3600)
    assert plan["gpu_hours"] == pytest.approx(decodes * 36 * 8 / 120_000)
    assert "batch 81" in plan["assumptions"] and "K80" in plan["assumptions"]
    text = subprocess.run([sys.executable, "-m", "pipeline.cli", "plan", "--dataset", str(data)],
                          cwd=ROOT, capture_output=True, text=True).stdout
    assert f"distinct decodes: {decodes:,}" in text
    assert (f"estimated: {plan['cpu_hours']:,.1f} hours on 2 CPU cores, "
            f"{plan['gpu_hours']:,.1f} hours on 8 K80 GPUs'" in text)
    assert f"({plan['assumptions']})" in text and "Magenta's full-size model" in text


def test_plan_prices_the_model_the_run_will_use(tmp_path):
    """Issue 31, item 5: the test space decodes with the demo model (its `model: test`), and the
    local workflow is found by itself. Worked out by hand: 9 decodes x 16,000 samples at the demo
    model's measured 1.135 ms per step of 81 sounds is 2.0 s; Magenta's model's 53 ms would be
    94 s. Its decoder: per layer 2 x 32 x 64 + 16 x 64 + 32 x 32 + 32 x 32 = 7,168 multiply-adds,
    x 20 layers, + 32 x 32 + 32 x 256: 152,576."""
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "plan", "--dataset",
                             "models/n-synth/dataset-test", "--json"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    plan = json.loads(result.stdout)
    assert plan["cpu_hours"] * 3600 == pytest.approx(9 * 16_000 * 1.135e-3 / 81)
    assert plan["model"].endswith("models/n-synth/checkpoints/demo")
    assert "0.15 M multiply-adds" in plan["assumptions"]
    from pipeline.cost import multiply_adds
    from pipeline.nsynth.model import DEMO_CONFIG, ModelConfig

    assert multiply_adds(DEMO_CONFIG) == 152_576
    assert multiply_adds(ModelConfig()) == 30 * (2 * 512 * 1024 + 16 * 1024 + 512 * 512
                                                 + 512 * 256) + 256 * 256 + 256 * 256
    text = subprocess.run([sys.executable, "-m", "pipeline.cli", "plan", "--dataset",
                           "models/n-synth/dataset-test"], cwd=ROOT, capture_output=True,
                          text=True).stdout
    assert "estimated: 2 s on 2 CPU cores" in text and "audio to decode: 9 s" in text


def test_a_huge_library_is_refused_without_yes_naming_its_cost(tmp_path, capsys):
    data = ons_library(tmp_path / "data", 4)
    flow = workflow(tmp_path)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "118,016 distinct decodes" in err and "CPU hours" in err and "--yes" in err
    assert not (tmp_path / "out").exists()


def test_small_library_end_to_end(tmp_path, monkeypatch):
    data = small_library(tmp_path / "data")
    result = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None)
    library_dir = tmp_path / "out" / "lib"
    # By hand: cells with a share of NW (x < 1 and y < 1: 4 of 9) differ between the two pads;
    # the other 5 are the same mix in both. Per pitch 4 x 2 + 5 = 13 decodes, 26 for 2 pitches.
    assert result.decoded == result.points == 26 and result.cells == 2 * 2 * 9
    pads = sorted(p.name for p in library_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name != "inputs")
    # the inputs as the encoder heard them, each sound at each pitch, for the page
    assert sorted(p.name for p in (library_dir / "inputs").iterdir()) == sorted(
        f"{s}_{p}.wav" for s in ("bass", "trumpet", "guitar", "keyboard", "organ") for p in (48, 55))
    assert pads == ["bass_guitar_keyboard_organ", "trumpet_guitar_keyboard_organ"]
    for pad in pads:
        for pitch in (48, 55):
            names = sorted(p.name for p in (library_dir / pad / f"p{pitch}").glob("*.wav"))
            assert names == sorted(f"x{x:02d}_y{y:02d}.wav" for x in range(3) for y in range(3))
    one, two = (json.loads((library_dir / pad / "manifest.json").read_text()) for pad in pads)
    cells_one = {c["file"]: c for c in one["cells"]}
    cells_two = {c["file"]: c for c in two["cells"]}
    shared = [f for f in cells_one if cells_one[f]["decode"] == cells_two[f]["decode"]]
    assert len(shared) == 10  # 5 per pitch
    for file in cells_one:
        a, b = library_dir / pads[0] / file, library_dir / pads[1] / file
        if file in shared:  # decoded once: one file, hard-linked into both pads
            assert a.read_bytes() == b.read_bytes() and os.path.samefile(a, b)
            assert cells_one[file]["shared_by_cells"] == 2
        else:
            assert a.read_bytes() != b.read_bytes()
        assert cells_one[file]["sha256"] == sha(a)
    corner = cells_two["p55/x00_y00.wav"]
    assert corner["pitch"] == 55 and corner["weights"] == {"trumpet": 1.0}
    assert cells_one["p48/x02_y02.wav"]["weights"] == {"organ": 1.0}
    assert cells_one["p48/x01_y01.wav"]["weights"] == {"bass": 0.25, "guitar": 0.25,
                                                       "keyboard": 0.25, "organ": 0.25}
    assert two["sounds"]["NW"] == {"name": "trumpet", "label": "Trumpet", "inputs": {
        "48": {"file": "trumpet_48.wav", "shift_semitones": 0},
        "55": {"file": "trumpet_55.wav", "shift_semitones": 0}}}
    manifest = json.loads((library_dir / "library.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"]["decodes"] == 26 and manifest["counts"]["cells"] == 36
    assert manifest["pad_files"] == {"hard_links": 36, "copies": 0}
    assert sorted(p["name"] for p in manifest["pads"]) == pads

    # Deleting one pad leaves the other whole; a rerun decodes nothing and restores it.
    before = {f: sha(library_dir / pads[1] / f) for f in cells_two}
    for path in sorted((library_dir / pads[0]).rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    assert {f: sha(library_dir / pads[1] / f) for f in cells_two} == before
    kept = (library_dir / pads[1] / "manifest.json").stat()
    again = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None)
    assert again.decoded == 0
    assert sha(library_dir / pads[0] / "p48/x02_y02.wav") == cells_one["p48/x02_y02.wav"]["sha256"]
    assert json.loads((library_dir / pads[0] / "manifest.json").read_text()) == one
    # The pad the rerun found as it would write it was left alone, not written again.
    assert (library_dir / pads[1] / "manifest.json").stat().st_ino == kept.st_ino
    # A pad manifest that says something else is written again.
    tampered = dict(two, cells=two["cells"][:-1])
    (library_dir / pads[1] / "manifest.json").write_text(json.dumps(tampered))

    # A file system without hard links (FAT on a sampler's card, another device): copies.
    def no_links(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(source), None, str(target))

    monkeypatch.setattr(os, "link", no_links)
    for path in sorted((library_dir / pads[0]).rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None)
    copied = library_dir / pads[0] / "p48/x02_y02.wav"
    assert sha(copied) == cells_one["p48/x02_y02.wav"]["sha256"]
    assert not os.path.samefile(copied, library_dir / pads[1] / "p48/x02_y02.wav")
    manifest = json.loads((library_dir / "library.json").read_text())
    assert manifest["pad_files"] == {"hard_links": 18, "copies": 18}
    assert json.loads((library_dir / pads[1] / "manifest.json").read_text()) == two


def test_one_pad_at_one_pitch_matches_the_decode_of_its_mix(tmp_path):
    """An independent path to a cell: encode the two end notes with the model, mix them by
    the cell's weights, decode with the cell's seed stream; the library's cell holds exactly
    that (after the same post-processing)."""
    from pipeline import postprocess
    from pipeline.audio import load_sound
    from pipeline.config import PostProcess
    from pipeline.nsynth import NSynth

    from .conftest import DEMO_MODEL

    data = small_library(tmp_path / "data", pitches=[55],
                         sounds={"LEFT": ["trumpet"], "RIGHT": ["guitar"]})
    generate_space(data, workflow(tmp_path, decode_batch=1), progress=False, log=lambda _: None)
    pad = tmp_path / "out/lib/trumpet_guitar"
    cell = next(c for c in json.loads((pad / "manifest.json").read_text())["cells"]
                if c["name"] == "x01_y00")
    assert cell["weights"] == {"guitar": 0.5, "trumpet": 0.5}
    model = NSynth.load(DEMO_MODEL)
    z = model.encode(np.stack([load_sound(data / f"{s}_55.wav", 1600) for s in ("trumpet", "guitar")]))
    mixed = (0.5 * z[0].astype(np.float64) + 0.5 * z[1]).astype(np.float32)
    audio = model.generate(mixed[None], seed=[cell["seed"]], progress=False)[0]
    expected = postprocess.process(audio, 1600, PostProcess().model_dump())
    got, _ = soundfile.read(pad / cell["file"], dtype="float32")
    assert np.abs(got - expected).max() < 1e-3  # 16-bit rounding; a diverged decode is far off


def test_kill_minus_nine_during_a_library_run_then_rerun(tmp_path):
    data = small_library(tmp_path / "data")
    flow = workflow(tmp_path, shard_size=1, decode_batch=1)
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "generate", "--workflow",
                                str(flow), "--dataset", str(data)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = tmp_path / "out" / "lib" / ".decodes" / ".soundspace" / "cells"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(records.glob("*.json"))) < 4:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list(records.glob("*.json")))
    assert 4 <= done_before < 26, "the run finished before it could be killed"
    assert json.loads((tmp_path / "out/lib/library.json").read_text())["status"] == "running"

    # A kill can also land while the manifest (after every shard) or a pad file is written.
    library_dir = tmp_path / "out" / "lib"
    (library_dir / ".library.json.123-abcd0123.tmp").write_text("{")
    (library_dir / "bass_guitar_keyboard_organ" / "p48").mkdir(parents=True, exist_ok=True)
    (library_dir / "bass_guitar_keyboard_organ" / "p48" / ".x00_y00.wav.123-abcd0123.tmp").write_bytes(b"RI")

    # Resumed with the whole rest in one batch (a cell's key does not depend on the batch).
    result = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None)
    assert result.decoded == 26 - done_before
    assert not [p for p in library_dir.rglob(".*.tmp")]
    for pad in ("bass_guitar_keyboard_organ", "trumpet_guitar_keyboard_organ"):
        for cell in json.loads((library_dir / pad / "manifest.json").read_text())["cells"]:
            audio, rate = soundfile.read(library_dir / pad / cell["file"])
            assert rate == 16000 and len(audio) == 1600 and cell["sha256"] == sha(library_dir / pad / cell["file"])


def test_missing_pitches_shift_fills_them_from_the_nearest_and_records_the_shift(tmp_path):
    data = tmp_path / "data"
    tones(data, ["a", "b"], [57, 60, 64])
    tones(data, ["one"], [69], seconds=0.5)  # A4, 440 Hz, at one pitch only
    library = {"name": "shifted", "sounds": {"LEFT": ["one"], "RIGHT": ["a", "b"]},
               "pitches": [64, 69, 72], "resolution": 2, "length": 0.5}
    (data / "space.json").write_text(json.dumps(library))
    assert main(["plan", "--dataset", str(data)]) == 2  # a, b have no 69 or 72; one has one pitch

    for name in "ab":
        tones(data, [name], [69, 72], seconds=0.5)
    library["missing_pitches"] = "shift"
    (data / "space.json").write_text(json.dumps(library))
    plan = plan_library(*load_space(data))
    assert {(i.sound, i.pitch): i.semitones for i in plan.inputs.values() if i.semitones} == {
        ("one", 64): -5, ("one", 72): 3}
    # The shifted note sounds where it should: its spectrum peaks at 440 Hz x 2^(3/12).
    audio = plan.audio[("one", 72)][:4000]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), 1 << 16))
    peak = np.argmax(spectrum) * 16000 / (1 << 16)
    assert abs(1200 * np.log2(peak / 523.25)) < 5
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "plan", "--dataset", str(data),
                             "--json"], cwd=ROOT, capture_output=True, text=True)
    assert {"sound": "one", "pitch": 72, "from": 69, "semitones": 3} in json.loads(result.stdout)["shifted"]

    library["pitches"] = [69, 76]  # 7 semitones above the one note: more than the default 6
    tones(data, ["a", "b"], [76], seconds=0.5)
    (data / "space.json").write_text(json.dumps(library))
    with pytest.raises(SoundspaceError, match="nearest pitch \\(69\\) is 7 semitones away, more than "
                       "max_shift_semitones \\(6\\)"):
        plan_library(*load_space(data))


def refused(tmp_path, capsys, data, *needles) -> None:
    flow = workflow(tmp_path)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "out").exists()


def test_missing_pitches_error_names_the_sound_and_the_pitches(tmp_path, capsys):
    data = small_library(tmp_path / "data", pitches=[48, 55, 60, 62])
    refused(tmp_path, capsys, data, "sound bass has no file for pitch 60, 62", "missing_pitches")


def test_bad_libraries_are_refused_before_anything_is_written(tmp_path, capsys):
    data = small_library(tmp_path / "data", pitches=[48, 128])
    refused(tmp_path, capsys, data, "pitches.1", "less than or equal to 127")
    data = small_library(tmp_path / "d2", sounds={"NW": ["bass", "bass"], "NE": "guitar",
                                                  "SW": "keyboard", "SE": "organ"})
    refused(tmp_path, capsys, data, "corner NW lists bass more than once")
    data = small_library(tmp_path / "d3", pattern="{sound}-{pitch}.flac")
    refused(tmp_path, capsys, data, "matches no file", "bass-48.flac")
    data = small_library(tmp_path / "d4", pattern="{sound}.wav")
    refused(tmp_path, capsys, data, "must contain {pitch} and {sound}")
    data = small_library(tmp_path / "d5", length=None)
    seconds = soundfile.info(data / "organ_48.wav").frames
    soundfile.write(data / "organ_48.wav", np.full(seconds // 2, 0.1), 16000)
    refused(tmp_path, capsys, data, "pad bass_guitar_keyboard_organ have different lengths at "
            "pitch 48", "organ 0.5 s", "set `length`")
    data = small_library(tmp_path / "d6", pattern="../{sound}_{pitch}.wav")
    refused(tmp_path, capsys, data, "must stay inside")


def test_a_library_without_pitches_is_pads_of_plain_files(tmp_path):
    """Several sounds at a line end and no pitches: pads of one note each, files `{sound}.wav`,
    cells straight in the pad folder."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("bass", "trumpet", "guitar"):
        (data / f"{name}.wav").write_bytes((LIBRARY_TEST / f"{name}_48.wav").read_bytes())
    (data / "space.json").write_text(json.dumps({
        "name": "line", "sounds": {"LEFT": ["bass", "trumpet"], "RIGHT": ["guitar"]},
        "resolution": 3, "length": 0.1}))
    flow = workflow(tmp_path)
    (tmp_path / "out" / "line").mkdir(parents=True)
    (tmp_path / "out" / "line" / "bass_guitar").write_text("a file where a pad folder goes")
    with pytest.raises(SoundspaceError, match="bass_guitar is a file, where the library writes"):
        generate_space(data, flow, progress=False, log=lambda _: None)
    assert not list((tmp_path / "out" / "line" / ".decodes").glob("*.wav"))
    (tmp_path / "out" / "line" / "bass_guitar").unlink()
    result = generate_space(data, flow, progress=False, log=lambda _: None)
    # By hand: the left end and the middle differ by pad (2 + 2), the right end is shared (1).
    assert (result.cells, result.decoded) == (6, 5)
    for pad in ("bass_guitar", "trumpet_guitar"):
        assert sorted(p.name for p in (result.space_dir / pad).glob("*.wav")) == [
            "x00_y00.wav", "x01_y00.wav", "x02_y00.wav"]
    assert os.path.samefile(result.space_dir / "bass_guitar/x02_y00.wav",
                            result.space_dir / "trumpet_guitar/x02_y00.wav")

    # A changed input remakes exactly the decodes that use it: guitar is in 3 of the 5.
    guitar, _ = soundfile.read(data / "guitar.wav", dtype="float32")
    soundfile.write(data / "guitar.wav", 0.5 * guitar, 16000, subtype="PCM_16")
    assert generate_space(data, flow, progress=False, log=lambda _: None).decoded == 3

    # Another dataset whose library has the same name and none of these sounds: refused.
    other = tmp_path / "other"
    other.mkdir()
    for name in ("bass", "trumpet", "guitar"):
        (other / f"{name}.wav").write_bytes((LIBRARY_TEST / f"{name}_60.wav").read_bytes())
    (other / "space.json").write_text((data / "space.json").read_text())
    with pytest.raises(SoundspaceError, match="holds a library made from other sounds"):
        generate_space(other, flow, progress=False, log=lambda _: None)


def test_a_kill_while_the_page_is_written_leaves_the_library_incomplete(tmp_path):
    """The README's rule: `complete` means every pad and the page are there. SIGKILL the run at
    the moment it starts writing the page: the library must not say complete, and a rerun
    completes it without decoding anything again."""
    data = small_library(tmp_path / "data")
    flow = workflow(tmp_path)
    driver = (
        "import os, signal, sys\n"
        "from pipeline.explorer import library as page\n"
        "page.write = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from pipeline.cli import main\n"
        f"main(['generate', '--workflow', {str(flow)!r}, '--dataset', {str(data)!r}])\n")
    process = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, capture_output=True,
                             timeout=600)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    library_dir = tmp_path / "out" / "lib"
    manifest = json.loads((library_dir / "library.json").read_text())
    assert not (library_dir / "index.html").exists()
    assert manifest["status"] == "incomplete" and manifest["missing"] == {"explorer": True}
    assert manifest["counts"]["decodes_finished"] == manifest["counts"]["decodes"] == 26

    with pytest.raises(SoundspaceError, match="not complete"):  # nothing reads it as finished
        finished.read(library_dir)
    result = generate_space(data, flow, progress=False, log=lambda _: None)
    assert result.decoded == 0
    manifest = json.loads((library_dir / "library.json").read_text())
    assert manifest["status"] == "complete" and (library_dir / "index.html").is_file()


# --- issue 34, item 6: a library says exactly what was meant --------------------------------------

def plan_refused(capsys, data) -> str:
    assert main(["plan", "--dataset", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("soundspace plan: error: ") and err.count("\n") == 1, err
    return err


TAKEN_BEFORE = ["{sound}_{pitch:x}.wav", "{sound}_{pitch:03d}.wav", "{sound!r}_{pitch}.wav"]


@pytest.mark.parametrize("pattern", ["{sound:>1000000000}_{pitch}.wav", *TAKEN_BEFORE,
                                     "{sound.upper}_{pitch}.wav", "{sound}_{pitch}{}.wav",
                                     "{sound}_{0}_{pitch}.wav"])
def test_a_pattern_holds_sound_and_pitch_as_they_are(tmp_path, capsys, pattern):
    """`{sound:>1000000000}` made `plan` take 8.8 GB and print a 1 GB line; `{pitch:x}`,
    `{pitch:03d}` and `{sound!r}` were taken (files named 30, 048 or 'bass' matched)."""
    data = small_library(tmp_path / "data", pattern=pattern)
    if pattern in TAKEN_BEFORE:  # with the files it names there, the library was planned
        for name in ("bass", "trumpet", "guitar", "keyboard", "organ"):
            for pitch in (48, 55):
                (data / f"{name}_{pitch}.wav").rename(data / pattern.format(sound=name, pitch=pitch))
    err = plan_refused(capsys, data)
    assert f"field pattern {pattern!r} holds " in err and "write {sound} and {pitch} just so" in err
    assert len(err) < 400


def test_a_pitch_is_a_json_number(tmp_path, capsys):
    """"48" was taken as pitch 48."""
    err = plan_refused(capsys, small_library(tmp_path / "data", pitches=["48", 55]))
    assert "field pitches.0: give a whole number, without quotes" in err


def test_files_keyed_by_pitch_still_take_json_keys(tmp_path):
    """JSON keys are strings: `files: {"48": ...}` names pitch 48 (and any other key is refused)."""
    data = small_library(tmp_path / "data", sounds={
        "NW": {"name": "bass", "files": {"48": "bass_55.wav", "55": "bass_48.wav"}},
        "NE": "guitar", "SW": "keyboard", "SE": "organ"})
    inputs = plan_library(*load_space(data)).inputs
    assert inputs[("bass", 48)].file == "bass_55.wav" and inputs[("bass", 55)].file == "bass_48.wav"
    small_library(data, sounds={"NW": {"name": "bass", "files": {"C3": "bass_48.wav"}},
                                "NE": "guitar", "SW": "keyboard", "SE": "organ"})
    with pytest.raises(SoundspaceError, match='field sounds.NW.0.files.C3.\\[key\\]: key each file '
                                              'by its MIDI note in quotes, e.g. "48"'):
        load_space(data)


def test_a_sound_whose_files_lack_a_pitch_names_its_files_not_none(tmp_path, capsys):
    """The refusal said "looked for None" of a sound whose `files` had no entry for the pitch."""
    data = small_library(tmp_path / "data", sounds={
        "NW": {"name": "bass", "files": {"48": "bass_48.wav"}},
        "NE": "guitar", "SW": "keyboard", "SE": "organ"})
    err = plan_refused(capsys, data)
    assert "sound bass has no file for pitch 55 (looked for its `files`, which name no file for " \
           "pitch 55 (bass_48.wav); it has 48)" in err and "None" not in err
    data = small_library(tmp_path / "d2", sounds={
        "NW": {"name": "bass", "files": {"50": "nothing.wav"}},
        "NE": "guitar", "SW": "keyboard", "SE": "organ"})
    err = plan_refused(capsys, data)
    assert "no file for bass (e.g. its `files`, which name no file for pitch 48 (nothing.wav))" \
        in err and "None" not in err


def test_a_fifo_where_a_sound_file_goes_is_named_as_such(tmp_path, capsys):
    """A FIFO named like a sound was taken for no file at all ("no file for pitch 55")."""
    data = small_library(tmp_path / "data")
    (data / "organ_55.wav").unlink()
    os.mkfifo(data / "organ_55.wav")
    err = plan_refused(capsys, data)
    assert f"{data / 'organ_55.wav'} is a named pipe (FIFO), not a sound file" in err


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_cells_a_pad_no_longer_has_go_with_their_thumbnails(tmp_path):
    """Lowering the resolution and dropping a pitch left the pads' old WAVs, their pitch folder
    and their thumbnails, beside the new grid's."""
    data = small_library(tmp_path / "data", length=0.05)
    flow = workflow(tmp_path)
    library = generate_space(data, flow, progress=False, log=lambda _: None).space_dir
    pad = library / "bass_guitar_keyboard_organ"
    assert len(list(pad.glob("p55/*.wav"))) == 9 and len(list(pad.glob("thumbs/*.png"))) == 9
    (pad / "p48" / "notes.txt").write_text("the user's own file")
    small_library(tmp_path / "data", length=0.05, resolution=2, pitches=[48])
    generate_space(data, flow, progress=False, log=lambda _: None)
    two_by_two = ["x00_y00", "x00_y01", "x01_y00", "x01_y01"]
    assert files_in(pad) == sorted(["manifest.json", "space.png", "thumbs", "p48", "p48/notes.txt",
                                    *(f"p48/{c}.wav" for c in two_by_two),
                                    *(f"thumbs/{c}.png" for c in two_by_two)])
    finished.read(library)  # and the library reads back whole

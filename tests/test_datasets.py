"""The bundled datasets are exactly what scripts/make-datasets renders."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from pipeline.config import load_space

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"dataset": 4.0, "dataset-test": 1.0}

needs_fluidsynth = pytest.mark.skipif(
    not shutil.which("fluidsynth") and not os.environ.get("SOUNDSPACE_REQUIRE_FLUIDSYNTH"),
    reason="FluidSynth is not installed (scripts/install-system-deps)")


@needs_fluidsynth
def test_the_committed_datasets_match_a_fresh_render():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make-datasets"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("folder", DATASETS)
def test_each_dataset_defines_a_square_space_of_its_sounds(folder):
    base = ROOT / "models" / "n-synth" / folder
    space = json.loads((base / "space.json").read_text())
    assert sorted(space["sounds"]) == ["NE", "NW", "SE", "SW"]
    for sound in space["sounds"].values():
        info = soundfile.info(base / sound["file"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == DATASETS[folder] * 16000
        assert sound["label"]
    assert (base / "README.md").is_file()
    validated, _ = load_space(base)  # the pipeline's own schema accepts it
    assert validated.model == ("test" if folder == "dataset-test" else "real")


def test_the_test_library_is_two_sounds_per_corner_at_three_pitches():
    from pipeline.config import LibraryConfig
    from pipeline.library import plan_library

    base = ROOT / "models" / "n-synth" / "library-test"
    library, folder = load_space(base)
    assert isinstance(library, LibraryConfig) and library.model == "test"
    assert [len(library.sounds[c]) for c in ("NW", "NE", "SW", "SE")] == [2, 2, 2, 2]
    assert library.pitches == [48, 55, 60] and library.resolution == 3 and library.length == 1.0
    plan = plan_library(library, folder)
    assert len(plan.pads) == 16 and not any(i.semitones for i in plan.inputs.values())
    for item in plan.inputs.values():
        info = soundfile.info(base / item.file)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)
    # The four instruments of the test space, at its note, are the same files.
    for name in ("bass", "guitar", "keyboard", "organ"):
        assert (base / f"{name}_48.wav").read_bytes() == (ROOT / "models/n-synth/dataset-test" / f"{name}.wav").read_bytes()


SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@needs_fluidsynth
def test_soundspace_inputs_renders_the_test_librarys_notes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                             str(SOUNDFONT), "--program", "56", "--pitches", "48", "55", "60",
                             "--length", "1", "--name", "trumpet", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for pitch in (48, 55, 60):
        made = tmp_path / f"trumpet_{pitch}.wav"
        assert made.read_bytes() == (ROOT / "models/n-synth/library-test" / made.name).read_bytes()


@needs_fluidsynth
def test_the_preset_table_agrees_with_fluidsynths_own_listing():
    """FluidSynth's shell lists a soundfont's presets as `BBB-PPP Name`: the reader of the
    preset table must find the same ones."""
    from pipeline.soundfont import presets

    listing = subprocess.run(["fluidsynth", "-n", "-a", "file", "-o", "audio.file.name=/dev/null",
                              str(SOUNDFONT)], input="inst 1\nquit\n", capture_output=True,
                             text=True, timeout=120).stdout
    theirs = {}
    for line in listing.splitlines():
        head, _, name = line.strip().partition(" ")
        if len(head) == 7 and head[3] == "-" and head.replace("-", "").isdigit():
            theirs[(int(head[:3]), int(head[4:]))] = name.strip()
    assert len(theirs) > 100
    assert presets(SOUNDFONT) == theirs


@pytest.mark.parametrize("args, needle", [
    (["--program", "33", "--bank", "9"], "has no preset at bank 9 program 33"),
    (["--program", "128"], "--program takes a whole number from 0 to 127"),
    (["--program", "33", "--pitches", "48", "48"], "names a pitch twice"),
])
def test_inputs_refuses_what_it_cannot_render(tmp_path, args, needle):
    argv = ["inputs", "--soundfont", str(SOUNDFONT), "--pitches", "48", "--name", "x",
            "--out", str(tmp_path / "out"), *args]
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_inputs_refuses_a_file_that_is_not_a_soundfont(tmp_path):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                             str(fake), "--program", "0", "--pitches", "60", "--name", "x",
                             "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "is not a SoundFont 2 file" in result.stderr

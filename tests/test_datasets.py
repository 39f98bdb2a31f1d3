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


@needs_fluidsynth
def test_two_renders_are_byte_identical(tmp_path):
    for name in ("a", "b"):
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make-datasets"), "--out",
                        str(tmp_path / name)], check=True, capture_output=True)
    for path in sorted((tmp_path / "a").rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


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

"""`soundspace generate` end to end with the demo model: the space folder, resume, --force,
duplicate cells decoded once, a run killed with SIGKILL, and parallel shards."""
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

from pipeline.cli import main
from pipeline.nsynth import NSynth
from .pipeline_helpers import generate_space

from .pipeline_helpers import TEST_DATASET, dataset, workflow

ROOT = Path(__file__).resolve().parent.parent


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wavs(space_dir: Path) -> dict:
    return {p.name: sha(p) for p in sorted(space_dir.glob("*.wav"))}


def test_test_space_end_to_end_and_rerun(tmp_path, capsys):
    flow = workflow(tmp_path)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(TEST_DATASET)]) == 0
    printed = capsys.readouterr().out
    space_dir = tmp_path / "out" / "demo-test-space"
    assert "decode" in printed and f"wrote {space_dir}/" in printed

    names = [f"x{x:02d}_y{y:02d}.wav" for y in range(3) for x in range(3)]
    assert sorted(wavs(space_dir)) == sorted(names)
    assert not list(space_dir.glob(".*.tmp"))
    for name in names:
        info = soundfile.info(space_dir / name)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")

    manifest = json.loads((space_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["cells_total"] == 9
    assert manifest["space"]["name"] == "demo-test-space" and manifest["seed"] == 0
    assert manifest["workflow"]["backend"] == "local"
    assert manifest["model"]["identity"] == NSynth.load(manifest["model"]["folder"]).identity
    by_name = {cell["name"]: cell for cell in manifest["cells"]}
    assert by_name["x00_y00"]["weights"] == {"NW": 1.0, "NE": 0.0, "SW": 0.0, "SE": 0.0}
    assert by_name["x02_y02"]["weights"] == {"NW": 0.0, "NE": 0.0, "SW": 0.0, "SE": 1.0}
    assert by_name["x01_y01"]["weights"] == {"NW": 0.25, "NE": 0.25, "SW": 0.25, "SE": 0.25}
    assert by_name["x02_y01"]["weights"] == {"NW": 0.0, "NE": 0.5, "SW": 0.0, "SE": 0.5}
    for cell in manifest["cells"]:
        audio, _ = soundfile.read(space_dir / cell["file"])
        assert cell["samples"] == len(audio) == 16000 and cell["seconds"] == 1.0
        assert abs(cell["peak"] - np.abs(audio).max()) < 1e-4
        assert 0.85 < cell["peak"] <= 0.8913  # default chain: -1 dBFS, never clipped
        assert cell["sha256"] == sha(space_dir / cell["file"])
    assert set(manifest["timings_seconds"]) >= {"configuration", "audio in", "encode",
                                                "interpolate", "plan", "decode"}

    embeddings = np.load(space_dir / "embeddings.npz")
    assert list(embeddings["labels"]) == ["NW", "NE", "SW", "SE"]
    assert embeddings["inputs"].shape == (4, 31, 16) and embeddings["cells"].shape == (9, 31, 16)
    corners = {"x00_y00": 0, "x02_y00": 1, "x00_y02": 2, "x02_y02": 3}
    names_in_npz = list(embeddings["cell_names"])
    for name, k in corners.items():  # corners reproduce the inputs' embeddings exactly
        assert np.array_equal(embeddings["cells"][names_in_npz.index(name)], embeddings["inputs"][k])

    before = wavs(space_dir)
    result = generate_space(TEST_DATASET, flow, progress=False, log=lambda _: None)
    assert result.decoded == 0 and result.points == 9
    assert wavs(space_dir) == before
    rerun = json.loads((space_dir / "manifest.json").read_text())
    assert rerun["status"] == "complete" and rerun["decoded"] == 0
    assert rerun["earlier_runs"][-1]["decoded"] == 9


def small_space(tmp_path, **fields):
    """A 3 x 3 space of 2 frames (1024 samples): seconds to decode."""
    return dataset(tmp_path / "data", **{"length": 0.07, **fields})


def test_radial_nine_by_nine_decodes_duplicates_once(tmp_path):
    data = small_space(tmp_path, resolution=9, weighting="radial")
    result = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None)
    assert (result.cells, result.points, result.decoded) == (81, 77, 77)
    manifest = json.loads((result.space_dir / "manifest.json").read_text())
    shared = [c for c in manifest["cells"] if c["decoded_with"] != c["name"]]
    assert len(shared) == 4
    by_name = {c["name"]: c for c in manifest["cells"]}
    for cell in shared:
        twin = by_name[cell["decoded_with"]]
        assert cell["weights"] == twin["weights"] and cell["sha256"] == twin["sha256"]
    assert len(wavs(result.space_dir)) == 81


def test_resume_redoes_only_damaged_or_missing_cells_and_force_redoes_all(tmp_path):
    data, flow = small_space(tmp_path), workflow(tmp_path, shard_size=4)
    first = generate_space(data, flow, progress=False, log=lambda _: None)
    assert (first.shards, first.decoded) == (3, 9)
    space_dir = first.space_dir
    before = wavs(space_dir)
    (space_dir / "x01_y01.wav").write_bytes(b"RIFF....damaged")
    (space_dir / "x02_y00.wav").unlink()
    (space_dir / ".x00_y00.wav.tmp").write_bytes(b"left by a killed run")
    again = generate_space(data, flow, progress=False, log=lambda _: None)
    assert again.decoded == 2
    assert not list(space_dir.glob(".*.tmp"))
    after = wavs(space_dir)
    assert set(after) == set(before)
    assert {n for n in after if after[n] != before[n]} <= {"x01_y01.wav", "x02_y00.wav"}

    forced = generate_space(data, flow, force=True, progress=False, log=lambda _: None)
    assert forced.decoded == 9


def test_changed_space_is_remade_and_stale_cells_removed(tmp_path):
    flow = workflow(tmp_path)
    first = generate_space(small_space(tmp_path, resolution=4), flow, progress=False,
                           log=lambda _: None)
    assert first.decoded == 16
    (first.space_dir / "notes.txt").write_text("the user's own file")
    reseeded = generate_space(small_space(tmp_path, resolution=3, seed=7), flow,
                              progress=False, log=lambda _: None)
    assert reseeded.decoded == 9  # another seed: nothing reusable
    assert sorted(wavs(first.space_dir)) == sorted(f"x{x:02d}_y{y:02d}.wav"
                                                   for x in range(3) for y in range(3))
    assert (first.space_dir / "notes.txt").exists()  # files it did not write are left alone


@pytest.mark.parametrize("force", [False, True])
def test_a_removed_cell_takes_its_thumbnail_with_it(tmp_path, force):
    """Issue 34, item 6: lowering the resolution removed the old cells' WAVs but left their
    thumbnails in thumbs/ (with --force, the WAVs stayed too); a PNG the user put there stays."""
    flow = workflow(tmp_path)
    space_dir = generate_space(small_space(tmp_path), flow, progress=False,
                               log=lambda _: None).space_dir
    assert len(list((space_dir / "thumbs").glob("*.png"))) == 9
    (space_dir / "thumbs" / "x07_y07.png").write_bytes(b"the user's own picture")
    generate_space(small_space(tmp_path, resolution=2), flow, force=force, progress=False,
                   log=lambda _: None)
    two_by_two = ["x00_y00", "x00_y01", "x01_y00", "x01_y01"]
    assert sorted(p.name for p in (space_dir / "thumbs").iterdir()) == sorted(
        [*(f"{c}.png" for c in two_by_two), "x07_y07.png"])
    assert sorted(wavs(space_dir)) == [f"{c}.wav" for c in two_by_two]


def test_line_space_and_open_nsynth_super_chain(tmp_path):
    data = small_space(tmp_path, labels=("LEFT", "RIGHT"), resolution=5,
                       postprocess={"chain": "open-nsynth-super"})
    result = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None)
    assert (result.cells, result.decoded) == (5, 5)
    manifest = json.loads((result.space_dir / "manifest.json").read_text())
    assert [c["weights"]["RIGHT"] for c in manifest["cells"]] == [0, 0.25, 0.5, 0.75, 1]
    for cell in manifest["cells"]:
        audio, _ = soundfile.read(result.space_dir / cell["file"])
        assert len(audio) == round(0.07 * 16000)
        assert abs(np.abs(audio).max() - 10 ** (-12 / 20)) < 1e-3  # -12 dBFS
        assert audio[0] == 0 and audio[-1] == 0  # 8-sample fades


def test_parallel_shards_write_the_same_space(tmp_path):
    data = small_space(tmp_path)
    one = generate_space(data, workflow(tmp_path / "a", shard_size=3), progress=False,
                         log=lambda _: None)
    two = generate_space(data, workflow(tmp_path / "b", shard_size=3, parallel_shards=2),
                         progress=False, log=lambda _: None)
    assert two.shards == 3 and two.decoded == 9
    assert wavs(one.space_dir) == wavs(two.space_dir)


def test_kill_minus_nine_during_decode_then_rerun(tmp_path):
    """SIGKILL while shards are being written: nothing partial is taken as done, and a rerun
    completes the space with every WAV whole."""
    data = dataset(tmp_path / "data", length=0.3)
    flow = workflow(tmp_path, shard_size=1, decode_batch=1)
    space_dir = tmp_path / "out" / "space"
    command = [sys.executable, "-m", "pipeline.cli", "generate", "--workflow", str(flow),
               "--dataset", str(data)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    records = space_dir / ".soundspace" / "cells"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(records.glob("*.json"))) < 3:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {p.stem for p in records.glob("*.json")}
    assert 3 <= len(done_before) < 9, "the run finished before it could be killed"
    manifest = json.loads((space_dir / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert {c["name"] for c in manifest["cells"]} <= done_before

    result = generate_space(data, flow, progress=False, log=lambda _: None)
    assert result.decoded == 9 - len(done_before)
    assert len(wavs(space_dir)) == 9 and not list(space_dir.glob(".*.tmp"))
    manifest = json.loads((space_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["cells"]) == 9
    for cell in manifest["cells"]:
        audio, rate = soundfile.read(space_dir / cell["file"])
        assert rate == 16000 and len(audio) == 4800 and cell["sha256"] == sha(space_dir / cell["file"])


def test_space_of_other_sounds_is_not_overwritten(tmp_path, capsys):
    flow = workflow(tmp_path)
    generate_space(small_space(tmp_path), flow, progress=False, log=lambda _: None)
    other = dataset(tmp_path / "other", length=0.07)  # its space has the same name ...
    bass, _ = soundfile.read(other / "bass.wav", dtype="float32")
    soundfile.write(other / "bass.wav", 0.5 * bass, 16000)  # ... and one other sound
    assert main(["generate", "--workflow", str(flow), "--dataset", str(other)]) == 2
    assert "holds a space made from other sounds" in capsys.readouterr().err
    assert generate_space(other, flow, force=True, progress=False, log=lambda _: None).decoded == 9


def test_a_moved_or_copied_dataset_is_the_same_space(tmp_path):
    """Item 13: the space is known by its sounds' contents, not by the dataset's path."""
    flow = workflow(tmp_path)
    first = generate_space(small_space(tmp_path), flow, progress=False, log=lambda _: None)
    before = wavs(first.space_dir)
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    (tmp_path / "data").rename(moved)
    again = generate_space(moved, flow, progress=False, log=lambda _: None)
    assert again.decoded == 0 and wavs(again.space_dir) == before


def test_inputs_of_any_format_rate_and_length(tmp_path):
    """44.1 kHz stereo FLAC, 22.05 kHz OGG, a sound shorter than the space (zero-padded) and one
    longer (cut): all become 16 kHz mono of exactly the space's length."""
    import librosa

    data = dataset(tmp_path / "data", length=0.5, resolution=2)
    bass, _ = soundfile.read(data / "bass.wav", dtype="float32")
    stereo = np.stack([bass, 0.5 * bass], 1)
    soundfile.write(data / "bass.flac", librosa.resample(stereo.T, orig_sr=16000,
                                                         target_sr=44100).T, 44100)
    guitar, _ = soundfile.read(data / "guitar.wav", dtype="float32")
    soundfile.write(data / "guitar.ogg", librosa.resample(guitar, orig_sr=16000, target_sr=22050),
                    22050)
    soundfile.write(data / "short.wav", bass[:3000], 16000)
    space = json.loads((data / "space.json").read_text())
    for label, file in (("NW", "bass.flac"), ("NE", "guitar.ogg"), ("SW", "short.wav")):
        space["sounds"][label]["file"] = file
    (data / "space.json").write_text(json.dumps(space))
    result = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None)
    assert result.decoded == 4
    inputs = np.load(result.space_dir / "embeddings.npz")["inputs"]
    assert inputs.shape == (4, 8000 // 512, 16) and np.isfinite(inputs).all()
    for path in result.space_dir.glob("*.wav"):
        assert soundfile.info(path).frames == 8000

"""Cells that come back from another machine are merged into a space only after every check:
the record's key is the planned one, its file is the cell's own WAV, the WAV has the recorded
sha256 and is 16 kHz mono of the space's length. Each check is broken on purpose here, and the
cell must be refused with the space left unchanged."""
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline import SoundspaceError
from pipeline.backends.remote import receive
from pipeline.nsynth import NSynth
from pipeline.output import RECORDS, merge_finished
from pipeline.shards import ShardSpec, render_shard

from .conftest import DEMO_MODEL

CELLS = ["x00_y00", "x01_y00"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A real shard of two cells, rendered once: (spec, folder holding its WAVs and records)."""
    folder = tmp_path_factory.mktemp("rendered")
    spec = ShardSpec(space="s", index=0, count=1,
                     model={"path": str(DEMO_MODEL), "identity": NSynth.load(DEMO_MODEL).identity,
                            "hop": 512},
                     device="cpu", math="auto", decode_batch=2, samples=1024,
                     postprocess={"chain": "none", "peak_dbfs": -1.0, "fade_ms": 5.0},
                     points=[{"seed": [0, i], "cells": [name], "key": f"{i:064x}"}
                             for i, name in enumerate(CELLS)],
                     embeddings=np.random.default_rng(0).normal(0, 1, (2, 2, 16)).astype(np.float32))
    render_shard(spec, folder)
    return spec, folder


@pytest.fixture
def incoming(rendered, tmp_path):
    copy = tmp_path / "incoming"
    shutil.copytree(rendered[1], copy)
    return copy


def record(folder: Path, name: str) -> dict:
    return json.loads((folder / RECORDS / f"{name}.json").read_text())


def save_record(folder: Path, name: str, fields: dict) -> None:
    (folder / RECORDS / f"{name}.json").write_text(json.dumps(fields))


def rewrite_wav(folder: Path, name: str, audio, rate: int) -> None:
    """Replace the WAV and make its record's sha256 match, so only the other checks can catch it."""
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, subtype="PCM_16", format="WAV")
    (folder / f"{name}.wav").write_bytes(buffer.getvalue())
    save_record(folder, name, {**record(folder, name),
                               "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()})


def test_untouched_cells_are_merged(rendered, incoming, tmp_path):
    space = tmp_path / "space"
    space.mkdir()
    merged, records, missing = merge_finished(incoming, rendered[0], space)
    assert (merged, sorted(records), missing) == (2, ["x00_y00", "x01_y00"], [])
    assert records["x01_y00"] == json.loads((space / RECORDS / "x01_y00.json").read_text())
    assert sorted(p.name for p in space.glob("*.wav")) == ["x00_y00.wav", "x01_y00.wav"]


def tamper_key(folder):
    save_record(folder, "x00_y00", {**record(folder, "x00_y00"), "key": "f" * 64})


def tamper_sha256(folder):
    data = bytearray((folder / "x00_y00.wav").read_bytes())
    data[100] ^= 0xFF
    (folder / "x00_y00.wav").write_bytes(bytes(data))


def tamper_length(folder):
    audio, _ = soundfile.read(folder / "x00_y00.wav", dtype="float32")
    rewrite_wav(folder, "x00_y00", audio[:1000], 16000)


def tamper_rate(folder):
    audio, _ = soundfile.read(folder / "x00_y00.wav", dtype="float32")
    rewrite_wav(folder, "x00_y00", audio, 22050)


def tamper_other_file(folder):  # a valid record, but it vouches for the other cell's WAV
    other = record(folder, "x01_y00")
    save_record(folder, "x00_y00", {**record(folder, "x00_y00"), "file": "x01_y00.wav",
                                    "sha256": other["sha256"]})
    buffer = io.BytesIO()  # a well-formed WAV of the right rate and length, other content
    soundfile.write(buffer, np.zeros(1024), 16000, subtype="PCM_16", format="WAV")
    (folder / "x00_y00.wav").write_bytes(buffer.getvalue())


def tamper_absolute_file(folder):
    save_record(folder, "x00_y00", {**record(folder, "x00_y00"), "file": "/etc/hostname",
                                    "sha256": hashlib.sha256(Path("/etc/hostname").read_bytes())
                                    .hexdigest()})


@pytest.mark.parametrize("tamper", [tamper_key, tamper_sha256, tamper_length, tamper_rate,
                                    tamper_other_file, tamper_absolute_file],
                         ids=lambda f: f.__name__)
def test_a_cell_failing_a_check_is_refused_and_the_space_is_unchanged(rendered, incoming,
                                                                       tmp_path, tamper):
    space = tmp_path / "space"
    space.mkdir()
    tamper(incoming)
    merged, records, missing = merge_finished(incoming, rendered[0], space)
    assert (merged, list(records), missing) == (1, ["x01_y00"], ["x00_y00"])  # the other, untouched cell still merges
    assert not (space / "x00_y00.wav").exists()
    assert not (space / RECORDS / "x00_y00.json").exists()


def test_a_worker_reply_naming_a_path_outside_is_refused(rendered, tmp_path):
    """Remote replies (a Ray worker's, a job's artifacts) carry file names; one with `..` must not
    be written anywhere."""
    spec, folder = rendered
    space = tmp_path / "space"
    (space / ".soundspace").mkdir(parents=True)
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in folder.rglob("*") if p.is_file()}
    files["../../escaped.wav"] = b"written outside the space"
    with pytest.raises(SoundspaceError, match="refusing file name from Ray node 10.0.0.2"):
        receive(files, spec, space, "Ray node 10.0.0.2")
    assert not list(tmp_path.rglob("escaped.wav"))
    assert not list(space.glob("*.wav"))

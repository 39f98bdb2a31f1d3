"""The space folder on disk: cells, their records, the manifest and the embeddings.

    OUTPUT/<space name>/
      x00_y00.wav ...        one 16-bit 16 kHz WAV per cell, named by grid column and row
      manifest.json          space, workflow, model identity, seed, every finished cell, timings
      embeddings.npz         the inputs' and the cells' embeddings
      inputs/NW.wav ...      the input sounds as encoded (cut or padded), played by the page
      index.html, explorer-data.js, space.png, thumbs/   the explorer (pipeline/explorer)
      .soundspace/cells/     one small JSON record per finished cell (how it was made)
      .soundspace/lock       held by the run writing the space (one at a time)

A cell is done when its record exists, its `key` equals the key of the cell about to be made (a
hash of everything its audio depends on: model, input sounds, weights, seed, length,
post-processing) and its WAV has the sha256 the record names. Every file is written under a
temporary name and renamed, and the record only after its WAV, so a run killed at any moment
(even `kill -9`) leaves nothing a rerun or the manifest would take as done. A record's `file` must
be the cell's own WAV name: a record is read back from disk, so it is not trusted to name a path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import SoundspaceError
from .audio import wav_bytes
from .files import (
    FolderLock,
    atomic_write,
    inside,
    is_temp,
    parse_json,
    real_folder,
    remove_own,
)
from .space import WORK_NAME

STATE = Path(".soundspace")
RECORDS = STATE / "cells"
LOCK = STATE / "lock"
INCOMING = ".incoming-"  # prefix of the folders remote backends unpack results into, in STATE
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npz"
THUMBS = "thumbs"
INPUTS = "inputs"  # the input sounds as the encoder heard them, for the page to play beside cells
EXPLORER_FILES = ("index.html", "explorer-data.js")
PICTURE = "space.png"
FORMAT = "soundspace-space-1"
# Every folder a run writes files into: where a killed run's temporary files are looked for.
WRITTEN_FOLDERS = (Path("."), RECORDS, Path(THUMBS), Path(INPUTS))


def lock(space_dir: Path, wait: bool = False, log=print) -> FolderLock:
    """Hold the space folder for this run: a second run on it is refused (or waits)."""
    real_folder(space_dir, RECORDS.as_posix())  # and STATE: both real folders, before any use
    return FolderLock(space_dir / LOCK, f"the space {space_dir}").acquire(wait, log)


def cell_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cell_wav(space_dir: Path, name) -> Path:
    """The WAV of cell `name`, refusing any name that is not a cell's (`x00_y00`) or a library
    decode's (`d048-<16 hex>`): names come back from manifests, shard specs and workers."""
    if not isinstance(name, str) or not WORK_NAME.fullmatch(name):
        raise SoundspaceError(
            f"refusing cell name {str(name)[:60]!r}: cells are named like "
            "x00_y00 (a library's decodes like d048-0123456789abcdef)"
        )
    return inside(space_dir, f"{name}.wav", "cell file")


def record_path(space_dir: Path, name: str) -> Path:
    cell_wav(space_dir, name)
    return space_dir / RECORDS / f"{name}.json"


def finished(space_dir: Path, name: str, key: str) -> dict | None:
    """The cell's record when the cell is done as described above, else None."""
    try:
        record = parse_json(record_path(space_dir, name).read_text())
        if record.get("key") != key or record.get("file") != f"{name}.wav":
            return None
        data = (space_dir / record["file"]).read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if hashlib.sha256(data).hexdigest() == record.get("sha256") else None


def write_cell(space_dir: Path, name: str, audio: np.ndarray, record: dict) -> dict:
    """Write the cell's WAV, then its record (the order is what makes a kill safe)."""
    data = wav_bytes(audio)
    file = f"{name}.wav"
    atomic_write(cell_wav(space_dir, name), data)
    record = {
        **record,
        "file": file,
        "samples": int(len(audio)),
        "peak": round(float(np.abs(audio).max()), 6),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    path = record_path(space_dir, name)
    real_folder(space_dir, RECORDS.as_posix())
    atomic_write(path, json.dumps(record, indent=1).encode())
    return record


def clear(space_dir: Path) -> None:
    """Forget every finished cell (`--force`): records go, WAVs are overwritten as cells finish."""
    for path in (space_dir / RECORDS).glob("*.json"):
        path.unlink()
    (space_dir / MANIFEST).unlink(missing_ok=True)


def remove_leftovers(space_dir: Path) -> list[str]:
    """Temporary files and unpacking folders a killed run left behind, in every folder a run
    writes (never taken as cells; removed by the next run, which holds the lock)."""
    removed = []
    for folder in WRITTEN_FOLDERS:
        for path in (space_dir / folder).glob(".*"):
            if is_temp(path) and not path.is_dir():
                path.unlink(missing_ok=True)
                removed.append(str(folder / path.name))
    for path in (space_dir / STATE).glob(INCOMING + "*"):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(STATE / path.name))
    return removed


def remove_stale_cells(space_dir: Path, names: set) -> list[str]:
    """Cells this program wrote earlier (they have a record) that the space no longer has, e.g.
    after lowering the resolution, with their thumbnails. Files without a record are never
    touched."""
    removed = []
    for path in (space_dir / RECORDS).glob("*.json"):
        if path.stem not in names:
            (space_dir / f"{path.stem}.wav").unlink(missing_ok=True)
            remove_own(space_dir, f"{THUMBS}/{path.stem}.png")
            path.unlink()
            removed.append(path.stem)
    return removed


def remove_records_except(space_dir: Path, finished: set) -> None:
    """The plan is made: a record not of a finished cell (another key: the cell is made again)
    goes, so that while the run decodes, a record says a cell of this run is finished."""
    for path in (space_dir / RECORDS).glob("*.json"):
        if path.stem not in finished:
            path.unlink(missing_ok=True)


def write_manifest(space_dir: Path, manifest: dict) -> None:
    atomic_write(
        space_dir / MANIFEST, (json.dumps({"format": FORMAT, **manifest}, indent=1) + "\n").encode()
    )


def write_inputs(folder: Path, sounds: dict) -> None:
    """`inputs/<name>.wav` for each input sound (name -> float audio at 16 kHz): what the page
    plays beside the cells, the sound as it went into the encoder (cut or padded to length)."""
    real_folder(folder, INPUTS)
    for name, audio in sounds.items():
        atomic_write(folder / INPUTS / f"{name}.wav", wav_bytes(audio))


def write_embeddings(space_dir: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(space_dir / EMBEDDINGS, buffer.getvalue())


def merge_finished(incoming, spec, space_dir) -> tuple[int, dict, list]:
    """The space's integrity rule for cells made elsewhere. Move the cells of `spec` (a
    shards.ShardSpec) that a remote worker made (`incoming`: WAVs and their records, as render_shard
    writes them) into the space, each only after checking it: its record's key is the planned one,
    the WAV has the recorded sha256 and is 16 kHz mono of the space's length. WAV first, then
    record, each by rename. Returns the points merged, the records of their cells, and the cells
    that failed or are missing."""
    import soundfile

    incoming, space_dir = Path(incoming), Path(space_dir)
    merged, records, missing = 0, {}, []
    for point in spec.points:
        good = {}
        for name in point["cells"]:
            record = finished(incoming, name, point["key"])
            if record is None:
                continue
            try:
                info = soundfile.info(incoming / f"{name}.wav")
            except RuntimeError:
                continue
            if (info.samplerate, info.channels, info.frames) == (16000, 1, spec.samples):
                good[name] = record
        if len(good) < len(point["cells"]):
            missing += [name for name in point["cells"] if name not in good]
            continue
        real_folder(space_dir, RECORDS.as_posix())
        for name in good:  # a kill between the two renames leaves nothing taken as done
            os.replace(incoming / f"{name}.wav", space_dir / f"{name}.wav")
            os.replace(incoming / RECORDS / f"{name}.json", space_dir / RECORDS / f"{name}.json")
        records.update(good)
        merged += 1
    return merged, records, missing

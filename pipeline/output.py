"""The space folder on disk: cells, their records, the manifest and the embeddings.

    OUTPUT/<space name>/
      x00_y00.wav ...        one 16-bit 16 kHz WAV per cell, named by grid column and row
      manifest.json          space, workflow, model identity, seed, every finished cell, timings
      embeddings.npz         the inputs' and the cells' embeddings
      .soundspace/cells/     one small JSON record per finished cell (how it was made)

A cell is done when its record exists, its `key` equals the key of the cell about to be made (a
hash of everything its audio depends on: model, input sounds, weights, seed, length,
post-processing) and its WAV has the sha256 the record names. Every file is written under a
temporary name and renamed, and the record only after its WAV, so a run killed at any moment
(even `kill -9`) leaves nothing a rerun or the manifest would take as done.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE

RECORDS = Path(".soundspace") / "cells"
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npz"
FORMAT = "soundspace-space-1"


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cell_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def wav_bytes(audio: np.ndarray) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def record_path(space_dir: Path, name: str) -> Path:
    return space_dir / RECORDS / f"{name}.json"


def finished(space_dir: Path, name: str, key: str) -> dict | None:
    """The cell's record when the cell is done as described above, else None."""
    try:
        record = json.loads(record_path(space_dir, name).read_text())
        if record.get("key") != key:
            return None
        data = (space_dir / record["file"]).read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if hashlib.sha256(data).hexdigest() == record.get("sha256") else None


def write_cell(space_dir: Path, name: str, audio: np.ndarray, record: dict) -> dict:
    """Write the cell's WAV, then its record (the order is what makes a kill safe)."""
    data = wav_bytes(audio)
    file = f"{name}.wav"
    atomic_write(space_dir / file, data)
    record = {**record, "file": file, "samples": int(len(audio)),
              "peak": round(float(np.abs(audio).max()), 6),
              "sha256": hashlib.sha256(data).hexdigest()}
    path = record_path(space_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=1).encode())
    return record


def clear(space_dir: Path) -> None:
    """Forget every finished cell (`--force`): records go, WAVs are overwritten as cells finish."""
    for path in (space_dir / RECORDS).glob("*.json"):
        path.unlink()
    (space_dir / MANIFEST).unlink(missing_ok=True)


def remove_leftovers(space_dir: Path) -> list[str]:
    """Temporary files a killed run left behind (never taken as cells; removed on the next run)."""
    removed = []
    for path in list(space_dir.glob(".*.tmp")) + list((space_dir / RECORDS).glob(".*.tmp")):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def remove_stale_cells(space_dir: Path, names: set) -> list[str]:
    """Cells this program wrote earlier (they have a record) that the space no longer has, e.g.
    after lowering the resolution. Files without a record are never touched."""
    removed = []
    for path in (space_dir / RECORDS).glob("*.json"):
        if path.stem not in names:
            try:
                file = json.loads(path.read_text()).get("file")
            except (OSError, ValueError):
                file = None
            if file and (space_dir / file).name == file:
                (space_dir / file).unlink(missing_ok=True)
            path.unlink()
            removed.append(path.stem)
    return removed


def write_manifest(space_dir: Path, manifest: dict) -> None:
    atomic_write(space_dir / MANIFEST, (json.dumps({"format": FORMAT, **manifest}, indent=1)
                                        + "\n").encode())


def write_embeddings(space_dir: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(space_dir / EMBEDDINGS, buffer.getvalue())

"""The library folder on disk: every decode once, and a folder per pad that links to them.

    OUTPUT/<library>/
      library.json              pads, pitches, counts, shifted inputs, model, status, timings
      <pad>/                    one per pad, named by its sounds in corner order (NW_NE_SW_SE)
        p48/x00_y00.wav ...     the pad's cells at each pitch: p<MIDI note>/<cell>.wav
                                (a library without pitches: <cell>.wav)
        manifest.json           per cell: pitch, grid place, weight per sound, seed stream,
                                sha256, the decode it plays and how many cells share it
        space.png, thumbs/      its pictures at its middle pitch (pipeline/explorer/library.py)
      index.html, explorer-data.js   the library's page
      .decodes/                 every distinct decode once (`d048-<hash>.wav`), with the records
                                and the lock of a space folder (pipeline/output.py)

A pad's cell is a hard link to its decode where the file system allows it (no extra disk; every
pad sharing a decode holds the very same bytes), else a copy. Either way deleting a pad, or the
.decodes folder, never damages another pad. Links and copies are made under a temporary name
and renamed, so a pad file under its final name is always whole. Editing a linked WAV in place
changes it in every pad that shares it: save edits under another name. Cells a pad no longer
has (a lower resolution, a pitch dropped) are removed with their thumbnails, as its earlier
manifest lists them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path

from . import files
from .files import atomic_write
from .output import THUMBS
from .space import CELL_NAME

LIBRARY_MANIFEST = "library.json"
PAD_MANIFEST = "manifest.json"
DECODES = ".decodes"
FORMAT, PAD_FORMAT = "soundspace-library-1", "soundspace-pad-1"
# A cell's file inside a pad folder, as `cell_file` names it: the only names removed from a pad.
PAD_CELL = re.compile(rf"(?:p[0-9]{{1,3}}/)?({CELL_NAME.pattern})\.wav")
# Errors of os.link that mean "this file system does not do hard links here": copy instead.
_NO_LINKS = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


def pitch_folder(pitch) -> str:
    """Where a pitch's cells lie inside a pad folder: "p48/", or "" without pitches."""
    return f"p{pitch}/" if pitch is not None else ""


def cell_file(pitch, cell_name: str) -> str:
    """A cell's file inside its pad folder."""
    return f"{pitch_folder(pitch)}{cell_name}.wav"


def place(source: Path, target: Path) -> str:
    """Put `source`'s bytes at `target` (a hard link, else a copy); returns which it did."""
    if target.exists() and os.path.samefile(source, target):
        return "link"
    target.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_file(target, sync=False) as tmp:  # the decode it repeats is on disk
        try:
            os.link(source, tmp)
            how = "link"
        except OSError as error:
            if error.errno not in _NO_LINKS:
                raise
            shutil.copyfile(source, tmp)
            how = "copy"
    return how


def write_pad(library_dir: Path, plan, pad_index: int, records: dict) -> dict:
    """Link (or copy) every cell of one pad from the decodes, then write its manifest; returns
    how many cells were linked and copied."""
    pad = plan.pads[pad_index]
    pad_dir = files.real_folder(library_dir, pad.name)
    store = library_dir / DECODES
    counts = {"link": 0, "copy": 0}
    cells = []
    for pitch in plan.pitches:
        files.real_folder(library_dir, (pad.name + "/" + pitch_folder(pitch)).rstrip("/"))
        for c, cell in enumerate(plan.grid):
            decode = plan.decodes[plan.cell_decode[(pad_index, pitch, c)]]
            name = cell_file(pitch, cell.name)
            counts[place(store / decode.file, pad_dir / name)] += 1
            record = records[decode.name]
            cells.append(
                {
                    "file": name,
                    "pitch": pitch,
                    "name": cell.name,
                    "column": cell.xi,
                    "row": cell.yi,
                    "x": cell.x,
                    "y": cell.y,
                    "corner_weights": dict(zip(plan.config.labels, cell.weights, strict=True)),
                    "weights": dict(decode.mix),
                    "seed": decode.seed,
                    "decode": decode.name,
                    "shared_by_cells": len(decode.cells),
                    "sha256": record["sha256"],
                    "samples": record["samples"],
                    "peak": record["peak"],
                }
            )
    sounds = {
        label: _sound(plan, label, pad.sounds[i]) for i, label in enumerate(plan.config.labels)
    }
    manifest = {
        "format": PAD_FORMAT,
        "library": plan.config.name,
        "pad": pad.name,
        "sounds": sounds,
        "pitches": [p for p in plan.pitches if p is not None],
        "resolution": plan.config.resolution,
        "weighting": plan.config.weighting,
        "sample_rate": 16000,
        "cells": cells,
    }
    path = pad_dir / PAD_MANIFEST
    try:
        earlier = files.parse_json(path.read_bytes())
    except (OSError, ValueError):
        earlier = None
    if earlier == manifest:  # a rerun rewrites no pad that already says this (nor dumps it)
        return counts
    if isinstance(earlier, dict):
        _remove_stale(pad_dir, earlier.get("cells"), cells)
    atomic_write(path, (json.dumps(manifest, indent=1) + "\n").encode())
    return counts


def _remove_stale(pad_dir: Path, earlier, cells: list[dict]) -> None:
    """Remove the cells of the pad's earlier manifest (`earlier`, its list) that `cells` no
    longer has, each with its thumbnail when no pitch has that cell any more, and pitch folders
    left empty. Only names this program gives pad cells are taken from the file."""
    keep = {cell["file"] for cell in cells}
    names = {cell["name"] for cell in cells}
    emptied = set()
    for entry in earlier if isinstance(earlier, list) else []:
        file = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(file, str) or file in keep or not (match := PAD_CELL.fullmatch(file)):
            continue
        files.remove_own(pad_dir, file)
        if match.group(1) not in names:
            files.remove_own(pad_dir, f"{THUMBS}/{match.group(1)}.png")
        emptied.add(file.rpartition("/")[0])
    for folder in emptied - {"", *(file.rpartition("/")[0] for file in keep)}:
        with contextlib.suppress(OSError):  # not empty (files of the user's), or not a folder
            (pad_dir / folder).rmdir()


def _sound(plan, label: str, name: str) -> dict:
    sound = next(s for s in plan.config.sounds[label] if s.name == name)
    inputs = {
        str(p) if p is not None else "any": {
            "file": plan.inputs[(name, p)].file,
            "shift_semitones": plan.inputs[(name, p)].semitones,
        }
        for p in plan.pitches
    }
    return {"name": name, "label": sound.label, "inputs": inputs}


def remove_leftovers(library_dir: Path, pad_names) -> list[str]:
    """Temporary files a killed run left in the library's own files: its manifest and page at
    the top, and the pads' cells and pictures (the decodes' are the space folder's to clean)."""
    removed = []
    for path in [
        *library_dir.glob(".*"),
        *(p for name in pad_names for p in (library_dir / name).rglob(".*")),
    ]:
        if files.is_temp(path) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(library_dir)))
    return removed


def write_library_manifest(library_dir: Path, manifest: dict) -> None:
    atomic_write(
        library_dir / LIBRARY_MANIFEST,
        (json.dumps({"format": FORMAT, **manifest}, indent=1) + "\n").encode(),
    )

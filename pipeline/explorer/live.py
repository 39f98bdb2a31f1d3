"""The explorer while a space or library is being made, over `soundspace serve`.

A run writes its page only at its end. Until then (`running`, or `incomplete` when it stopped)
`serve` answers the page itself: the template of the finished page with data made from the
folder's manifest (the grid comes from its configuration, as `finished` builds it), and
`live.json`, which the page polls: every cell's state, read from the folder at each request. A
cell is `finished` when its record exists (a run removes the records of the cells it makes again
as it plans), `making` when its decode has kept a snapshot (`.soundspace/partial/<cell>.wav`,
its audio so far, and how many seconds that is), else `waiting`. In a library the cells of a pad
are its decodes' (the pads are linked only at the end): `live.json?pad=NAME` maps each of the
pad's cells to its decode, by the pure naming of `library.decode_identity`. When the manifest
says `complete`, the page reloads and the finished page takes over.

The manifest, records and partial files are read from a folder anyone may have written: the
configuration is validated, and every path served is one built here from the grid's names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import SoundspaceError, finished
from ..config import LibraryConfig, SpaceConfig
from ..files import FolderLock, parse_json
from ..library import decode_identity, mix_of, pads_of
from ..output import LOCK, MANIFEST, RECORDS
from ..pads import DECODES, LIBRARY_MANIFEST, pitch_folder
from ..snapshots import PARTIAL, partial_seconds
from ..space import cells as grid_cells
from . import EMBED_BYTES


class Folder:
    """A space or library folder as the live page sees it, read once per request."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.library = (folder / LIBRARY_MANIFEST).is_file()
        self.manifest_path = folder / (LIBRARY_MANIFEST if self.library else MANIFEST)
        if not self.manifest_path.is_file() and (folder / "space.json").is_file():
            raise SoundspaceError(
                f"{folder} is a dataset (it holds space.json), not a space or library: make it "
                f"with `soundspace generate --dataset {folder}`, which prints the serve command "
                "of the folder it makes (OUTPUT/<its name>)"
            )
        if not self.manifest_path.is_file():
            raise SoundspaceError(
                f"{folder} holds no {MANIFEST} or {LIBRARY_MANIFEST} yet: give a space or library "
                "folder that soundspace generate writes (serve it once its run has planned)"
            )
        self.manifest = finished.read_json(self.manifest_path)
        self.store = folder / DECODES if self.library else folder
        self.config: Any = finished.stored_config(
            LibraryConfig if self.library else SpaceConfig,
            self.manifest.get("library" if self.library else "space"),
            self.manifest_path,
        )

    @property
    def status(self) -> str:
        """`running` while a run holds the folder; `stopped` when its manifest says running but
        no run holds it (killed); otherwise what the manifest says."""
        status = self.manifest.get("status")
        if status == "running" and FolderLock(self.store / LOCK, "").held_elsewhere() is None:
            return "stopped"
        return status if status in ("running", "incomplete", "complete") else "incomplete"

    def page_data(self) -> dict:
        """What the finished page's template reads (explorer-data.js), for a folder in the
        making: the grid and corners, no sounds (they are fetched as they are made)."""
        config = self.config
        common = {
            "name": config.name,
            "resolution": config.resolution,
            "weighting": config.weighting,
            "soundBytes": 0,
            "embedLimit": EMBED_BYTES,
            "live": True,
        }
        if self.library:
            pitches = list(config.pitches) if config.pitches else [None]
            return {
                **common,
                "pitches": [60] if pitches == [None] else pitches,
                "labels": list(config.labels),
                "corners": {
                    label: [{"name": s.name, "label": s.label or s.name} for s in sounds]
                    for label, sounds in ((k, config.sounds[k]) for k in config.labels)
                },
                "pads": [pad.name for pad in pads_of(config)],
                "files": None,
                "audio": None,
                "folders": {60 if p is None else p: pitch_folder(p) for p in pitches},
                "picturePitch": pitches[len(pitches) // 2] or 60,
                "pictures": False,
            }
        labels = {
            k: config.sounds[k].label or Path(config.sounds[k].file).stem for k in config.labels
        }
        return {
            **common,
            "labels": labels,
            "line": len(config.labels) == 2,
            "pitch": config.pitch,
            "cells": [
                {
                    "name": c.name,
                    "column": c.xi,
                    "row": c.yi,
                    "x": c.x,
                    "y": c.y,
                    "weights": dict(zip(config.labels, c.weights, strict=True)),
                    "file": f"{c.name}.wav",
                }
                for c in grid_cells(config.labels, config.resolution, config.weighting)
            ],
            "thumbs": {},
            "audio": {},
        }

    def progress(self, pad: str | None = None) -> dict:
        """`live.json`: the status, and each cell's state (of the pad `pad` in a library)."""
        status = self.status
        if status == "complete":
            return {"status": status}
        config = self.config
        grid = grid_cells(config.labels, config.resolution, config.weighting)
        if not self.library:
            seconds = {c.name: config.length for c in grid}
            places = {c.name: c.name for c in grid}
        else:
            chosen = [p for p in pads_of(config) if p.name == pad]
            if not chosen:
                raise SoundspaceError(f"no pad {str(pad)[:80]!r} in this library")
            length = dict(_pairs(self.manifest.get("decode_seconds")))
            pitches = list(config.pitches) if config.pitches else [None]
            seconds, places = {}, {}
            for pitch in pitches:
                for c in grid:
                    name, _ = decode_identity(pitch, mix_of(chosen[0].sounds, c.weights))
                    places[f"{pitch_folder(pitch)}{c.name}"] = name
                    seconds[name] = length.get(pitch, config.length or 0.0)
        made = partial_seconds(self.store, set(places.values()))
        prefix = f"{DECODES}/" if self.library else ""
        states = {}
        for place, name in places.items():
            if (self.store / RECORDS / f"{name}.json").is_file():
                states[place] = {"state": "finished", "file": f"{prefix}{name}.wav"}
            elif name in made:
                done = made[name]
                states[place] = {
                    "state": "making",
                    "seconds": done,
                    "of": seconds[name],
                    "file": f"{prefix}{PARTIAL.as_posix()}/{name}.wav?at={done}",
                }
            else:
                states[place] = {"state": "waiting", "of": seconds[name]}
        return {"status": status, "cells": states}


def _pairs(value) -> list:
    """[[pitch, seconds], ...] from a manifest, the malformed ones left out."""
    if not isinstance(value, list):
        return []
    return [
        (v[0], float(v[1]))
        for v in value
        if isinstance(v, list)
        and len(v) == 2
        and (v[0] is None or type(v[0]) is int)
        and type(v[1]) in (int, float)
        and 0 < v[1] < 1e6
    ]


def is_live(folder: Path) -> bool:
    """Whether `serve` answers the live page: the run has not said `complete` (its manifest)."""
    manifest = folder / (LIBRARY_MANIFEST if (folder / LIBRARY_MANIFEST).is_file() else MANIFEST)
    try:
        return parse_json(manifest.read_text()).get("status") != "complete"
    except (OSError, ValueError, AttributeError):
        return True

"""The explorer while a space or library is being made, over `soundspace serve`.

A run writes its page only at its end. Until then (`running`, or `incomplete` when it stopped)
`serve` answers the page itself: the template of the finished page with data made from the
folder's manifest (the grid comes from its configuration, as `finished` builds it), and
`live.json`, which the page polls: every cell's state, read from the folder at each request. A
cell is `finished` when its record exists (a run, once its checks pass, removes the records and
partial WAVs of earlier runs that it makes again), `making` when its decode has kept a snapshot
(`.soundspace/partial/<cell>.wav`, its audio so far, and how many seconds that is), else
`waiting`. In a library the cells of a pad are its decodes' (the pads are linked only at the
end): `live.json?pad=NAME` maps each of the pad's cells to its decode, by the pure naming of
`library.decode_identity`. When the manifest says `complete`, the page reloads and the finished
page takes over.

The folder may come from anyone: the manifest is read only as a regular file of bounded size,
its format and configuration are checked, a library too large to follow is refused in one line,
and every file looked at is one named here from the grid, inside the folder (`files.inside`).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

from .. import SoundspaceError, finished
from ..config import LibraryConfig, SpaceConfig
from ..files import FolderLock, inside, parse_json
from ..library import decode_identity, mix_of, pads_of
from ..output import FORMAT as SPACE_FORMAT
from ..output import LOCK, MANIFEST, RECORDS
from ..pads import DECODES, LIBRARY_MANIFEST, pitch_folder
from ..pads import FORMAT as LIBRARY_FORMAT
from ..snapshots import PARTIAL, partial_seconds
from ..space import cells as grid_cells
from . import library_data, space_data

MAX_MANIFEST_BYTES = 64 << 20
# What the live page follows: pads the page lists, and cells (x pitches) of one pad per answer.
MAX_PADS, MAX_PAD_CELLS = 65_536, 200_000


def manifest_of(folder: Path) -> tuple[Path, bool]:
    """The folder's manifest (`library.json` for a library) and whether it is a library's."""
    if (folder / LIBRARY_MANIFEST).is_file():
        return folder / LIBRARY_MANIFEST, True
    return folder / MANIFEST, False


def read_manifest(path: Path) -> dict | None:
    """The manifest's JSON object, or None where there is none (a regular file of at most
    MAX_MANIFEST_BYTES: a FIFO, a device or a link is not read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MANIFEST_BYTES:
            raise SoundspaceError(f"{path} is not a manifest (not a file of at most 64 MB)")
        try:
            data = parse_json(f.read(MAX_MANIFEST_BYTES))
        except ValueError as error:
            raise SoundspaceError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SoundspaceError(f"{path} is not a manifest (not a JSON object)")
    return data


def is_live(folder: Path) -> bool:
    """Whether `serve` answers the live page: the run has not said `complete`."""
    try:
        manifest = read_manifest(manifest_of(folder)[0])
    except SoundspaceError:
        return True  # Folder says what is wrong with it
    return manifest is None or manifest.get("status") != "complete"


class Folder:
    """A space or library folder as the live page sees it, read once per request."""

    def __init__(self, folder: Path):
        path, self.library = manifest_of(folder)
        manifest = read_manifest(path)
        if manifest is None:
            if (folder / "space.json").is_file():
                raise SoundspaceError(
                    f"{folder} is a dataset (it holds space.json), not a space or library: make "
                    f"it with `soundspace generate --dataset {folder}`, which prints the serve "
                    "command of the folder it makes (OUTPUT/<its name>)"
                )
            raise SoundspaceError(
                f"{folder} holds no {MANIFEST} or {LIBRARY_MANIFEST} yet: give a space or library "
                "folder that soundspace generate writes (serve it once its run has planned)"
            )
        if manifest.get("format") != (LIBRARY_FORMAT if self.library else SPACE_FORMAT):
            raise SoundspaceError(
                f"{path} is not the manifest of a space or library; give a folder that "
                "soundspace generate writes"
            )
        self.manifest = manifest
        self.store = folder / DECODES if self.library else folder
        self.config: Any = finished.stored_config(
            LibraryConfig if self.library else SpaceConfig,
            manifest.get("library" if self.library else "space"),
            path,
        )
        if self.library:
            pads = math.prod(len(self.config.sounds[label]) for label in self.config.labels)
            cells = self.config.resolution ** (len(self.config.labels) // 2) * len(self.pitches)
            if pads > MAX_PADS or cells > MAX_PAD_CELLS:
                raise SoundspaceError(
                    f"{folder}: a library of {pads:,} pads of {cells:,} cells is too large to "
                    "follow while it is made; its page is written when its run ends"
                )

    @property
    def pitches(self) -> list:
        return list(self.config.pitches) if self.config.pitches else [None]

    @property
    def status(self) -> str:
        """`complete` as its manifest says; `running` while a run holds the folder (its
        manifest may say `incomplete` as the run writes its pads and page); `stopped` when the
        manifest says running but no run holds it (killed); else `incomplete`."""
        status = self.manifest.get("status")
        if status == "complete":
            return status
        if FolderLock(self.store / LOCK, "").taken():
            return "running"
        return "stopped" if status == "running" else "incomplete"

    def page_data(self) -> dict:
        """What the finished page's template reads (explorer-data.js), for a folder in the
        making: the grid and corners, no sounds (they are fetched as they are made)."""
        config = self.config
        if self.library:
            pitches = self.pitches
            return library_data(
                config.name,
                config.resolution,
                config.weighting,
                [60] if pitches == [None] else pitches,
                {
                    label: [{"name": s.name, "label": s.label or s.name} for s in sounds]
                    for label, sounds in ((k, config.sounds[k]) for k in config.labels)
                },
                [pad.name for pad in pads_of(config)],
                {60 if p is None else p: pitch_folder(p) for p in pitches},
                live=True,
            )
        grid = grid_cells(config.labels, config.resolution, config.weighting)
        return space_data(
            config.name,
            config.resolution,
            config.weighting,
            {k: config.sounds[k].label or Path(config.sounds[k].file).stem for k in config.labels},
            config.pitch,
            [
                (c.name, c.xi, c.yi, c.x, c.y, dict(zip(config.labels, c.weights, strict=True)))
                for c in grid
            ],
            live=True,
        )

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
            sounds = self._pad(pad)
            length = dict(_pairs(self.manifest.get("decode_seconds")))
            seconds, places = {}, {}
            for pitch in self.pitches:
                for c in grid:
                    name, _ = decode_identity(pitch, mix_of(sounds, c.weights))
                    places[f"{pitch_folder(pitch)}{c.name}"] = name
                    seconds[name] = length.get(pitch, config.length or 0.0)
        made = partial_seconds(self.store, set(places.values()))
        prefix = f"{DECODES}/" if self.library else ""
        states = {}
        for place, name in places.items():
            if self._recorded(name):
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

    def _pad(self, pad) -> tuple:
        """The sounds of the library's pad named `pad` (its sounds joined by `_`, one per corner
        in the labels' order), found without listing every pad."""
        parts = pad.split("_") if isinstance(pad, str) else []
        labels = self.config.labels
        if len(parts) != len(labels) or any(
            part not in {s.name for s in self.config.sounds[label]}
            for part, label in zip(parts, labels, strict=False)
        ):
            raise SoundspaceError(f"no pad {str(pad)[:80]!r} in this library")
        return tuple(parts)

    def _recorded(self, name: str) -> bool:
        try:
            info = os.lstat(inside(self.store, f"{RECORDS.as_posix()}/{name}.json", "record"))
        except (OSError, SoundspaceError):
            return False
        return stat.S_ISREG(info.st_mode)


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

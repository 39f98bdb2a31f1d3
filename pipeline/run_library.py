"""The run of a library: the same stages as a space's run (pipeline/run.py), over the library's
distinct decodes.

configuration -> audio in (every sound at every pitch, shifted where asked) -> encode (each
pitch's sounds) -> interpolate (one embedding per decode) -> plan (shards of decodes of one
length, in plan order; finished decodes skipped) -> decode (any backend, the one shard runner,
into `.decodes/`) -> write (each pad's cells linked to its decodes, pad and library manifests).

Resume works as for a space: a decode is done when its record, key and sha256 agree, so a run
killed at any moment (even `kill -9`) and started again decodes only what is missing. The pads
are (re)linked at the end of every run, which costs no decoding.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import SoundspaceError, output, pads, shards
from .audio import SAMPLE_RATE
from .explorer import library as explorer_library
from .library import MAX_DECODES, plan_library
from .run import (RunResult, ShardProgress, _check_writable, _finished_records, encoder,
                  setup)
from .space import interpolate

ENCODE_BATCH = 8  # sounds encoded together (memory grows with it)


class LibraryRun(ShardProgress):
    def __init__(self, space, folder, watch, workflow_path, force: bool, output_dir, yes: bool):
        self.watch, self.inside_decode, self.decoded = watch, {}, 0
        self.space, self.folder, self.force, self.workflow_path = space, folder, force, workflow_path
        with watch("configuration"):
            self.workflow, self.model_dir, self.root = setup(space, folder, workflow_path, output_dir)
        with watch("audio in"):
            self.library = library = plan_library(space, folder)
            if len(library.decodes) > MAX_DECODES and not yes:
                cost = library.cost()
                raise SoundspaceError(
                    f"{folder / 'space.json'}: the library has {cost['decodes']:,} distinct "
                    f"decodes ({cost['audio_hours']:,.1f} hours of audio: about "
                    f"{cost['cpu_hours']:,.0f} CPU hours or {cost['gpu_hours']:,.0f} GPU hours "
                    f"with Magenta's model), more than the {MAX_DECODES:,} made without --yes; "
                    f"see `soundspace plan --dataset {folder}`, then pass --yes to make it")
        with watch("encode"):
            self.model = model = encoder(self.workflow, self.model_dir)
            short = min(library.samples.values())
            if short < model.config.hop:
                raise SoundspaceError(f"{folder / 'space.json'}: the sounds are {short} samples "
                                      f"long, shorter than one frame of the model "
                                      f"({model.config.hop}); use a longer length")
            self.encodings = {}  # (sound, pitch) -> [frames, bottleneck]
            for pitch in library.pitches:
                keys = sorted(k for k in library.audio if k[1] == pitch)
                for b in range(0, len(keys), ENCODE_BATCH):
                    batch = keys[b:b + ENCODE_BATCH]
                    for key, z in zip(batch, model.encode(np.stack([library.audio[k] for k in batch]))):
                        self.encodings[key] = z
        with watch("interpolate"):
            self.embeddings = {}  # pitch -> [decodes at that pitch, frames, bottleneck]
            for pitch in library.pitches:
                sounds = sorted(s for s, p in self.encodings if p == pitch)
                at = library.decodes_at(pitch)
                weights = np.zeros((len(at), len(sounds)))
                for row, d in enumerate(at):
                    for sound, weight in library.decodes[d].mix:
                        weights[row, sounds.index(sound)] = weight
                stacked = np.stack([self.encodings[(s, pitch)] for s in sounds])
                self.embeddings[pitch] = interpolate(stacked, weights)

    def plan(self, locks, wait: bool, pictures: bool, log) -> None:
        library, model, workflow, space = self.library, self.model, self.workflow, self.space
        with self.watch("plan"):
            post = space.postprocess.model_dump()
            digests = {k: hashlib.sha256(a.tobytes()).hexdigest() for k, a in library.audio.items()}
            self.points = []
            for d in library.decodes:
                self.points.append({"seed": d.seed, "cells": [d.name], "key": output.cell_key({
                    "model": model.identity, "pitch": d.pitch, "mix": d.mix, "seed": d.seed,
                    "inputs": {s: digests[(s, d.pitch)] for s, _ in d.mix},
                    "samples": library.samples[d.pitch], "postprocess": post})})
            self.library_dir = self.root / space.name
            if self.library_dir.exists() and not self.library_dir.is_dir():
                raise SoundspaceError(f"{self.library_dir} is a file, where the library's folder "
                                      "goes; move it away or choose another --output")
            self.space_dir = store = self.library_dir / pads.DECODES
            store.mkdir(parents=True, exist_ok=True)
            locks.callback(output.lock(store, wait, log).release)
            self.sounds_sha256 = {f"{s}@{p}": digests[(s, p)] for s, p in sorted(
                digests, key=lambda k: (k[0], -1 if k[1] is None else k[1]))}
            _check_same_library(self.library_dir, self.folder, self.sounds_sha256, self.force)
            if self.force:
                output.clear(store)
            output.remove_leftovers(store)
            pads.remove_leftovers(self.library_dir, [pad.name for pad in library.pads])
            output.remove_stale_cells(store, {d.name for d in library.decodes})
            model_spec = {"path": str(self.model_dir), "identity": model.identity,
                          "hop": model.config.hop, "role": space.model}
            self.specs = []
            for pitch in library.pitches:  # a shard's sounds share one length: one per pitch
                at = library.decodes_at(pitch)
                for part in shards.plan(len(at), workflow.shard_size):
                    self.specs.append(shards.ShardSpec(
                        space=space.name, index=len(self.specs), count=0, model=model_spec,
                        device=workflow.device, math=workflow.math,
                        decode_batch=workflow.decode_batch, samples=library.samples[pitch],
                        postprocess=post, points=[self.points[at[i]] for i in part],
                        embeddings=self.embeddings[pitch][part]))
            for spec in self.specs:
                spec.count = len(self.specs)
            self.records = _finished_records(store, self.points)
            self.todo = {spec.index: sum(p["cells"][0] not in self.records for p in spec.points)
                         for spec in self.specs}
            for name in [pads.LIBRARY_MANIFEST] + [pad.name for pad in library.pads]:
                path = self.library_dir / name
                if path.exists() and path.is_dir() != (name != pads.LIBRARY_MANIFEST):
                    raise SoundspaceError(f"{path} is a {'folder' if path.is_dir() else 'file'}, "
                                          "where the library writes the other; move it away")
            _check_writable(store, [d.file for d in library.decodes], output.WRITTEN_FOLDERS[:2],
                            self.bytes_left(pictures))
        self.save_manifest("running")

    def left(self) -> int:
        """Decodes not finished."""
        return len(self.library.decodes) - len(self.records)

    def bytes_left(self, pictures: bool) -> int:
        """The decodes left (WAV and record, in 4 KiB blocks), should the pads have to be copies
        rather than links every pad cell again, the page's data (old and new side by side) and the
        pads' pictures."""
        def blocks(size: int) -> int:
            return -(-size // 4096) * 4096

        library = self.library
        wav = {p: 44 + 2 * n for p, n in library.samples.items()}
        left = sum(blocks(wav[d.pitch]) + 4096 for d in library.decodes if d.name not in self.records)
        pad_cells = len(library.pads) * len(library.grid) * sum(blocks(w) for w in wav.values())
        every = sum(wav[d.pitch] for d in library.decodes)  # the page embeds them, up to a bound
        page = 2 * blocks(min(explorer_library.EMBED_BYTES, every * 4 // 3))
        drawn = len(library.pads) * blocks(60_000 * (len(library.grid) + 1)) if pictures else 0
        return left + pad_cells + page + drawn + (1 << 20)

    def save_unfinished(self) -> list[str]:
        self.records = _finished_records(self.space_dir, self.points)
        missing = [d.name for d in self.library.decodes if d.name not in self.records]
        self.save_manifest("incomplete", {"decodes": len(missing), "pads": True})
        return missing

    def save_manifest(self, status: str, missing: dict | None = None, placed: dict | None = None) -> None:
        library, model = self.library, self.model
        pads.write_library_manifest(self.library_dir, {
            "status": status,
            "missing": missing or {},
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "library": self.space.model_dump(),
            "dataset": str(self.folder.resolve()),
            "workflow": self.workflow.model_dump(),
            "workflow_file": str(Path(self.workflow_path).resolve()),
            "model": {"identity": model.identity, "folder": str(self.model_dir),
                      "config": model.config.to_dict(), "device": str(model.device)},
            "sample_rate": SAMPLE_RATE,
            "pads": [{"name": pad.name, "sounds": dict(zip(self.space.labels, pad.sounds)),
                      "folder": pad.name} for pad in library.pads],
            "counts": {"pads": len(library.pads), "pitches": len(library.pitches),
                       "cells_per_pad": len(library.grid) * len(library.pitches),
                       "cells": library.cells_total, "decodes": len(library.decodes),
                       "decodes_finished": len(self.records), "decoded_by_this_run": self.decoded},
            "pad_files": placed or {},
            "cost": library.cost(),
            "sounds_sha256": self.sounds_sha256,
            "timings_seconds": {k: round(v, 3) for k, v in self.watch.seconds.items()},
            "decode_breakdown_seconds": {k: round(v, 3) for k, v in self.inside_decode.items()},
        })

    def finish(self, pictures: bool) -> RunResult:
        library = self.library
        with self.watch("write"):
            missing = self.save_unfinished()
            if missing:
                raise SoundspaceError(f"{self.library_dir}: {len(missing)} decode(s) are not "
                                      f"finished ({', '.join(missing[:3])}"
                                      f"{' ...' if len(missing) > 3 else ''}); run the command again")
            placed = {"link": 0, "copy": 0}
            for p in range(len(library.pads)):
                for how, count in pads.write_pad(self.library_dir, library, p, self.records).items():
                    placed[how] += count
        placed = {"hard_links": placed["link"], "copies": placed["copy"]}
        with self.watch("explorer"):
            # The page reads the library back as `export` does, complete; should that fail, the
            # library is saved as lacking only its page.
            self.save_manifest("complete", placed=placed)
            try:
                explorer_library.write(self.library_dir, pictures_too=pictures)
            except BaseException:
                self.save_manifest("incomplete", {"explorer": True}, placed=placed)
                raise
        self.save_manifest("complete", placed=placed)
        return RunResult(self.library_dir, library.cells_total, len(library.decodes), self.decoded,
                         len(self.specs), self.watch.seconds, self.inside_decode,
                         pads=len(library.pads), pitches=len(library.pitches))


def _check_same_library(library_dir: Path, folder: Path, sounds_sha256: dict, force: bool) -> None:
    """A library folder made from other sounds, none in common, belongs to another dataset:
    refuse (as a space does), unless --force replaces it. Adding or changing some sounds or
    pitches is the same library growing: its finished decodes are kept."""
    try:
        old = json.loads((library_dir / pads.LIBRARY_MANIFEST).read_text())
        made_from, old_sounds = old.get("dataset"), dict(old.get("sounds_sha256"))
    except (OSError, ValueError, AttributeError, TypeError):
        return
    shared = any(old_sounds.get(key) == digest for key, digest in sounds_sha256.items())
    if not force and old_sounds and not shared:
        raise SoundspaceError(f"{library_dir} holds a library made from other sounds (dataset "
                              f"{made_from}); give this library another name in "
                              f"{folder / 'space.json'}, another --output, or --force to replace it")


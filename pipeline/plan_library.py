"""The planner of a library: every sound at every pitch encoded, one embedding per distinct decode
(pipeline/library.py says which), and, after the decode, the pads and the library's page.

A decode's key hashes the model, its pitch, its mix, its random stream, its inputs' audio, the
length and the post-processing. Decodes are written into `.decodes/` exactly as a space's cells
are (record, key, sha256, lock), so a killed run resumes the same way; shards hold decodes of
one length (one pitch each). The pads are linked to the decodes at the end of every run.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import SoundspaceError, output, pads
from .audio import SAMPLE_RATE
from .cost import model_at
from .explorer import library as explorer_library
from .files import parse_json, real_folder
from .library import MAX_DECODES, plan_library
from .plan import Group, Plan, blocks, check_length, encoder, hold, output_folder, shard_specs, tidy
from .space import interpolate

ENCODE_BATCH = 8  # sounds encoded together (memory grows with it)


class LibraryPlanner:
    def __init__(
        self,
        space,
        folder: Path,
        workflow,
        model_dir: Path,
        root: Path,
        workflow_path,
        force: bool,
        yes: bool,
    ):
        self.space, self.folder, self.workflow, self.model_dir = space, folder, workflow, model_dir
        self.root, self.workflow_path, self.force, self.yes = root, workflow_path, force, yes
        self.name = space.name
        self.placed: dict[str, int] = {}  # how the pads' files were placed, counted

    def prepare(self, watch) -> None:
        folder = self.folder
        with watch("audio in"):
            self.library = library = plan_library(self.space, folder)
            if len(library.decodes) > MAX_DECODES and not self.yes:
                cost = library.cost(*model_at(self.model_dir))
                raise SoundspaceError(
                    f"{folder / 'space.json'}: the library has {cost['decodes']:,} distinct "
                    f"decodes ({cost['audio_hours']:,.1f} hours of audio: about "
                    f"{cost['cpu_hours']:,.0f} CPU hours or {cost['gpu_hours']:,.0f} GPU hours "
                    f"with {cost['model']}), more than the {MAX_DECODES:,} made without --yes; "
                    f"see `soundspace plan --dataset {folder}`, then pass --yes to make it"
                )
        with watch("encode"):
            self.model = model = encoder(self.workflow, self.model_dir)
            check_length(min(library.samples.values()), model, folder / "space.json")
            encodings = {}  # (sound, pitch) -> [frames, bottleneck]
            for pitch in library.pitches:
                keys = sorted(k for k in library.audio if k[1] == pitch)
                for b in range(0, len(keys), ENCODE_BATCH):
                    batch = keys[b : b + ENCODE_BATCH]
                    zs = model.encode(np.stack([library.audio[k] for k in batch]))
                    for key, z in zip(batch, zs, strict=True):
                        encodings[key] = z
        with watch("interpolate"):
            self.at = {pitch: library.decodes_at(pitch) for pitch in library.pitches}
            self.embeddings = {}  # pitch -> [decodes at that pitch, frames, bottleneck]
            for pitch in library.pitches:
                sounds = sorted(s for s, p in encodings if p == pitch)
                weights = np.zeros((len(self.at[pitch]), len(sounds)))
                for row, d in enumerate(self.at[pitch]):
                    for sound, weight in library.decodes[d].mix:
                        weights[row, sounds.index(sound)] = weight
                stacked = np.stack([encodings[(s, pitch)] for s in sounds])
                self.embeddings[pitch] = interpolate(stacked, weights)

    def plan(self, locks, wait: bool, log, pictures: bool) -> Plan:
        library, space = self.library, self.space
        post = space.postprocess.model_dump()
        digests = {k: hashlib.sha256(a.tobytes()).hexdigest() for k, a in library.audio.items()}
        points = [
            {
                "seed": d.seed,
                "cells": [d.name],
                "key": output.cell_key(
                    {
                        "model": self.model.identity,
                        "pitch": d.pitch,
                        "mix": d.mix,
                        "seed": d.seed,
                        "inputs": {s: digests[(s, d.pitch)] for s, _ in d.mix},
                        "samples": library.samples[d.pitch],
                        "postprocess": post,
                    }
                ),
            }
            for d in library.decodes
        ]
        self.library_dir = output_folder(self.root, space.name, "library")
        store = real_folder(self.library_dir, pads.DECODES)
        hold(store, locks, wait, log)
        self.sounds_sha256 = {
            f"{s}@{p}": digests[(s, p)]
            for s, p in sorted(digests, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
        }
        self._check_same_library()
        tidy(store, self.force, {d.name for d in library.decodes})
        pads.remove_leftovers(self.library_dir, [pad.name for pad in library.pads])
        # a shard's sounds share one length: one group per pitch
        groups = [
            Group(library.samples[pitch], self.at[pitch], self.embeddings[pitch])
            for pitch in library.pitches
        ]
        specs = shard_specs(
            space.name, self.model_dir, self.model, space.model, self.workflow, post, points, groups
        )
        for name in [pads.LIBRARY_MANIFEST] + [pad.name for pad in library.pads]:
            path = self.library_dir / name
            if path.exists() and path.is_dir() != (name != pads.LIBRARY_MANIFEST):
                raise SoundspaceError(
                    f"{path} is a {'folder' if path.is_dir() else 'file'}, "
                    "where the library writes the other; move it away"
                )
        return Plan(
            self.library_dir,
            store,
            points,
            specs,
            [d.file for d in library.decodes],
            output.WRITTEN_FOLDERS[:2],
        )

    def _check_same_library(self) -> None:
        """A library folder made from other sounds, none in common, belongs to another dataset:
        refuse (as a space does), unless --force replaces it. Adding or changing some sounds or
        pitches is the same library growing: its finished decodes are kept."""
        try:
            old = parse_json((self.library_dir / pads.LIBRARY_MANIFEST).read_text())
            made_from, old_sounds = old.get("dataset"), dict(old.get("sounds_sha256"))
        except (OSError, ValueError, AttributeError, TypeError):
            return
        shared = any(old_sounds.get(key) == digest for key, digest in self.sounds_sha256.items())
        if not self.force and old_sounds and not shared:
            raise SoundspaceError(
                f"{self.library_dir} holds a library made from other sounds "
                f"(dataset {made_from}); give this library another name in "
                f"{self.folder / 'space.json'}, another --output, or --force to "
                "replace it"
            )

    def missing(self, records: dict) -> dict:
        left = sum(d.name not in records for d in self.library.decodes)
        return {"decodes": left, "pads": True} if left or not self.placed else {"explorer": True}

    def bytes_left(self, records: dict, pictures: bool) -> int:
        """The decodes left (WAV and record), should the pads have to be copies rather than links
        every pad cell again, the page's data (old and new side by side), the pads' pictures and
        the inputs."""
        library = self.library
        wav = {p: 44 + 2 * n for p, n in library.samples.items()}
        left = sum(blocks(wav[d.pitch]) + 4096 for d in library.decodes if d.name not in records)
        pad_cells = len(library.pads) * len(library.grid) * sum(blocks(w) for w in wav.values())
        every = sum(wav[d.pitch] for d in library.decodes)  # the page embeds them, up to a bound
        page = 2 * blocks(min(explorer_library.EMBED_BYTES, every * 4 // 3))
        drawn = len(library.pads) * blocks(60_000 * (len(library.grid) + 1)) if pictures else 0
        inputs = sum(blocks(44 + 2 * len(audio)) for audio in library.audio.values())
        return left + pad_cells + page + drawn + inputs + (1 << 20)

    def save_manifest(self, status: str, missing: dict, records: dict, progress: dict) -> None:
        library, model = self.library, self.model
        pads.write_library_manifest(
            self.library_dir,
            {
                "status": status,
                "missing": missing,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "library": self.space.model_dump(),
                "dataset": str(self.folder.resolve()),
                "workflow": self.workflow.model_dump(),
                "workflow_file": str(Path(self.workflow_path).resolve()),
                "model": {
                    "identity": model.identity,
                    "folder": str(self.model_dir),
                    "config": model.config.to_dict(),
                    "device": str(model.device),
                },
                "sample_rate": SAMPLE_RATE,
                "pads": [
                    {
                        "name": pad.name,
                        "sounds": dict(zip(self.space.labels, pad.sounds, strict=True)),
                        "folder": pad.name,
                    }
                    for pad in library.pads
                ],
                "counts": {
                    "pads": len(library.pads),
                    "pitches": len(library.pitches),
                    "cells_per_pad": len(library.grid) * len(library.pitches),
                    "cells": library.cells_total,
                    "decodes": len(library.decodes),
                    "decodes_finished": len(records),
                    "decoded_by_this_run": progress["decoded"],
                },
                # each pitch's sound length: how far along a decode in flight is (the live page)
                "decode_seconds": [
                    [pitch, library.samples[pitch] / SAMPLE_RATE] for pitch in library.pitches
                ],
                "pad_files": self.placed,
                "cost": library.cost(model.config, f"the model in {self.model_dir}"),
                "sounds_sha256": self.sounds_sha256,
                "timings_seconds": progress["timings_seconds"],
                "decode_breakdown_seconds": progress["decode_breakdown_seconds"],
            },
        )

    def write(self, records: dict) -> None:
        output.write_inputs(
            self.library_dir,
            {
                sound if pitch is None else f"{sound}_{pitch}": audio
                for (sound, pitch), audio in self.library.audio.items()
            },
        )
        placed = {"link": 0, "copy": 0}
        for p in range(len(self.library.pads)):
            for how, count in pads.write_pad(self.library_dir, self.library, p, records).items():
                placed[how] += count
        self.placed = {"hard_links": placed["link"], "copies": placed["copy"]}

    def write_page(self, pictures: bool) -> None:
        explorer_library.write(self.library_dir, pictures_too=pictures)

    def counts(self) -> tuple[int, int, int]:
        return self.library.cells_total, len(self.library.pads), len(self.library.pitches)

"""The planner of a space: its sounds encoded once, every cell's embedding interpolated, one point
per distinct weight set, and, after the decode, its embeddings, manifest and explorer.

A point's key hashes the model, the input audio, the weights (to 9 decimals), its random stream
`(seed, index of its first cell)`, the length and the post-processing; its cells are named by
grid place (`x00_y00`) and written straight into the space's folder (pipeline/output.py).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import SoundspaceError, files, output
from .audio import SAMPLE_RATE, load_sound
from .cost import estimate
from .library import grid_size
from .plan import Group, Plan, blocks, check_length, encoder, hold, output_folder, shard_specs, tidy
from .space import cells, interpolate, unique_weights


class SpacePlanner:
    def __init__(
        self, space, folder: Path, workflow, model_dir: Path, root: Path, workflow_path, force: bool
    ):
        self.space, self.folder, self.workflow, self.model_dir = space, folder, workflow, model_dir
        self.root, self.workflow_path, self.force, self.name = (
            root,
            workflow_path,
            force,
            space.name,
        )

    def prepare(self, watch) -> None:
        space, folder = self.space, self.folder
        with watch("audio in"):
            self.audio = np.stack(
                [
                    load_sound(folder / space.sounds[label].file, space.samples)
                    for label in space.labels
                ]
            )
            self.sounds_sha256 = {
                label: files.sha256_file(folder / space.sounds[label].file)
                for label in space.labels
            }
        with watch("encode"):
            self.model = encoder(self.workflow, self.model_dir)
            check_length(space.samples, self.model, folder / "space.json")
            self.inputs = self.model.encode(self.audio)
        with watch("interpolate"):
            self.grid = cells(space.labels, space.resolution, space.weighting)
            self.weights, self.index = unique_weights(self.grid)
            self.point_embeddings = interpolate(self.inputs, self.weights)

    def plan(self, locks, wait: bool, log, pictures: bool) -> Plan:
        space, grid = self.space, self.grid
        inputs_sha256 = hashlib.sha256(self.audio.tobytes()).hexdigest()
        post = space.postprocess.model_dump()
        groups: list[list[int]] = [[] for _ in self.weights]  # each weight set's cells, in order
        for c, u in enumerate(self.index):
            groups[u].append(c)
        points = []
        for p, members in enumerate(groups):
            seed = [space.seed, members[0]]  # the first cell's place in the grid
            points.append(
                {
                    "seed": seed,
                    "cells": [grid[c].name for c in members],
                    "key": output.cell_key(
                        {
                            "model": self.model.identity,
                            "inputs": inputs_sha256,
                            "weights": [round(w, 9) for w in self.weights[p]],
                            "seed": seed,
                            "samples": space.samples,
                            "postprocess": post,
                        }
                    ),
                }
            )
        self.space_dir = space_dir = output_folder(self.root, space.name, "space")
        hold(space_dir, locks, wait, log)
        self._check_same_sounds()
        tidy(space_dir, self.force, {cell.name for cell in grid})
        self.earlier_runs = self._earlier_runs()
        specs = shard_specs(
            space.name,
            self.model_dir,
            self.model,
            space.model,
            self.workflow,
            post,
            points,
            [Group(space.samples, list(range(len(points))), self.point_embeddings)],
        )
        written = [
            output.MANIFEST,
            output.EMBEDDINGS,
            *output.EXPLORER_FILES,
            *(output.PICTURE,) * pictures,
            *(f"{cell.name}.wav" for cell in grid),
        ]
        return Plan(
            space_dir,
            space_dir,
            points,
            specs,
            written,
            (Path("."), output.RECORDS, *(Path(output.THUMBS),) * pictures, Path(output.INPUTS)),
        )

    def _check_same_sounds(self) -> None:
        """Two datasets whose spaces share a name would overwrite each other's cells: refuse. A
        space is known by the contents of its input sounds, so a moved or copied dataset is the
        same space (its finished cells are kept) and a dataset whose sounds changed is another."""
        try:
            old = files.parse_json((self.space_dir / output.MANIFEST).read_text())
            made_from, old_sounds = old.get("dataset"), old.get("sounds_sha256")
        except (OSError, ValueError, AttributeError):
            return
        if self.force or (old_sounds is None and made_from in (None, str(self.folder.resolve()))):
            return
        if old_sounds != self.sounds_sha256:
            raise SoundspaceError(
                f"{self.space_dir} holds a space made from other sounds (dataset "
                f"{made_from}); give this space another name in "
                f"{self.folder / 'space.json'}, another --output, or --force to "
                "replace it"
            )

    def _earlier_runs(self) -> list:
        """The timings of the runs that made this space so far, from its manifest (newest last)."""
        try:
            old = files.parse_json((self.space_dir / output.MANIFEST).read_text())
            runs = old.get("earlier_runs", []) + [
                {
                    k: old[k]
                    for k in ("status", "finished_at", "decoded", "timings_seconds")
                    if k in old
                }
            ]
            return [run for run in runs if isinstance(run, dict)][-20:]
        except (OSError, ValueError, TypeError, AttributeError):
            return []

    def missing(self, records: dict) -> dict:
        return {"cells": [c.name for c in self.grid if c.name not in records], "explorer": True}

    def bytes_left(self, records: dict, pictures: bool) -> int:
        """About how much disk the rest of the run takes: the cells left (WAV, record, thumbnail),
        the embeddings, the inputs and the explorer (every WAV again in base64, beside the old
        one, the inputs too)."""
        count, left = len(self.grid), len(self.grid) - len(records)
        wav = 44 + 2 * self.space.samples
        per_cell = blocks(wav) + blocks(600) + (blocks(20_000) if pictures else 0)
        sounds = count + len(self.space.labels)  # the inputs are in the page too
        explorer = 2 * blocks(sounds * (wav * 4 // 3 + 300)) + (
            blocks(60_000 * count) if pictures else 0
        )
        embedding_values = (count + 4) * self.point_embeddings.shape[1] * 16
        inputs = len(self.space.labels) * blocks(wav)
        return left * per_cell + 2 * blocks(4 * embedding_values) + explorer + inputs + (1 << 20)

    def save_manifest(self, status: str, missing: dict, records: dict, progress: dict) -> None:
        space, model, labels = self.space, self.model, self.space.labels
        output.write_manifest(
            self.space_dir,
            {
                "status": status,
                "missing": missing,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "decoded": progress["decoded"],
                "space": space.model_dump(),
                "dataset": str(self.folder.resolve()),
                "workflow": self.workflow.model_dump(),
                "workflow_file": str(Path(self.workflow_path).resolve()),
                "model": {
                    "identity": model.identity,
                    "folder": str(self.model_dir),
                    "config": model.config.to_dict(),
                    "device": str(model.device),
                },
                "seed": space.seed,
                "sample_rate": SAMPLE_RATE,
                "inputs": {label: space.sounds[label].model_dump() for label in labels},
                "sounds_sha256": self.sounds_sha256,
                "cells": [
                    _cell_entry(cell, labels, records[cell.name])
                    for cell in self.grid
                    if cell.name in records
                ],
                "cells_total": len(self.grid),
                "timings_seconds": progress["timings_seconds"],
                "decode_breakdown_seconds": progress["decode_breakdown_seconds"],
                "earlier_runs": self.earlier_runs,
            },
        )

    def write(self, records: dict) -> None:
        grid = self.grid
        output.write_embeddings(
            self.space_dir,
            labels=np.array(self.space.labels),
            inputs=self.inputs,
            cell_names=np.array([c.name for c in grid]),
            weights=np.array([c.weights for c in grid]),
            cells=self.point_embeddings[[self.index[c] for c in range(len(grid))]],
        )
        output.write_inputs(self.space_dir, dict(zip(self.space.labels, self.audio, strict=True)))

    def write_page(self, pictures: bool) -> None:
        from . import explorer

        explorer.write(self.space_dir, pictures_too=pictures)

    def counts(self) -> tuple[int, int, int]:
        return len(self.grid), 0, 0


def space_cost(space, config=None, model: str = "Magenta's full-size model") -> dict:
    """`soundspace plan` for a space: the cells and the distinct decodes exactly as its run
    counts them (weight sets equal to 9 decimals are one decode), priced like a library's for a
    model of size `config` named `model`."""
    grid = cells(space.labels, space.resolution, space.weighting)
    weights, _ = unique_weights(grid)
    return {
        "space": space.name,
        "pads": 1,
        "pitches": [],
        "cells": len(grid),
        "decodes": len(weights),
        "shared_cells": len(grid) - len(weights),
        "grid": grid_size(space),
        "weighting": space.weighting,
        **estimate(len(weights) * space.samples, config, model),
        "shifted": [],
    }


def _cell_entry(cell, labels, record: dict) -> dict:
    return {
        "name": cell.name,
        "column": cell.xi,
        "row": cell.yi,
        "x": cell.x,
        "y": cell.y,
        "weights": dict(zip(labels, cell.weights, strict=True)),
        "file": record["file"],
        "samples": record["samples"],
        "seconds": record["samples"] / SAMPLE_RATE,
        "peak": record["peak"],
        "seed": record["seed"],
        "decoded_with": record["decoded_with"],
        "sha256": record["sha256"],
    }

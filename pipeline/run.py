"""The run: one sound space from a dataset folder and a workflow, stage by stage.

configuration -> audio in -> encode (the inputs, one batch) -> interpolate (every cell; identical
weight sets become one point) -> plan (shards; skip finished cells) -> decode (the backend runs
each shard: decode, post-process, write cells) -> write (embeddings, manifest).

Everything that can be refused is checked before the space folder is created, so a refused run
writes nothing. Finished cells are recorded as they are written and the manifest is rewritten
after every shard, so an interrupted run keeps its work and a rerun picks up what is missing.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import SoundspaceError, output, shards
from .audio import SAMPLE_RATE, load_sound
from .backends import backend_for
from .config import load_space, load_workflow, model_folder
from .space import cells, interpolate, unique_weights


@dataclass
class RunResult:
    space_dir: Path
    cells: int
    points: int
    decoded: int  # points decoded by this run (the others were already done)
    shards: int
    seconds: dict = field(default_factory=dict)  # wall time per stage
    inside_decode: dict = field(default_factory=dict)  # summed over shards: decode, post-process, write


class _Stopwatch:
    def __init__(self):
        self.seconds = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def _manifest(space, folder, workflow, workflow_path, model, model_dir, grid, records, seconds,
              inside_decode, status, decoded, earlier_runs) -> dict:
    labels = space.labels
    return {
        "status": status,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "decoded": decoded,
        "space": space.model_dump(),
        "dataset": str(folder.resolve()),
        "workflow": workflow.model_dump(),
        "workflow_file": str(Path(workflow_path).resolve()),
        "model": {"identity": model.identity, "folder": str(model_dir),
                  "config": model.config.to_dict(), "device": str(model.device)},
        "seed": space.seed,
        "sample_rate": SAMPLE_RATE,
        "inputs": {label: space.sounds[label].model_dump() for label in labels},
        "cells": [{"name": cell.name, "column": cell.xi, "row": cell.yi, "x": cell.x, "y": cell.y,
                   "weights": dict(zip(labels, cell.weights)), "file": records[cell.name]["file"],
                   "samples": records[cell.name]["samples"],
                   "seconds": records[cell.name]["samples"] / SAMPLE_RATE,
                   "peak": records[cell.name]["peak"], "seed": records[cell.name]["seed"],
                   "decoded_with": records[cell.name]["decoded_with"],
                   "sha256": records[cell.name]["sha256"]}
                  for cell in grid if cell.name in records],
        "cells_total": len(grid),
        "timings_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "decode_breakdown_seconds": {k: round(v, 3) for k, v in inside_decode.items()},
        "earlier_runs": earlier_runs,
    }


def _check_same_dataset(space_dir: Path, folder: Path, force: bool) -> None:
    """Two datasets whose spaces share a name would overwrite each other's cells: refuse."""
    try:
        made_from = json.loads((space_dir / output.MANIFEST).read_text()).get("dataset")
    except (OSError, ValueError, AttributeError):
        return
    if made_from and made_from != str(folder.resolve()) and not force:
        raise SoundspaceError(f"{space_dir} holds the space of another dataset ({made_from}); "
                              f"give this space another name in {folder / 'space.json'}, another "
                              "--output, or --force to replace it")


def _earlier_runs(space_dir: Path) -> list:
    """The timings of the runs that made this space so far, from its manifest (newest last)."""
    try:
        old = json.loads((space_dir / output.MANIFEST).read_text())
        runs = old.get("earlier_runs", []) + [{k: old[k] for k in (
            "status", "finished_at", "decoded", "timings_seconds") if k in old}]
        return [run for run in runs if isinstance(run, dict)][-20:]
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def _finished_records(space_dir, points) -> dict:
    records = {}
    for point in points:
        for name in point["cells"]:
            record = output.finished(space_dir, name, point["key"])
            if record is not None:
                records[name] = record
    return records


class _SpaceRun:
    """One space through the stages. `prepare` runs everything up to the shard plan (and refuses
    bad input before anything is written); the decode of all spaces runs together; `finish`
    writes embeddings, manifest and explorer."""

    def __init__(self, dataset, workflow_path, force: bool, output_dir):
        from .nsynth import NSynth

        self.watch, self.inside_decode, self.decoded = _Stopwatch(), {}, 0
        watch = self.watch
        with watch("configuration"):
            space, folder = load_space(dataset)
            workflow, base = load_workflow(workflow_path)
            model_dir = model_folder(workflow, base, space.model, workflow_path)
            root = Path(output_dir) if output_dir is not None else base / workflow.output
            if root.exists() and not root.is_dir():
                raise SoundspaceError(f"output folder {root} exists and is not a folder")
        self.space, self.folder, self.workflow, self.workflow_path = space, folder, workflow, workflow_path
        self.model_dir, self.force, self.root = model_dir, force, root
        with watch("audio in"):
            self.audio = np.stack([load_sound(folder / space.sounds[label].file, space.samples)
                                   for label in space.labels])
        with watch("encode"):
            self.model = model = NSynth.load(model_dir, device=workflow.device)
            if space.samples < model.config.hop:
                raise SoundspaceError(f"{folder / 'space.json'}: field length: {space.length} s is "
                                      f"shorter than one frame of the model ({model.config.hop} "
                                      "samples); use a longer length")
            self.inputs = model.encode(self.audio)
        with watch("interpolate"):
            self.grid = cells(space.labels, space.resolution, space.weighting)
            self.weights, self.index = unique_weights(self.grid)
            self.point_embeddings = interpolate(self.inputs, self.weights)

    def plan(self) -> None:
        space, grid, model, workflow = self.space, self.grid, self.model, self.workflow
        with self.watch("plan"):
            inputs_sha256 = hashlib.sha256(self.audio.tobytes()).hexdigest()
            post = space.postprocess.model_dump()
            groups = [[] for _ in self.weights]  # the cells of each distinct weight set, in order
            for c, u in enumerate(self.index):
                groups[u].append(c)
            self.points = points = []
            for p, members in enumerate(groups):
                seed = [space.seed, members[0]]  # the first cell's place in the grid
                points.append({"seed": seed, "cells": [grid[c].name for c in members],
                               "key": output.cell_key({"model": model.identity, "inputs": inputs_sha256,
                                                       "weights": [round(w, 9) for w in self.weights[p]],
                                                       "seed": seed, "samples": space.samples,
                                                       "postprocess": post})})
            self.space_dir = space_dir = self.root / space.name
            _check_same_dataset(space_dir, self.folder, self.force)
            try:
                space_dir.mkdir(parents=True, exist_ok=True)
                (space_dir / output.RECORDS).mkdir(parents=True, exist_ok=True)
            except PermissionError:
                raise SoundspaceError(f"cannot write to {space_dir} (permission denied); make the "
                                      "output folder writable for this user (in Docker: create "
                                      "./output on the host first and set SOUNDSPACE_UID/"
                                      "SOUNDSPACE_GID to your ids)") from None
            if self.force:
                output.clear(space_dir)
            self.earlier_runs = _earlier_runs(space_dir)
            output.remove_leftovers(space_dir)
            output.remove_stale_cells(space_dir, {cell.name for cell in grid})
            model_spec = {"path": str(self.model_dir), "identity": model.identity,
                          "hop": model.config.hop, "role": space.model}
            self.specs = [shards.ShardSpec(space=space.name, index=i, count=0, model=model_spec,
                                           device=workflow.device, math=workflow.math,
                                           decode_batch=workflow.decode_batch, samples=space.samples,
                                           postprocess=post, points=[points[p] for p in part],
                                           embeddings=self.point_embeddings[part])
                          for i, part in enumerate(shards.plan(len(points), workflow.shard_size))]
            for spec in self.specs:
                spec.count = len(self.specs)
            self.records = _finished_records(space_dir, points)
            self.todo = {spec.index: sum(any(name not in self.records for name in point["cells"])
                                         for point in spec.points) for spec in self.specs}
        self.save_manifest("running")

    def save_manifest(self, status: str) -> None:
        output.write_manifest(self.space_dir, _manifest(
            self.space, self.folder, self.workflow, self.workflow_path, self.model, self.model_dir,
            self.grid, self.records, self.watch.seconds, self.inside_decode, status, self.decoded,
            self.earlier_runs))

    def shard_done(self, spec, result: dict) -> None:
        self.decoded += result["decoded"]
        for stage, seconds in result["seconds"].items():
            self.inside_decode[stage] = self.inside_decode.get(stage, 0.0) + seconds
        self.records.update(_finished_records(self.space_dir, spec.points))
        self.save_manifest("running")

    def finish(self, pictures: bool) -> RunResult:
        grid, space_dir = self.grid, self.space_dir
        with self.watch("write"):
            cell_index = [self.index[c] for c in range(len(grid))]
            output.write_embeddings(space_dir, labels=np.array(self.space.labels), inputs=self.inputs,
                                    cell_names=np.array([c.name for c in grid]),
                                    weights=np.array([c.weights for c in grid]),
                                    cells=self.point_embeddings[cell_index])
            self.records = _finished_records(space_dir, self.points)
            missing = [c.name for c in grid if c.name not in self.records]
            self.save_manifest("complete" if not missing else "incomplete")
        if missing:
            raise SoundspaceError(f"{space_dir}: {len(missing)} cell(s) are not finished "
                                  f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); "
                                  "run the command again")
        with self.watch("explore"):
            from . import explorer

            explorer.write(space_dir, pictures_too=pictures)
        return RunResult(space_dir, len(grid), len(self.points), self.decoded, len(self.specs),
                         self.watch.seconds, self.inside_decode)


def dataset_folders(paths) -> list[Path]:
    """Dataset folders from the command line: each a dataset (it holds space.json), or a folder of
    datasets (its sub-folders that hold one), in name order."""
    found = []
    for path in map(Path, paths):
        if (path / "space.json").is_file() or not path.is_dir():
            found.append(path)  # load_space explains what is wrong with a bad one
            continue
        inside = sorted(p for p in path.iterdir() if (p / "space.json").is_file())
        if not inside:
            raise SoundspaceError(f"--dataset {path} holds no space.json, and no sub-folder does; "
                                  "give a dataset folder (space.json and its sounds) or a folder of them")
        found += inside
    return found


def generate_spaces(datasets, workflow_path, force: bool = False, output_dir=None,
                    progress: bool = True, log=print, pictures: bool = True) -> list[RunResult]:
    """Make (or complete) several spaces; all their shards go to the backend together, so a
    cluster stays busy."""
    from tqdm.auto import tqdm

    runs = [_SpaceRun(d, workflow_path, force, output_dir) for d in dataset_folders(datasets)]
    names = [run.space.name for run in runs]
    if len(set(names)) < len(names):
        raise SoundspaceError(f"two datasets define the same space name ({', '.join(names)}); "
                              "their spaces would share a folder: rename one")
    for run in runs:
        run.plan()
    tasks = [(spec, run) for run in runs for spec in run.specs if run.todo[spec.index]]
    start = time.perf_counter()
    if tasks:
        total = sum(run.todo[spec.index] * spec.decoded_samples for spec, run in tasks)
        cells_left = sum(len(run.grid) - len(run.records) for run in runs)
        with tqdm(total=total, unit="sample", unit_scale=True, smoothing=0.05,
                  desc=f"decoding {cells_left} cell(s)", disable=not progress, file=sys.stderr) as bar:
            backend = backend_for(runs[0].workflow)
            for i, result in backend.run([(spec, run.space_dir) for spec, run in tasks], bar.update):
                spec, run = tasks[i]
                run.shard_done(spec, result)
    decode_seconds = time.perf_counter() - start
    results = []
    for run in runs:
        run.watch.seconds["decode"] = decode_seconds  # shared by the spaces decoded together
        result = run.finish(pictures)
        log(summary(result))
        results.append(result)
    return results


def generate_space(dataset, workflow_path, force: bool = False, output_dir=None,
                   progress: bool = True, log=print, pictures: bool = True) -> RunResult:
    """Make (or complete) the space of one dataset as `workflow_path` says."""
    return generate_spaces([dataset], workflow_path, force, output_dir, progress, log, pictures)[0]


def summary(result: RunResult) -> str:
    """The stage table printed at the end of a run."""
    lines = [f"{'stage':<28}{'seconds':>9}"]
    for stage, seconds in result.seconds.items():
        lines.append(f"{stage:<28}{seconds:>9.2f}")
        if stage == "decode":
            lines += [f"{'  in shards: ' + part:<28}{value:>9.2f}"
                      for part, value in result.inside_decode.items()]
    lines.append(f"{'total':<28}{sum(result.seconds.values()):>9.2f}")
    done_before = result.points - result.decoded
    lines.append(f"{result.cells} cell(s) in {result.shards} shard(s); decoded {result.decoded} "
                 f"distinct sound(s) now, {done_before} were already done"
                 + (" (--force regenerates)" if result.decoded == 0 else ""))
    lines.append(f"wrote {result.space_dir}/")
    return "\n".join(lines)

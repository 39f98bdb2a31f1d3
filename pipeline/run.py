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


def generate_space(dataset, workflow_path, force: bool = False, output_dir=None,
                   progress: bool = True, log=print, pictures: bool = True) -> RunResult:
    """Make (or complete) the space of `dataset` as `workflow_path` says."""
    from tqdm.auto import tqdm

    from .nsynth import NSynth

    watch, inside_decode = _Stopwatch(), {}
    with watch("configuration"):
        space, folder = load_space(dataset)
        workflow, base = load_workflow(workflow_path)
        model_dir = model_folder(workflow, base, space.model, workflow_path)
        root = Path(output_dir) if output_dir is not None else base / workflow.output
        if root.exists() and not root.is_dir():
            raise SoundspaceError(f"output folder {root} exists and is not a folder")
    labels = space.labels
    with watch("audio in"):
        audio = np.stack([load_sound(folder / space.sounds[label].file, space.samples)
                          for label in labels])
    with watch("encode"):
        model = NSynth.load(model_dir, device=workflow.device)
        if space.samples < model.config.hop:
            raise SoundspaceError(f"{folder / 'space.json'}: field length: {space.length} s is "
                                  f"shorter than one frame of the model ({model.config.hop} "
                                  "samples); use a longer length")
        inputs = model.encode(audio)
    with watch("interpolate"):
        grid = cells(labels, space.resolution, space.weighting)
        weights, index = unique_weights(grid)
        point_embeddings = interpolate(inputs, weights)
    with watch("plan"):
        inputs_sha256 = hashlib.sha256(audio.tobytes()).hexdigest()
        post = space.postprocess.model_dump()
        groups = [[] for _ in weights]  # the cells of each distinct weight set, in grid order
        for c, u in enumerate(index):
            groups[u].append(c)
        points = []
        for p, members in enumerate(groups):
            seed = [space.seed, members[0]]  # the first cell's place in the grid
            points.append({"seed": seed, "cells": [grid[c].name for c in members],
                           "key": output.cell_key({"model": model.identity, "inputs": inputs_sha256,
                                                   "weights": [round(w, 9) for w in weights[p]],
                                                   "seed": seed, "samples": space.samples,
                                                   "postprocess": post})})
        space_dir = root / space.name
        _check_same_dataset(space_dir, folder, force)
        try:
            space_dir.mkdir(parents=True, exist_ok=True)
            (space_dir / output.RECORDS).mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise SoundspaceError(f"cannot write to {space_dir} (permission denied); make the output "
                                  "folder writable for this user (in Docker: create ./output on the "
                                  "host first and set SOUNDSPACE_UID/SOUNDSPACE_GID to your ids)") from None
        if force:
            output.clear(space_dir)
        earlier_runs = _earlier_runs(space_dir)
        output.remove_leftovers(space_dir)
        output.remove_stale_cells(space_dir, {cell.name for cell in grid})
        model_spec = {"path": str(model_dir), "identity": model.identity, "hop": model.config.hop,
                      "role": space.model}
        specs = [shards.ShardSpec(space=space.name, index=i, count=0, model=model_spec,
                                  device=workflow.device, math=workflow.math,
                                  decode_batch=workflow.decode_batch, samples=space.samples,
                                  postprocess=post, points=[points[p] for p in part],
                                  embeddings=point_embeddings[part])
                 for i, part in enumerate(shards.plan(len(points), workflow.shard_size))]
        for spec in specs:
            spec.count = len(specs)
        records = _finished_records(space_dir, points)
        todo = {spec.index: sum(any(name not in records for name in point["cells"])
                                for point in spec.points) for spec in specs}

    def save_manifest(status):
        output.write_manifest(space_dir, _manifest(space, folder, workflow, workflow_path, model,
                                                   model_dir, grid, records, watch.seconds,
                                                   inside_decode, status, decoded, earlier_runs))

    decoded, work = 0, [spec for spec in specs if todo[spec.index]]
    save_manifest("running")
    with watch("decode"):
        if work:
            total = sum(todo[s.index] for s in work) * specs[0].decoded_samples
            cells_left = len(grid) - len(records)
            with tqdm(total=total, unit="sample", unit_scale=True, smoothing=0.05,
                      desc=f"decoding {cells_left} cell(s)", disable=not progress,
                      file=sys.stderr) as bar:
                for spec, result in backend_for(workflow).run(work, space_dir, bar.update):
                    decoded += result["decoded"]
                    for stage, seconds in result["seconds"].items():
                        inside_decode[stage] = inside_decode.get(stage, 0.0) + seconds
                    records.update(_finished_records(space_dir, spec.points))
                    save_manifest("running")
    with watch("write"):
        cell_index = [index[c] for c in range(len(grid))]
        output.write_embeddings(space_dir, labels=np.array(labels), inputs=inputs,
                                cell_names=np.array([c.name for c in grid]),
                                weights=np.array([c.weights for c in grid]),
                                cells=point_embeddings[cell_index])
        records = _finished_records(space_dir, points)
        missing = [c.name for c in grid if c.name not in records]
        save_manifest("complete" if not missing else "incomplete")
    if missing:
        raise SoundspaceError(f"{len(missing)} cell(s) are not finished ({', '.join(missing[:5])}"
                              f"{' ...' if len(missing) > 5 else ''}); run the command again")
    with watch("explore"):
        from . import explorer

        explorer.write(space_dir, pictures_too=pictures)
    result = RunResult(space_dir, len(grid), len(points), decoded, len(specs), watch.seconds,
                       inside_decode)
    log(summary(result))
    return result


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

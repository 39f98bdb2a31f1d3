"""The run: one sound space from a dataset folder and a workflow, stage by stage.

configuration -> audio in -> encode (the inputs, one batch) -> interpolate (every cell; identical
weight sets become one point) -> plan (shards; skip finished cells) -> decode (the backend runs
each shard: decode, post-process, write cells) -> write (embeddings, manifest).

Everything that can be refused is checked before the space folder is created, so a refused run
writes nothing; what the run will write (folders writable, no folder where a file goes, enough free
space) is checked before the decode starts. One run at a time holds a space folder (a lock).
Finished cells are recorded as they are written and the manifest is rewritten after every shard,
so an interrupted or failed run keeps its work and a rerun picks up what is missing. The
manifest's status is `complete` only when every cell and the explorer are written; otherwise it
says what is missing.
"""
from __future__ import annotations

import errno
import hashlib
import json
import shutil
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import SoundspaceError, files, output, shards
from .files import megabytes
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
    pads: int = 0  # a library's pads and pitches (0 for a space)
    pitches: int = 0


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
              inside_decode, status, missing, decoded, earlier_runs, sounds_sha256) -> dict:
    labels = space.labels
    return {
        "status": status,
        "missing": missing,
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
        "sounds_sha256": sounds_sha256,
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


def _check_same_sounds(space_dir: Path, folder: Path, sounds_sha256: dict, force: bool) -> None:
    """Two datasets whose spaces share a name would overwrite each other's cells: refuse. A space
    is known by the contents of its input sounds, so a moved or copied dataset is the same space
    (its finished cells are kept) and a dataset whose sounds changed is another one."""
    try:
        old = json.loads((space_dir / output.MANIFEST).read_text())
        made_from, old_sounds = old.get("dataset"), old.get("sounds_sha256")
    except (OSError, ValueError, AttributeError):
        return
    if force or (old_sounds is None and made_from in (None, str(folder.resolve()))):
        return
    if old_sounds != sounds_sha256:
        raise SoundspaceError(f"{space_dir} holds a space made from other sounds (dataset "
                              f"{made_from}); give this space another name in "
                              f"{folder / 'space.json'}, another --output, or --force to replace it")


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


def _check_output_outside(root: Path, folder: Path) -> None:
    """A space written into its own dataset folder could overwrite an input sound."""
    data, out = folder.resolve(), root.resolve()
    if out == data or data in out.parents:
        raise SoundspaceError(f"the output folder {root} is inside the dataset folder {folder}, "
                              "where the space's files could overwrite its sounds; choose an "
                              "output folder outside it (--output or the workflow's output)")


def _bytes_to_write(cells_left: int, cells: int, samples: int, embedding_values: int,
                    pictures: bool) -> int:
    """About how much disk the rest of the run takes: the cells left (WAV, record, thumbnail),
    the embeddings, and the explorer (every WAV again in base64, written beside the old one),
    each file rounded up to whole 4 KiB blocks."""
    def blocks(size: int) -> int:
        return -(-size // 4096) * 4096

    wav = 44 + 2 * samples
    per_cell = blocks(wav) + blocks(600) + (blocks(20_000) if pictures else 0)
    explorer = 2 * blocks(cells * (wav * 4 // 3 + 300)) + (blocks(60_000 * cells) if pictures else 0)
    return cells_left * per_cell + 2 * blocks(4 * embedding_values) + explorer + (1 << 20)


def _check_writable(space_dir: Path, file_names, folders, needed: int) -> None:
    """Before the decode: every folder the run writes takes a file, no folder stands where a file
    goes, and the disk has about the room the rest of the run needs."""
    for folder in folders:
        path = space_dir / folder
        path.mkdir(parents=True, exist_ok=True)
        probe = files.temp_path(path / "write-test")
        probe.open("wb").close()
        probe.unlink()
    for name in file_names:
        if (space_dir / name).is_dir():
            raise SoundspaceError(f"{space_dir / name} is a folder, where the run writes a file; "
                                  "move it away")
    free = shutil.disk_usage(space_dir).free
    if free < needed:
        raise SoundspaceError(f"not enough free space for {space_dir}: the run needs about "
                              f"{megabytes(needed)} and {megabytes(free)} is free; free "
                              f"{megabytes(needed - free)} or choose another --output")


def setup(space, folder, workflow_path, output_dir) -> tuple:
    """The workflow, the model folder the space asks for and the output root, checked."""
    workflow, base = load_workflow(workflow_path)
    model_dir = model_folder(workflow, base, space.model, workflow_path)
    root = Path(output_dir) if output_dir is not None else base / workflow.output
    if root.exists() and not root.is_dir():
        raise SoundspaceError(f"output folder {root} exists and is not a folder")
    _check_output_outside(root, folder)
    return workflow, model_dir, root


def encoder(workflow, model_dir):
    """The model for encoding the inputs. The decode may run elsewhere (a Ray or Paperspace GPU):
    here, the inputs are encoded on the device asked for only when this machine decodes too."""
    from .nsynth import NSynth

    return NSynth.load(model_dir, device=workflow.device if workflow.backend == "local" else "auto")


class ShardProgress:
    """What a run (space or library) does as each shard comes back: count, time, record, save."""

    def shard_done(self, spec, result: dict) -> None:
        self.decoded += result["decoded"]
        for stage, seconds in result["seconds"].items():
            self.inside_decode[stage] = self.inside_decode.get(stage, 0.0) + seconds
        self.records.update(_finished_records(self.space_dir, spec.points))
        self.save_manifest("running")


class _SpaceRun(ShardProgress):
    """One space through the stages. `prepare` runs everything up to the shard plan (and refuses
    bad input before anything is written); the decode of all spaces runs together; `finish`
    writes embeddings, manifest and explorer."""

    def __init__(self, space, folder, watch, workflow_path, force: bool, output_dir):
        self.watch, self.inside_decode, self.decoded = watch, {}, 0
        with watch("configuration"):
            workflow, model_dir, root = setup(space, folder, workflow_path, output_dir)
        self.space, self.folder, self.workflow, self.workflow_path = space, folder, workflow, workflow_path
        self.model_dir, self.force, self.root = model_dir, force, root
        with watch("audio in"):
            self.audio = np.stack([load_sound(folder / space.sounds[label].file, space.samples)
                                   for label in space.labels])
            self.sounds_sha256 = {label: files.sha256_file(folder / space.sounds[label].file)
                                  for label in space.labels}
        with watch("encode"):
            self.model = model = encoder(workflow, model_dir)
            if space.samples < model.config.hop:
                raise SoundspaceError(f"{folder / 'space.json'}: field length: {space.length} s is "
                                      f"shorter than one frame of the model ({model.config.hop} "
                                      "samples); use a longer length")
            self.inputs = model.encode(self.audio)
        with watch("interpolate"):
            self.grid = cells(space.labels, space.resolution, space.weighting)
            self.weights, self.index = unique_weights(self.grid)
            self.point_embeddings = interpolate(self.inputs, self.weights)

    def plan(self, locks: ExitStack, wait: bool, pictures: bool, log) -> None:
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
            if space_dir.exists() and not space_dir.is_dir():
                raise SoundspaceError(f"{space_dir} is a file, where the space's folder goes; move "
                                      "it away or choose another --output")
            space_dir.mkdir(parents=True, exist_ok=True)
            locks.callback(output.lock(space_dir, wait, log).release)
            _check_same_sounds(space_dir, self.folder, self.sounds_sha256, self.force)
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
            written = [output.MANIFEST, output.EMBEDDINGS, *output.EXPLORER_FILES,
                       *(output.PICTURE,) * pictures, *(f"{cell.name}.wav" for cell in grid)]
            _check_writable(space_dir, written, output.WRITTEN_FOLDERS[:2 + pictures],
                            self.bytes_left(pictures))
        self.save_manifest("running")

    def left(self) -> int:
        """Cells not finished."""
        return len(self.grid) - len(self.records)

    def bytes_left(self, pictures: bool) -> int:
        frames = self.point_embeddings.shape[1]
        return _bytes_to_write(len(self.grid) - len(self.records), len(self.grid),
                               self.space.samples, (len(self.grid) + 4) * frames * 16, pictures)

    def save_unfinished(self) -> list[str]:
        """Read back which cells are finished, save the manifest as `incomplete` (cells missing,
        explorer not yet written) and return the cells that are missing."""
        self.records = _finished_records(self.space_dir, self.points)
        missing = [c.name for c in self.grid if c.name not in self.records]
        self.save_manifest("incomplete", {"cells": missing, "explorer": True})
        return missing

    def save_manifest(self, status: str, missing: dict | None = None) -> None:
        output.write_manifest(self.space_dir, _manifest(
            self.space, self.folder, self.workflow, self.workflow_path, self.model, self.model_dir,
            self.grid, self.records, self.watch.seconds, self.inside_decode, status, missing or {},
            self.decoded, self.earlier_runs, self.sounds_sha256))

    def finish(self, pictures: bool) -> RunResult:
        grid, space_dir = self.grid, self.space_dir
        with self.watch("write"):
            cell_index = [self.index[c] for c in range(len(grid))]
            output.write_embeddings(space_dir, labels=np.array(self.space.labels), inputs=self.inputs,
                                    cell_names=np.array([c.name for c in grid]),
                                    weights=np.array([c.weights for c in grid]),
                                    cells=self.point_embeddings[cell_index])
            missing = self.save_unfinished()
        if missing:
            raise SoundspaceError(f"{space_dir}: {len(missing)} cell(s) are not finished "
                                  f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); "
                                  "run the command again")
        with self.watch("explore"):
            from . import explorer

            try:
                explorer.write(space_dir, pictures_too=pictures)
            except (SoundspaceError, OSError) as error:
                why = files.describe(error) if isinstance(error, OSError) else str(error)
                raise SoundspaceError(f"every cell of {space_dir} is finished, but writing its "
                                      f"explorer failed: {why}; then run `soundspace explore "
                                      f"{space_dir}` (or generate again)") from None
        self.save_manifest("complete")
        return RunResult(space_dir, len(grid), len(self.points), self.decoded, len(self.specs),
                         self.watch.seconds, self.inside_decode)


def _open(dataset, workflow_path, force: bool, output_dir, yes: bool):
    """The run of one dataset folder: a space, or a library (pipeline/run_library.py)."""
    from .config import LibraryConfig

    watch = _Stopwatch()
    with watch("configuration"):
        space, folder = load_space(dataset)
    if isinstance(space, LibraryConfig):
        from .run_library import LibraryRun

        return LibraryRun(space, folder, watch, workflow_path, force, output_dir, yes)
    return _SpaceRun(space, folder, watch, workflow_path, force, output_dir)


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
                    progress: bool = True, log=print, pictures: bool = True,
                    wait: bool = False, yes: bool = False) -> list[RunResult]:
    """Make (or complete) several spaces or libraries; all their shards go to the backend
    together, so a cluster stays busy. `wait`: wait for another run holding one of them, instead
    of refusing; `yes`: accept a library of more than library.MAX_DECODES decodes."""
    runs = [_open(d, workflow_path, force, output_dir, yes) for d in dataset_folders(datasets)]
    names = [run.space.name for run in runs]
    if len(set(names)) < len(names):
        raise SoundspaceError(f"two datasets define the same space name ({', '.join(names)}); "
                              "their spaces would share a folder: rename one")
    with ExitStack() as locks:
        for run in runs:
            run.plan(locks, wait, pictures, log)
        try:
            decode_seconds = _decode(runs, progress)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise SoundspaceError(_disk_full(error, runs, pictures)) from None
        results = []
        for run in runs:
            run.watch.seconds["decode"] = decode_seconds  # shared by the spaces decoded together
            result = run.finish(pictures)
            log(summary(result))
            results.append(result)
    return results


def _decode(runs, progress: bool) -> float:
    """Every shard with work left, of every space, on the workflow's backend; returns seconds."""
    from tqdm.auto import tqdm

    tasks = [(spec, run) for run in runs for spec in run.specs if run.todo[spec.index]]
    start = time.perf_counter()
    if tasks:
        total = sum(run.todo[spec.index] * spec.decoded_samples for spec, run in tasks)
        left = sum(run.left() for run in runs)
        with tqdm(total=total, unit="sample", unit_scale=True, smoothing=0.05,
                  desc=f"decoding {left} sound(s)", disable=not progress, file=sys.stderr) as bar:
            backend = backend_for(runs[0].workflow)
            for i, result in backend.run([(spec, run.space_dir) for spec, run in tasks], bar.update):
                spec, run = tasks[i]
                run.shard_done(spec, result)
    return time.perf_counter() - start


def _disk_full(error: OSError, runs, pictures: bool) -> str:
    """What a full disk mid-run means for the user: what is kept, and how much room is missing."""
    done = left = needed = 0
    for run in runs:
        try:
            run.save_unfinished()
        except OSError:
            pass  # the disk is full: the records alone say which cells are done
        done += len(run.records)
        left += run.left()
        needed += run.bytes_left(pictures)
    free = shutil.disk_usage(runs[0].space_dir).free
    return (f"{files.describe(error, hint=False)}: the disk filled up; {done} finished cell(s) "
            f"are kept, and the {left} left need about {megabytes(needed)} ({megabytes(free)} is "
            f"free): free at least {megabytes(max(needed - free, 0))} and run the same command again")


def generate_space(dataset, workflow_path, force: bool = False, output_dir=None,
                   progress: bool = True, log=print, pictures: bool = True,
                   wait: bool = False, yes: bool = False) -> RunResult:
    """Make (or complete) the space (or library) of one dataset as `workflow_path` says."""
    return generate_spaces([dataset], workflow_path, force, output_dir, progress, log, pictures,
                           wait, yes)[0]


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
    if result.pads:
        lines.append(f"{result.cells:,} cell(s): {result.pads} pad(s) x {result.pitches} "
                     f"pitch(es); {result.points:,} distinct decode(s) in {result.shards} shard(s)")
    else:
        lines.append(f"{result.cells} cell(s) in {result.shards} shard(s)")
    lines[-1] += (f"; decoded {result.decoded} distinct sound(s) now, {done_before} were already "
                  "done" + (" (--force regenerates)" if result.decoded == 0 else ""))
    lines.append(f"wrote {result.space_dir}/")
    return "\n".join(lines)

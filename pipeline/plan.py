"""The plan of a run: what to decode, how it is split into shards, and where every result goes.

Two planners make a plan, one for a space (pipeline/plan_space.py) and one for a library
(pipeline/plan_library.py); the one run (pipeline/run.py) executes either on any backend. A
plan's *points* are its distinct decodes, each `{"seed", "cells", "key"}`: its random stream,
the names it is written under in the store, and the hash of everything its audio depends on.
Points are cut, in order, into shards of one length each (`shard_specs`); the plan depends
only on the input and the workflow's shard size, never on the backend.

A planner is what the run calls at each stage (`Planner`): it prepares its inputs (audio in,
encode, interpolate), plans (and refuses bad input before a file is written), says how many
bytes the rest of the run writes, saves its manifest, and writes what follows the decode (the
space's embeddings and explorer; a library's pads and page).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from . import SoundspaceError, files, output, snapshots
from .config import LibraryConfig, load_workflow, model_folder
from .files import megabytes, real_folder
from .shards import ShardSpec
from .shards import plan as split


@dataclass
class Plan:
    folder: Path  # the space's folder, or the library's
    store: Path  # where the decodes and their records go: the space's folder or `.decodes/`
    points: list[dict]
    shards: list[ShardSpec]
    files: list[str]  # every file the run writes into `store`: no folder may stand there
    folders: tuple  # the folders of `store` the run writes into


@dataclass
class Group:
    """Points decoded at one length, with their embeddings (one row per point)."""

    samples: int
    points: list[int]
    embeddings: np.ndarray


class Planner(Protocol):
    """What the run asks of a space or a library, stage by stage."""

    name: str
    workflow: object
    model: object

    def prepare(self, watch) -> None: ...  # audio in, encode, interpolate

    def plan(self, locks, wait: bool, log: Callable, pictures: bool) -> Plan: ...

    def missing(self, records: dict) -> dict: ...  # what `incomplete` lists, cells missing

    def bytes_left(self, records: dict, pictures: bool) -> int: ...

    def save_manifest(self, status: str, missing: dict, records: dict, progress: dict) -> None: ...

    def write(self, records: dict) -> None: ...  # after the decode: embeddings, or pads

    def write_page(self, pictures: bool) -> None: ...  # the explorer, last

    def counts(self) -> tuple[int, int, int]: ...  # cells, pads, pitches (0, 0 for a space)


def setup(space, folder: Path, workflow_path, output_dir, datasets) -> tuple:
    """The workflow, the model folder the dataset asks for and the output root, checked: the
    space's own folder is kept apart from every dataset folder of the call (`datasets`)."""
    workflow, base = load_workflow(workflow_path)
    model_dir = model_folder(workflow, base, space.model, workflow_path)
    root = Path(output_dir) if output_dir is not None else base / workflow.output
    if root.exists() and not root.is_dir():
        raise SoundspaceError(f"output folder {root} exists and is not a folder")
    what = "library" if isinstance(space, LibraryConfig) else "space"
    keep_apart(root / space.name, what, datasets)
    return workflow, model_dir, root


def keep_apart(target: Path, what: str, datasets) -> None:
    """Refuse a space's or library's folder that is a dataset folder of the same call, holds
    one or lies inside one: its cells, pads and records would overwrite the sounds."""
    out = target.resolve()
    for dataset in datasets:
        data = Path(dataset).resolve()
        if out == data:
            where = "is"
        elif data in out.parents:
            where = "is inside"
        elif out in data.parents:
            where = "holds"
        else:
            continue
        raise SoundspaceError(
            f"the {what}'s folder {target} {where} the dataset folder {dataset}, where its "
            "files could overwrite the sounds; choose an output folder outside every dataset "
            "(--output or the workflow's output)"
        )


def encoder(workflow, model_dir):
    """The model for encoding the inputs. The decode may run elsewhere (a Ray or Paperspace GPU):
    here, the inputs are encoded on the device asked for only when this machine decodes too."""
    from .nsynth import NSynth

    return NSynth.load(model_dir, device=workflow.device if workflow.backend == "local" else "auto")


def check_length(samples: int, model, where: Path) -> None:
    """A sound shorter than one frame of the model has no embedding."""
    if samples < model.config.hop:
        raise SoundspaceError(
            f"{where}: the sounds are {samples} samples ({samples / 16000:g} s) "
            f"long, shorter than one frame of the model ({model.config.hop} "
            "samples); use a longer length"
        )


def output_folder(root: Path, name: str, what: str) -> Path:
    """The folder a space or library is written into, refused when a file stands there."""
    folder = root / name
    if folder.exists() and not folder.is_dir():
        raise SoundspaceError(
            f"{folder} is a file, where the {what}'s folder goes; move it away "
            "or choose another --output"
        )
    return folder


def hold(store: Path, locks, wait: bool, log) -> None:
    """Hold the store for this run (released when `locks` closes): one run at a time."""
    store.mkdir(parents=True, exist_ok=True)
    locks.callback(output.lock(store, wait, log).release)


def tidy(store: Path, force: bool, names: set) -> None:
    """Clear the held store of what a killed run left, of the decodes the plan no longer has
    (with their thumbnails) and (`force`) of every record: stale cells first, while their
    records still say which they are."""
    output.remove_leftovers(store)
    output.remove_stale_cells(store, names)
    if force:
        output.clear(store)
        snapshots.clear(store)


def shard_specs(
    name: str,
    model_dir: Path,
    model,
    role: str,
    workflow,
    postprocess: dict,
    points: list[dict],
    groups: list[Group],
) -> list[ShardSpec]:
    """The shards of a plan: each group's points cut into shards of at most `shard_size`."""
    model_spec = {
        "path": str(model_dir),
        "identity": model.identity,
        "hop": model.config.hop,
        "role": role,
    }
    specs: list[ShardSpec] = []
    for group in groups:
        for part in split(len(group.points), workflow.shard_size):
            specs.append(
                ShardSpec(
                    space=name,
                    index=len(specs),
                    count=0,
                    model=model_spec,
                    device=workflow.device,
                    math=workflow.math,
                    decode_batch=workflow.decode_batch,
                    samples=group.samples,
                    postprocess=postprocess,
                    points=[points[group.points[i]] for i in part],
                    embeddings=group.embeddings[part],
                    snapshot_seconds=workflow.snapshot_seconds,
                )
            )
    for spec in specs:
        spec.count = len(specs)
    return specs


def finished_records(store: Path, points: list[dict]) -> dict:
    """The records of the cells already done in `store` (each checked: key and sha256)."""
    records = {}
    for point in points:
        for name in point["cells"]:
            record = output.finished(store, name, point["key"])
            if record is not None:
                records[name] = record
    return records


def blocks(size: int) -> int:
    """A file's size on disk, in whole 4 KiB blocks."""
    return -(-size // 4096) * 4096


def check_writable(plan: Plan, needed: int) -> None:
    """Before the decode: every folder the run writes takes a file, no folder stands where a file
    goes, and the disk has about the room the rest of the run needs."""
    for folder in plan.folders:
        path = plan.store if folder == Path(".") else real_folder(plan.store, folder.as_posix())
        probe = files.temp_path(path / "write-test")
        probe.open("wb").close()
        probe.unlink()
    for name in plan.files:
        if (plan.store / name).is_dir():
            raise SoundspaceError(
                f"{plan.store / name} is a folder, where the run writes a file; move it away"
            )
    free = shutil.disk_usage(plan.store).free
    if free < needed:
        raise SoundspaceError(
            f"not enough free space for {plan.folder}: the run needs about "
            f"{megabytes(needed)} and {megabytes(free)} is free; free "
            f"{megabytes(needed - free)} or choose another --output"
        )

"""The run: spaces and libraries from dataset folders and a workflow, stage by stage.

configuration -> audio in -> encode -> interpolate (the planner of a space or a library,
pipeline/plan_space.py and plan_library.py) -> plan (points and shards; finished ones skipped)
-> decode (the workflow's backend runs each shard: decode, post-process, write) -> write (the
space's embeddings, or the library's pads) -> explore (the page) -> manifest `complete`.

Everything that can be refused is checked before a folder is created, so a refused run writes
nothing; what the run will write (folders writable, no folder where a file goes, enough free
space) is checked before the decode starts. One run at a time holds a store (a lock). Each
finished decode has its own record beside its WAV, so an interrupted or failed run keeps its work
and a rerun makes only what is missing; the run keeps the records its shards return, so it never
reads its own WAVs back, and it writes the manifest at the stage ends (`running` after the plan,
`incomplete` or `complete` at the end, and while the decode runs at most every 2 s, never once per
shard). The manifest says `complete` only when every decode, the pads of a library and the page
are written; otherwise what is missing.
"""

from __future__ import annotations

import errno
import shutil
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import SoundspaceError, files, output, snapshots
from .backends import backend_for
from .config import LibraryConfig, load_space
from .files import megabytes
from .plan import Planner, check_writable, finished_records, setup
from .plan_library import LibraryPlanner
from .plan_space import SpacePlanner


@dataclass
class RunResult:
    space_dir: Path
    cells: int
    points: int
    decoded: int  # points decoded by this run (the others were already done)
    shards: int
    seconds: dict = field(default_factory=dict)  # wall time per stage
    # summed over shards: decode, post-process, write
    inside_decode: dict = field(default_factory=dict)
    pads: int = 0  # a library's pads and pitches (0 for a space)
    pitches: int = 0
    steps: int = 0  # decoder steps this run ran (each for a whole batch), replayed ones included


class Stopwatch:
    """Wall time per stage, summed where a stage runs more than once."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


class Run:
    """One dataset (a space or a library) through the stages. Opening it runs everything up to
    the plan (and refuses bad input before anything is written); `plan` takes the lock and checks
    the disk; the decode of every run of a command is shared (`decode`); `finish` writes the
    rest. `datasets`: every dataset folder of the command, which the run's folder keeps apart
    from."""

    def __init__(self, dataset, workflow_path, force: bool, output_dir, yes: bool, datasets):
        self.watch, self.decoded, self.running, self.steps = Stopwatch(), 0, False, 0
        self.inside_decode: dict[str, float] = {}  # summed over shards: decode, post-process, write
        with self.watch("configuration"):
            space, folder = load_space(dataset)
            workflow, model_dir, root = setup(
                space, folder, workflow_path, output_dir, [folder, *datasets]
            )
        self.folder = root / space.name  # the space's or library's folder
        self.planner: Planner
        if isinstance(space, LibraryConfig):
            self.planner = LibraryPlanner(
                space, folder, workflow, model_dir, root, workflow_path, force, yes
            )
        else:
            self.planner = SpacePlanner(
                space, folder, workflow, model_dir, root, workflow_path, force
            )
        self.name, self.workflow = space.name, workflow
        self.planner.prepare(self.watch)

    def plan(self, locks: ExitStack, wait: bool, pictures: bool, log) -> None:
        self.made = files.first_missing(self.folder)  # what this run creates, if anything
        with self.watch("plan"):
            self.plan_ = plan = self.planner.plan(locks, wait, log, pictures)
            self.planned = {name for point in plan.points for name in point["cells"]}
            try:
                self.records = finished_records(plan.store, plan.points)
                self.todo = {
                    spec.index: [
                        i
                        for i, point in enumerate(spec.points)
                        if any(name not in self.records for name in point["cells"])
                    ]
                    for spec in plan.shards
                }
                check_writable(plan, self.bytes_left(pictures))
                # Accepted: what the store says of the cells made again goes, so that while the
                # decode runs a record or a partial WAV is this run's (the live page reads them).
                output.remove_records_except(plan.store, set(self.records))
                snapshots.forget_partial(plan.store)
            except BaseException:
                self.abandon()
                raise
        self.save("running")
        self.running = True

    def abandon(self) -> None:
        """A check refused the run (or it was stopped) before the decode. A folder it created
        goes again, whole (it holds the lock: nothing else wrote there); an earlier space or
        library it has changed (cells of an older plan removed) is saved as `incomplete`."""
        if self.made is not None:
            shutil.rmtree(self.made, ignore_errors=True)
        elif self.running or (hasattr(self, "records") and self.left()):
            try:
                self.save_unfinished()
            except OSError:
                pass  # the refusal is what the user needs to hear

    def tasks(self) -> list:
        """(shard with only its points left to make, store) for every shard with work left."""
        return [
            (spec.only(self.todo[spec.index]), self.plan_.store)
            for spec in self.plan_.shards
            if self.todo[spec.index]
        ]

    def left(self) -> int:
        """Decodes not finished."""
        return sum(
            any(name not in self.records for name in point["cells"]) for point in self.plan_.points
        )

    def bytes_left(self, pictures: bool) -> int:
        """What the rest of the run writes: the planner's files, and the snapshots of the
        decodes left (a byte per sample, while their batch decodes)."""
        kept = sum(  # a byte per sample in the snapshot, a WAV per cell of the partial audio
            spec.decoded_samples * (1 + 2 * len(point["cells"]))
            for spec in self.plan_.shards
            for point in spec.points
            if any(name not in self.records for name in point["cells"])
        )
        return self.planner.bytes_left(self.records, pictures) + kept

    def shard_done(self, result: dict) -> None:
        """A shard came back: count it, time it, and keep the records of what it wrote."""
        self.decoded += result["decoded"]
        self.steps += result.get("steps", 0)
        for stage, seconds in result["seconds"].items():
            self.inside_decode[stage] = self.inside_decode.get(stage, 0.0) + seconds
        self.records.update(result["records"])

    def save(self, status: str, missing: dict | None = None) -> None:
        self.planner.save_manifest(
            status,
            missing or {},
            self.records,
            {
                "decoded": self.decoded,
                "timings_seconds": {k: round(v, 3) for k, v in self.watch.seconds.items()},
                "decode_breakdown_seconds": {k: round(v, 3) for k, v in self.inside_decode.items()},
            },
        )

    def save_running(self) -> None:
        """While the decode runs: the manifest says which cells are finished and how many seconds
        of each cell in flight its last snapshot holds (what `soundspace serve` also shows)."""
        partial = snapshots.partial_seconds(self.plan_.store, self.planned - set(self.records))
        self.save("running", {"in_progress": partial} if partial else None)

    def catch_up(self) -> None:
        """After a stop: a worker may have written cells whose records never reached the run (it
        was finishing its shard as the stop came), so the decodes not recorded are looked up in
        the store (each checked: key and sha256) before the manifest says what is missing."""
        left = [p for p in self.plan_.points if any(n not in self.records for n in p["cells"])]
        self.records.update(finished_records(self.plan_.store, left))

    def save_unfinished(self) -> int:
        """Save the manifest as `incomplete`, saying what is missing (and how many seconds of a
        missing cell its last snapshot holds); returns the decodes left."""
        missing = self.planner.missing(self.records)
        partial = snapshots.partial_seconds(self.plan_.store, self.planned - set(self.records))
        self.save("incomplete", {**missing, **({"in_progress": partial} if partial else {})})
        return self.left()

    def finish(self, pictures: bool) -> RunResult:
        folder = self.plan_.folder
        with self.watch("write"):
            left = self.save_unfinished()
            if left:
                names = [n for p in self.plan_.points for n in p["cells"] if n not in self.records]
                raise SoundspaceError(
                    f"{folder}: {left} decode(s) are not finished "
                    f"({', '.join(names[:5])}{' ...' if len(names) > 5 else ''});"
                    " run the command again"
                )
            snapshots.clear(self.plan_.store)  # nothing is in flight: left by older plans
            self.planner.write(self.records)
            self.save_unfinished()  # now lacking only its page
        with self.watch("explore"):
            try:
                self.planner.write_page(pictures)
            except (SoundspaceError, OSError) as error:
                why = files.describe(error) if isinstance(error, OSError) else str(error)
                raise SoundspaceError(
                    f"every cell of {folder} is finished, but writing its "
                    f"explorer failed: {why}; then run `soundspace explore "
                    f"{folder}` (or generate again)"
                ) from None
        self.save("complete")
        cells, pads, pitches = self.planner.counts()
        return RunResult(
            folder,
            cells,
            len(self.plan_.points),
            self.decoded,
            len(self.plan_.shards),
            self.watch.seconds,
            self.inside_decode,
            pads=pads,
            pitches=pitches,
            steps=self.steps,
        )


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
            raise SoundspaceError(
                f"--dataset {path} holds no space.json, and no sub-folder does; "
                "give a dataset folder (space.json and its sounds) or a folder of them"
            )
        found += inside
    return found


def generate_spaces(
    datasets,
    workflow_path,
    force: bool = False,
    output_dir=None,
    progress: bool = True,
    log=print,
    pictures: bool = True,
    wait: bool = False,
    yes: bool = False,
) -> list[RunResult]:
    """Make (or complete) several spaces or libraries; all their shards go to the backend
    together, so a cluster stays busy. `wait`: wait for another run holding one of them, instead
    of refusing; `yes`: accept a library of more than library.MAX_DECODES decodes."""
    folders = dataset_folders(datasets)
    runs = [Run(d, workflow_path, force, output_dir, yes, folders) for d in folders]
    names = [run.name for run in runs]
    if len(set(names)) < len(names):
        raise SoundspaceError(
            f"two datasets define the same space name ({', '.join(names)}); "
            "their spaces would share a folder: rename one"
        )
    with ExitStack() as locks:
        for n, run in enumerate(runs):
            try:
                run.plan(locks, wait, pictures, log)
            except BaseException:
                for planned in runs[:n]:  # refused together: none is left `running`
                    planned.abandon()
                raise
        for run in runs:
            if run.left():
                log(f"listen while it is made: soundspace serve {run.folder}")
        try:
            decode_seconds = _decode(runs, progress)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise SoundspaceError(_disk_full(error, runs, pictures)) from None
        except BaseException:
            for run in runs:  # what each run kept, for the user and the rerun
                try:
                    run.catch_up()
                    run.save_unfinished()
                except OSError:
                    pass
            raise
        results = []
        for run in runs:
            run.watch.seconds["decode"] = decode_seconds  # shared by the runs decoded together
            result = run.finish(pictures)
            log(summary(result))
            results.append(result)
    return results


def _decode(runs: list[Run], progress: bool) -> float:
    """Every shard with work left, of every run, on the workflow's backend; returns seconds."""
    from tqdm.auto import tqdm

    tasks = [(task, run) for run in runs for task in run.tasks()]
    start = time.perf_counter()
    if tasks:
        total = sum(len(spec.points) * spec.decoded_samples for (spec, _), _ in tasks)
        left = sum(run.left() for run in runs)
        with tqdm(
            total=total,
            unit="sample",
            unit_scale=True,
            smoothing=0.05,
            desc=f"decoding {left} sound(s)",
            disable=not progress,
            file=sys.stderr,
        ) as bar:
            backend = backend_for(runs[0].workflow)
            manifests = Refresher(runs)

            def advance(samples: int) -> None:
                bar.update(samples)
                manifests.due()

            for i, result in backend.run([task for task, _ in tasks], advance):
                tasks[i][1].shard_done(result)
                manifests.due()
    return time.perf_counter() - start


class Refresher:
    """The manifests of runs decoding, rewritten (`Run.save_running`) as the decode goes, every
    REFRESH_SECONDS or, where a manifest is large (a library of thousands of cells), at most 5 %
    of the time (20 times as long as the last rewrite took)."""

    REFRESH_SECONDS = 2.0

    def __init__(self, runs: list[Run]):
        self.runs, self.last, self.spent = runs, time.perf_counter(), 0.0

    def due(self) -> None:
        now = time.perf_counter()
        if now - self.last < max(self.REFRESH_SECONDS, 20 * self.spent):
            return
        for run in self.runs:
            run.save_running()
        self.last = time.perf_counter()
        self.spent = self.last - now


def _disk_full(error: OSError, runs: list[Run], pictures: bool) -> str:
    """What a full disk mid-run means for the user: what is kept, and how much room is missing."""
    done = left = needed = 0
    for run in runs:
        try:
            run.save_unfinished()
        except OSError:
            pass  # the disk is full: the records alone say which decodes are done
        done += len(run.records)
        left += run.left()
        needed += run.bytes_left(pictures)
    free = shutil.disk_usage(runs[0].plan_.store).free
    return (
        f"{files.describe(error, hint=False)}: the disk filled up; {done} finished cell(s) "
        f"are kept, and the {left} left need about {megabytes(needed)} ({megabytes(free)} is "
        f"free): free at least {megabytes(max(needed - free, 0))} and run the same command again"
    )


def summary(result: RunResult) -> str:
    """The stage table printed at the end of a run."""
    lines = [f"{'stage':<28}{'seconds':>9}"]
    for stage, seconds in result.seconds.items():
        lines.append(f"{stage:<28}{seconds:>9.2f}")
        if stage == "decode":
            lines += [
                f"{'  in shards: ' + part:<28}{value:>9.2f}"
                for part, value in result.inside_decode.items()
            ]
    lines.append(f"{'total':<28}{sum(result.seconds.values()):>9.2f}")
    done_before = result.points - result.decoded
    if result.pads:
        lines.append(
            f"{result.cells:,} cell(s): {result.pads} pad(s) x {result.pitches} "
            f"pitch(es); {result.points:,} distinct decode(s) in {result.shards} shard(s)"
        )
    else:
        lines.append(f"{result.cells} cell(s) in {result.shards} shard(s)")
    lines[-1] += (
        f"; decoded {result.decoded} distinct sound(s) now, {done_before} were already "
        "done" + (" (--force regenerates)" if result.decoded == 0 else "")
    )
    if result.steps:
        lines.append(f"{result.steps:,} decoder step(s) (replays of resumed decodes included)")
    lines.append(f"wrote {result.space_dir}/")
    return "\n".join(lines)

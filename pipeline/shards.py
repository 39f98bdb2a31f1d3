"""Shards: the unit of decode work, and the one runner every backend uses.

A *point* is one distinct weight set of the space: it is decoded once and written for each of
its cells (Open NSynth Super's radial grid repeats 4 of 81). The points are split, in order,
into shards of at most `shard_size`, of near-equal size; the plan depends only on the space and
that number, never on the backend. A shard is plain data (`ShardSpec`: JSON-able fields plus one
embeddings array) and `render_shard` is pure and idempotent: it skips the cells already done,
decodes the rest in batches of `decode_batch`, post-processes them and writes finished cells.

Each point samples from its own random stream `(space seed, index of its first cell)`, so a
cell's audio depends on the model, its embedding, the seed and its place in the grid, not on the
shard or backend that decoded it. Bit-identical audio also needs the same batch composition,
math library and device (matrix-product rounding can depend on the batch); a full run always
decodes the same batches, while a resumed run decodes only the missing points together.
"""

from __future__ import annotations

import fcntl
import json
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import SoundspaceError, output, postprocess, snapshots
from .files import atomic_folder, inside, open_own, parse_json
from .space import WORK_NAME

SPEC_FILE, EMBEDDINGS_FILE, SHARD_MANIFEST = "shard.json", "embeddings.npy", "shard-manifest.json"

_MODELS: dict = {}  # (model folder, device, identity) -> NSynth, one load per process


@dataclass
class ShardSpec:
    space: str
    index: int  # this shard's number, counted from 0 ...
    count: int  # ... of this many
    model: dict  # {"path": model folder, "identity": sha256 of its weights}
    device: str
    math: str
    decode_batch: int
    samples: int  # length of every finished sound
    postprocess: dict
    points: list[dict]  # {"seed": [seed, cell index], "cells": [names], "key": cell key}
    embeddings: np.ndarray = field(repr=False)  # [points, frames, bottleneck]
    snapshot_seconds: float = 60.0  # decoding between two snapshots (0: none); see snapshots.py

    @property
    def decoded_samples(self) -> int:
        """Samples the decoder draws per point (whole frames of the hop)."""
        return self.embeddings.shape[1] * self.model["hop"]

    def only(self, indices) -> ShardSpec:
        """The same shard reduced to some of its points (what a retry still has to make)."""
        indices = list(indices)
        return ShardSpec(
            **{
                **asdict(self),
                "points": [self.points[i] for i in indices],
                "embeddings": self.embeddings[indices],
            }
        )

    def save(self, folder) -> Path:
        """Plain files that travel anywhere: shard.json and embeddings.npy."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fields = {k: v for k, v in asdict(self).items() if k != "embeddings"}
        output.atomic_write(folder / SPEC_FILE, json.dumps(fields, indent=1).encode())
        with open(folder / EMBEDDINGS_FILE, "wb") as f:
            np.save(f, self.embeddings)
        return folder

    @classmethod
    def load(cls, folder) -> ShardSpec:
        folder = Path(folder)
        try:
            fields = parse_json((folder / SPEC_FILE).read_text())
            embeddings = np.load(folder / EMBEDDINGS_FILE, allow_pickle=False)
            spec = cls(**fields, embeddings=embeddings)
        except (OSError, ValueError, TypeError) as error:
            raise SoundspaceError(
                f"{folder} is not a shard spec ({SPEC_FILE} + {EMBEDDINGS_FILE}): {error}"
            ) from None
        if len(spec.points) != len(embeddings):
            raise SoundspaceError(
                f"{folder}: {len(spec.points)} points but {len(embeddings)} embeddings"
            )
        for point in spec.points:  # a spec travels: its cell names become file names
            if not (
                isinstance(point, dict)
                and isinstance(point.get("cells"), list)
                and point["cells"]
                and isinstance(point.get("key"), str)
                and all(isinstance(n, str) and WORK_NAME.fullmatch(n) for n in point["cells"])
            ):
                raise SoundspaceError(
                    f"{folder / SPEC_FILE}: refusing point {json.dumps(point)[:80]}: "
                    "each point needs a key and cells named like x00_y00 "
                    "(or decodes like d048-0123456789abcdef)"
                )
        return spec


def model_on_node(folder: Path, fill) -> Path:
    """The one way a model folder is made on a machine that decodes (a Paperspace job unpacking
    `/storage`'s zip, a Ray node receiving the run's model): made once, by `fill(tmp)` writing
    its files into a temporary folder renamed to `folder` when whole; makers racing here (jobs,
    workers) take turns on a lock file beside it, and the later ones find it made."""
    folder = Path(folder)
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open_own(folder.with_name(folder.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not folder.is_dir():
                with atomic_folder(folder) as tmp:
                    fill(tmp)
    return folder


def locate_model(path) -> Path:
    """A model folder, or a zip of one unpacked once beside it (Paperspace's `/storage` holds
    either)."""
    path = Path(path)
    if (path / "model.json").is_file():
        return path
    if path.is_file() and zipfile.is_zipfile(path):

        def unpack(tmp: Path) -> None:
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():  # a folder entry ends with "/"
                    inside(tmp, name.removesuffix("/"), f"entry of {path}")
                archive.extractall(tmp)

        target = model_on_node(path.with_name(path.name + ".unpacked"), unpack)
        found = [p.parent for p in target.rglob("model.json")]
        if len(found) == 1:
            return found[0]
        raise SoundspaceError(
            f"{path} should hold one model folder (model.json + weights), found {len(found)}"
        )
    raise SoundspaceError(
        f"no model at {path}: put the converted model folder (or a zip of it) "
        "there; on Paperspace, upload it to your team's /storage"
    )


def plan(point_count: int, shard_size: int) -> list[np.ndarray]:
    """Point indices per shard: ceil(P / shard_size) shards of near-equal size, in order."""
    shards = -(-point_count // shard_size)
    return [part for part in np.array_split(np.arange(point_count), shards) if len(part)]


def survey(spec: ShardSpec, space_dir) -> tuple[list[int], dict]:
    """The shard's points with a cell that is not done (indices), and the records of its cells
    that are."""
    todo, records = [], {}
    for i, point in enumerate(spec.points):
        found = {name: output.finished(space_dir, name, point["key"]) for name in point["cells"]}
        if any(record is None for record in found.values()):
            todo.append(i)
        else:
            records.update(found)
    return todo, records


def _model(spec: ShardSpec):
    from .nsynth import NSynth

    cache_key = (spec.model["path"], spec.device, spec.model["identity"])
    if cache_key not in _MODELS:  # the folder may have changed since: load it and check
        _MODELS[cache_key] = NSynth.load(spec.model["path"], device=spec.device)
    model = _MODELS[cache_key]
    if model.identity != spec.model["identity"]:
        raise SoundspaceError(
            f"the model at {spec.model['path']} is {model.identity[:12]}, the "
            f"shard was planned for {spec.model['identity'][:12]}"
        )
    return model


def render_shard(
    spec: ShardSpec, space_dir, progress=None, made_on: str | None = None, kept=None
) -> dict:
    """Make every cell of the shard that is not done. Returns the seconds spent per stage, the
    number of points decoded and the records of the shard's finished cells (the run keeps them:
    it never reads its own files back); `progress(samples)` is told the decoder's progress.
    `made_on` (which machine made the cells, e.g. a Ray node's address) goes into each cell's
    record, and so does `first_step`, the step its decode began at (above 0 when it resumed from
    a snapshot). `kept(key, batch)` is told each snapshot written and the points of its batch (a
    remote backend sends it home)."""
    todo, records = survey(spec, space_dir)
    seconds = {"decode": 0.0, "post-process": 0.0, "write": 0.0}
    steps = [0]  # decoder steps run (each for the whole batch), replayed ones included
    if not todo:
        return {"seconds": seconds, "decoded": 0, "records": records, "steps": 0}
    model = _model(spec)
    math, device = model.math_library(spec.math), str(model.device)
    frames, hop = spec.embeddings.shape[1], spec.model["hop"]
    for b0 in range(0, len(todo), spec.decode_batch):
        batch = todo[b0 : b0 + spec.decode_batch]
        key = snapshots.batch_key(spec, batch, math, device)
        resume = snapshots.load(space_dir, key, len(batch), frames, hop)
        if resume is not None:  # what the snapshot holds is done, and can be heard at once
            snapshots.save_partial(space_dir, [spec.points[i]["cells"] for i in batch], resume[1])
            if progress:
                progress(resume[0] * hop * len(batch))
        start = time.perf_counter()
        audio = model.generate(
            spec.embeddings[batch],
            seed=[spec.points[i]["seed"] for i in batch],
            progress=progress or False,
            math=spec.math,
            start=resume,
            keep=lambda done, drawn, key=key, batch=batch: _keep(
                spec, space_dir, key, batch, done, drawn, kept
            ),
            keep_every=spec.snapshot_seconds,
            steps=lambda n: steps.__setitem__(0, steps[0] + n),
        )
        seconds["decode"] += time.perf_counter() - start
        for i, sound in zip(batch, audio, strict=True):
            start = time.perf_counter()
            finished = postprocess.process(sound, spec.samples, spec.postprocess)
            seconds["post-process"] += time.perf_counter() - start
            start = time.perf_counter()
            point = spec.points[i]
            for name in point["cells"]:
                records[name] = output.write_cell(
                    space_dir,
                    name,
                    finished,
                    {
                        "key": point["key"],
                        "seed": point["seed"],
                        "decoded_with": point["cells"][0],
                        "model": spec.model["identity"],
                        "first_step": resume[0] * hop if resume else 0,
                        **({"made_on": made_on} if made_on else {}),
                    },
                )
            seconds["write"] += time.perf_counter() - start
        snapshots.remove(space_dir, key)
        snapshots.remove_partial(space_dir, [n for i in batch for n in spec.points[i]["cells"]])
    return {"seconds": seconds, "decoded": len(todo), "records": records, "steps": steps[0]}


def _keep(spec: ShardSpec, space_dir, key: str, batch: list[int], done: int, drawn, kept) -> None:
    """A snapshot of the batch, and the audio so far of each of its cells."""
    snapshots.save(space_dir, key, done, drawn)
    snapshots.save_partial(space_dir, [spec.points[i]["cells"] for i in batch], drawn)
    if kept:
        kept(key, batch)


def render_shard_folder(spec_dir, out_dir, model=None, device=None, log=print) -> dict:
    """`soundspace render-shard`: run a saved shard into `out_dir` and write its shard manifest
    (every cell of the shard that is finished there, with its record). `model` (a folder or a
    zip) and `device` replace the spec's, e.g. with a job's `/storage` path; the model's
    identity must still be the planned one."""
    spec = ShardSpec.load(spec_dir)
    if model is not None:
        spec.model = {**spec.model, "path": str(locate_model(model))}
    if device is not None:
        spec.device = device
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for saved in sorted((Path(spec_dir) / snapshots.FOLDER).glob("*" + snapshots.SUFFIX)):
        if saved.is_file() and not saved.is_symlink():  # an earlier job's, sent with the spec
            snapshots.restore(out, saved.name.removesuffix(snapshots.SUFFIX), saved.read_bytes())
    total = len(survey(spec, out)[0]) * spec.decoded_samples
    done, next_report = 0, 0.0

    def report(samples):
        nonlocal done, next_report
        done += samples
        if total and done / total >= next_report:
            share = f"{100 * done / total:.0f}%"
            log(f"shard {spec.index + 1}/{spec.count}: {share} of {total:,} samples")
            next_report += 0.1

    log(
        f"shard {spec.index + 1}/{spec.count} of {spec.space}: {len(spec.points)} point(s), "
        f"{total // max(spec.decoded_samples, 1)} to decode"
    )
    result = render_shard(spec, out, progress=report)
    records = result.pop("records")
    cells = {name: records.get(name) for point in spec.points for name in point["cells"]}
    manifest = {
        "space": spec.space,
        "shard": spec.index,
        "count": spec.count,
        "model": spec.model["identity"],
        "cells": cells,
        **result,
    }
    output.atomic_write(out / SHARD_MANIFEST, json.dumps(manifest, indent=1).encode())
    missing = [name for name, record in cells.items() if record is None]
    if missing:
        raise SoundspaceError(f"cells not finished: {', '.join(missing)}")
    log(f"shard {spec.index + 1}/{spec.count}: {len(cells)} cell(s) finished in {out}")
    return manifest

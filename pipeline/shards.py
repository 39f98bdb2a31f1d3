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

import time
from dataclasses import dataclass, field

import numpy as np

from . import output, postprocess

_MODELS: dict = {}  # (model folder, device) -> NSynth, one load per process


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

    @property
    def decoded_samples(self) -> int:
        """Samples the decoder draws per point (whole frames of the hop)."""
        return self.embeddings.shape[1] * self.model["hop"]


def plan(point_count: int, shard_size: int) -> list[np.ndarray]:
    """Point indices per shard: ceil(P / shard_size) shards of near-equal size, in order."""
    shards = -(-point_count // shard_size)
    return [part for part in np.array_split(np.arange(point_count), shards) if len(part)]


def pending(spec: ShardSpec, space_dir) -> list[int]:
    """Indices of the shard's points with a cell that is not done."""
    return [i for i, point in enumerate(spec.points)
            if any(output.finished(space_dir, name, point["key"]) is None for name in point["cells"])]


def _model(spec: ShardSpec):
    from .nsynth import NSynth
    from . import SoundspaceError

    cache_key = (spec.model["path"], spec.device)
    if cache_key not in _MODELS:
        _MODELS[cache_key] = NSynth.load(spec.model["path"], device=spec.device)
    model = _MODELS[cache_key]
    if model.identity != spec.model["identity"]:
        raise SoundspaceError(f"the model at {spec.model['path']} is {model.identity[:12]}, the "
                              f"shard was planned for {spec.model['identity'][:12]}")
    return model


def render_shard(spec: ShardSpec, space_dir, progress=None) -> dict:
    """Make every cell of the shard that is not done. Returns the seconds spent per stage and the
    number of points decoded; `progress(samples)` is told the decoder's progress."""
    todo = pending(spec, space_dir)
    seconds = {"decode": 0.0, "post-process": 0.0, "write": 0.0}
    if not todo:
        return {"seconds": seconds, "decoded": 0}
    model = _model(spec)
    for b0 in range(0, len(todo), spec.decode_batch):
        batch = todo[b0:b0 + spec.decode_batch]
        start = time.perf_counter()
        audio = model.generate(spec.embeddings[batch], seed=[spec.points[i]["seed"] for i in batch],
                               progress=progress or False, math=spec.math)
        seconds["decode"] += time.perf_counter() - start
        for i, sound in zip(batch, audio):
            start = time.perf_counter()
            finished = postprocess.process(sound, spec.samples, spec.postprocess)
            seconds["post-process"] += time.perf_counter() - start
            start = time.perf_counter()
            point = spec.points[i]
            for name in point["cells"]:
                output.write_cell(space_dir, name, finished,
                                  {"key": point["key"], "seed": point["seed"],
                                   "decoded_with": point["cells"][0], "model": spec.model["identity"]})
            seconds["write"] += time.perf_counter() - start
    return {"seconds": seconds, "decoded": len(todo)}

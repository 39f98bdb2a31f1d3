"""Backends move shards to where they run and their results back. None decodes audio itself:
every one calls `shards.render_shard`, so a space is the same cell for cell whatever ran it.

A backend is an object with one method,

    run(tasks, progress) -> iterator of (task index, result)

where `tasks` is a list of `(ShardSpec, space folder)` (shards of one or several spaces). It runs
every shard so that its cells end up finished in its space folder, calls `progress(samples)` as
decoding advances, and yields each shard's `render_shard` result as the shard completes (in any
order). Every backend drives its tasks with `run_tasks`, so all share one failure policy: the
first failure ends the run at once, with that failure (one SoundspaceError line); the tasks in
flight are stopped and no other starts; the cells finished before stay for a rerun.
"""
from __future__ import annotations

from collections import deque


def run_tasks(count: int, limit: int, start, wait, cancel):
    """The task loop of every backend. `start(i)` starts task i and returns a handle; at most
    `limit` run at once. `wait(handles)` blocks until some end and returns `(handle, finish)`
    for each, where `finish()` returns the task's result or raises its failure. `cancel(handles)`
    stops tasks in flight. Yields `(i, result)`. A failure, Ctrl-C, SIGTERM or an error of the
    caller (which closes this generator) cancels every task in flight and propagates."""
    waiting, running = deque(range(count)), {}
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                i = waiting.popleft()
                running[start(i)] = i
            for handle, finish in wait(list(running)):
                i = running.pop(handle)
                yield i, finish()
    except BaseException:
        if running:
            cancel(list(running))
        raise


def backend_for(workflow):
    """The backend a workflow names."""
    if workflow.backend == "local":
        from .local import LocalBackend

        return LocalBackend(workflow.parallel_shards)
    if workflow.backend == "paperspace":
        from ..paperspace.backend import PaperspaceBackend

        return PaperspaceBackend(workflow)
    if workflow.backend == "ray":
        from .ray import RayBackend

        return RayBackend(workflow)
    raise ValueError(f"unknown backend {workflow.backend!r}")  # the config schema allows no other

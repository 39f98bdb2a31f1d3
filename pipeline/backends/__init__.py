"""Backends move shards to where they run and their results back. None decodes audio itself:
every one calls `shards.render_shard`, so a space is the same cell for cell whatever ran it.

A backend is an object with one method,

    run(tasks, progress) -> iterator of (task index, result)

where `tasks` is a list of `(ShardSpec, space folder)` (shards of one or several spaces). It runs
every shard so that its cells end up finished in its space folder, calls `progress(samples)` as
decoding advances (on the thread that iterates it, never another: the run rewrites its manifest
there), and yields each shard's `render_shard` result as the shard completes (in any
order), its `records` those of the cells now finished in the space folder. Every backend drives
its tasks with `tasks.run_tasks`, so all share one failure policy: the first failure ends the run
at once, with that failure (one SoundspaceError line); the tasks in flight are stopped and no
other starts; the cells finished before stay for a rerun. Remote backends merge what their workers
bring back with `remote.receive`.
"""

from __future__ import annotations


def backend_for(workflow):
    """The backend a workflow names."""
    if workflow.backend == "local":
        from .local import LocalBackend

        return LocalBackend(workflow.parallel_shards)
    if workflow.backend == "paperspace":
        from .paperspace.backend import PaperspaceBackend

        return PaperspaceBackend(workflow)
    if workflow.backend == "ray":
        from .ray import RayBackend

        return RayBackend(workflow)
    raise ValueError(f"unknown backend {workflow.backend!r}")  # the config schema allows no other

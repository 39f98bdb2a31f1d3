"""The local backend: shards run in this process one after another, or in `parallel_shards`
worker processes that share the machine's cores (each gets cores / workers math threads, so two
workers on two cores do not fight over them). Tasks go through `run_tasks`, the loop and
failure policy every backend shares.

Workers never outlive the run: each asks the kernel to kill it when its parent dies (even by
`kill -9`) and checks that the parent is still there once it has started; when the run stops for
any reason (an error, Ctrl-C, SIGTERM) the workers still running are killed. A worker that dies
(an out-of-memory kill looks like this) fails its shard, and so the run: the error names the
shard and how its worker ended. Finished cells are always kept, so a rerun completes the space.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess

from .. import SoundspaceError, signals
from ..shards import render_shard
from .tasks import run_tasks

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_PR_SET_PDEATHSIG = 1
SNAPSHOT_PATIENCE = 10.0  # seconds a stopped worker has to write its snapshot


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent ends; then make sure it has not already."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's clean-up below still ends the workers
    if os.getppid() != parent:
        os._exit(1)


def _worker(connection, parent: int, threads: int) -> None:
    """A worker process: run the shards it is sent, report progress and results on its pipe."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import torch

    torch.set_num_threads(threads)
    try:
        with signals.as_exceptions():  # SIGTERM (from the parent): keep a snapshot, then end
            _serve(connection)
    except KeyboardInterrupt:
        pass  # stopped between two shards, or after its snapshot: the parent says why


def _serve(connection) -> None:
    while True:
        task = connection.recv()
        if task is None:
            return
        spec, space_dir = task
        try:
            result = render_shard(
                spec, space_dir, progress=lambda n: connection.send(("progress", n))
            )
        except BaseException as error:  # sent back whole: the parent reports it in one line
            try:
                connection.send(("error", error))
            except Exception:  # an exception that does not pickle: its text is enough
                connection.send(("error", SoundspaceError(f"{type(error).__name__}: {error}")))
            if isinstance(error, KeyboardInterrupt):
                raise
        else:
            connection.send(("done", result))


@contextmanager
def _thread_limit(threads: int):
    """Workers read these when they import numpy and torch, i.e. as they start."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _how_it_died(exitcode) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        why = (
            " (what an out-of-memory kill looks like: lower decode_batch or parallel_shards)"
            if exitcode == -signal.SIGKILL
            else ""
        )
        return f"was killed by {name}{why}"
    return f"exited with code {exitcode}"


def _stop(processes, patience: float = SNAPSHOT_PATIENCE) -> None:
    """Stop workers in the middle of their shards: SIGTERM makes each keep a snapshot of its
    decode (its finished cells are written already) and end; one that has not ended after
    `patience` seconds is killed."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + patience
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()


def _raise(error):
    def finish():
        raise error

    return finish


class LocalBackend:
    def __init__(self, parallel_shards: int = 1):
        self.parallel_shards = parallel_shards

    def run(self, tasks, progress):
        workers = min(self.parallel_shards, len(tasks))
        if workers <= 1:  # in this process, one shard after the other

            def render(handles):
                spec, space_dir = tasks[handles[0]]
                return [(handles[0], lambda: render_shard(spec, space_dir, progress))]

            yield from run_tasks(len(tasks), 1, lambda i: i, render, lambda _: None)
            return
        yield from _Workers(tasks, progress, workers).run()


@dataclass
class _Slot:
    """A worker process, our end of its pipe, and the task it runs (None while idle)."""

    process: SpawnProcess
    connection: Connection
    task: int | None = None


class _Workers:
    """`workers` processes (spawned: no fork of a process holding BLAS and torch threads), each
    on its share of the cores; a task is sent to an idle one and its pipe brings back progress
    and the result or the error."""

    def __init__(self, tasks, progress, workers: int):
        self.tasks, self.progress = tasks, progress
        context = get_context("spawn")
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        self.pool: list[_Slot] = []
        with _thread_limit(threads):
            for _ in range(workers):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_worker, args=(theirs, os.getpid(), threads), daemon=True
                )
                process.start()
                theirs.close()
                self.pool.append(_Slot(process, ours))

    def run(self):
        try:
            yield from run_tasks(
                len(self.tasks), len(self.pool), self._start, self._wait, self._cancel
            )
        finally:
            self._close()

    def _start(self, i: int) -> int:
        slot = next(n for n, s in enumerate(self.pool) if s.task is None)
        self.pool[slot].task = i
        self.pool[slot].connection.send(self.tasks[i])
        return slot

    def _wait(self, slots: list) -> list:
        ended: list[tuple[int, Callable]] = []  # (slot, finish)
        while not ended:
            busy = [self.pool[n] for n in slots]
            ready = wait([s.connection for s in busy] + [s.process.sentinel for s in busy])
            for n in slots:
                slot = self.pool[n]
                process, connection, index = slot.process, slot.connection, slot.task
                if connection in ready or connection.poll():
                    try:
                        kind, value = connection.recv()
                    except (EOFError, OSError):
                        kind, value = "died", None
                elif process.sentinel in ready:
                    kind, value = "died", None
                else:
                    continue
                if kind == "progress":
                    self.progress(value)
                    continue
                slot.task = None
                if kind == "done":
                    ended.append((n, lambda value=value: value))
                    continue
                if kind == "died":
                    process.join(5)
                    spec = self.tasks[index][0]
                    value = SoundspaceError(
                        f"shard {spec.index + 1}/{spec.count} of {spec.space}: its worker "
                        f"process (pid {process.pid}) {_how_it_died(process.exitcode)}; the "
                        "cells finished so far are kept: run the same command again"
                    )
                ended.append((n, _raise(value)))
        return ended

    def _cancel(self, slots: list) -> None:
        _stop([self.pool[n].process for n in slots])

    def _close(self) -> None:
        _stop([s.process for s in self.pool if s.task is not None and s.process.is_alive()])
        for slot in self.pool:
            if slot.task is None:
                try:
                    slot.connection.send(None)
                except OSError:
                    pass
        for slot in self.pool:
            slot.process.join(5)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            slot.connection.close()

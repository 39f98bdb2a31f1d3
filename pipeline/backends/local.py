"""The local backend: shards run in this process one after another, or in `parallel_shards`
worker processes that share the machine's cores (each gets cores / workers math threads, so two
workers on two cores do not fight over them).

Workers never outlive the run: each asks the kernel to kill it when its parent dies (even by
`kill -9`) and checks that the parent is still there once it has started; when the run stops for
any reason (an error, Ctrl-C, SIGTERM) the workers still running are killed. A worker that dies
(an out-of-memory kill looks like this) fails only its own shard: the other workers finish
theirs, no new shard starts, and the error names the shard and how its worker ended. Finished
cells are always kept, so a rerun completes the space.
"""
from __future__ import annotations

import ctypes
import os
import signal
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.connection import wait

from .. import SoundspaceError
from ..shards import render_shard

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_PR_SET_PDEATHSIG = 1


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
    while True:
        task = connection.recv()
        if task is None:
            return
        spec, space_dir = task
        try:
            result = render_shard(spec, space_dir, progress=lambda n: connection.send(("progress", n)))
        except BaseException as error:  # sent back whole: the parent reports it in one line
            try:
                connection.send(("error", error))
            except Exception:  # an exception that does not pickle: its text is enough
                connection.send(("error", SoundspaceError(f"{type(error).__name__}: {error}")))
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
        why = " (what an out-of-memory kill looks like: lower decode_batch or parallel_shards)" \
            if exitcode == -signal.SIGKILL else ""
        return f"was killed by {name}{why}"
    return f"exited with code {exitcode}"


class LocalBackend:
    def __init__(self, parallel_shards: int = 1):
        self.parallel_shards = parallel_shards

    def run(self, tasks, progress):
        workers = min(self.parallel_shards, len(tasks))
        if workers <= 1:
            for i, (spec, space_dir) in enumerate(tasks):
                yield i, render_shard(spec, space_dir, progress)
            return
        yield from self._run_in_workers(tasks, progress, workers)

    def _run_in_workers(self, tasks, progress, workers: int):
        context = get_context("spawn")  # no fork of a process holding BLAS and torch threads
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        pool = []  # [process, connection to it, task index it runs or None]
        with _thread_limit(threads):
            for _ in range(workers):
                ours, theirs = context.Pipe()
                process = context.Process(target=_worker, args=(theirs, os.getpid(), threads),
                                          daemon=True)
                process.start()
                theirs.close()
                pool.append([process, ours, None])
        todo = list(range(len(tasks)))
        failure = None
        try:
            while True:
                for slot in pool:
                    if slot[2] is None and todo and failure is None and slot[0].is_alive():
                        slot[2] = todo.pop(0)
                        slot[1].send(tasks[slot[2]])
                busy = [slot for slot in pool if slot[2] is not None]
                if not busy:
                    break
                ready = wait([s[1] for s in busy] + [s[0].sentinel for s in busy])
                for slot in busy:
                    process, connection, index = slot
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
                        progress(value)
                        continue
                    slot[2] = None
                    if kind == "done":
                        yield index, value
                        continue
                    if kind == "died":
                        process.join(5)
                        spec = tasks[index][0]
                        value = SoundspaceError(
                            f"shard {spec.index + 1}/{spec.count} of {spec.space}: its worker "
                            f"process (pid {process.pid}) {_how_it_died(process.exitcode)}; the "
                            "cells finished so far are kept: run the same command again")
                    failure = failure or value  # the first failure ends the run once the
                    # shards in flight are done (their cells are kept)
            if failure is not None:
                raise failure
        finally:
            for process, connection, index in pool:
                if index is not None and process.is_alive():
                    process.kill()  # stopped mid-shard: its finished cells are already written
                else:
                    try:
                        connection.send(None)
                    except OSError:
                        pass
            for process, connection, _ in pool:
                process.join(5)
                if process.is_alive():
                    process.kill()
                    process.join()
                connection.close()

"""The local backend: shards run in this process one after another, or in a pool of
`parallel_shards` worker processes that share the machine's cores between them (each gets
cores / workers math threads, so two workers on two cores do not fight over them)."""
from __future__ import annotations

import os
import queue
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context

from ..shards import render_shard

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_progress_queue = None  # in a worker: where it reports decoded samples


def _start_worker(progress_queue, threads: int) -> None:
    global _progress_queue
    import torch

    _progress_queue = progress_queue
    torch.set_num_threads(threads)


def _run_in_worker(spec, space_dir):
    return render_shard(spec, space_dir, progress=_progress_queue.put)


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


class LocalBackend:
    def __init__(self, parallel_shards: int = 1):
        self.parallel_shards = parallel_shards

    def run(self, tasks, progress):
        workers = min(self.parallel_shards, len(tasks))
        if workers <= 1:
            for i, (spec, space_dir) in enumerate(tasks):
                yield i, render_shard(spec, space_dir, progress)
            return
        context = get_context("spawn")  # no fork of a process holding BLAS and torch threads
        progress_queue = context.Queue()
        threads = max(1, (os.cpu_count() or 1) // workers)
        with _thread_limit(threads):
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                       initargs=(progress_queue, threads))
            futures = {pool.submit(_run_in_worker, spec, space_dir): i
                       for i, (spec, space_dir) in enumerate(tasks)}
        try:
            while futures:
                done, _ = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
                self._drain(progress_queue, progress)
                for future in done:
                    yield futures.pop(future), future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._drain(progress_queue, progress)

    @staticmethod
    def _drain(progress_queue, progress) -> None:
        while True:
            try:
                progress(progress_queue.get_nowait())
            except queue.Empty:
                return

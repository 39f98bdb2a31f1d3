"""The task loop every backend drives its shards with, and so one failure policy for all: the
first failure ends the run at once, with that failure; the tasks in flight are stopped and no
other starts; what finished before stays for a rerun. It knows no backend."""

from __future__ import annotations

from collections import deque
from typing import Any


def run_tasks(count: int, limit: int, start, wait, cancel):
    """`start(i)` starts task i and returns a handle; at most `limit` run at once. `wait(handles)`
    blocks until some end and returns `(handle, finish)` for each, where `finish()` returns the
    task's result or raises its failure. `cancel(handles)` stops tasks in flight. Yields
    `(i, result)`. A failure, Ctrl-C, SIGTERM or an error of the caller (which closes this
    generator) cancels every task in flight and propagates."""
    waiting = deque(range(count))
    running: dict[Any, int] = {}  # handle -> task index
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

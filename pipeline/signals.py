"""Ctrl-C and SIGTERM as exceptions, raised where Python can take them.

A command stops where it is when either arrives (KeyboardInterrupt, or `Terminated` for SIGTERM,
so everything that handles Ctrl-C handles SIGTERM too), and its clean-up runs as for any error.
Python runs a signal handler between two bytecodes, which may be inside a callback made by C
code: libsndfile reading or writing a file in memory calls back into Python for every block, and
an exception raised there is lost in the library (cffi prints it, libsndfile sees a short write
and soundfile fails with an AssertionError). Code that calls such a library runs in `held()`: a
signal that arrives meanwhile is raised when the block ends.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, stopping the command the way Ctrl-C does (exit status 143 instead of 130)."""


_held = 0  # depth of `held()` blocks in the main thread, where handlers run
_pending: int | None = None  # a signal that arrived inside one


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _stop(signum, frame) -> None:
    global _pending
    if _held:
        _pending = signum
        return
    raise _exception(signum)


@contextmanager
def held():
    """Hold Ctrl-C and SIGTERM for the block (a call into C that calls back into Python)."""
    global _held, _pending
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only: nothing to hold here
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            signum, _pending = _pending, None
            raise _exception(signum)


@contextmanager
def as_exceptions():
    """Ctrl-C and SIGTERM raise for the block (in the main thread; elsewhere it changes nothing).
    Ctrl-C stays ignored where the command was started with it ignored (a background job)."""
    wanted = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        wanted.append(signal.SIGINT)
    try:
        previous = {s: signal.signal(s, _stop) for s in wanted}
    except ValueError:  # not the main thread (main() called from a program's thread)
        previous = {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
